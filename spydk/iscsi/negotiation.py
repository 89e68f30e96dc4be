"""iSCSI text keys (RFC 7143 sections 6 and 13): key=value parsing and target-side negotiation.

Text data is ``key=value\\0`` records.  A long negotiation may span several PDUs with the
C (continue) bit; ``TextCollector`` joins them (bounded).  ``Negotiator`` answers an
initiator's offers as the responder, following each key's result function:

* list keys (HeaderDigest, AuthMethod, TaskReporting): first offered value we support,
  else ``Reject``;
* numerical min/max keys: the minimum/maximum of the offer and our limit;
* boolean OR/AND keys: the offer OR/AND our value;
* declarative keys: recorded, answered only when the target has something to declare;
* unknown keys (including X- / X# vendor keys): ``NotUnderstood``;
* keys valid only on the leading connection, only during login, only in some session
  types: ``Irrelevant`` or ``Reject`` as the RFC asks; malformed values: ``Reject``.

A key offered twice in one negotiation is a protocol error (``NegotiationError``), as are
records without '=' and over-long key names; over-long values get ``Reject``.
"""
from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace

KEY_NAME_MAX = 63
VALUE_MAX = 255
BINARY_VALUE_MAX = 8192  # CHAP_C / CHAP_R etc.: encoded hex or base64
TEXT_MAX = 65536  # bound on one negotiation's text across continued PDUs

NOT_UNDERSTOOD = "NotUnderstood"
IRRELEVANT = "Irrelevant"
REJECT = "Reject"
_ANSWERS = frozenset({NOT_UNDERSTOOD, IRRELEVANT, REJECT})
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+@_")


class NegotiationError(Exception):
    """The peer's text violates the protocol (login fails / connection closes)."""


# -- text codec ------------------------------------------------------------------------------


def parse_text(data: bytes | bytearray | memoryview) -> list[tuple[str, str]]:
    """Split text data into (key, value) pairs.  Trailing NULs/padding are tolerated."""
    raw = bytes(data)
    out: list[tuple[str, str]] = []
    for rec in raw.split(b"\0"):
        if not rec:
            continue
        key, sep, value = rec.partition(b"=")
        if not sep:
            raise NegotiationError("text record without '='")
        if not key or len(key) > KEY_NAME_MAX:
            raise NegotiationError("bad key name length")
        try:
            k = key.decode("ascii")
            v = value.decode("utf-8")
        except UnicodeDecodeError:
            raise NegotiationError("text is not UTF-8") from None
        if not _KEY_CHARS.issuperset(k):
            raise NegotiationError("bad character in key name")
        out.append((k, v))
    return out


def encode_text(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


class TextCollector:
    """Joins text data carried by a sequence of PDUs with the C bit set."""

    def __init__(self, limit: int = TEXT_MAX) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, data: bytes | bytearray | memoryview) -> None:
        self._size += len(data)
        if self._size > self.limit:
            raise NegotiationError("text negotiation too long")
        self._parts.append(bytes(data))

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        self._size = 0
        return out

    @property
    def pending(self) -> bool:
        return bool(self._parts)


def split_text(text: bytes, limit: int) -> list[bytes]:
    """Chunks of at most ``limit`` bytes, for responses continued with the C bit."""
    return [text[i:i + limit] for i in range(0, len(text), limit)] or [b""]


# -- key table ---------------------------------------------------------------------------------


class Kind(enum.Enum):
    LIST = "list"
    NUM_MIN = "min"
    NUM_MAX = "max"
    BOOL_OR = "or"
    BOOL_AND = "and"
    DECLARATIVE = "declarative"
    NUM_DECLARATIVE = "numeric-declarative"


class Use(enum.Flag):
    LEADING_ONLY = enum.auto()   # LO: leading connection's login only
    LOGIN_ONLY = enum.auto()     # IO: login only, never in Full Feature Phase
    SECURITY = enum.auto()       # security stage only
    FFP_ONLY = enum.auto()       # Full Feature Phase only (SendTargets)
    SESSION_IO = enum.auto()     # Irrelevant in a discovery session


