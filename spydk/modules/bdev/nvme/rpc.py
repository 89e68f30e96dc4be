"""bdev_nvme RPCs with SPDK's method and parameter names."""
from __future__ import annotations

import errno
from typing import Any

from spydk.bdev import BdevError, get_bdev
from spydk.log import get_logger
from spydk.modules.bdev.nvme import bdev_nvme as bn
from spydk.modules.bdev.nvme.discovery import Discovery
from spydk.nvme.host import NvmeError, TransportId, TridError, parse_trid
from spydk.nvme.host.pcie_dev import PcieDeviceError, normalize_bdf
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import RpcError, invalid_params
from spydk.rpc.registry import State

log = get_logger("bdev_nvme")
ANY = State.STARTUP | State.RUNTIME


def _no_effect(method: str, ignored: dict[str, Any]) -> None:
    names = sorted(k for k, v in ignored.items() if v not in (None, False, 0, ""))
    if names:
        log.warning("%s: parameter%s %s accepted for compatibility with SPDK but without effect "
                    "in spydk", method, "s" if len(names) > 1 else "", ", ".join(names))


def _err(e: BdevError) -> RpcError:
    return RpcError(-e.errno, e.message)


def _trid(trtype: str, traddr: str, adrfam: str | None, trsvcid: str | None,
          subnqn: str | None) -> TransportId:
    text = f"trtype:{trtype} traddr:{traddr}"
    if adrfam:
        text += f" adrfam:{adrfam}"
    if trsvcid:
        text += f" trsvcid:{trsvcid}"
    if subnqn:
        text += f" subnqn:{subnqn}"
    try:
        t = parse_trid(text)
    except TridError as e:
        raise invalid_params(str(e)) from None
    if t.trtype == "PCIE":
        try:
            t.traddr = normalize_bdf(traddr)
        except PcieDeviceError as e:
            raise invalid_params(str(e)) from None
        t.adrfam = t.trsvcid = t.subnqn = ""
        return t
    if t.trtype != "TCP":
        raise invalid_params(f"trtype {trtype!r} is not supported by this build: use TCP or PCIe")
    if not trsvcid:
        t.trsvcid = "4420"
    return t


_MULTIPATH_OPTS = Param("multipath_opts", "object", fields=(
    Param("policy", "enum", choices=("active_passive", "active_active")),
    Param("selector", "enum", choices=("round_robin", "queue_depth")), Param("min_io", "uint32")))

_SET_OPTIONS = [
    Param("action_on_timeout", "enum", choices=("none", "reset", "abort")),
    Param("timeout_us", "uint64"), Param("timeout_admin_us", "uint64"),
    Param("keep_alive_timeout_ms", "uint32"), Param("arbitration_burst", "uint32"),
    Param("low_priority_weight", "uint32"), Param("medium_priority_weight", "uint32"),
    Param("high_priority_weight", "uint32"), Param("nvme_adminq_poll_period_us", "uint64"),
    Param("nvme_ioq_poll_period_us", "uint64"), Param("io_queue_requests", "uint32"),
    Param("delay_cmd_submit", "boolean"), Param("transport_retry_count", "uint32"),
    Param("bdev_retry_count", "int32"), Param("transport_ack_timeout", "uint8"),
    Param("ctrlr_loss_timeout_sec", "int32"), Param("reconnect_delay_sec", "uint32"),
    Param("fast_io_fail_timeout_sec", "uint32"), Param("disable_auto_failback", "boolean"),
    Param("generate_uuids", "boolean"), Param("transport_tos", "uint8"),
    Param("nvme_error_stat", "boolean"), Param("rdma_srq_size", "uint32"),
    Param("io_path_stat", "boolean"), Param("allow_accel_sequence", "boolean"),
    Param("rdma_max_cq_size", "uint32"), Param("rdma_cm_event_timeout_ms", "uint16"),
    # SPDK's client sends these as lists of names.
    Param("dhchap_digests", "array", items=Param("digest", "enum", choices=("sha256", "sha384", "sha512"))),
    Param("dhchap_dhgroups", "array", items=Param("dhgroup", "enum", choices=(
        "null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"))),
    Param("rdma_umr_per_io", "boolean"), Param("tcp_connect_timeout_ms", "uint32"),
    Param("enable_flush", "boolean"), _MULTIPATH_OPTS,
]


