"""iSCSI session state shared by a session's connections, the registry of sessions, and the
policy interface through which the target layer decides who may log in to what.

Sans-IO like the rest of the package: nothing here reads sockets or clocks.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .chap import ChapCredentials
from .negotiation import SessionParams
from .spec import LoginStatus

if TYPE_CHECKING:
    from .conn_core import ConnectionCore as Connection

SN_MASK = 0xFFFFFFFF


def sn_lt(a: int, b: int) -> bool:
    """Serial number arithmetic (RFC 1982, 32 bits): a < b."""
    return a != b and ((b - a) & SN_MASK) < 0x80000000


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


class AuthRequirement(enum.Enum):
    NONE = "none"            # AuthMethod=None only
    OPTIONAL = "optional"    # None or CHAP, as the initiator prefers (mutual if it asks)
    CHAP = "chap"            # one-way CHAP required
    MUTUAL_CHAP = "mutual"   # mutual CHAP required


class SessionType(enum.Enum):
    NORMAL = "Normal"
    DISCOVERY = "Discovery"


@dataclass(slots=True)
class TargetInfo:
    """What the target layer tells the protocol layer about one target node."""

    name: str
    alias: str = ""
    portal_group_tag: int = 1
    auth: AuthRequirement = AuthRequirement.NONE
    header_digest_required: bool = False
    data_digest_required: bool = False
    context: object = None  # the target layer's own node object, handed back in events


class TargetPolicy(Protocol):
    """Decisions the target layer makes for the protocol layer (all synchronous)."""

    def authorize(self, target_name: str, initiator_name: str, initiator_address: str
                  ) -> TargetInfo | LoginStatus:
        """A normal-session login: the target, or why not (NOT_FOUND, AUTHORIZATION_FAILURE,
        TARGET_REMOVED, SERVICE_UNAVAILABLE...)."""
        ...

    def discovery_auth(self, initiator_name: str, initiator_address: str) -> AuthRequirement:
        ...

    def chap_credentials(self, user: str, target: TargetInfo | None) -> ChapCredentials | None:
        """Secrets for CHAP user ``user`` logging in to ``target`` (None: discovery session)."""
        ...

    def send_targets(self, query: str, initiator_name: str, initiator_address: str,
                     session_target: TargetInfo | None) -> list[tuple[str, list[str]]]:
        """SendTargets answer: [(target name, ["addr:port,tpgt", ...])].  ``query`` is "All",
        a target name, or "" (the session's own target, in normal sessions)."""
        ...


@dataclass
class StaticTargetPolicy:
    """A dictionary-backed TargetPolicy: enough for tests and simple set-ups.

    ``allowed`` maps target name -> initiator names allowed (empty set = any).
    ``addresses`` maps target name -> "host:port,tpgt" strings for SendTargets.
    """

    targets: dict[str, TargetInfo] = field(default_factory=dict)
    allowed: dict[str, set[str]] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    credentials: dict[str, ChapCredentials] = field(default_factory=dict)
    discovery: AuthRequirement = AuthRequirement.NONE

    def authorize(self, target_name: str, initiator_name: str, initiator_address: str
                  ) -> TargetInfo | LoginStatus:
        t = self.targets.get(target_name)
        if t is None:
            return LoginStatus.NOT_FOUND
        allow = self.allowed.get(target_name)
        if allow and initiator_name not in allow:
            return LoginStatus.AUTHORIZATION_FAILURE
        return t

    def discovery_auth(self, initiator_name: str, initiator_address: str) -> AuthRequirement:
        return self.discovery

    def chap_credentials(self, user: str, target: TargetInfo | None) -> ChapCredentials | None:
        return self.credentials.get(user)

    def send_targets(self, query: str, initiator_name: str, initiator_address: str,
                     session_target: TargetInfo | None) -> list[tuple[str, list[str]]]:
        if query == "All":
            names = [n for n in self.targets
                     if not self.allowed.get(n) or initiator_name in self.allowed[n]]
        elif query == "":
            names = [session_target.name] if session_target else []
        else:
            names = [query] if query in self.targets else []
        return [(n, self.addresses.get(n, [])) for n in names]


class Session:
    """State shared by all connections of one session: identity, negotiated parameters and
    the command window (ExpCmdSN/MaxCmdSN)."""

    def __init__(self, registry: SessionRegistry, tsih: int, isid: bytes, initiator_name: str,
                 session_type: SessionType, target: TargetInfo | None, params: SessionParams,
                 cmd_sn: int, queue_depth: int) -> None:
        self.registry = registry
        self.tsih = tsih
        self.isid = isid
        self.initiator_name = initiator_name
        self.session_type = session_type
        self.target = target
        self.params = params
        self.queue_depth = queue_depth
        self.exp_cmd_sn = cmd_sn & SN_MASK
        self.max_cmd_sn = (cmd_sn + queue_depth - 1) & SN_MASK
        self.connections: dict[int, Connection] = {}  # by CID
        # Commands that arrived ahead of ExpCmdSN (multi-connection sessions):
        # CmdSN -> (connection, deliver callback).
        self.deferred: dict[int, tuple[Connection, Callable[[], None]]] = {}
        self.closed = False
        self.context: object = None  # free for the target layer

    @property
    def discovery(self) -> bool:
        return self.session_type is SessionType.DISCOVERY

    def command_done(self) -> None:
        """A non-immediate command finished: open the window by one."""
        self.max_cmd_sn = (self.max_cmd_sn + 1) & SN_MASK

    def advance_deferred(self) -> None:
        """ExpCmdSN moved: run deferred commands that are now next in order."""
        deferred = self.deferred
        while deferred:
            item = deferred.pop(self.exp_cmd_sn, None)
            if item is None:
                break
            self.exp_cmd_sn = (self.exp_cmd_sn + 1) & SN_MASK
            conn, run = item
            run()
            self.registry.wake(conn)

    def in_window(self, cmd_sn: int) -> bool:
        return sn_le(self.exp_cmd_sn, cmd_sn) and sn_le(cmd_sn, self.max_cmd_sn)


class SessionRegistry:
    """All sessions of a target (portal group set).  The target layer owns one.

    ``wake(conn)`` is called when a connection gets events without having received bytes
    itself (another connection unblocked its commands, or its session was reinstated); the
    target layer should then drain ``conn.pending_events()`` and ``conn.data_to_send()``.
    """

    def __init__(self, on_wake: Callable[[Connection], None] | None = None) -> None:
        self.on_wake = on_wake
        self._by_tsih: dict[int, Session] = {}
        self._next_tsih = 1

    def wake(self, conn: Connection) -> None:
        if self.on_wake is not None:
            self.on_wake(conn)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._by_tsih.values()))

    def __len__(self) -> int:
        return len(self._by_tsih)

    def get(self, tsih: int) -> Session | None:
        return self._by_tsih.get(tsih)

    def find(self, initiator_name: str, isid: bytes, target_name: str | None) -> Session | None:
        for s in self._by_tsih.values():
            if (s.initiator_name == initiator_name and s.isid == isid
                    and (s.target.name if s.target else None) == target_name and not s.closed):
                return s
        return None

    def create(self, isid: bytes, initiator_name: str, session_type: SessionType,
               target: TargetInfo | None, params: SessionParams, cmd_sn: int, queue_depth: int) -> Session:
        tsih = self._next_tsih
        while tsih in self._by_tsih or tsih == 0:
            tsih = (tsih + 1) & 0xFFFF
        self._next_tsih = (tsih + 1) & 0xFFFF or 1
        s = Session(self, tsih, isid, initiator_name, session_type, target, params, cmd_sn, queue_depth)
        self._by_tsih[tsih] = s
        return s

    def remove(self, session: Session) -> None:
        session.closed = True
        if self._by_tsih.get(session.tsih) is session:
            del self._by_tsih[session.tsih]