@dataclass(frozen=True, slots=True)
class KeyDef:
    name: str
    kind: Kind
    use: Use = Use(0)
    lo: int = 0
    hi: int = 0
    values: tuple[str, ...] = ()


_NUM24 = (512, (1 << 24) - 1)
KEYS: dict[str, KeyDef] = {k.name: k for k in (
    KeyDef("HeaderDigest", Kind.LIST, Use.LOGIN_ONLY, values=("None", "CRC32C")),
    KeyDef("DataDigest", Kind.LIST, Use.LOGIN_ONLY, values=("None", "CRC32C")),
    KeyDef("MaxConnections", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO, 1, 65535),
    KeyDef("SendTargets", Kind.DECLARATIVE, Use.FFP_ONLY),
    KeyDef("TargetName", Kind.DECLARATIVE, Use.LOGIN_ONLY),
    KeyDef("InitiatorName", Kind.DECLARATIVE, Use.LOGIN_ONLY),
    KeyDef("TargetAlias", Kind.DECLARATIVE),
    KeyDef("InitiatorAlias", Kind.DECLARATIVE),
    KeyDef("TargetAddress", Kind.DECLARATIVE),
    KeyDef("TargetPortalGroupTag", Kind.DECLARATIVE, Use.LOGIN_ONLY),
    KeyDef("InitialR2T", Kind.BOOL_OR, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO),
    KeyDef("ImmediateData", Kind.BOOL_AND, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO),
    KeyDef("MaxRecvDataSegmentLength", Kind.NUM_DECLARATIVE, Use(0), *_NUM24),
    KeyDef("MaxBurstLength", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO, *_NUM24),
    KeyDef("FirstBurstLength", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO, *_NUM24),
    KeyDef("DefaultTime2Wait", Kind.NUM_MAX, Use.LEADING_ONLY | Use.LOGIN_ONLY, 0, 3600),
    KeyDef("DefaultTime2Retain", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY, 0, 3600),
    KeyDef("MaxOutstandingR2T", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO, 1, 65535),
    KeyDef("DataPDUInOrder", Kind.BOOL_OR, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO),
    KeyDef("DataSequenceInOrder", Kind.BOOL_OR, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO),
    KeyDef("ErrorRecoveryLevel", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY, 0, 2),
    KeyDef("SessionType", Kind.DECLARATIVE, Use.LEADING_ONLY | Use.LOGIN_ONLY, values=("Discovery", "Normal")),
    KeyDef("AuthMethod", Kind.LIST, Use.SECURITY | Use.LOGIN_ONLY, values=("None", "CHAP")),
    KeyDef("TaskReporting", Kind.LIST, Use.LEADING_ONLY | Use.LOGIN_ONLY | Use.SESSION_IO,
           values=("RFC3720",)),
    KeyDef("iSCSIProtocolLevel", Kind.NUM_MIN, Use.LEADING_ONLY | Use.LOGIN_ONLY, 0, 31),
    # RFC 7143 section 13.26: markers are obsolete.  Booleans get "No" (allowed, and what
    # older initiators expect), the interval keys "Reject".
    KeyDef("IFMarker", Kind.BOOL_AND, Use.LOGIN_ONLY),
    KeyDef("OFMarker", Kind.BOOL_AND, Use.LOGIN_ONLY),
    KeyDef("IFMarkInt", Kind.DECLARATIVE, Use.LOGIN_ONLY),
    KeyDef("OFMarkInt", Kind.DECLARATIVE, Use.LOGIN_ONLY),
)}
CHAP_KEYS = frozenset({"CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"})


# -- parameters --------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionParams:
    """Session-wide operational values (negotiated on the leading connection)."""

    max_connections: int = 1
    initial_r2t: bool = True
    immediate_data: bool = True
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    default_time2wait: int = 2
    default_time2retain: int = 20
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    protocol_level: int = 0