@rpc_method("bdev_nvme_set_options", _SET_OPTIONS, states=ANY)
def bdev_nvme_set_options(ctx: RpcContext, **params: Any) -> bool:
    """Set bdev_nvme options (timeouts, keep-alive, retries, reconnect defaults)."""
    if bn.module.ctrlrs:
        raise RpcError(-errno.EPERM, "bdev_nvme_set_options: options can only be set while no NVMe "
                                     "controller is attached; detach them first")
    o = bn.module.opts
    r = bn.ReconnectOpts(params.get("ctrlr_loss_timeout_sec", o.ctrlr_loss_timeout_sec),
                         params.get("reconnect_delay_sec", o.reconnect_delay_sec),
                         params.get("fast_io_fail_timeout_sec", o.fast_io_fail_timeout_sec))
    try:
        bn.check_reconnect_opts(r)
    except ValueError as e:
        raise invalid_params(str(e)) from None
    if params.get("bdev_retry_count", 0) < -1:
        raise invalid_params("bdev_retry_count must be -1 (forever) or more")
    known = {f for f in vars(o) if f != "extra"}
    for k, v in params.items():
        if k in known:
            setattr(o, k, v)
        else:
            o.extra[k] = v
    _no_effect("bdev_nvme_set_options", {k: v for k, v in params.items() if k not in bn.HONOURED_OPTIONS})
    return True


_ATTACH = [
    Param("name", "string", required=True), Param("trtype", "string", required=True),
    Param("traddr", "string", required=True), Param("adrfam", "string"), Param("trsvcid", "string"),
    Param("priority", "string"), Param("subnqn", "string"), Param("hostnqn", "string"),
    Param("hostaddr", "string"), Param("hostsvcid", "string"), Param("prchk_reftag", "boolean"),
    Param("prchk_guard", "boolean"), Param("hdgst", "boolean"), Param("ddgst", "boolean"),
    Param("fabrics_connect_timeout_us", "uint64"),
    Param("multipath", "enum", choices=("failover", "multipath", "disable")),
    Param("num_io_queues", "uint32"), Param("ctrlr_loss_timeout_sec", "int32"),
    Param("reconnect_delay_sec", "uint32"), Param("fast_io_fail_timeout_sec", "uint32"),
    Param("psk", "string"), Param("max_bdevs", "uint32"), Param("dhchap_key", "string"),
    Param("dhchap_ctrlr_key", "string"), Param("allow_unrecognized_csi", "boolean"),
    _MULTIPATH_OPTS, Param("disable_sq_flow_control", "boolean"),
]


@rpc_method("bdev_nvme_attach_controller", _ATTACH)
async def bdev_nvme_attach_controller(ctx: RpcContext, name: str, trtype: str, traddr: str,
                                      adrfam: str | None = None, trsvcid: str | None = None,
                                      subnqn: str | None = None, hostnqn: str | None = None,
                                      hdgst: bool = False, ddgst: bool = False,
                                      fabrics_connect_timeout_us: int = 0, multipath: str | None = None,
                                      num_io_queues: int = 0, ctrlr_loss_timeout_sec: int | None = None,
                                      reconnect_delay_sec: int | None = None,
                                      fast_io_fail_timeout_sec: int | None = None,
                                      psk: str | None = None, dhchap_key: str | None = None,
                                      dhchap_ctrlr_key: str | None = None,
                                      multipath_opts: dict[str, Any] | None = None,
                                      **ignored: Any) -> list[str]:
    """Attach an NVMe controller (NVMe/TCP, or local PCIe on uio_pci_generic) and create a bdev per
    active namespace."""
    if psk or dhchap_key or dhchap_ctrlr_key:
        raise invalid_params("TLS (psk) and DH-HMAC-CHAP (dhchap_key) are not supported by spydk's "
                             "NVMe/TCP initiator yet")
    t = _trid(trtype, traddr, adrfam, trsvcid, subnqn)
    if t.trtype != "PCIE" and not subnqn:
        raise invalid_params("parameter 'subnqn' is required for NVMe-oF controllers")
    o = bn.module.opts
    r = bn.ReconnectOpts(
        o.ctrlr_loss_timeout_sec if ctrlr_loss_timeout_sec is None else ctrlr_loss_timeout_sec,
        o.reconnect_delay_sec if reconnect_delay_sec is None else reconnect_delay_sec,
        o.fast_io_fail_timeout_sec if fast_io_fail_timeout_sec is None else fast_io_fail_timeout_sec)
    try:
        bn.check_reconnect_opts(r)
    except ValueError as e:
        raise invalid_params(str(e)) from None
    _no_effect("bdev_nvme_attach_controller", ignored)
    try:
        names = await bn.attach_controller(name, t, hostnqn=hostnqn, hdgst=hdgst, ddgst=ddgst,
                                           multipath=multipath or "", num_io_queues=num_io_queues,
                                           fabrics_connect_timeout_us=fabrics_connect_timeout_us,
                                           reconnect=r)
    except BdevError as e:
        raise _err(e) from None
    if multipath_opts:
        bc = bn.module.ctrlrs[name]
        bc.policy = multipath_opts.get("policy", bc.policy)
        bc.selector = multipath_opts.get("selector", bc.selector)
        bc.rr_min_io = multipath_opts.get("min_io", bc.rr_min_io) or 1
    return names


