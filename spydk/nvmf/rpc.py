"""nvmf_* RPCs with SPDK's names, parameters and result shapes, and the "nvmf" subsystem.

Every handler runs on the app thread. Configuration problems come back as JSON-RPC
errors whose message names the parameter or object at fault.
"""
from __future__ import annotations

import errno
import uuid as _uuid
from typing import Any

from spydk.bdev import BdevError
from spydk.init.subsystem import Subsystem as InitSubsystem
from spydk.init.subsystem import register_subsystem
from spydk.log import get_logger
from spydk.nvmf import spread_ops  # noqa: F401 - registers the reactors' operations before workers fork
from spydk.nvmf import tgt as tgt_mod
from spydk.nvmf.bdev_ns import BdevBackend
from spydk.nvmf.discovery import FILTERS, Referral
from spydk.nvmf.subsystem import (
    ANA_STATE_BY_NAME,
    ANA_STATE_NAMES,
    DEFAULT_MODEL,
    DEFAULT_SERIAL,
    DISCOVERY_NQN,
    ListenAddress,
    NvmfConfigError,
    Subsystem,
    load_psk,
    parse_hex_id,
)
from spydk.nvmf.tgt import Target, get_target
from spydk.nvmf.transport import TransportOptions, transport_class, transport_types
from spydk.rpc.errors import INVALID_PARAMS, RpcError
from spydk.rpc.registry import RpcContext, State, rpc_method
from spydk.rpc.schema import Param
from spydk.thread import TICK_RATE, cores
from spydk.thread.reactor import get_reactor

log = get_logger("nvmf")


def _no_effect(method: str, ignored: dict[str, Any]) -> None:
    """Say which accepted parameters spydk does not act on. They are accepted so that a
    config saved by SPDK loads unchanged, but a user who sets one should know."""
    names = sorted(k for k, v in ignored.items() if v is not None)
    if names:
        log.warning("%s: parameter%s %s accepted for compatibility with SPDK but without effect "
                    "in spydk", method, "s" if len(names) > 1 else "", ", ".join(names))
ANY = State.STARTUP | State.RUNTIME

_ADDR_FIELDS = (Param("trtype", "string", required=True), Param("adrfam", "string"),
                Param("traddr", "string", required=True), Param("trsvcid", "string"))
_NS_FIELDS = (Param("nsid", "uint32"), Param("bdev_name", "string", required=True),
              Param("nguid", "string"), Param("eui64", "string"), Param("uuid", "uuid"),
              Param("ptpl_file", "string"), Param("anagrpid", "uint32"),
              Param("no_auto_visible", "boolean"), Param("hide_metadata", "boolean"))
_ANA_STATES = ("optimized", "non_optimized", "inaccessible")
_TGT = Param("tgt_name", "string")


def _tgt(tgt_name: str | None = None) -> Target:
    t = tgt_mod.find_target(tgt_name)
    if t is None:
        names = ", ".join(repr(x.name) for x in tgt_mod.targets())
        raise RpcError(-errno.ENODEV, f"parameter 'tgt_name': no target {tgt_name!r} (targets: {names}; "
                                      "create one with nvmf_create_target)")
    return t


def _err(e: NvmfConfigError, what: str = "") -> RpcError:
    msg = f"{what}: {e}" if what else str(e)
    return RpcError(-e.errno if e.errno != 22 else INVALID_PARAMS, msg)


def _addr(d: dict[str, Any], param: str = "listen_address") -> ListenAddress:
    try:
        return ListenAddress.from_json(d)
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, f"parameter '{param}': {e}") from None


def _subsys(t: Target, nqn: str) -> Subsystem:
    s = t.subsystems.get(nqn)
    if s is None:
        raise RpcError(-errno.ENODEV, f"subsystem {nqn!r} does not exist (parameter 'nqn')")
    return s


# --------------------------------------------------------------------------------------------
# Target-wide settings
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_set_max_subsystems", [Param("max_subsystems", "uint32", required=True)],
            states=State.STARTUP)
def nvmf_set_max_subsystems(ctx: RpcContext, max_subsystems: int) -> bool:
    """Set the maximum number of subsystems (startup only)."""
    t = get_target()
    if max_subsystems < len(t.subsystems):
        raise RpcError(INVALID_PARAMS, f"parameter 'max_subsystems' ({max_subsystems}) is below the "
                                       f"{len(t.subsystems)} subsystems that exist")
    t.max_subsystems = max_subsystems
    return True


# The values SPDK's schema allows in these objects and string lists.
ADMIN_PASSTHRU_CMDS = ("identify_ctrlr", "identify_uuid_list", "get_log_page", "get_set_features", "sanitize",
                  "security_send_recv", "fw_update", "nvme_mi", "vendor_specific")