@dataclass(slots=True)
class ConnParams:
    header_digest: bool = False
    data_digest: bool = False
    # What the initiator declared it can receive: our Data-In/Text/NOP-In limit.
    max_send_data_segment: int = 8192
    # What we declared we can receive.
    max_recv_data_segment: int = 8192


@dataclass(slots=True)
class Limits:
    """The target's side of every negotiable key (what it supports / prefers)."""

    max_recv_data_segment_length: int = 65536
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 16
    max_connections: int = 2
    default_time2wait: int = 2
    default_time2retain: int = 20
    error_recovery_level: int = 0
    header_digests: tuple[str, ...] = ("None", "CRC32C")
    data_digests: tuple[str, ...] = ("None", "CRC32C")


_SESSION_ATTR = {
    "MaxConnections": "max_connections",
    "InitialR2T": "initial_r2t",
    "ImmediateData": "immediate_data",
    "MaxBurstLength": "max_burst_length",
    "FirstBurstLength": "first_burst_length",
    "DefaultTime2Wait": "default_time2wait",
    "DefaultTime2Retain": "default_time2retain",
    "MaxOutstandingR2T": "max_outstanding_r2t",
    "DataPDUInOrder": "data_pdu_in_order",
    "DataSequenceInOrder": "data_sequence_in_order",
    "ErrorRecoveryLevel": "error_recovery_level",
    "iSCSIProtocolLevel": "protocol_level",
}
_OURS = {
    "MaxConnections": "max_connections",
    "InitialR2T": "initial_r2t",
    "ImmediateData": "immediate_data",
    "MaxBurstLength": "max_burst_length",
    "FirstBurstLength": "first_burst_length",
    "DefaultTime2Wait": "default_time2wait",
    "DefaultTime2Retain": "default_time2retain",
    "MaxOutstandingR2T": "max_outstanding_r2t",
    "ErrorRecoveryLevel": "error_recovery_level",
}
_OUR_CONST = {"DataPDUInOrder": True, "DataSequenceInOrder": True, "iSCSIProtocolLevel": 1,
              "IFMarker": False, "OFMarker": False}


def _parse_num(v: str) -> int | None:
    """Decimal or 0x-hex numbers (RFC 7143 section 6.1 numerical values)."""
    if not v or len(v) > 20:
        return None
    try:
        if v[:2] in ("0x", "0X"):
            return int(v[2:], 16)
        if not v.isdigit():
            return None
        return int(v)
    except ValueError:
        return None


def _yn(b: bool) -> str:
    return "Yes" if b else "No"


