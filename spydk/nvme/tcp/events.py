"""What the NVMe/TCP codec gives back: events (dataclasses, views into received bytes), the
role, and the error for API misuse."""
from __future__ import annotations

import enum
from dataclasses import dataclass

Buffer = bytes | bytearray | memoryview


class Role(enum.Enum):
    HOST = "host"
    CONTROLLER = "controller"


class LocalProtocolError(Exception):
    """The caller used the API in a way the protocol state does not allow."""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ICReqReceived:
    pfv: int
    hpda: int
    header_digest: bool  # requested by the host
    data_digest: bool
    maxr2t: int  # 0's based


@dataclass(slots=True)
class ICRespReceived:
    pfv: int
    cpda: int
    header_digest: bool  # now in force
    data_digest: bool
    maxh2cdata: int


@dataclass(slots=True)
class CapsuleCommand:
    sqe: memoryview  # 64 bytes
    data: memoryview | None  # in-capsule data


@dataclass(slots=True)
class CapsuleResponse:
    cid: int
    cqe: memoryview  # 16 bytes


@dataclass(slots=True)
class H2CData:
    cccid: int
    ttag: int
    offset: int  # DATAO: offset in the command's data
    data: memoryview
    last: bool  # this PDU completes its R2T (the R2T's ttag is now free)


@dataclass(slots=True)
class C2HData:
    cccid: int
    offset: int
    data: memoryview
    last: bool
    success: bool  # the command is complete; no CapsuleResp follows


@dataclass(slots=True)
class R2TReceived:
    cccid: int
    ttag: int
    offset: int
    length: int


@dataclass(slots=True)
class DataDigestError:
    """A payload failed its data digest; the data was dropped, the connection goes on."""

    pdu_type: int
    cccid: int
    ttag: int = 0
    offset: int = 0
    length: int = 0
    last: bool = False  # for H2C data: the R2T is finished (its ttag is free)


@dataclass(slots=True)
class TermReqReceived:
    """The peer terminated the connection; close it."""

    fes: int
    fei: int
    pdu_header: bytes


@dataclass(slots=True)
class ProtocolError:
    """The peer broke the protocol. Send ``term_req`` (may be empty) and close the connection."""

    fes: int
    fei: int
    reason: str
    term_req: list[Buffer]


@dataclass(slots=True)
class ConnectionClosed:
    clean: bool  # EOF fell on a PDU boundary


Event = (ICReqReceived | ICRespReceived | CapsuleCommand | CapsuleResponse | H2CData | C2HData
         | R2TReceived | DataDigestError | TermReqReceived | ProtocolError | ConnectionClosed)