DHCHAP_DIGESTS = ("sha256", "sha384", "sha512")
DHCHAP_DHGROUPS = ("null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192")
ONCS_FEATURES = ("nvmcmps", "nvmdsmsv", "nvmwzsv", "reservs", "nvmcpys")
FUSES_FEATURES = ("fcws",)


@rpc_method("nvmf_set_config", [
    Param("admin_cmd_passthru", "object", fields=tuple(Param(n, "boolean") for n in ADMIN_PASSTHRU_CMDS)),
    Param("poll_groups_mask", "string"),
    Param("discovery_filter", "string", deprecated=True),
    Param("discovery_filters", "bitmask", choices=FILTERS[1:]),
    Param("dhchap_digests", "bitmask", choices=DHCHAP_DIGESTS),
    Param("dhchap_dhgroups", "bitmask", choices=DHCHAP_DHGROUPS),
    Param("dup_host_policy", "enum", choices=("allow", "restrict_per_listener")),
], states=State.STARTUP)
def nvmf_set_config(ctx: RpcContext, admin_cmd_passthru: dict[str, Any] | None = None,
                    poll_groups_mask: str | None = None, discovery_filter: str | None = None,
                    discovery_filters: list[str] | None = None, dhchap_digests: list[str] | None = None,
                    dhchap_dhgroups: list[str] | None = None, **_ignored: Any) -> bool:
    """Target-wide settings: discovery filter (match_any / transport,address,svcid), the hash
    functions and DH groups DH-HMAC-CHAP may choose from."""
    t = get_target()
    _no_effect("nvmf_set_config", {"poll_groups_mask": poll_groups_mask, **_ignored})
    if discovery_filter is not None:
        parts = tuple(p for p in discovery_filter.split(",") if p)
        bad = [p for p in parts if p not in FILTERS]
        if bad or not parts:
            raise RpcError(INVALID_PARAMS, f"parameter 'discovery_filter': {discovery_filter!r}; use "
                                           "match_any or a comma list of transport,address,svcid")
        t.discovery_filters = parts
    if discovery_filters is not None:
        t.discovery_filters = tuple(discovery_filters) or ("match_any",)
    for name, value in (("dhchap_digests", dhchap_digests), ("dhchap_dhgroups", dhchap_dhgroups)):
        if value is not None and not value:
            raise RpcError(INVALID_PARAMS, f"parameter '{name}': give at least one value")
    if dhchap_digests is not None:
        t.dhchap_digests = tuple(d for d in DHCHAP_DIGESTS if d in dhchap_digests)
    if dhchap_dhgroups is not None:
        t.dhchap_dhgroups = tuple(g for g in DHCHAP_DHGROUPS if g in dhchap_dhgroups)
    if admin_cmd_passthru is not None:
        if any(v for v in admin_cmd_passthru.values()):
            raise RpcError(INVALID_PARAMS, "parameter 'admin_cmd_passthru': passthrough of admin "
                                           "commands is not supported")
        t.admin_cmd_passthru = dict(admin_cmd_passthru)
    return True


# --------------------------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------------------------

_TRANSPORT_PARAMS = [
    Param("trtype", "string", required=True), _TGT,
    Param("max_queue_depth", "uint16"), Param("max_io_qpairs_per_ctrlr", "uint16"),
    Param("in_capsule_data_size", "uint32"), Param("max_io_size", "uint32"),
    Param("io_unit_size", "uint32"), Param("max_aq_depth", "uint32"),
    Param("num_shared_buffers", "uint32"), Param("buf_cache_size", "uint32"),
    Param("iobuf_small_cache_size", "uint32"), Param("iobuf_large_cache_size", "uint32"),
    Param("zcopy", "boolean"), Param("num_cqe", "int32"), Param("max_srq_depth", "uint32"),
    Param("no_srq", "boolean"), Param("c2h_success", "boolean"),
    Param("dif_insert_or_strip", "boolean"), Param("sock_priority", "uint32"),
    Param("acceptor_backlog", "int32"), Param("abort_timeout_sec", "uint32"),
    Param("no_wr_batching", "boolean"), Param("control_msg_num", "uint16"),
    Param("disable_mappable_bar0", "boolean"), Param("disable_adaptive_irq", "boolean"),
    Param("disable_shadow_doorbells", "boolean"), Param("acceptor_poll_rate", "uint32"),
    Param("ack_timeout", "uint32"), Param("data_wr_pool_size", "uint32"),
    Param("disable_command_passthru", "boolean"), Param("kas", "uint16"),
    Param("min_kato", "uint32"), Param("masked_oncs", "bitmask", choices=ONCS_FEATURES),
    Param("masked_fuses", "bitmask", choices=FUSES_FEATURES),
]


