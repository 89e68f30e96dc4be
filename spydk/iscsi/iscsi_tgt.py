"""The iSCSI target's global state: options, portal/initiator/auth groups, target nodes,
live connections. One ``IscsiTarget`` per app (``target_of(app)``).

Operations validate everything before changing anything and raise ``IscsiConfigError``
(with errno-style ``err``) on misuse; the RPC layer turns those into replies.
"""
from __future__ import annotations

import errno
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any

from spydk.iscsi.auth import AuthError, AuthGroup, AuthSecret, ChapSettings
from spydk.iscsi.initiator_group import InitGrpError, InitiatorGroup
from spydk.iscsi.portal_group import Portal, PortalGroup
from spydk.iscsi.target_node import NodeError, TargetNode, full_name

DEFAULT_NODE_BASE = "iqn.2016-06.io.spdk"


class IscsiConfigError(Exception):
    def __init__(self, message: str, err: int = errno.EINVAL):
        super().__init__(message)
        self.err = err


@dataclass
class IscsiOptions:
    """iscsi_set_options / iscsi_get_options, with SPDK's defaults."""

    auth_file: str = ""
    node_base: str = DEFAULT_NODE_BASE
    nop_timeout: int = 60  # seconds without an answer to a NOP-In before the connection drops
    nop_in_interval: int = 30  # idle seconds before the target sends a NOP-In
    disable_chap: bool = False  # these four: discovery sessions
    require_chap: bool = False
    mutual_chap: bool = False
    chap_group: int = 0
    max_sessions: int = 128
    max_queue_depth: int = 64
    max_connections_per_session: int = 2
    default_time2wait: int = 2
    default_time2retain: int = 20
    first_burst_length: int = 8192
    immediate_data: bool = True
    error_recovery_level: int = 0
    allow_duplicated_isid: bool = False
    max_large_datain_per_connection: int = 64
    max_r2t_per_connection: int = 4
    pdu_pool_size: int = 73728
    immediate_data_pool_size: int = 16384
    data_out_pool_size: int = 2048

    # Ranges SPDK accepts (name -> (min, max)).
    RANGES = {
        "nop_timeout": (1, 60), "nop_in_interval": (1, 60), "max_sessions": (1, 65535),
        "max_queue_depth": (1, 128), "max_connections_per_session": (1, 65535),
        "default_time2wait": (0, 3600), "default_time2retain": (0, 3600),
        "first_burst_length": (512, 262144), "error_recovery_level": (0, 2),
        "max_large_datain_per_connection": (1, 65535), "max_r2t_per_connection": (1, 65535),
        "pdu_pool_size": (1, 1 << 24), "immediate_data_pool_size": (1, 1 << 24),
        "data_out_pool_size": (1, 1 << 24),
    }

    def updated(self, changes: dict[str, Any]) -> IscsiOptions:
        new = IscsiOptions(**{**asdict(self), **changes})
        for name, (lo, hi) in self.RANGES.items():
            v = getattr(new, name)
            if not lo <= v <= hi:
                raise IscsiConfigError(f"{name} must be in {lo}..{hi}, got {v}")
        if new.nop_in_interval > new.nop_timeout and "nop_in_interval" in changes:
            raise IscsiConfigError(f"nop_in_interval ({new.nop_in_interval}) must not exceed "
                                   f"nop_timeout ({new.nop_timeout})")
        if not new.node_base or len(new.node_base) > 223:
            raise IscsiConfigError("node_base must be 1..223 characters")
        try:
            ChapSettings.make(new.disable_chap, new.require_chap, new.mutual_chap, new.chap_group)
        except AuthError as e:
            raise IscsiConfigError(str(e)) from None
        return new

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.auth_file:
            del d["auth_file"]
        return d

    @property
    def discovery_chap(self) -> ChapSettings:
        return ChapSettings(self.disable_chap, self.require_chap, self.mutual_chap, self.chap_group)


