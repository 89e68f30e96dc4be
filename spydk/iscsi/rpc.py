"""JSON-RPC methods of the iSCSI target, with SPDK's names and parameters."""
from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial
from typing import Any

from spydk.bdev.histogram import Histogram
from spydk.iscsi.auth import AuthError, ChapSettings, make_secret
from spydk.iscsi.initiator_group import InitGrpError, check_initiator_name, parse_netmask
from spydk.iscsi.iscsi_tgt import IscsiConfigError, IscsiTarget, target_of
from spydk.iscsi.portal_group import PortalError, make_portal
from spydk.rpc.errors import errno_error, invalid_params
from spydk.rpc.registry import RpcContext, State, rpc_method
from spydk.rpc.schema import Param
from spydk.thread import TICK_RATE

_SECRET = Param("secret", "object", fields=(
    Param("user", "string", required=True), Param("secret", "string", required=True),
    Param("muser", "string"), Param("msecret", "string")))
_MAP = Param("map", "object", fields=(
    Param("ig_tag", "int32", required=True), Param("pg_tag", "int32", required=True)))
_PORTAL = Param("portal", "object", fields=(
    Param("host", "string", required=True), Param("port", "string", required=True)))
_LUN = Param("lun", "object", fields=(Param("lun_id", "int32"), Param("bdev_name", "string")))
_NAMES = Param("initiator", "string")
_CHAP = [Param("disable_chap", "boolean"), Param("require_chap", "boolean"),
         Param("mutual_chap", "boolean"), Param("chap_group", "int32")]


def _tgt(ctx: RpcContext) -> IscsiTarget:
    return target_of(ctx.app)


def _call(fn: Callable[[], Any]) -> Any:
    """Run an object-model operation, turning its errors into RPC errors."""
    try:
        return fn()
    except IscsiConfigError as e:
        if e.err == errno.EINVAL:
            raise invalid_params(str(e)) from None
        raise errno_error(e.err, str(e)) from None
    except (AuthError, InitGrpError, PortalError) as e:
        raise invalid_params(str(e)) from None


def _chap(disable_chap: bool = False, require_chap: bool = False, mutual_chap: bool = False,
          chap_group: int = 0) -> ChapSettings:
    return _call(lambda: ChapSettings.make(disable_chap, require_chap, mutual_chap, chap_group))


def _maps(maps: list[dict[str, int]], what: str = "pg_ig_maps") -> list[tuple[int, int]]:
    if not maps:
        raise invalid_params(f"parameter '{what}' must list at least one map")
    return [(m["pg_tag"], m["ig_tag"]) for m in maps]


# -- options ------------------------------------------------------------------------------

_OPTION_PARAMS = [
    Param("auth_file", "string"), Param("node_base", "string"), Param("nop_timeout", "int32"),
    Param("nop_in_interval", "int32"), *_CHAP, Param("max_sessions", "uint32"),
    Param("max_queue_depth", "uint32"), Param("max_connections_per_session", "uint32"),
    Param("default_time2wait", "uint32"), Param("default_time2retain", "uint32"),
    Param("first_burst_length", "uint32"), Param("immediate_data", "boolean"),
    Param("error_recovery_level", "uint32"), Param("allow_duplicated_isid", "boolean"),
    Param("max_large_datain_per_connection", "uint32"), Param("max_r2t_per_connection", "uint32"),
    Param("pdu_pool_size", "uint32"), Param("immediate_data_pool_size", "uint32"),
    Param("data_out_pool_size", "uint32"),
]


@rpc_method("iscsi_set_options", _OPTION_PARAMS, states=State.STARTUP)
def iscsi_set_options(ctx: RpcContext, **params: Any) -> bool:
    """Set the iSCSI target's global options (before framework_start_init)."""
    _call(lambda: _tgt(ctx).set_options(params))
    return True