@rpc_method("nvmf_create_transport", _TRANSPORT_PARAMS)
def nvmf_create_transport(ctx: RpcContext, trtype: str, tgt_name: str | None = None,
                          **params: Any) -> bool:
    """Create the NVMe/TCP transport with its options."""
    t = _tgt(tgt_name)
    cls = transport_class(trtype)
    if cls is None:
        raise RpcError(INVALID_PARAMS, f"parameter 'trtype': transport {trtype!r} is not supported "
                                       f"(spydk has {', '.join(transport_types())})")
    if cls.trtype in t.transports:
        raise RpcError(-errno.EEXIST, f"transport {cls.trtype} already exists")
    names = TransportOptions.names()
    opts = TransportOptions(**{k: v for k, v in params.items() if k in names})
    _no_effect("nvmf_create_transport", {k: v for k, v in params.items() if k not in names})
    if opts.dif_insert_or_strip:
        raise RpcError(INVALID_PARAMS, "parameter 'dif_insert_or_strip': DIF is not supported")
    try:
        opts.validate()
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, f"nvmf_create_transport: {e}") from None
    tr = cls(t, opts)
    t.add_transport(tr)
    return True


@rpc_method("nvmf_get_transports", [_TGT, Param("trtype", "string")])
def nvmf_get_transports(ctx: RpcContext, tgt_name: str | None = None,
                        trtype: str | None = None) -> list[dict[str, Any]]:
    """The transports and their options."""
    t = _tgt(tgt_name)
    if trtype is not None and trtype.upper() not in t.transports:
        raise RpcError(-errno.ENODEV, f"parameter 'trtype': no transport {trtype!r}")
    return [tr.to_json() for tr in t.transports.values()
            if trtype is None or tr.trtype == trtype.upper()]


# --------------------------------------------------------------------------------------------
# Subsystems
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_create_subsystem", [
    Param("nqn", "string", required=True), _TGT, Param("serial_number", "string"),
    Param("model_number", "string"), Param("admin_label", "string"),
    Param("max_namespaces", "uint32"), Param("allow_any_host", "boolean"),
    Param("ana_reporting", "boolean"), Param("min_cntlid", "uint16"), Param("max_cntlid", "uint16"),
    Param("dmrsl", "uint32"), Param("wzsl", "uint8"), Param("passthrough", "boolean"),
    Param("enable_nssr", "boolean"),
])
def nvmf_create_subsystem(ctx: RpcContext, nqn: str, tgt_name: str | None = None,
                          serial_number: str = DEFAULT_SERIAL, model_number: str = DEFAULT_MODEL,
                          max_namespaces: int = 0, allow_any_host: bool = False,
                          ana_reporting: bool = False, min_cntlid: int = 1, max_cntlid: int = 0xFFEF,
                          passthrough: bool = False, **_ignored: Any) -> bool:
    """Create an NVM subsystem."""
    t = _tgt(tgt_name)
    _no_effect("nvmf_create_subsystem", _ignored)
    if passthrough:
        raise RpcError(INVALID_PARAMS, "parameter 'passthrough' is not supported")
    if nqn == DISCOVERY_NQN:
        raise RpcError(-errno.EEXIST, "the discovery subsystem always exists")
    try:
        s = Subsystem(nqn, serial_number=serial_number, model_number=model_number,
                      max_namespaces=max_namespaces, allow_any_host=allow_any_host,
                      ana_reporting=ana_reporting, min_cntlid=min_cntlid, max_cntlid=max_cntlid)
        t.add_subsystem(s)
    except NvmfConfigError as e:
        raise _err(e, "nvmf_create_subsystem") from None
    return True


@rpc_method("nvmf_delete_subsystem", [Param("nqn", "string", required=True), _TGT])
async def nvmf_delete_subsystem(ctx: RpcContext, nqn: str, tgt_name: str | None = None) -> bool:
    """Delete a subsystem, disconnecting its hosts."""
    t = _tgt(tgt_name)
    _subsys(t, nqn)
    try:
        await t.remove_subsystem(nqn)
    except NvmfConfigError as e:
        raise _err(e) from None
    return True


@rpc_method("nvmf_get_subsystems", [Param("nqn", "string"), _TGT])
def nvmf_get_subsystems(ctx: RpcContext, nqn: str | None = None,
                        tgt_name: str | None = None) -> list[dict[str, Any]]:
    t = _tgt(tgt_name)
    if nqn is not None:
        return [_subsys(t, nqn).to_json()]
    return [s.to_json() for s in t.subsystems.values()]


