"""Target nodes: an iSCSI name exporting LUNs (bdevs) through PG-IG maps.

A short name (no ``iqn.``/``eui.``/``naa.`` prefix) is completed with the node base,
``iqn.2016-06.io.spdk:`` by default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from spydk.iscsi.auth import ChapSettings
from spydk.iscsi.initiator_group import InitiatorGroup

MAX_NAME_LEN = 223
MAX_LUNS = 256  # LUN ids 0..255
MAX_PG_IG_MAPS = 256

_IQN = re.compile(r"iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9.:\-]+)?")
_EUI = re.compile(r"eui\.[0-9a-fA-F]{16}")
_NAA = re.compile(r"naa\.([0-9a-fA-F]{16}|[0-9a-fA-F]{32})")


class NodeError(ValueError):
    """A bad target node name, LUN or map (the message names it)."""


def full_name(name: str, node_base: str) -> str:
    lower = name.lower()
    if lower.startswith(("iqn.", "eui.", "naa.")):
        full = name
    else:
        full = f"{node_base}:{name}"
    check_name(full)
    return full


def check_name(name: str) -> None:
    if len(name) > MAX_NAME_LEN:
        raise NodeError(f"target name {name!r} is longer than {MAX_NAME_LEN} characters")
    if name.startswith("iqn."):
        ok = _IQN.fullmatch(name) is not None
    elif name.startswith("eui."):
        ok = _EUI.fullmatch(name) is not None
    elif name.startswith("naa."):
        ok = _NAA.fullmatch(name) is not None
    else:
        ok = False
    if not ok:
        raise NodeError(f"target name {name!r} is not a valid iqn./eui./naa. name "
                        "(lower case letters, digits, '.', '-', ':')")


@dataclass
class TargetNode:
    name: str  # full iSCSI name
    alias: str = ""
    luns: dict[int, str] = field(default_factory=dict)  # lun id -> bdev name
    pg_ig_maps: list[tuple[int, int]] = field(default_factory=list)  # (pg tag, ig tag)
    queue_depth: int = 64
    chap: ChapSettings = field(default_factory=ChapSettings)
    header_digest: bool = False
    data_digest: bool = False
    # The SCSI device behind the LUNs (spydk.scsi); created by the target.
    device: Any = None
    backends: list[Any] = field(default_factory=list, repr=False)  # opened per LUN
    # Connections logged in to this node (spydk.iscsi.socket_io.Connection).
    connections: set[Any] = field(default_factory=set, repr=False)
    destroying: bool = False
    # Command latency (ns from ScsiCommandReady to completion), iscsi_enable_histogram.
    histogram: Any = None

    def add_maps(self, maps: list[tuple[int, int]]) -> None:
        for m in maps:
            if m in self.pg_ig_maps or maps.count(m) > 1:
                raise NodeError(f"PG-IG map {m[0]}:{m[1]} already exists on {self.name}")
        if len(self.pg_ig_maps) + len(maps) > MAX_PG_IG_MAPS:
            raise NodeError(f"a target node holds at most {MAX_PG_IG_MAPS} PG-IG maps")
        self.pg_ig_maps.extend(maps)

    def remove_maps(self, maps: list[tuple[int, int]]) -> None:
        for m in maps:
            if m not in self.pg_ig_maps:
                raise NodeError(f"PG-IG map {m[0]}:{m[1]} does not exist on {self.name}")
        self.pg_ig_maps = [m for m in self.pg_ig_maps if m not in maps]

    def free_lun_id(self) -> int:
        for i in range(MAX_LUNS):
            if i not in self.luns:
                return i
        raise NodeError(f"{self.name} has no free LUN id")

    def in_portal_group(self, pg_tag: int) -> bool:
        return any(pg == pg_tag for pg, _ in self.pg_ig_maps)

    def access_allowed(self, initiator: str, addr: str, pg_tag: int,
                       igs: dict[int, InitiatorGroup]) -> bool:
        """May ``initiator`` at ``addr``, arriving through portal group ``pg_tag``, log in?

        Among the maps of that portal group, a '!' deny of the name refuses at once; a
        group that lists the name allows it when one of its netmasks covers the address.
        """
        allowed = False
        for pg, ig_tag in self.pg_ig_maps:
            if pg != pg_tag:
                continue
            ig = igs.get(ig_tag)
            if ig is None:
                continue
            verdict = ig.name_verdict(initiator)
            if verdict is False:
                return False
            if verdict and ig.allows_address(addr):
                allowed = True
        return allowed

    def name_visible(self, initiator: str, igs: dict[int, InitiatorGroup]) -> bool:
        """Discovery: does any initiator group of this node admit the name at all?"""
        seen = False
        for _, ig_tag in self.pg_ig_maps:
            ig = igs.get(ig_tag)
            if ig is None:
                continue
            verdict = ig.name_verdict(initiator)
            if verdict is False:
                return False
            seen = seen or bool(verdict)
        return seen

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"name": self.name}
        if self.alias:
            d["alias_name"] = self.alias
        d["pg_ig_maps"] = [{"pg_tag": pg, "ig_tag": ig} for pg, ig in self.pg_ig_maps]
        d["luns"] = [{"bdev_name": b, "lun_id": i} for i, b in sorted(self.luns.items())]
        d["queue_depth"] = self.queue_depth
        d.update(self.chap.to_json())
        d["header_digest"] = self.header_digest
        d["data_digest"] = self.data_digest
        return d
