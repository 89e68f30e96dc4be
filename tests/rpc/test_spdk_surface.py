"""Our RPC surface against SPDK's own command line client (the PyPI ``spdk`` package).

SPDK's clients (spdk-rpc, spdk-cli) send the method names, parameter names and JSON types
that their argument parsers produce; tests/rpc/spdk_cli_requests.py collects those requests
from SPDK's parsers at test time. Every method we share with SPDK must accept them, require
nothing SPDK's client may leave out, and every method SPDK lacks is listed below with the
reason.
"""
from __future__ import annotations

from typing import Any

import pytest

from spydk.apps.plugins import load_plugins
from spydk.rpc.registry import RpcMethod, all_methods, get_method
from spydk.rpc.schema import Param

from .spdk_cli_requests import minimal_requests, spdk_cli_requests

# Methods we register that SPDK's schema does not have, and why.
OUR_METHODS = {
    # Switches the reactor between epoll sleeping and busy polling at run time; SPDK always
    # busy-polls (its interrupt mode is a start-up choice), so it has no such method.
    "spydk_set_poll_mode": "reactor poll/sleep switch, no SPDK counterpart",
    # bdevperf's RPC (bdevperf -z); SPDK registers it inside the bdevperf example app, outside
    # the target schema. Only present when spydk.apps.bdevperf is imported.
    "perform_tests": "bdevperf -z trigger, SPDK keeps it out of the target schema",
    # In SPDK v24.01 (scripts/rpc.py and module/bdev/nvme) and its schema; the PyPI client's
    # parsers predate it.
    "bdev_nvme_set_multipath_policy": "SPDK v24.01 method the PyPI spdk client lacks",
    # SPDK registers these in the target (names and parameters as in its published RPC
    # reference), but its PyPI client has no parser for them:
    # SPDK ships their client side as a test plugin (multitarget_rpc.py).
    "nvmf_create_target": "in SPDK's schema; client only in SPDK's test plugin",
    "nvmf_delete_target": "in SPDK's schema; client only in SPDK's test plugin",
    "nvmf_get_targets": "in SPDK's schema; client only in SPDK's test plugin",
    # An NBD network server beyond SPDK's kernel-NBD export (docs/nbd.md): SPDK has no such server.
    **{m: "spydk's NBD network server, no SPDK counterpart" for m in (
        "nbd_server_listen", "nbd_server_stop_listen", "nbd_server_start_export",
        "nbd_server_stop_export", "nbd_server_get_exports", "nbd_server_get_listeners")},
    # The built-in Prometheus endpoint (issue 16); SPDK has no exporter of its own.
    "metrics_start_exporter": "Prometheus endpoint start, no SPDK counterpart",
    "metrics_stop_exporter": "Prometheus endpoint stop, no SPDK counterpart",
    "metrics_get_exporter": "Prometheus endpoint state, no SPDK counterpart",
}

# Every method the foundation, bdev, NVMe-oF, iSCSI, NVMe host and NVMe-oF security issues
# (2, 3, 5, 6, 12, 15) ask for.
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
    15: """keyring_file_add_key keyring_file_remove_key keyring_get_keys nvmf_subsystem_set_keys
        nvmf_subsystem_set_ns_ana_group nvmf_create_target nvmf_delete_target nvmf_get_targets
        nvmf_ns_add_host nvmf_ns_remove_host nvmf_set_crdt""",
    12: """bdev_nvme_attach_controller bdev_nvme_detach_controller bdev_nvme_get_controllers
        bdev_nvme_set_options bdev_nvme_reset_controller bdev_nvme_get_io_paths
        bdev_nvme_set_multipath_policy bdev_nvme_start_discovery bdev_nvme_stop_discovery""",
}


@pytest.fixture(scope="module")
def spdk() -> dict[str, list[dict[str, Any]]]:
    found = spdk_cli_requests()
    assert len(found) > 250, f"SPDK's CLI parsers gave only {len(found)} methods: is the spdk package broken?"
    return found


def _ours() -> list[RpcMethod]:
    """spydk's methods; other tests register their own (test_dispatch_*), which we skip."""
    load_plugins()
    return [m for m in all_methods(include_aliases=True) if m.handler.__module__.startswith("spydk.")]


INTS = {"int32", "uint32", "uint64", "int64", "uint16", "uint8", "number"}
STRINGS = {"string", "uuid", "enum"}