@rpc_method("nvmf_subsystem_add_ns", [
    Param("nqn", "string", required=True),
    Param("namespace", "object", required=True, fields=_NS_FIELDS), _TGT,
])
def nvmf_subsystem_add_ns(ctx: RpcContext, nqn: str, namespace: dict[str, Any],
                          tgt_name: str | None = None) -> int:
    """Add a bdev as a namespace; returns its NSID."""
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    if s.discovery:
        raise RpcError(INVALID_PARAMS, "parameter 'nqn': the discovery subsystem has no namespaces")
    ns_opts = namespace
    bdev_name = ns_opts["bdev_name"]
    try:
        nguid = parse_hex_id(ns_opts["nguid"], 16, "namespace.nguid") if "nguid" in ns_opts else None
        eui64 = parse_hex_id(ns_opts["eui64"], 8, "namespace.eui64") if "eui64" in ns_opts else None
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, f"parameter {e}") from None
    nsid = ns_opts.get("nsid", 0)
    if nsid and nsid in s.namespaces:
        raise RpcError(INVALID_PARAMS, f"parameter 'namespace.nsid': nsid {nsid} is already in use "
                                       f"in {nqn}")
    if any(n.bdev_name == bdev_name for n in s.namespaces.values()):
        raise RpcError(INVALID_PARAMS, f"parameter 'namespace.bdev_name': bdev {bdev_name!r} is "
                                       f"already a namespace of {nqn}")
    holder: dict[str, int] = {}

    def removed() -> None:
        n = holder.get("nsid")
        if n is not None and s.namespaces.get(n) is not None and s.namespaces[n].backend is backend:
            log.warning("bdev %s was removed: removing namespace %d from %s", bdev_name, n, nqn)
            s.remove_namespace(n)

    try:
        backend = BdevBackend(bdev_name, removed)
    except BdevError as e:
        raise RpcError(-e.errno, f"parameter 'namespace.bdev_name': {e.message}") from None
    uuid = _uuid.UUID(ns_opts["uuid"]).bytes if "uuid" in ns_opts else backend.uuid
    try:
        ns = s.add_namespace(bdev_name, backend, nsid=nsid, nguid=nguid, eui64=eui64, uuid=uuid,
                             anagrpid=ns_opts.get("anagrpid", 0), ptpl_file=ns_opts.get("ptpl_file"),
                             auto_visible=not ns_opts.get("no_auto_visible", False))
    except NvmfConfigError as e:
        backend.close()
        raise RpcError(INVALID_PARAMS, f"parameter 'namespace': {e}") from None
    holder["nsid"] = ns.nsid
    return ns.nsid


@rpc_method("nvmf_subsystem_remove_ns", [Param("nqn", "string", required=True),
                                         Param("nsid", "uint32", required=True), _TGT])
def nvmf_subsystem_remove_ns(ctx: RpcContext, nqn: str, nsid: int, tgt_name: str | None = None) -> bool:
    s = _subsys(_tgt(tgt_name), nqn)
    try:
        ns = s.remove_namespace(nsid)
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, f"parameter 'nsid': {e}") from None
    ns.backend.close()
    return True


# --------------------------------------------------------------------------------------------
# Listeners and ANA
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_subsystem_add_listener", [
    Param("nqn", "string", required=True), _TGT,
    Param("listen_address", "object", required=True, fields=_ADDR_FIELDS),
    Param("secure_channel", "boolean"), Param("ana_state", "enum", choices=_ANA_STATES),
    Param("sock_impl", "string"), Param("numa_id", "int32"),
])
async def nvmf_subsystem_add_listener(ctx: RpcContext, nqn: str, listen_address: dict[str, Any],
                                      tgt_name: str | None = None, secure_channel: bool = False,
                                      ana_state: str = "optimized", **_ignored: Any) -> bool:
    """Listen for hosts of this subsystem on an address (IPv4 or IPv6)."""
    t = _tgt(tgt_name)
    _no_effect("nvmf_subsystem_add_listener", _ignored)
    s = _subsys(t, nqn)
    addr = _addr(listen_address)
    try:
        await t.add_listener(s, addr, ana_state=ANA_STATE_BY_NAME[ana_state], secure_channel=secure_channel)
    except NvmfConfigError as e:
        raise _err(e, "nvmf_subsystem_add_listener") from None
    return True


@rpc_method("nvmf_subsystem_remove_listener", [
    Param("nqn", "string", required=True), _TGT,
    Param("listen_address", "object", required=True, fields=_ADDR_FIELDS),
])
async def nvmf_subsystem_remove_listener(ctx: RpcContext, nqn: str, listen_address: dict[str, Any],
                                         tgt_name: str | None = None) -> bool:
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    addr = _addr(listen_address)
    try:
        await t.remove_listener(s, addr)
    except NvmfConfigError as e:
        raise _err(e, "parameter 'listen_address'") from None
    return True


