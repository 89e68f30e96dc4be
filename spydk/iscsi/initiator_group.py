"""Initiator groups: which initiators (by iSCSI name and address) may reach a target node.

Names are matched exactly, ``ANY`` matches every name, and a leading ``!`` denies the name
(``!ANY`` denies everyone). A deny wins over an allow in the same group. Netmasks are
``ANY``, an IPv4 address or network (``10.0.0.0/8``), or a bracketed IPv6 one
(``[fe80::]/10``).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

MAX_INITIATORS = 256
MAX_NETMASKS = 256
MAX_NAME_LEN = 223
ANY = "ANY"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InitGrpError(ValueError):
    """A bad initiator name or netmask (the message names it)."""


def check_initiator_name(name: str) -> str:
    bare = name[1:] if name.startswith("!") else name
    if not bare or len(bare) > MAX_NAME_LEN:
        raise InitGrpError(f"initiator name {name!r} must be 1..{MAX_NAME_LEN} characters")
    if any(c.isspace() for c in bare):
        raise InitGrpError(f"initiator name {name!r} contains white space")
    return name


def parse_netmask(mask: str) -> Network | None:
    """None for ANY; raises InitGrpError on anything else that is not a network."""
    if mask.upper() == ANY:
        return None
    text = mask
    if text.startswith("["):
        addr, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith("/")):
            raise InitGrpError(f"netmask {mask!r}: expected [IPv6 address][/prefix]")
        text = addr + rest
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InitGrpError(f"netmask {mask!r} is not ANY, an IPv4 or a [IPv6] network") from None
    if net.version == 6 and not mask.startswith("["):
        raise InitGrpError(f"netmask {mask!r}: IPv6 networks are written in brackets")
    return net


def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip("[]").split("%", 1)[0]
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


@dataclass
class InitiatorGroup:
    tag: int
    initiators: list[str] = field(default_factory=list)
    netmasks: list[str] = field(default_factory=list)
    _nets: list[Network | None] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._nets = [parse_netmask(m) for m in self.netmasks]

    def add(self, initiators: list[str], netmasks: list[str]) -> None:
        """All-or-nothing: validates everything before changing the group."""
        for n in initiators:
            check_initiator_name(n)
            if n in self.initiators or initiators.count(n) > 1:
                raise InitGrpError(f"initiator {n!r} is already in group {self.tag}")
        nets = [parse_netmask(m) for m in netmasks]
        for m in netmasks:
            if m in self.netmasks or netmasks.count(m) > 1:
                raise InitGrpError(f"netmask {m!r} is already in group {self.tag}")
        if len(self.initiators) + len(initiators) > MAX_INITIATORS:
            raise InitGrpError(f"an initiator group holds at most {MAX_INITIATORS} initiators")
        if len(self.netmasks) + len(netmasks) > MAX_NETMASKS:
            raise InitGrpError(f"an initiator group holds at most {MAX_NETMASKS} netmasks")
        self.initiators.extend(initiators)
        self.netmasks.extend(netmasks)
        self._nets.extend(nets)

    def remove(self, initiators: list[str], netmasks: list[str]) -> None:
        """Removes the listed entries (all must exist); empty lists remove everything."""
        if not initiators and not netmasks:
            self.initiators.clear()
            self.netmasks.clear()
            self._nets.clear()
            return
        for n in initiators:
            if n not in self.initiators:
                raise InitGrpError(f"initiator {n!r} is not in group {self.tag}")
        for m in netmasks:
            if m not in self.netmasks:
                raise InitGrpError(f"netmask {m!r} is not in group {self.tag}")
        self.initiators = [n for n in self.initiators if n not in initiators]
        keep = [i for i, m in enumerate(self.netmasks) if m not in netmasks]
        self.netmasks = [self.netmasks[i] for i in keep]
        self._nets = [self._nets[i] for i in keep]

    def name_verdict(self, name: str) -> bool | None:
        """True (listed or ANY), False (denied with '!'), None (not mentioned)."""
        allowed = None
        for entry in self.initiators:
            if entry.startswith("!"):
                bare = entry[1:]
                if bare.upper() == ANY or bare == name:
                    return False
            elif entry.upper() == ANY or entry == name:
                allowed = True
        return allowed

    def allows_address(self, addr: str) -> bool:
        a = _addr(addr)
        for net in self._nets:
            if net is None:
                return True
            if a is not None and a.version == net.version and a in net:
                return True
        return False

    def to_json(self) -> dict[str, object]:
        return {"initiators": list(self.initiators), "tag": self.tag,
                "netmasks": list(self.netmasks)}