@rpc_method("iscsi_get_options", states=State.ANY)
def iscsi_get_options(ctx: RpcContext) -> dict[str, Any]:
    """The iSCSI target's global options."""
    return _tgt(ctx).options.to_json()


@rpc_method("iscsi_set_discovery_auth", _CHAP)
def iscsi_set_discovery_auth(ctx: RpcContext, **chap: Any) -> bool:
    """CHAP settings for discovery sessions."""
    _tgt(ctx).set_discovery_auth(_chap(**chap))
    return True


# -- auth groups --------------------------------------------------------------------------

@rpc_method("iscsi_create_auth_group", [Param("tag", "int32", required=True),
                                        Param("secrets", "array", items=_SECRET)])
def iscsi_create_auth_group(ctx: RpcContext, tag: int, secrets: list[dict[str, str]] | None = None) -> bool:
    """Create an auth group of CHAP secrets."""
    made = [_call(partial(make_secret, s["user"], s["secret"], s.get("muser"), s.get("msecret")))
            for s in secrets or []]
    _call(lambda: _tgt(ctx).add_auth_group(tag, made))
    return True


@rpc_method("iscsi_delete_auth_group", [Param("tag", "int32", required=True)])
def iscsi_delete_auth_group(ctx: RpcContext, tag: int) -> bool:
    """Delete an auth group."""
    _call(lambda: _tgt(ctx).remove_auth_group(tag))
    return True


@rpc_method("iscsi_auth_group_add_secret", [
    Param("tag", "int32", required=True), Param("user", "string", required=True),
    Param("secret", "string", required=True), Param("muser", "string"), Param("msecret", "string")])
def iscsi_auth_group_add_secret(ctx: RpcContext, tag: int, user: str, secret: str,
                                muser: str | None = None, msecret: str | None = None) -> bool:
    """Add a CHAP secret to an auth group."""
    s = _call(lambda: make_secret(user, secret, muser, msecret))
    g = _call(lambda: _tgt(ctx).auth_group(tag))
    _call(lambda: g.add(s))
    return True


@rpc_method("iscsi_auth_group_remove_secret", [Param("tag", "int32", required=True),
                                               Param("user", "string", required=True)])
def iscsi_auth_group_remove_secret(ctx: RpcContext, tag: int, user: str) -> bool:
    """Remove a CHAP secret from an auth group."""
    g = _call(lambda: _tgt(ctx).auth_group(tag))
    try:
        g.remove(user)
    except AuthError as e:
        raise errno_error(errno.ENODEV, str(e)) from None
    return True


@rpc_method("iscsi_get_auth_groups", states=State.ANY)
def iscsi_get_auth_groups(ctx: RpcContext) -> list[dict[str, Any]]:
    """List auth groups with their secrets."""
    return [g.to_json() for g in _tgt(ctx).auth_groups.values()]


# -- portal groups ------------------------------------------------------------------------

@rpc_method("iscsi_create_portal_group", [
    Param("tag", "int32", required=True), Param("portals", "array", required=True, items=_PORTAL),
    Param("private", "boolean"), Param("wait", "boolean")])
async def iscsi_create_portal_group(ctx: RpcContext, tag: int, portals: list[dict[str, str]],
                                    private: bool = False, wait: bool = False) -> bool:
    """Create a portal group and (unless wait) start listening on its portals."""
    t = _tgt(ctx)
    made = [_call(partial(make_portal, p["host"], p["port"])) for p in portals]
    pg = _call(lambda: t.add_portal_group(tag, made, private, wait))
    if not wait and t.start_listening is not None:
        try:
            await t.start_listening(pg)
        except OSError as e:
            del t.portal_groups[tag]
            raise errno_error(e.errno or errno.EIO, f"cannot listen on portal group {tag}: "
                              f"{e.strerror or e}") from None
    return True