def _listener_json(s: Subsystem, lst: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"address": lst.address.to_json(),
                           "ana_state": ANA_STATE_NAMES[lst.default_state]}
    if s.ana_reporting:
        out["ana_states"] = [{"ana_group": g, "ana_state": ANA_STATE_NAMES[lst.ana_state(g)]}
                             for g in range(1, s.max_namespaces + 1)]
    return out


@rpc_method("nvmf_subsystem_get_listeners", [Param("nqn", "string", required=True), _TGT])
def nvmf_subsystem_get_listeners(ctx: RpcContext, nqn: str, tgt_name: str | None = None) -> list[dict[str, Any]]:
    s = _subsys(_tgt(tgt_name), nqn)
    return [_listener_json(s, lst) for lst in s.listeners]


@rpc_method("nvmf_subsystem_listener_set_ana_state", [
    Param("nqn", "string", required=True), _TGT,
    Param("listen_address", "object", required=True, fields=_ADDR_FIELDS),
    Param("ana_state", "enum", choices=_ANA_STATES, required=True), Param("anagrpid", "uint32"),
])
def nvmf_subsystem_listener_set_ana_state(ctx: RpcContext, nqn: str, listen_address: dict[str, Any],
                                          ana_state: str, tgt_name: str | None = None,
                                          anagrpid: int = 0) -> bool:
    s = _subsys(_tgt(tgt_name), nqn)
    addr = _addr(listen_address)
    if anagrpid and not s.ana_reporting:
        raise RpcError(INVALID_PARAMS, f"parameter 'anagrpid': {nqn} was created without ana_reporting")
    try:
        s.set_ana_state(addr, ANA_STATE_BY_NAME[ana_state], anagrpid)
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None
    return True


@rpc_method("nvmf_subsystem_set_ns_ana_group", [
    Param("nqn", "string", required=True), Param("nsid", "uint32", required=True),
    Param("anagrpid", "uint32", required=True), _TGT,
])
def nvmf_subsystem_set_ns_ana_group(ctx: RpcContext, nqn: str, nsid: int, anagrpid: int,
                                    tgt_name: str | None = None) -> bool:
    """Put namespace ``nsid`` into ANA group ``anagrpid`` (1..max_namespaces); connected hosts
    get an ANA change event."""
    s = _subsys(_tgt(tgt_name), nqn)
    try:
        s.set_ns_ana_group(nsid, anagrpid)
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS, f"parameter '{'nsid' if e.errno == 2 else 'anagrpid'}': {e}") from None
    return True


# --------------------------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_subsystem_add_host", [
    Param("nqn", "string", required=True), Param("host", "string", required=True), _TGT,
    Param("psk", "string"), Param("dhchap_key", "string"), Param("dhchap_ctrlr_key", "string"),
])
def nvmf_subsystem_add_host(ctx: RpcContext, nqn: str, host: str, tgt_name: str | None = None,
                            psk: str | None = None, dhchap_key: str | None = None,
                            dhchap_ctrlr_key: str | None = None) -> bool:
    """Allow a host NQN to connect to the subsystem; with psk (a keyring key name or a PSK file
    path) it may use secure-channel (TLS) listeners; with dhchap_key (a keyring key name) it must
    pass DH-HMAC-CHAP, and with dhchap_ctrlr_key as well it can authenticate the controller."""
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    host_psk = None
    if psk is not None:
        try:
            host_psk = load_psk(psk)
        except NvmfConfigError as e:
            raise RpcError(INVALID_PARAMS, f"parameter 'psk': {e}") from None
    if dhchap_ctrlr_key is not None and dhchap_key is None:
        raise RpcError(INVALID_PARAMS, "parameter 'dhchap_ctrlr_key' needs 'dhchap_key' as well")
    try:
        s.add_host(host)
    except NvmfConfigError as e:
        if host_psk is not None:
            host_psk.release()
        raise RpcError(INVALID_PARAMS if e.errno == 22 else -e.errno, f"parameter 'host': {e}") from None
    s.set_host_psk(host, host_psk)
    if dhchap_key is not None:
        try:
            s.set_host_keys(host, dhchap_key, dhchap_ctrlr_key)
        except NvmfConfigError as e:
            s.remove_host(host)
            raise _err(e, "nvmf_subsystem_add_host") from None
    t.bump_generation()
    return True


@rpc_method("nvmf_subsystem_set_keys", [
    Param("nqn", "string", required=True), Param("host", "string", required=True), _TGT,
    Param("dhchap_key", "string"), Param("dhchap_ctrlr_key", "string"),
])
def nvmf_subsystem_set_keys(ctx: RpcContext, nqn: str, host: str, tgt_name: str | None = None,
                            dhchap_key: str | None = None, dhchap_ctrlr_key: str | None = None) -> bool:
    """Replace (rotate) an allowed host's DH-HMAC-CHAP keys; no keys: no authentication.
    Connected queues stay; the new keys count from the host's next Connect."""
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    try:
        s.set_host_keys(host, dhchap_key, dhchap_ctrlr_key)
    except NvmfConfigError as e:
        raise _err(e, "nvmf_subsystem_set_keys") from None
    return True