@rpc_method("bdev_nvme_detach_controller", [
    Param("name", "string", required=True), Param("trtype", "string"), Param("traddr", "string"),
    Param("adrfam", "string"), Param("trsvcid", "string"), Param("subnqn", "string"),
    Param("hostaddr", "string"), Param("hostsvcid", "string")])
async def bdev_nvme_detach_controller(ctx: RpcContext, name: str, trtype: str | None = None,
                                      traddr: str | None = None, adrfam: str | None = None,
                                      trsvcid: str | None = None, subnqn: str | None = None,
                                      **_host: Any) -> bool:
    """Detach an NVMe controller (or one of its paths) and delete its bdevs."""
    def match(t: TransportId) -> bool:
        return ((traddr is None or t.traddr == traddr) and (trsvcid is None or t.trsvcid == trsvcid)
                and (subnqn is None or t.subnqn == subnqn)
                and (adrfam is None or t.adrfam.lower() == adrfam.lower())
                and (trtype is None or t.trtype == trtype.upper()))
    any_addr = any(v is not None for v in (trtype, traddr, adrfam, trsvcid, subnqn))
    try:
        await bn.detach_controller(name, match if any_addr else None)
    except BdevError as e:
        raise _err(e) from None
    return True


def _trid_json(t: TransportId) -> dict[str, str]:
    if t.trtype == "PCIE":
        return {"trtype": "PCIe", "traddr": t.traddr}
    return {"trtype": t.trtype, "adrfam": t.adrfam, "traddr": t.traddr, "trsvcid": t.trsvcid,
            "subnqn": t.subnqn}


def _ctrlr_json(c: bn.NvmeCtrlr) -> dict[str, Any]:
    state = {"enabled": "enabled", "resetting": "resetting", "deleting": "deleting"}.get(c.state, c.state)
    out: dict[str, Any] = {"state": state, "trid": _trid_json(c.trid), "cntlid": c.ctrlr.cntlid,
                           "host": {"nqn": c.opts.hostnqn, "addr": "", "svcid": ""}}
    if len(c.trids) > 1:
        out["alternate_trids"] = [_trid_json(t) for t in c.trids[1:]]
    return out


@rpc_method("bdev_nvme_get_controllers", [Param("name", "string")])
def bdev_nvme_get_controllers(ctx: RpcContext, name: str | None = None) -> list[dict[str, Any]]:
    """List attached NVMe controllers with their paths and states."""
    if name is not None and name not in bn.module.ctrlrs:
        raise RpcError(-errno.ENODEV, f"no NVMe controller named {name!r}")
    return [{"name": bc.name, "ctrlrs": [_ctrlr_json(c) for c in bc.ctrlrs]}
            for bc in bn.module.ctrlrs.values() if name is None or bc.name == name]


@rpc_method("bdev_nvme_reset_controller", [Param("name", "string", required=True),
                                           Param("cntlid", "uint16")])
async def bdev_nvme_reset_controller(ctx: RpcContext, name: str, cntlid: int | None = None) -> bool:
    """Reset an NVMe controller: disconnect and reconnect every queue."""
    bc = bn.module.ctrlrs.get(name)
    if bc is None:
        raise RpcError(-errno.ENODEV, f"no NVMe controller named {name!r}")
    targets = [c for c in bc.ctrlrs if cntlid is None or c.ctrlr.cntlid == cntlid]
    if not targets:
        raise RpcError(-errno.ENODEV, f"controller {name!r} has no cntlid {cntlid}")
    ok = True
    for c in targets:
        ok = await c.reset() and ok
    if not ok:
        raise RpcError(-errno.EIO, f"reset of controller {name!r} failed: {targets[0].ctrlr.failure}")
    return True


@rpc_method("bdev_nvme_get_io_paths", [Param("name", "string")])
def bdev_nvme_get_io_paths(ctx: RpcContext, name: str | None = None) -> dict[str, Any]:
    """I/O paths of NVMe bdevs (one poll group: spydk runs one reactor)."""
    paths = []
    for bc in bn.module.ctrlrs.values():
        for b in bc.bdevs.values():
            if name is not None and b.name != name:
                continue
            current = b.select_path()
            for c in b.paths:
                ns = c.ctrlr.namespaces.get(b.nsid)
                paths.append({"bdev_name": b.name, "cntlid": c.ctrlr.cntlid, "current": c is current,
                              "connected": c.usable, "accessible": c.usable and ns is not None
                              and ns.ana_state in (1, 2),
                              "transport": {"trtype": "PCIe", "traddr": c.trid.traddr}
                              if c.trid.trtype == "PCIE" else
                              {"trtype": c.trid.trtype, "traddr": c.trid.traddr,
                               "trsvcid": c.trid.trsvcid, "adrfam": c.trid.adrfam},
                              "ana_state": bn._ana_name(ns.ana_state) if ns else "inaccessible"})
    return {"poll_groups": [{"io_paths": paths}]}