@rpc_method("iscsi_start_portal_group", [Param("tag", "int32", required=True)])
async def iscsi_start_portal_group(ctx: RpcContext, tag: int) -> bool:
    """Start listening on a portal group created with wait."""
    t = _tgt(ctx)
    pg = _call(lambda: t.portal_group(tag))
    if pg.started:
        raise errno_error(errno.EALREADY, f"portal group {tag} is already started")
    if t.start_listening is not None:
        try:
            await t.start_listening(pg)
        except OSError as e:
            raise errno_error(e.errno or errno.EIO, f"cannot listen on portal group {tag}: "
                              f"{e.strerror or e}") from None
    return True


@rpc_method("iscsi_delete_portal_group", [Param("tag", "int32", required=True)])
async def iscsi_delete_portal_group(ctx: RpcContext, tag: int) -> bool:
    """Delete a portal group and the target nodes' maps that use it."""
    t = _tgt(ctx)
    pg = _call(lambda: t.remove_portal_group(tag))
    if t.stop_listening is not None:
        await t.stop_listening(pg)
    return True


@rpc_method("iscsi_portal_group_set_auth", [Param("tag", "int32", required=True), *_CHAP])
def iscsi_portal_group_set_auth(ctx: RpcContext, tag: int, **chap: Any) -> bool:
    """CHAP settings for discovery sessions through this portal group."""
    pg = _call(lambda: _tgt(ctx).portal_group(tag))
    pg.chap = _chap(**chap)
    return True


@rpc_method("iscsi_get_portal_groups", states=State.ANY)
def iscsi_get_portal_groups(ctx: RpcContext) -> list[dict[str, Any]]:
    """List portal groups."""
    return [pg.to_json() for pg in _tgt(ctx).portal_groups.values()]


# -- initiator groups ---------------------------------------------------------------------

def _names_masks(initiators: list[str] | None, netmasks: list[str] | None) -> tuple[list[str], list[str]]:
    names = list(initiators or [])
    masks = list(netmasks or [])
    for i, n in enumerate(names):
        try:
            check_initiator_name(n)
        except InitGrpError as e:
            raise invalid_params(f"parameter 'initiators[{i}]': {e}") from None
    for i, m in enumerate(masks):
        try:
            parse_netmask(m)
        except InitGrpError as e:
            raise invalid_params(f"parameter 'netmasks[{i}]': {e}") from None
    return names, masks


@rpc_method("iscsi_create_initiator_group", [
    Param("tag", "int32", required=True),
    Param("initiators", "array", required=True, items=_NAMES),
    Param("netmasks", "array", required=True, items=Param("netmask", "string"))])
def iscsi_create_initiator_group(ctx: RpcContext, tag: int, initiators: list[str],
                                 netmasks: list[str]) -> bool:
    """Create an initiator group (names or ANY, '!' to deny; netmasks or ANY)."""
    names, masks = _names_masks(initiators, netmasks)
    _call(lambda: _tgt(ctx).add_initiator_group(tag, names, masks))
    return True


@rpc_method("iscsi_initiator_group_add_initiators", [
    Param("tag", "int32", required=True), Param("initiators", "array", items=_NAMES),
    Param("netmasks", "array", items=Param("netmask", "string"))])
def iscsi_initiator_group_add_initiators(ctx: RpcContext, tag: int, initiators: list[str] | None = None,
                                         netmasks: list[str] | None = None) -> bool:
    """Add initiator names and/or netmasks to a group."""
    names, masks = _names_masks(initiators, netmasks)
    ig = _call(lambda: _tgt(ctx).initiator_group(tag))
    _call(lambda: ig.add(names, masks))
    return True


@rpc_method("iscsi_initiator_group_remove_initiators", [
    Param("tag", "int32", required=True), Param("initiators", "array", items=_NAMES),
    Param("netmasks", "array", items=Param("netmask", "string"))])