@rpc_method("nvmf_subsystem_remove_host", [
    Param("nqn", "string", required=True), Param("host", "string", required=True), _TGT,
    Param("timeout_ms", "uint64"),
])
def nvmf_subsystem_remove_host(ctx: RpcContext, nqn: str, host: str, tgt_name: str | None = None,
                               timeout_ms: int = 0) -> bool:
    """Disallow a host; its controllers on this subsystem are disconnected."""
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    try:
        ctrlrs = s.remove_host(host)
    except NvmfConfigError as e:
        raise RpcError(-e.errno, f"parameter 'host': {e}") from None
    if not s.allow_any_host:
        for c in ctrlrs:
            c.destroy(f"host {host} removed from {nqn}")
    t.bump_generation()
    return True


@rpc_method("nvmf_subsystem_allow_any_host", [
    Param("nqn", "string", required=True), Param("allow_any_host", "boolean", required=True), _TGT,
])
def nvmf_subsystem_allow_any_host(ctx: RpcContext, nqn: str, allow_any_host: bool,
                                  tgt_name: str | None = None) -> bool:
    t = _tgt(tgt_name)
    s = _subsys(t, nqn)
    s.allow_any_host = allow_any_host
    t.bump_generation()
    return True


# --------------------------------------------------------------------------------------------
# Introspection
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_ns_add_host", [Param("nqn", "string", required=True), Param("nsid", "uint32", required=True),
                                  Param("host", "string", required=True), _TGT])
def nvmf_ns_add_host(ctx: RpcContext, nqn: str, nsid: int, host: str, tgt_name: str | None = None) -> bool:
    """Make a namespace added with no_auto_visible visible to a host (its controllers get a
    namespace-changed event)."""
    s = _subsys(_tgt(tgt_name), nqn)
    try:
        s.ns_add_host(nsid, host)
    except NvmfConfigError as e:
        raise _err(e, "nvmf_ns_add_host") from None
    return True


@rpc_method("nvmf_ns_remove_host", [Param("nqn", "string", required=True), Param("nsid", "uint32", required=True),
                                     Param("host", "string", required=True), _TGT])
def nvmf_ns_remove_host(ctx: RpcContext, nqn: str, nsid: int, host: str, tgt_name: str | None = None) -> bool:
    """Hide a no_auto_visible namespace from a host again."""
    s = _subsys(_tgt(tgt_name), nqn)
    try:
        s.ns_remove_host(nsid, host)
    except NvmfConfigError as e:
        raise _err(e, "nvmf_ns_remove_host") from None
    return True


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_create_target", [
    Param("name", "string", required=True), Param("max_subsystems", "uint32"),
    Param("discovery_filter", "bitmask", choices=FILTERS[1:]),
    Param("dup_host_policy", "enum", choices=("allow", "restrict_per_listener")),
])
def nvmf_create_target(ctx: RpcContext, name: str, max_subsystems: int = 0,
                       discovery_filter: list[str] | None = None, dup_host_policy: str | None = None) -> str:
    """Create another NVMe-oF target (its own transports, listeners and subsystems); other
    nvmf methods select it with tgt_name. Returns its name."""
    _no_effect("nvmf_create_target", {"dup_host_policy": dup_host_policy})
    try:
        t = tgt_mod.create_target(name, max_subsystems=max_subsystems)
    except NvmfConfigError as e:
        raise _err(e, "parameter 'name'") from None
    if discovery_filter:
        t.discovery_filters = tuple(discovery_filter)
    return t.name


@rpc_method("nvmf_delete_target", [Param("name", "string", required=True)])
async def nvmf_delete_target(ctx: RpcContext, name: str) -> bool:
    """Delete a target made with nvmf_create_target, disconnecting its hosts."""
    try:
        await tgt_mod.delete_target(name)
    except NvmfConfigError as e:
        raise _err(e, "parameter 'name'") from None
    return True


@rpc_method("nvmf_get_targets", [])
def nvmf_get_targets(ctx: RpcContext) -> list[str]:
    """The names of the targets, the default one (nvmf_tgt) first."""
    return [t.name for t in tgt_mod.targets()]


@rpc_method("nvmf_set_crdt", [Param("crdt1", "uint16"), Param("crdt2", "uint16"), Param("crdt3", "uint16")],
            states=State.STARTUP)