def _type_fits(p: Param, value: Any, path: str, out: list[str]) -> None:
    """Append to ``out`` how ``value`` (as SPDK's client sends it) does not fit our declaration."""
    if isinstance(value, bool):
        ok = p.type in ("boolean",)
    elif isinstance(value, int):
        ok = p.type in INTS or p.type == "bitmask"
    elif isinstance(value, float):
        ok = p.type == "number"
    elif isinstance(value, str):
        ok = p.type in STRINGS or p.type == "bitmask"
    elif isinstance(value, list):
        ok = p.type == "array"
        if ok and p.items is not None:
            for v in value:
                _type_fits(p.items, v, f"{path}[]", out)
    elif isinstance(value, dict):
        ok = p.type == "object"
        if ok:
            _fields_fit(p.fields, value, path, out)
    else:
        ok = value is None
    if not ok:
        out.append(f"{path}: SPDK's client sends {type(value).__name__}, we declare {p.type}")


def _fields_fit(fields: tuple[Param, ...] | None, value: dict[str, Any], path: str, out: list[str]) -> None:
    if fields is None:
        return
    by_name = {f.name: f for f in fields}
    for k, v in value.items():
        f = by_name.get(k)
        if f is None:
            out.append(f"{path}.{k}: SPDK's client sends it, we do not declare it")
        else:
            _type_fits(f, v, f"{path}.{k}", out)


def mismatches(m: RpcMethod, requests: list[dict[str, Any]], minimal: dict[str, Any]) -> list[str]:
    """Every way SPDK's client requests for ``m`` would be refused by our declaration."""
    out: list[str] = []
    for params in requests:
        for k, v in params.items():
            p = m.schema.by_name.get(k)
            if p is None:
                out.append(f"{k}: SPDK's client sends it, we do not declare it")
            else:
                _type_fits(p, v, k, out)
    out.extend(f"{p.name}: we require it, SPDK's client may leave it out"
               for p in m.schema.params if p.required and p.name not in minimal)
    return sorted(set(out))


def test_shared_methods_accept_what_spdk_sends(spdk: dict[str, list[dict[str, Any]]]) -> None:
    minimal = minimal_requests()
    report = {}
    for m in _ours():
        if m.name in spdk:
            found = mismatches(m, spdk[m.name], minimal[m.name])
            if found:
                report[m.name] = found
    assert not report, "RPC declarations refuse what SPDK's client sends:\n" + "\n".join(
        f"  {name}: {'; '.join(found)}" for name, found in sorted(report.items()))


def test_methods_spdk_lacks_are_listed(spdk: dict[str, list[dict[str, Any]]]) -> None:
    extra = sorted(m.name for m in _ours() if m.name not in spdk and m.name not in OUR_METHODS)
    assert not extra, f"methods SPDK's client does not have; rename them or list them in OUR_METHODS: {extra}"


def test_extension_lists_are_not_stale(spdk: dict[str, list[dict[str, Any]]]) -> None:
    load_plugins()
    for name in OUR_METHODS:
        assert name not in spdk, f"OUR_METHODS: SPDK has {name}; drop it from the list"


@pytest.mark.parametrize("issue", sorted(ISSUE_METHODS))
def test_issue_methods_are_registered(issue: int) -> None:
    load_plugins()
    import spydk.apps.bdevperf  # noqa: F401  (registers perform_tests)
    missing = [n for n in ISSUE_METHODS[issue].split() if get_method(n) is None]
    assert not missing, f"issue {issue} asks for methods we do not register: {missing}"


def test_comparison_catches_differences() -> None:
    """The checker itself: a wrong type, an undeclared name and an extra requirement are reported."""
    from spydk.rpc.schema import Schema
    bad = RpcMethod("bdev_get_iostat", lambda ctx: None, Schema((
        Param("names", "array", items=Param("n", "uint32")),
        Param("per_chanel", "boolean", required=True),
    )))
    found = "\n".join(mismatches(bad, [{"names": ["Malloc0"], "per_channel": True}], {}))
    assert "names[]: SPDK's client sends str, we declare uint32" in found
    assert "per_channel: SPDK's client sends it, we do not declare it" in found
    assert "per_chanel: we require it, SPDK's client may leave it out" in found
    ns = RpcMethod("nvmf_subsystem_add_ns", lambda ctx: None, Schema((
        Param("nqn", "string", required=True),
        Param("namespace", "object", required=True, fields=(Param("nsid", "uint32"),)),
    )))
    found = "\n".join(mismatches(ns, [{"nqn": "n", "namespace": {"nsid": 1, "bdev_name": "b"}}],
                                 {"nqn": "n", "namespace": {"bdev_name": "b"}}))
    assert "namespace.bdev_name: SPDK's client sends it, we do not declare it" in found