def iscsi_initiator_group_remove_initiators(ctx: RpcContext, tag: int, initiators: list[str] | None = None,
                                            netmasks: list[str] | None = None) -> bool:
    """Remove initiator names and/or netmasks from a group (none listed: all)."""
    ig = _call(lambda: _tgt(ctx).initiator_group(tag))
    _call(lambda: ig.remove(list(initiators or []), list(netmasks or [])))
    return True


@rpc_method("iscsi_delete_initiator_group", [Param("tag", "int32", required=True)])
def iscsi_delete_initiator_group(ctx: RpcContext, tag: int) -> bool:
    """Delete an initiator group and the target nodes' maps that use it."""
    _call(lambda: _tgt(ctx).remove_initiator_group(tag))
    return True


@rpc_method("iscsi_get_initiator_groups", states=State.ANY)
def iscsi_get_initiator_groups(ctx: RpcContext) -> list[dict[str, Any]]:
    """List initiator groups."""
    return [ig.to_json() for ig in _tgt(ctx).initiator_groups.values()]


# -- target nodes -------------------------------------------------------------------------

@rpc_method("iscsi_create_target_node", [
    Param("name", "string", required=True), Param("alias_name", "string", required=True),
    Param("pg_ig_maps", "array", required=True, items=_MAP),
    Param("luns", "array", required=True, items=_LUN),
    Param("queue_depth", "int32", required=True), *_CHAP,
    Param("header_digest", "boolean"), Param("data_digest", "boolean")])
def iscsi_create_target_node(ctx: RpcContext, name: str, alias_name: str, pg_ig_maps: list[dict[str, int]],
                             luns: list[dict[str, Any]], queue_depth: int, header_digest: bool = False,
                             data_digest: bool = False, **chap: Any) -> bool:
    """Create a target node exporting bdevs as LUNs."""
    lun_list: list[tuple[int, str]] = []
    for i, lun in enumerate(luns):
        if "bdev_name" not in lun:
            raise invalid_params(f"missing required parameter 'luns[{i}].bdev_name'")
        lun_list.append((lun.get("lun_id", i), lun["bdev_name"]))
    maps = _maps(pg_ig_maps)
    settings = _chap(**chap)
    _call(lambda: _tgt(ctx).add_node(name, alias_name, lun_list, maps, queue_depth, settings,
                                     header_digest, data_digest))
    return True


@rpc_method("iscsi_delete_target_node", [Param("name", "string", required=True)])
async def iscsi_delete_target_node(ctx: RpcContext, name: str) -> bool:
    """Delete a target node, dropping its connections."""
    t = _tgt(ctx)
    node = _call(lambda: t.remove_node(name))
    for conn in list(node.connections):
        conn.drop("target node deleted")
    return True


@rpc_method("iscsi_target_node_add_lun", [
    Param("name", "string", required=True), Param("bdev_name", "string", required=True),
    Param("lun_id", "int32")])
def iscsi_target_node_add_lun(ctx: RpcContext, name: str, bdev_name: str, lun_id: int | None = None) -> bool:
    """Add a bdev as a LUN (lun_id omitted or -1: the lowest free id)."""
    _call(lambda: _tgt(ctx).add_lun(name, bdev_name, lun_id))
    return True


@rpc_method("iscsi_target_node_set_auth", [Param("name", "string", required=True), *_CHAP])
def iscsi_target_node_set_auth(ctx: RpcContext, name: str, **chap: Any) -> bool:
    """CHAP settings for a target node."""
    node = _call(lambda: _tgt(ctx).node(name))
    node.chap = _chap(**chap)
    return True


@rpc_method("iscsi_target_node_add_pg_ig_maps", [
    Param("name", "string", required=True), Param("pg_ig_maps", "array", required=True, items=_MAP)])
def iscsi_target_node_add_pg_ig_maps(ctx: RpcContext, name: str, pg_ig_maps: list[dict[str, int]]) -> bool:
    """Add PG-IG maps to a target node."""
    maps = _maps(pg_ig_maps)
    _call(lambda: _tgt(ctx).add_maps(name, maps))
    return True