class BufferPool:
    """Write buffers, one per write command, recycled by power-of-two size class.

    Data-Out payloads are placed straight into these (see ``pdu.PduReader.place``), so a
    write costs at most one copy out of the receive ring, and none for large segments.
    A target layer with its own DMA-able memory can pass any object with get/put.
    What is kept for reuse is bounded in count per class and in bytes in all.
    """

    def __init__(self, max_cached_per_class: int = 64, max_cached_bytes: int = 32 << 20) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self._max = max_cached_per_class
        self._max_bytes = max_cached_bytes
        self.cached_bytes = 0
        self.outstanding = 0  # bytes handed out and not given back

    def get(self, size: int) -> bytearray:
        cls = max(size - 1, 511).bit_length()
        lst = self._free.get(cls)
        if lst:
            buf = lst.pop()
            self.cached_bytes -= len(buf)
        else:
            buf = bytearray(1 << cls)
        self.outstanding += len(buf)
        return buf

    def put(self, buf: bytearray) -> None:
        self.outstanding -= len(buf)
        cls = (len(buf) - 1).bit_length()
        lst = self._free.setdefault(cls, [])
        if len(lst) < self._max and self.cached_bytes + len(buf) <= self._max_bytes:
            lst.append(buf)
            self.cached_bytes += len(buf)