@dataclass(slots=True)
class Negotiator:
    """Target-side responder for one connection's login (and later Text) negotiation."""

    limits: Limits = field(default_factory=Limits)
    leading: bool = True
    discovery: bool = False
    session: SessionParams = field(default_factory=SessionParams)
    conn: ConnParams = field(default_factory=ConnParams)
    seen: set[str] = field(default_factory=set)
    declared: dict[str, str] = field(default_factory=dict)  # declarative keys from the initiator

    def __post_init__(self) -> None:
        self.conn.max_recv_data_segment = self.limits.max_recv_data_segment_length

    def answer(self, pairs: Iterable[tuple[str, str]], *, in_login: bool = True,
               security_stage: bool = False) -> list[tuple[str, str]]:
        """Answers for the operational/declarative keys in ``pairs`` (CHAP and AuthMethod
        handled by the caller are skipped; see ``conn``).  Raises NegotiationError."""
        out: list[tuple[str, str]] = []
        deferred_fbl: str | None = None
        for key, value in pairs:
            if key in CHAP_KEYS or (key == "AuthMethod" and security_stage):
                continue
            if in_login:
                if key in self.seen:
                    raise NegotiationError("key negotiated twice")
                self.seen.add(key)
            if key == "FirstBurstLength":
                deferred_fbl = value  # depends on InitialR2T/ImmediateData/MaxBurstLength
                continue
            ans = self._answer_one(key, value, in_login)
            if ans is not None:
                out.append((key, ans))
        if deferred_fbl is not None:
            ans = self._answer_one("FirstBurstLength", deferred_fbl, in_login)
            if ans is not None:
                out.append(("FirstBurstLength", ans))
        return out

    def _answer_one(self, key: str, value: str, in_login: bool) -> str | None:
        kd = KEYS.get(key)
        if kd is None:
            return NOT_UNDERSTOOD
        if value in _ANSWERS:
            return None  # an answer to something we offered; we offer nothing negotiable
        limit = BINARY_VALUE_MAX if key in ("TargetAddress", "SendTargets") else VALUE_MAX
        if len(value) > limit:
            return REJECT
        use = kd.use
        if not in_login and Use.LOGIN_ONLY in use:
            return REJECT
        if in_login and Use.FFP_ONLY in use:
            return REJECT
        if Use.SECURITY in use:
            # AuthMethod outside the security stage.
            raise NegotiationError("security key outside the security stage")
        if in_login and Use.LEADING_ONLY in use and not self.leading:
            return IRRELEVANT
        if self.discovery and Use.SESSION_IO in use:
            return IRRELEVANT
        kind = kd.kind
        if kind is Kind.DECLARATIVE:
            if key in ("IFMarkInt", "OFMarkInt"):
                return REJECT
            if kd.values and value not in kd.values:
                raise NegotiationError("bad value for " + key)
            self.declared[key] = value
            return None
        if kind is Kind.NUM_DECLARATIVE:
            n = _parse_num(value)
            if n is None or not kd.lo <= n <= kd.hi:
                return REJECT
            self.conn.max_send_data_segment = n
            return None
        if kind is Kind.LIST:
            ours = self._list_ours(key)
            for v in value.split(","):
                if v in ours:
                    self._apply(key, v)
                    return v
            return REJECT
        if kind in (Kind.BOOL_OR, Kind.BOOL_AND):
            if value not in ("Yes", "No"):
                return REJECT
            offered = value == "Yes"
            mine = bool(_OUR_CONST[key]) if key in _OUR_CONST else bool(getattr(self.limits, _OURS[key]))
            result = (offered or mine) if kind is Kind.BOOL_OR else (offered and mine)
            self._apply(key, result)
            return _yn(result)
        # numerical min / max
        n = _parse_num(value)
        if n is None or not kd.lo <= n <= kd.hi:
            return REJECT
        mine_n = _OUR_CONST[key] if key in _OUR_CONST else int(getattr(self.limits, _OURS[key]))
        result_n = min(n, mine_n) if kind is Kind.NUM_MIN else max(n, mine_n)
        if key == "FirstBurstLength":
            s = self.session
            if s.initial_r2t and not s.immediate_data:
                return IRRELEVANT
            result_n = min(result_n, s.max_burst_length)
        self._apply(key, result_n)
        return str(result_n)

    def _list_ours(self, key: str) -> tuple[str, ...]:
        if key == "HeaderDigest":
            return self.limits.header_digests
        if key == "DataDigest":
            return self.limits.data_digests
        return KEYS[key].values

    def _apply(self, key: str, value: object) -> None:
        if key == "HeaderDigest":
            self.conn.header_digest = value == "CRC32C"
        elif key == "DataDigest":
            self.conn.data_digest = value == "CRC32C"
        elif key in _SESSION_ATTR:
            setattr(self.session, _SESSION_ATTR[key], value)

    def finish(self) -> None:
        """End of login: keys the initiator did not offer keep their RFC defaults (we offer
        nothing ourselves); FirstBurstLength never exceeds MaxBurstLength."""
        s = self.session
        s.first_burst_length = min(s.first_burst_length, s.max_burst_length)


def copy_session_params(p: SessionParams) -> SessionParams:
    return replace(p)


SESSION_PARAM_NAMES = tuple(f.name for f in fields(SessionParams))