@rpc_method("iscsi_target_node_remove_pg_ig_maps", [
    Param("name", "string", required=True), Param("pg_ig_maps", "array", required=True, items=_MAP)])
def iscsi_target_node_remove_pg_ig_maps(ctx: RpcContext, name: str, pg_ig_maps: list[dict[str, int]]) -> bool:
    """Remove PG-IG maps from a target node."""
    maps = _maps(pg_ig_maps)
    _call(lambda: _tgt(ctx).remove_maps(name, maps))
    return True


@rpc_method("iscsi_target_node_request_logout", [Param("name", "string", required=True),
                                                  Param("pg_tag", "int32")])
def iscsi_target_node_request_logout(ctx: RpcContext, name: str, pg_tag: int | None = None) -> bool:
    """Ask the initiators logged in to a node (through one portal group, or all) to log out;
    connections still there after nop_timeout seconds are dropped."""
    t = _tgt(ctx)
    node = _call(lambda: t.node(name))
    if pg_tag is not None and pg_tag != -1:
        _call(lambda: t.portal_group(pg_tag))
    for conn in list(node.connections):
        if pg_tag in (None, -1) or conn.group.tag == pg_tag:
            conn.request_logout(float(t.options.nop_timeout))
    return True


@rpc_method("iscsi_enable_histogram", [Param("name", "string", required=True),
                                       Param("enable", "boolean", required=True)])
def iscsi_enable_histogram(ctx: RpcContext, name: str, enable: bool) -> bool:
    """Start (or stop and discard) a command latency histogram on a target node."""
    node = _call(lambda: _tgt(ctx).node(name))
    if enable:
        if node.histogram is None:
            node.histogram = Histogram()
    else:
        node.histogram = None
    return True


@rpc_method("iscsi_get_histogram", [Param("name", "string", required=True)])
def iscsi_get_histogram(ctx: RpcContext, name: str) -> dict[str, Any]:
    """A target node's command latency histogram (bdev_get_histogram's format, in ns)."""
    node = _call(lambda: _tgt(ctx).node(name))
    h = node.histogram
    if h is None:
        raise errno_error(errno.EFAULT, f"histogram is not enabled on {node.name}; "
                                        "use iscsi_enable_histogram")
    return {"histogram": h.encode(), "tsc_rate": TICK_RATE, "bucket_shift": h.granularity,
            "granularity": h.granularity, "min_range": 0, "max_range": h.num_ranges - 1}


@rpc_method("iscsi_get_target_nodes", states=State.ANY)
def iscsi_get_target_nodes(ctx: RpcContext) -> list[dict[str, Any]]:
    """List target nodes."""
    return [n.to_json() for n in _tgt(ctx).nodes.values()]


# -- connections and stats ----------------------------------------------------------------

@rpc_method("iscsi_get_connections")
def iscsi_get_connections(ctx: RpcContext) -> list[dict[str, Any]]:
    """List live connections."""
    return [c.info() for c in _tgt(ctx).connections.values()]


@rpc_method("iscsi_get_stats")
def iscsi_get_stats(ctx: RpcContext) -> dict[str, int]:
    """Connection counts by state."""
    counts = {"invalid": 0, "running": 0, "exiting": 0, "exited": 0}
    for c in _tgt(ctx).connections.values():
        counts[c.state_name] = counts.get(c.state_name, 0) + 1
    return counts




@rpc_method("scsi_get_devices")
def scsi_get_devices(ctx: RpcContext) -> list[dict[str, Any]]:
    """List the SCSI devices behind the iSCSI target nodes."""
    nodes = [n for n in _tgt(ctx).nodes.values() if n.device is not None]
    return [{"id": i, "device_name": n.name} for i, n in enumerate(nodes)]


# The "scsi" and "iscsi" subsystems register with the RPCs (the plugin loader imports rpc.py).
from spydk.iscsi import subsystem as _subsystem  # noqa: E402,F401