def nvmf_set_crdt(ctx: RpcContext, crdt1: int = 0, crdt2: int = 0, crdt3: int = 0) -> bool:
    """Command Retry Delay Times 1..3 (100 ms units) reported in Identify Controller (startup only)."""
    get_target().crdt = (crdt1, crdt2, crdt3)
    return True


@rpc_method("nvmf_subsystem_get_controllers", [Param("nqn", "string", required=True), _TGT])
def nvmf_subsystem_get_controllers(ctx: RpcContext, nqn: str, tgt_name: str | None = None) -> list[dict[str, Any]]:
    s = _subsys(_tgt(tgt_name), nqn)
    return [c.to_json() for c in s.controllers.values()]


@rpc_method("nvmf_subsystem_get_qpairs", [Param("nqn", "string", required=True), _TGT])
def nvmf_subsystem_get_qpairs(ctx: RpcContext, nqn: str, tgt_name: str | None = None) -> list[dict[str, Any]]:
    s = _subsys(_tgt(tgt_name), nqn)
    out = []
    qps = [(c, qp) for c in s.controllers.values() for qp in c.qpairs()]
    # queue pairs still authenticating are not attached to their controller yet
    qps += [(qp.auth.ctrlr, qp) for qp in _tgt(tgt_name).live_qpairs
            if qp.ctrlr is None and qp.auth is not None and qp.auth.ctrlr.subsys is s]
    for c, qp in qps:
        la = qp.listen_address
        d = {"cntlid": c.cntlid, "qid": qp.qid, "state": qp.state,
             "thread": "nvmf_tgt_poll_group_000", "hostnqn": c.hostnqn,
             "listen_address": la.to_json() if la is not None else {},
             "peer_address": dict(qp.peer_address)}
        if qp.auth is not None:
            d["auth"] = qp.auth.to_json()
        out.append(d)
    return out


@rpc_method("nvmf_get_stats", [_TGT])
async def nvmf_get_stats(ctx: RpcContext, tgt_name: str | None = None) -> dict[str, Any]:
    """Per poll group (one per reactor) queue pair and I/O counters."""
    t = _tgt(tgt_name)
    ws = cores.workers()
    if ws is None:
        return {"tick_rate": TICK_RATE, "poll_groups": [t.stats()]}
    # One poll group per core, numbered and listed in core order as SPDK's (the main core
    # need not be the lowest: -p).
    main_core = get_reactor().lcore
    by_core = {main_core: [t.stats()]}
    for w, per_worker in zip(ws, await ws.call_all("nvmf_worker_stats", t.name), strict=True):
        by_core[w.core] = per_worker
    groups = []
    for i, core in enumerate(sorted(by_core)):
        for g in by_core[core]:
            g["name"] = f"nvmf_tgt_poll_group_{i:03d}"
            groups.append(g)
    return {"tick_rate": TICK_RATE, "poll_groups": groups}


# --------------------------------------------------------------------------------------------
# Referrals
# --------------------------------------------------------------------------------------------


@rpc_method("nvmf_discovery_add_referral", [
    _TGT, Param("address", "object", required=True, fields=_ADDR_FIELDS),
    Param("secure_channel", "boolean"), Param("subnqn", "string"),
])
def nvmf_discovery_add_referral(ctx: RpcContext, address: dict[str, Any], tgt_name: str | None = None,
                                secure_channel: bool = False, subnqn: str = DISCOVERY_NQN) -> bool:
    t = _tgt(tgt_name)
    addr = _addr(address, "address")
    try:
        from spydk.nvmf.subsystem import validate_nqn
        validate_nqn(subnqn)
        t.add_referral(Referral(addr, subnqn, secure_channel))
    except NvmfConfigError as e:
        raise RpcError(INVALID_PARAMS if e.errno == 22 else -e.errno, f"nvmf_discovery_add_referral: {e}") from None
    return True


@rpc_method("nvmf_discovery_remove_referral", [
    _TGT, Param("address", "object", required=True, fields=_ADDR_FIELDS), Param("subnqn", "string"),
])
def nvmf_discovery_remove_referral(ctx: RpcContext, address: dict[str, Any], tgt_name: str | None = None,
                                   subnqn: str | None = None) -> bool:
    t = _tgt(tgt_name)
    try:
        t.remove_referral(_addr(address, "address"), subnqn)
    except NvmfConfigError as e:
        raise RpcError(-errno.ENOENT, f"parameter 'address': {e}") from None
    return True


@rpc_method("nvmf_discovery_get_referrals", [_TGT])
def nvmf_discovery_get_referrals(ctx: RpcContext, tgt_name: str | None = None) -> list[dict[str, Any]]:
    return [r.to_json() for r in _tgt(tgt_name).referrals]