def _wrap(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (AuthError, InitGrpError, NodeError, ValueError) as e:
        raise IscsiConfigError(str(e)) from None


@dataclass
class IscsiTarget:
    options: IscsiOptions = field(default_factory=IscsiOptions)
    portal_groups: dict[int, PortalGroup] = field(default_factory=dict)
    initiator_groups: dict[int, InitiatorGroup] = field(default_factory=dict)
    auth_groups: dict[int, AuthGroup] = field(default_factory=dict)
    nodes: dict[str, TargetNode] = field(default_factory=dict)
    connections: dict[int, Any] = field(default_factory=dict)  # id -> portal.Connection
    initialized: bool = False
    next_conn_id: int = 0
    next_tsih: int = 1
    # Set by the connection glue: start/stop listening for a portal group, and build or
    # drop the SCSI device of a node. Kept as hooks so the object model stays testable.
    start_listening: Callable[[PortalGroup], Any] | None = None
    stop_listening: Callable[[PortalGroup], Any] | None = None
    build_device: Callable[[TargetNode], Any] | None = None
    drop_device: Callable[[TargetNode], Any] | None = None
    add_lun_device: Callable[[TargetNode, int, str], Any] | None = None

    # -- options ----------------------------------------------------------------------

    def set_options(self, changes: dict[str, Any]) -> None:
        self.options = self.options.updated(changes)

    def set_discovery_auth(self, chap: ChapSettings) -> None:
        # A chap_group that does not exist yet is accepted (config replay creates auth
        # groups last); CHAP logins fail until it appears.
        self.options.disable_chap = chap.disable
        self.options.require_chap = chap.require
        self.options.mutual_chap = chap.mutual
        self.options.chap_group = chap.group

    # -- portal groups ----------------------------------------------------------------

    def add_portal_group(self, tag: int, portals: list[Portal], private: bool = False,
                         wait: bool = False) -> PortalGroup:
        if tag <= 0:
            raise IscsiConfigError(f"portal group tag must be > 0, got {tag}")
        if tag in self.portal_groups:
            raise IscsiConfigError(f"portal group {tag} already exists", errno.EEXIST)
        if not portals:
            raise IscsiConfigError("a portal group needs at least one portal")
        in_use = {p for g in self.portal_groups.values() for p in g.portals}
        for p in portals:
            if p in in_use or portals.count(p) > 1:
                raise IscsiConfigError(f"portal {p.host}:{p.port} is already in use", errno.EEXIST)
        pg = PortalGroup(tag, list(portals), private, wait)
        self.portal_groups[tag] = pg
        return pg

    def portal_group(self, tag: int) -> PortalGroup:
        pg = self.portal_groups.get(tag)
        if pg is None:
            raise IscsiConfigError(f"portal group {tag} does not exist", errno.ENODEV)
        return pg

    def remove_portal_group(self, tag: int) -> PortalGroup:
        """Delete the group and, as SPDK does, every node's maps that name it."""
        pg = self.portal_group(tag)
        for node in self.nodes.values():
            node.pg_ig_maps = [m for m in node.pg_ig_maps if m[0] != tag]
        del self.portal_groups[tag]
        return pg

    # -- initiator groups -------------------------------------------------------------

    def add_initiator_group(self, tag: int, initiators: list[str], netmasks: list[str]) -> InitiatorGroup:
        if tag <= 0:
            raise IscsiConfigError(f"initiator group tag must be > 0, got {tag}")
        if tag in self.initiator_groups:
            raise IscsiConfigError(f"initiator group {tag} already exists", errno.EEXIST)
        if not initiators:
            raise IscsiConfigError("initiators must list at least one name (or ANY)")
        if not netmasks:
            raise IscsiConfigError("netmasks must list at least one network (or ANY)")
        ig = InitiatorGroup(tag)
        _wrap(lambda: ig.add(initiators, netmasks))
        self.initiator_groups[tag] = ig
        return ig

    def initiator_group(self, tag: int) -> InitiatorGroup:
        ig = self.initiator_groups.get(tag)
        if ig is None:
            raise IscsiConfigError(f"initiator group {tag} does not exist", errno.ENODEV)
        return ig

    def remove_initiator_group(self, tag: int) -> None:
        """Delete the group and, as SPDK does, every node's maps that name it."""
        self.initiator_group(tag)
        for node in self.nodes.values():
            node.pg_ig_maps = [m for m in node.pg_ig_maps if m[1] != tag]
        del self.initiator_groups[tag]

    # -- auth groups ------------------------------------------------------------------

    def add_auth_group(self, tag: int, secrets: list[AuthSecret]) -> AuthGroup:
        if tag <= 0:
            raise IscsiConfigError(f"auth group tag must be > 0, got {tag}")
        if tag in self.auth_groups:
            raise IscsiConfigError(f"auth group {tag} already exists", errno.EEXIST)
        g = AuthGroup(tag)
        for s in secrets:
            _wrap(partial(g.add, s))
        self.auth_groups[tag] = g
        return g

    def auth_group(self, tag: int) -> AuthGroup:
        g = self.auth_groups.get(tag)
        if g is None:
            raise IscsiConfigError(f"auth group {tag} does not exist", errno.ENODEV)
        return g

    def remove_auth_group(self, tag: int) -> None:
        self.auth_group(tag)
        del self.auth_groups[tag]

    def find_secret(self, group: int, user: str) -> AuthSecret | None:
        g = self.auth_groups.get(group)
        return g.find(user) if g is not None else None

    # -- target nodes -----------------------------------------------------------------

    def _check_maps(self, maps: list[tuple[int, int]]) -> None:
        for pg, ig in maps:
            self.portal_group(pg)
            self.initiator_group(ig)

    def add_node(self, name: str, alias: str, luns: list[tuple[int, str]],
                 maps: list[tuple[int, int]], queue_depth: int, chap: ChapSettings,
                 header_digest: bool = False, data_digest: bool = False) -> TargetNode:
        full = _wrap(lambda: full_name(name, self.options.node_base))
        if full in self.nodes:
            raise IscsiConfigError(f"target node {full} already exists", errno.EEXIST)
        if not 1 <= queue_depth <= self.options.max_queue_depth:
            raise IscsiConfigError(f"queue_depth must be in 1..{self.options.max_queue_depth} "
                                   f"(max_queue_depth), got {queue_depth}")
        if not luns:
            raise IscsiConfigError("luns must list at least one bdev")
        lun_map: dict[int, str] = {}
        for lun_id, bdev in luns:
            if not 0 <= lun_id < 256:
                raise IscsiConfigError(f"lun_id must be in 0..255, got {lun_id}")
            if lun_id in lun_map:
                raise IscsiConfigError(f"lun_id {lun_id} is listed twice", errno.EEXIST)
            lun_map[lun_id] = bdev
        if not maps:
            raise IscsiConfigError("pg_ig_maps must list at least one map")
        self._check_maps(maps)
        node = TargetNode(full, alias, lun_map, [], queue_depth, chap, header_digest, data_digest)
        _wrap(lambda: node.add_maps(maps))
        if self.build_device is not None:
            self.build_device(node)  # raises IscsiConfigError (e.g. missing bdev)
        self.nodes[full] = node
        return node

    def node(self, name: str) -> TargetNode:
        n = self.nodes.get(name)
        if n is None and ":" not in name:
            n = self.nodes.get(f"{self.options.node_base}:{name}")
        if n is None:
            raise IscsiConfigError(f"target node {name} does not exist", errno.ENODEV)
        return n

    def find_node(self, name: str) -> TargetNode | None:
        n = self.nodes.get(name)
        if n is None:  # iSCSI names compare case-insensitively after normalization
            low = name.lower()
            n = next((x for x in self.nodes.values() if x.name.lower() == low), None)
        return n if n is not None and not n.destroying else None

    def remove_node(self, name: str) -> TargetNode:
        node = self.node(name)
        node.destroying = True
        del self.nodes[node.name]
        if self.drop_device is not None:
            self.drop_device(node)
        return node

    def add_lun(self, name: str, bdev: str, lun_id: int | None) -> int:
        node = self.node(name)
        if lun_id is None or lun_id == -1:
            lun_id = _wrap(node.free_lun_id)
        if not 0 <= lun_id < 256:
            raise IscsiConfigError(f"lun_id must be in 0..255 (or -1 for the lowest free), got {lun_id}")
        if lun_id in node.luns:
            raise IscsiConfigError(f"LUN {lun_id} already exists on {node.name}", errno.EEXIST)
        if self.add_lun_device is not None and node.device is not None:
            self.add_lun_device(node, lun_id, bdev)  # raises IscsiConfigError (missing bdev)
        node.luns[lun_id] = bdev
        return lun_id

    def add_maps(self, name: str, maps: list[tuple[int, int]]) -> None:
        node = self.node(name)
        self._check_maps(maps)
        _wrap(lambda: node.add_maps(maps))

    def remove_maps(self, name: str, maps: list[tuple[int, int]]) -> None:
        node = self.node(name)
        _wrap(lambda: node.remove_maps(maps))

    # -- discovery --------------------------------------------------------------------

    def send_targets(self, initiator: str, initiator_addr: str, which: str,
                     arrived_host: str, arrived_port: str, arrived_pg: int) -> list[tuple[str, list[str]]]:
        """Answer SendTargets=<which> (All, a target name, or empty = this session's target).

        Each target is listed with the public portals of its portal groups as
        ``host:port,tag``. A portal bound to a wildcard address (0.0.0.0 / [::]) is
        advertised as the address the discovery connection arrived on, so initiators
        get an address they can reach.
        """
        from spydk.iscsi.portal_group import advertised_address
        out: list[tuple[str, list[str]]] = []
        for node in self.nodes.values():
            if which not in ("All", "") and node.name.lower() != which.lower():
                continue
            if not node.name_visible(initiator, self.initiator_groups):
                continue
            addrs: list[str] = []
            for pg_tag in dict.fromkeys(pg for pg, _ in node.pg_ig_maps):
                pg = self.portal_groups.get(pg_tag)
                if pg is None or pg.private:
                    continue
                if not node.access_allowed(initiator, initiator_addr, pg_tag, self.initiator_groups):
                    continue
                for p in pg.portals:
                    host = p.bind_host
                    if host in ("0.0.0.0", "::"):
                        host = arrived_host
                    addrs.append(f"{advertised_address(host, p.port)},{pg_tag}")
            out.append((node.name, addrs))
        return out

    # -- config -----------------------------------------------------------------------

    def config(self) -> list[dict[str, Any]]:
        """save_config order (as SPDK): options, portal groups, initiator groups, target
        nodes, auth groups."""
        out: list[dict[str, Any]] = [{"method": "iscsi_set_options", "params": self.options.to_json()}]
        for pg in self.portal_groups.values():
            out.append({"method": "iscsi_create_portal_group", "params": pg.to_json()})
            if pg.chap is not None:
                out.append({"method": "iscsi_portal_group_set_auth",
                            "params": {"tag": pg.tag, **pg.chap.to_json()}})
        for ig in self.initiator_groups.values():
            out.append({"method": "iscsi_create_initiator_group", "params": ig.to_json()})
        for node in self.nodes.values():
            out.append({"method": "iscsi_create_target_node", "params": node.to_json()})
        for ag in self.auth_groups.values():
            out.append({"method": "iscsi_create_auth_group", "params": ag.to_json()})
        return out


_targets: weakref.WeakKeyDictionary[Any, IscsiTarget] = weakref.WeakKeyDictionary()


def target_of(app: Any) -> IscsiTarget:
    """The app's iSCSI target (created on first use, so options can be set before init)."""
    t = _targets.get(app)
    if t is None:
        t = _targets[app] = IscsiTarget()
    return t