@rpc_method("bdev_nvme_set_multipath_policy", [
    Param("name", "string", required=True),
    Param("policy", "enum", choices=("active_passive", "active_active"), required=True),
    Param("selector", "enum", choices=("round_robin", "queue_depth")), Param("rr_min_io", "uint32")])
def bdev_nvme_set_multipath_policy(ctx: RpcContext, name: str, policy: str, selector: str | None = None,
                                   rr_min_io: int | None = None) -> bool:
    """Choose how an NVMe bdev spreads I/O over its paths."""
    b = get_bdev(name)
    if not isinstance(b, bn.NvmeBdev):
        raise RpcError(-errno.ENODEV, f"no NVMe bdev named {name!r}")
    if policy == "active_passive" and (selector is not None or rr_min_io is not None):
        raise invalid_params("selector and rr_min_io apply to policy active_active only")
    if rr_min_io is not None and (rr_min_io < 1 or (selector or b.bctrlr.selector) != "round_robin"):
        raise invalid_params("rr_min_io must be at least 1 and needs selector round_robin")
    bc = b.bctrlr
    bc.policy = policy
    if selector is not None:
        bc.selector = selector
    if rr_min_io is not None:
        bc.rr_min_io = rr_min_io
    return True


@rpc_method("bdev_nvme_start_discovery", [
    Param("name", "string", required=True), Param("trtype", "string", required=True),
    Param("traddr", "string", required=True), Param("adrfam", "string"), Param("trsvcid", "string"),
    Param("hostnqn", "string"), Param("wait_for_attach", "boolean"), Param("attach_timeout_ms", "uint64"),
    Param("ctrlr_loss_timeout_sec", "int32"), Param("reconnect_delay_sec", "uint32"),
    Param("fast_io_fail_timeout_sec", "uint32")])
async def bdev_nvme_start_discovery(ctx: RpcContext, name: str, trtype: str, traddr: str,
                                    adrfam: str | None = None, trsvcid: str | None = None,
                                    hostnqn: str | None = None, wait_for_attach: bool = False,
                                    attach_timeout_ms: int = 0, ctrlr_loss_timeout_sec: int | None = None,
                                    reconnect_delay_sec: int | None = None,
                                    fast_io_fail_timeout_sec: int | None = None) -> bool:
    """Attach every subsystem a discovery controller lists, and follow its changes."""
    if name in bn.module.discoveries:
        raise RpcError(-errno.EEXIST, f"discovery service {name!r} already exists")
    t = _trid(trtype, traddr, adrfam, trsvcid, None)
    if t.trtype == "PCIE":
        raise invalid_params("discovery needs an NVMe-oF transport (trtype TCP), not PCIe")
    t.subnqn = "nqn.2014-08.org.nvmexpress.discovery"
    o = bn.module.opts
    r = bn.ReconnectOpts(
        o.ctrlr_loss_timeout_sec if ctrlr_loss_timeout_sec is None else ctrlr_loss_timeout_sec,
        o.reconnect_delay_sec if reconnect_delay_sec is None else reconnect_delay_sec,
        o.fast_io_fail_timeout_sec if fast_io_fail_timeout_sec is None else fast_io_fail_timeout_sec)
    try:
        bn.check_reconnect_opts(r)
    except ValueError as e:
        raise invalid_params(str(e)) from None
    params = {k: v for k, v in {"name": name, "trtype": trtype, "traddr": traddr, "adrfam": adrfam,
                                "trsvcid": trsvcid, "hostnqn": hostnqn,
                                "wait_for_attach": wait_for_attach}.items() if v is not None}
    d = Discovery(name, t, hostnqn, r, params)
    try:
        await d.start()
    except (NvmeError, ConnectionError) as e:
        await d.ctrlr.detach()
        raise RpcError(-errno.EIO, f"discovery {name!r}: cannot attach {t}: {e}") from None
    bn.module.discoveries[name] = d
    return True


@rpc_method("bdev_nvme_stop_discovery", [Param("name", "string", required=True)])
async def bdev_nvme_stop_discovery(ctx: RpcContext, name: str) -> bool:
    """Stop a discovery service and detach the controllers it attached."""
    d = bn.module.discoveries.get(name)
    if d is None:
        raise RpcError(-errno.ENODEV, f"no discovery service named {name!r}")
    await d.stop()
    return True


@rpc_method("bdev_nvme_get_discovery_info", [])
def bdev_nvme_get_discovery_info(ctx: RpcContext) -> list[dict[str, Any]]:
    """List the running discovery services."""
    return [d.info() for d in bn.module.discoveries.values()]