# --------------------------------------------------------------------------------------------
# The "nvmf" subsystem: start-up, shutdown and the config dump
# --------------------------------------------------------------------------------------------


def _init(app: Any) -> None:
    t = get_target()
    tgt_mod.set_app_thread(app.thread)
    if app.thread is not None:
        t.start(app.thread)


async def _fini(app: Any) -> None:
    await tgt_mod.shutdown_all()
    t = tgt_mod._target
    if t is not None:
        await t.shutdown()
    tgt_mod.set_target(None)
    tgt_mod.set_app_thread(None)


def config_json(t: Target, default: bool = True) -> list[dict[str, Any]]:
    """RPC calls that rebuild the target's configuration, in replay order. The start-up
    settings belong to the default target; another target's calls name it with tgt_name."""
    out: list[dict[str, Any]] = []
    if default:
        filt = ",".join(t.discovery_filters)
        out.append({"method": "nvmf_set_config", "params": {
            "discovery_filter": filt, "admin_cmd_passthru": dict(t.admin_cmd_passthru),
            "dhchap_digests": list(t.dhchap_digests), "dhchap_dhgroups": list(t.dhchap_dhgroups)}})
        out.append({"method": "nvmf_set_max_subsystems", "params": {"max_subsystems": t.max_subsystems}})
        if any(t.crdt):
            out.append({"method": "nvmf_set_crdt", "params": dict(zip(("crdt1", "crdt2", "crdt3"), t.crdt,
                                                                      strict=True))})
    else:
        out.append({"method": "nvmf_create_target", "params": {"name": t.name,
                                                               "max_subsystems": t.max_subsystems}})
    body = _target_body(t)
    if not default:
        for call in body:
            call["params"]["tgt_name"] = t.name
    return out + body


def _target_body(t: Target) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tr in t.transports.values():
        out.append({"method": "nvmf_create_transport", "params": tr.to_json()})
    for s in t.subsystems.values():
        if not s.discovery:
            out.append({"method": "nvmf_create_subsystem", "params": {
                "nqn": s.nqn, "allow_any_host": s.allow_any_host, "serial_number": s.serial_number,
                "model_number": s.model_number, "max_namespaces": s.max_namespaces,
                "min_cntlid": s.min_cntlid, "max_cntlid": s.max_cntlid,
                "ana_reporting": s.ana_reporting}})
        for h in s.hosts:
            hk = s.host_keys.get(h)
            out.append({"method": "nvmf_subsystem_add_host", "params": {
                "nqn": s.nqn, "host": h, **(hk.names() if hk is not None else {}),
                **({"psk": s.host_psks[h].name} if h in s.host_psks else {})}})
        for ns in sorted(s.namespaces.values(), key=lambda n: n.nsid):
            nsp: dict[str, Any] = {"nsid": ns.nsid, "bdev_name": ns.bdev_name,
                                   "uuid": str(_uuid.UUID(bytes=ns.uuid)), "anagrpid": ns.anagrpid,
                                   "no_auto_visible": not ns.auto_visible}
            if ns.nguid_given or ns.nguid != ns.uuid:
                nsp["nguid"] = ns.nguid.hex().upper()
            if any(ns.eui64):
                nsp["eui64"] = ns.eui64.hex().upper()
            if ns.resv.ptpl_file is not None:
                nsp["ptpl_file"] = ns.resv.ptpl_file
            out.append({"method": "nvmf_subsystem_add_ns", "params": {"nqn": s.nqn, "namespace": nsp}})
            for h in sorted(ns.hosts):
                out.append({"method": "nvmf_ns_add_host", "params": {"nqn": s.nqn, "nsid": ns.nsid, "host": h}})
        for lst in s.listeners:
            out.append({"method": "nvmf_subsystem_add_listener", "params": {
                "nqn": s.nqn, "listen_address": lst.address.to_json(),
                "secure_channel": lst.secure_channel,
                "ana_state": ANA_STATE_NAMES[lst.default_state]}})
            for grp, st in sorted(lst.ana_states.items()):
                out.append({"method": "nvmf_subsystem_listener_set_ana_state", "params": {
                    "nqn": s.nqn, "listen_address": lst.address.to_json(),
                    "ana_state": ANA_STATE_NAMES[st], "anagrpid": grp}})
    for r in t.referrals:
        out.append({"method": "nvmf_discovery_add_referral", "params": {
            "address": r.address.to_json(), "secure_channel": r.secure_channel, "subnqn": r.subnqn}})
    return out


def _config(app: Any) -> list[dict[str, Any]]:
    out = config_json(get_target())
    for t in tgt_mod.targets()[1:]:
        out += config_json(t, default=False)
    return out


register_subsystem(InitSubsystem("nvmf", depends_on=("bdev", "keyring"), init=_init, fini=_fini, config=_config))
