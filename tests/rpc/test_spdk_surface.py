"""Our RPC surface against SPDK's schema (shared/reference/spdk-rpc-interface.json).

SPDK's own clients (spdk-rpc, spdk-cli) send the parameter names and JSON types of that
schema, so every method we share with SPDK must accept them with the same types, require
what SPDK requires, and refuse nothing SPDK accepts. Anything we accept beyond SPDK, and
every method SPDK lacks, is listed below with the reason.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spydk.apps.plugins import load_plugins
from spydk.rpc.registry import RpcMethod, all_methods, get_method
from spydk.rpc.schema import Param

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = ROOT.parent / "shared" / "reference" / "spdk-rpc-interface.json"

# Methods we register that SPDK's schema does not have, and why.
OUR_METHODS = {
    # Switches the reactor between epoll sleeping and busy polling at run time; SPDK always
    # busy-polls (its interrupt mode is a start-up choice), so it has no such method.
    "spydk_set_poll_mode": "reactor poll/sleep switch, no SPDK counterpart",
    # bdevperf's RPC (bdevperf -z); SPDK registers it inside the bdevperf example app, outside
    # the target schema. Only present when spydk.apps.bdevperf is imported.
    "perform_tests": "bdevperf -z trigger, SPDK keeps it out of the target schema",
}

# Parameters we accept that SPDK's schema lacks, per method, and why.
OUR_PARAMS: dict[str, dict[str, str]] = {
    # SPDK deprecated the single-bdev "name" for "names" and dropped it from the schema, but its
    # decoder still takes it and older rpc.py/spdk-rpc releases send it for -b.
    "bdev_get_iostat": {"name": "legacy single-bdev selector SPDK still decodes"},
}

# Every method the foundation, bdev, NVMe-oF and iSCSI issues (2, 3, 5, 6) ask for.
ISSUE_METHODS = {
    2: """spdk_get_version rpc_get_methods framework_start_init framework_wait_init
        framework_get_config framework_get_subsystems framework_get_reactors thread_get_stats
        thread_get_pollers thread_get_io_channels spdk_kill_instance log_set_flag log_clear_flag
        log_get_flags log_set_level log_get_level log_set_print_level log_get_print_level
        notify_get_types notify_get_notifications""",
    3: """bdev_get_bdevs bdev_get_iostat bdev_reset_iostat bdev_enable_histogram bdev_get_histogram
        bdev_set_qos_limit bdev_set_options bdev_wait_for_examine bdev_examine bdev_malloc_create
        bdev_malloc_delete bdev_null_create bdev_null_delete bdev_null_resize bdev_aio_create
        bdev_aio_delete bdev_aio_rescan bdev_uring_create bdev_uring_delete bdev_passthru_create
        bdev_passthru_delete bdev_delay_create bdev_delay_delete bdev_delay_update_latency
        bdev_error_create bdev_error_delete bdev_error_inject_error bdev_split_create
        bdev_split_delete perform_tests""",
    5: """nvmf_create_transport nvmf_get_transports nvmf_create_subsystem nvmf_delete_subsystem
        nvmf_subsystem_add_ns nvmf_subsystem_remove_ns nvmf_subsystem_add_listener
        nvmf_subsystem_remove_listener nvmf_subsystem_add_host nvmf_subsystem_remove_host
        nvmf_subsystem_allow_any_host nvmf_get_subsystems nvmf_subsystem_get_controllers
        nvmf_subsystem_get_qpairs nvmf_subsystem_get_listeners nvmf_get_stats
        nvmf_subsystem_listener_set_ana_state nvmf_discovery_add_referral
        nvmf_discovery_remove_referral nvmf_discovery_get_referrals nvmf_set_config
        nvmf_set_max_subsystems""",
    6: """iscsi_set_options iscsi_get_options iscsi_create_portal_group iscsi_delete_portal_group
        iscsi_get_portal_groups iscsi_create_initiator_group iscsi_delete_initiator_group
        iscsi_initiator_group_add_initiators iscsi_initiator_group_remove_initiators
        iscsi_get_initiator_groups iscsi_create_target_node iscsi_delete_target_node
        iscsi_get_target_nodes iscsi_target_node_add_lun iscsi_target_node_add_pg_ig_maps
        iscsi_target_node_remove_pg_ig_maps iscsi_target_node_set_auth iscsi_create_auth_group
        iscsi_delete_auth_group iscsi_auth_group_add_secret iscsi_auth_group_remove_secret
        iscsi_get_auth_groups iscsi_set_discovery_auth iscsi_get_connections iscsi_get_stats""",
}


@pytest.fixture(scope="module")
def spdk() -> dict[str, Any]:
    if not INTERFACE.exists():
        pytest.skip(f"SPDK's RPC interface file is not at {INTERFACE} (shared/ beside the clone)")
    data: dict[str, Any] = json.loads(INTERFACE.read_text())
    return data


def _ours() -> list[RpcMethod]:
    """spydk's methods; other tests register their own (test_dispatch_*), which we skip."""
    load_plugins()
    return [m for m in all_methods(include_aliases=True) if m.handler.__module__.startswith("spydk.")]


