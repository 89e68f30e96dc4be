"""Portal groups: the addresses a target listens on, grouped under a tag.

A target node is reachable through the portal groups in its PG-IG maps. A ``private``
group is never announced in SendTargets; a group created with ``wait`` does not listen
until ``iscsi_start_portal_group``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from spydk.iscsi.auth import ChapSettings

MAX_PORTALS = 1024
DEFAULT_PORT = "3260"


class PortalError(ValueError):
    """A bad portal host or port (the message names it)."""


@dataclass(frozen=True)
class Portal:
    host: str  # as configured: "127.0.0.1", "[::1]", "0.0.0.0"
    port: str

    @property
    def bind_host(self) -> str:
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def to_json(self) -> dict[str, str]:
        return {"host": self.host, "port": self.port}


def make_portal(host: str, port: str) -> Portal:
    if not host:
        raise PortalError("portal host is empty")
    if host.startswith("["):
        if not host.endswith("]"):
            raise PortalError(f"portal host {host!r}: missing ']'")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise PortalError(f"portal host {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise PortalError(f"portal host {host!r}: write IPv6 addresses in brackets")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise PortalError(f"portal port {port!r} is not a TCP port number (1..65535)")
    return Portal(host, str(int(port)))


def advertised_address(host: str, port: str) -> str:
    """TargetAddress value: host:port,tag uses brackets for IPv6 (RFC 7143 13.9)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


@dataclass
class PortalGroup:
    tag: int
    portals: list[Portal]
    private: bool = False
    wait: bool = False
    # The connection glue keeps its listening servers here while started.
    servers: list[Any] = field(default_factory=list, repr=False)
    started: bool = False
    # Discovery CHAP for sessions through this group (iscsi_portal_group_set_auth);
    # None: the global discovery settings.
    chap: ChapSettings | None = None

    def to_json(self) -> dict[str, object]:
        return {"portals": [p.to_json() for p in self.portals], "tag": self.tag,
                "private": self.private}