def _compare_value(ours: Param, theirs: dict[str, Any], path: str, spdk: dict[str, Any],
                   out: list[str]) -> None:
    """Append to ``out`` every way our parameter differs in type from SPDK's."""
    t = theirs["type"]
    if ours.type != t:
        out.append(f"{path}: type {ours.type}, SPDK has {t}")
        return
    cls = theirs.get("class")
    if cls is None:
        return
    if t == "enum":
        if set(ours.choices) != set(spdk["enums"][cls]):
            out.append(f"{path}: choices {sorted(ours.choices)}, SPDK has {sorted(spdk['enums'][cls])}")
    elif t == "bitmask":
        # The schema lists a bitmask's values as the enum named like the class in the singular.
        values = spdk["enums"].get(cls.removesuffix("s"), [])
        if set(ours.choices) != set(values):
            out.append(f"{path}: values {sorted(ours.choices)}, SPDK has {sorted(values)}")
    elif t == "object":
        _compare_fields(ours.fields, spdk["objects"][cls], path, spdk, out)
    elif t == "array":
        arr = spdk["arrays"][cls]
        if ours.items is None:
            out.append(f"{path}: element type not declared, SPDK has {arr['item_type']}")
        else:
            item = {"type": arr["item_type"], **({"class": arr["class"]} if "class" in arr else {})}
            _compare_value(ours.items, item, f"{path}[]", spdk, out)


def _compare_fields(ours: tuple[Param, ...] | None, theirs: list[dict[str, Any]], path: str,
                    spdk: dict[str, Any], out: list[str]) -> None:
    if ours is None:
        out.append(f"{path}: object fields not declared")
        return
    by_name = {f["name"]: f for f in theirs}
    mine = {f.name for f in ours}
    for f in ours:
        s = by_name.get(f.name)
        if s is None:
            out.append(f"{path}.{f.name}: not a field of SPDK's object")
            continue
        _compare_value(f, s, f"{path}.{f.name}", spdk, out)
        if f.required != bool(s.get("required")):
            out.append(f"{path}.{f.name}: required={f.required}, SPDK says {bool(s.get('required'))}")
    out.extend(f"{path}.{n}: SPDK requires it, we do not declare it"
               for n, s in by_name.items() if s.get("required") and n not in mine)


def mismatches(m: RpcMethod, spdk: dict[str, Any]) -> list[str]:
    """Every difference between our declaration of ``m`` and SPDK's, minus OUR_PARAMS."""
    theirs = {p["name"]: p for p in spdk["methods"][m.name]["params"]}
    extensions = OUR_PARAMS.get(m.deprecated_alias_of or m.name, {})
    out: list[str] = []
    for p in m.schema.params:
        s = theirs.get(p.name)
        if s is None:
            if p.name not in extensions:
                out.append(f"{p.name}: SPDK has no such parameter")
            continue
        _compare_value(p, s, p.name, spdk, out)
    for name, s in theirs.items():
        mine = m.schema.by_name.get(name)
        if s.get("required") and (mine is None or not mine.required):
            out.append(f"{name}: SPDK requires it, ours is {'missing' if mine is None else 'optional'}")
    return out


def test_shared_methods_match_spdk(spdk: dict[str, Any]) -> None:
    report = {}
    for m in _ours():
        if m.name in spdk["methods"]:
            found = mismatches(m, spdk)
            if found:
                report[m.name] = found
    assert not report, "RPC declarations differ from SPDK's schema:\n" + "\n".join(
        f"  {name}: {'; '.join(found)}" for name, found in sorted(report.items()))


def test_methods_spdk_lacks_are_listed(spdk: dict[str, Any]) -> None:
    extra = sorted(m.name for m in _ours() if m.name not in spdk["methods"] and m.name not in OUR_METHODS)
    assert not extra, f"methods SPDK does not have; rename them or list them in OUR_METHODS: {extra}"


def test_extension_lists_are_not_stale(spdk: dict[str, Any]) -> None:
    load_plugins()
    for method, params in OUR_PARAMS.items():
        m = get_method(method)
        assert m is not None, f"OUR_PARAMS names {method}, which we do not register"
        for name in params:
            assert name in m.schema.by_name, f"OUR_PARAMS: {method} has no parameter {name}"
            assert name not in {p["name"] for p in spdk["methods"][method]["params"]}, \
                f"OUR_PARAMS: SPDK has {method}.{name} now; drop it from the list"
    for name in OUR_METHODS:
        assert name not in spdk["methods"], f"OUR_METHODS: SPDK has {name}; drop it from the list"


@pytest.mark.parametrize("issue", sorted(ISSUE_METHODS))
def test_issue_methods_are_registered(issue: int) -> None:
    load_plugins()
    import spydk.apps.bdevperf  # noqa: F401  (registers perform_tests)
    missing = [n for n in ISSUE_METHODS[issue].split() if get_method(n) is None]
    assert not missing, f"issue {issue} asks for methods we do not register: {missing}"


def test_comparison_catches_differences(spdk: dict[str, Any]) -> None:
    """The checker itself: a declaration with a wrong type, enum, field and name is reported."""
    from spydk.rpc.schema import Schema
    bad = RpcMethod("bdev_get_iostat", lambda ctx: None, Schema((
        Param("names", "array", items=Param("n", "uint32")),
        Param("reset_mode", "enum", choices=("all",)),
        Param("per_chanel", "boolean"),
    )))
    found = "\n".join(mismatches(bad, spdk))
    assert "names[]: type uint32, SPDK has string" in found
    assert "reset_mode: choices" in found
    assert "per_chanel: SPDK has no such parameter" in found
    ns = RpcMethod("nvmf_subsystem_add_ns", lambda ctx: None, Schema((
        Param("nqn", "string"),
        Param("namespace", "object", required=True, fields=(Param("nsid", "uint32"),)),
    )))
    found = "\n".join(mismatches(ns, spdk))
    assert "nqn: SPDK requires it, ours is optional" in found
    assert "namespace.bdev_name: SPDK requires it" in found
