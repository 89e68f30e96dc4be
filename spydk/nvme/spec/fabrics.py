"""NVMe over Fabrics structures: Fabrics command SQEs, Connect data/response, properties.

Layouts follow the NVMe over Fabrics specification 1.1 / NVMe Base 2.0 chapter 6.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from spydk.nvme.spec import FABRICS_OPCODE, SQE_SIZE

# Common Fabrics SQE prefix: opcode (7Fh), flags, cid, fctype.
FABRICS_SQE_HEAD = struct.Struct("<BBHB")
assert FABRICS_SQE_HEAD.size == 5
FABRICS_OFF_FCTYPE = 4
FABRICS_OFF_SGL1 = 24


class FabricsCommandType(enum.IntEnum):
    PROPERTY_SET = 0x00
    CONNECT = 0x01
    PROPERTY_GET = 0x04
    AUTH_SEND = 0x05
    AUTH_RECV = 0x06
    DISCONNECT = 0x08


def sqe_fctype(sqe: bytes | bytearray | memoryview) -> int:
    return sqe[FABRICS_OFF_FCTYPE]


# Connect command: SQE bytes 40..63: RECFMT, QID, SQSIZE (0's based), CATTR, rsvd, KATO (ms).
CONNECT_CMD = struct.Struct("<HHHBxI12x")
assert CONNECT_CMD.size == 24
CONNECT_CMD_OFF = 40
CONNECT_OFF_RECFMT = 40
CONNECT_OFF_QID = 42
CONNECT_OFF_SQSIZE = 44
CONNECT_OFF_CATTR = 46
CONNECT_OFF_KATO = 48


class ConnectAttr(enum.IntFlag):
    PRIORITY_CLASS_MASK = 0x3  # bits 1:0, urgent/high/medium/low
    DISABLE_SQFLOW = 0x4
    IO_QUEUE_DELETION = 0x8


@dataclass(slots=True)
class ConnectCommand:
    cid: int
    qid: int
    sqsize: int  # 0's based
    kato: int = 0  # keep-alive timeout in ms (admin queue only)
    cattr: int = 0
    recfmt: int = 0


def parse_connect_command(sqe: bytes | bytearray | memoryview) -> ConnectCommand:
    recfmt, qid, sqsize, cattr, kato = CONNECT_CMD.unpack_from(sqe, CONNECT_CMD_OFF)
    cid = struct.unpack_from("<H", sqe, 2)[0]
    return ConnectCommand(cid=cid, qid=qid, sqsize=sqsize, kato=kato, cattr=cattr, recfmt=recfmt)


def build_connect_command(c: ConnectCommand, sgl1: bytes) -> bytes:
    """Connect SQE; sgl1 is the 16-byte descriptor for the 1024-byte Connect data."""
    buf = bytearray(SQE_SIZE)
    FABRICS_SQE_HEAD.pack_into(buf, 0, FABRICS_OPCODE, 0x40, c.cid, FabricsCommandType.CONNECT)
    buf[FABRICS_OFF_SGL1:FABRICS_OFF_SGL1 + 16] = sgl1
    CONNECT_CMD.pack_into(buf, CONNECT_CMD_OFF, c.recfmt, c.qid, c.sqsize, c.cattr, c.kato)
    return bytes(buf)


# Connect data (1024 B): HOSTID (16), CNTLID, 238 rsvd, SUBNQN (256), HOSTNQN (256), 256 rsvd.
CONNECT_DATA = struct.Struct("<16sH238x256s256s256x")
assert CONNECT_DATA.size == 1024
CONNECT_DATA_OFF_HOSTID = 0
CONNECT_DATA_OFF_CNTLID = 16
CONNECT_DATA_OFF_SUBNQN = 256
CONNECT_DATA_OFF_HOSTNQN = 512
CNTLID_DYNAMIC = 0xFFFF
CNTLID_STATIC_ANY = 0xFFFE


@dataclass(slots=True)
class ConnectData:
    hostid: bytes
    cntlid: int
    subnqn: str
    hostnqn: str


def _cstr(raw: bytes) -> str:
    """A NUL-terminated string field; undecodable bytes are kept visible, not raised."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_connect_data(data: bytes | bytearray | memoryview) -> ConnectData:
    """Raises ValueError when data is shorter than 1024 bytes (caller maps to a status)."""
    if len(data) < CONNECT_DATA.size:
        raise ValueError("Connect data must be 1024 bytes")
    hostid, cntlid, subnqn, hostnqn = CONNECT_DATA.unpack_from(data, 0)
    return ConnectData(hostid=hostid, cntlid=cntlid, subnqn=_cstr(subnqn), hostnqn=_cstr(hostnqn))


def build_connect_data(d: ConnectData) -> bytes:
    if len(d.hostid) != 16:
        raise ValueError("hostid must be 16 bytes")
    sub, host = d.subnqn.encode(), d.hostnqn.encode()
    if len(sub) > 255 or len(host) > 255:
        raise ValueError("NQNs are at most 255 bytes")
    return CONNECT_DATA.pack(d.hostid, d.cntlid, sub, host)


# Connect response DW0: CNTLID (15:0) and AUTHREQ (31:16) on success; on
# CONNECT_INVALID_PARAMETERS: IPO (offset of the bad field) and IATTR (1 = in data, 0 = in SQE).
CONNECT_RSP_SUCCESS = struct.Struct("<HH")
assert CONNECT_RSP_SUCCESS.size == 4
CONNECT_RSP_INVALID = struct.Struct("<HBx")
assert CONNECT_RSP_INVALID.size == 4


def connect_rsp_dw0_success(cntlid: int, authreq: int = 0) -> int:
    return cntlid | ((authreq & 0xFFFF) << 16)


def connect_rsp_dw0_invalid(ipo: int, in_data: bool) -> int:
    return (ipo & 0xFFFF) | (int(in_data) << 16)


# Property Get: ATTRIB (size: 0 = 4 bytes, 1 = 8 bytes) at 40, OFST at 44.
# Property Set: ATTRIB at 40, OFST at 44, VALUE (8 bytes) at 48.
PROPERTY_GET_CMD = struct.Struct("<B3xI16x")
assert PROPERTY_GET_CMD.size == 24
PROPERTY_SET_CMD = struct.Struct("<B3xIQ8x")
assert PROPERTY_SET_CMD.size == 24
PROPERTY_CMD_OFF = 40


class PropertySize(enum.IntEnum):
    FOUR_BYTES = 0
    EIGHT_BYTES = 1


def parse_property_get(sqe: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(size in bytes, offset)."""
    attrib, ofst = PROPERTY_GET_CMD.unpack_from(sqe, PROPERTY_CMD_OFF)
    return (8 if attrib & 0x7 == PropertySize.EIGHT_BYTES else 4), ofst


def parse_property_set(sqe: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(size in bytes, offset, value)."""
    attrib, ofst, value = PROPERTY_SET_CMD.unpack_from(sqe, PROPERTY_CMD_OFF)
    size = 8 if attrib & 0x7 == PropertySize.EIGHT_BYTES else 4
    return size, ofst, value if size == 8 else value & 0xFFFFFFFF


def build_property_get(cid: int, offset: int, size: int) -> bytes:
    buf = bytearray(SQE_SIZE)
    FABRICS_SQE_HEAD.pack_into(buf, 0, FABRICS_OPCODE, 0, cid, FabricsCommandType.PROPERTY_GET)
    PROPERTY_GET_CMD.pack_into(buf, PROPERTY_CMD_OFF, 1 if size == 8 else 0, offset)
    return bytes(buf)


def build_property_set(cid: int, offset: int, size: int, value: int) -> bytes:
    buf = bytearray(SQE_SIZE)
    FABRICS_SQE_HEAD.pack_into(buf, 0, FABRICS_OPCODE, 0, cid, FabricsCommandType.PROPERTY_SET)
    PROPERTY_SET_CMD.pack_into(buf, PROPERTY_CMD_OFF, 1 if size == 8 else 0, offset, value)
    return bytes(buf)


# Controller properties (register offsets) exposed over Fabrics.
class Property(enum.IntEnum):
    CAP = 0x00  # 8 bytes
    VS = 0x08
    INTMS = 0x0C
    INTMC = 0x10
    CC = 0x14
    CSTS = 0x1C
    NSSR = 0x20
    AQA = 0x24
    ASQ = 0x28
    ACQ = 0x30


PROPERTY_SIZES = {Property.CAP: 8, Property.VS: 4, Property.CC: 4, Property.CSTS: 4,
                  Property.NSSR: 4}


def make_cap(*, mqes: int, cqr: bool = True, ams: int = 0, to: int = 30, dstrd: int = 0,
             nssrs: bool = False, css: int = 0x01, bps: bool = False, mpsmin: int = 0,
             mpsmax: int = 0, cmbs: bool = False) -> int:
    """CAP: MQES 15:0 (0's based), CQR 16, AMS 18:17, TO 31:24 (500 ms), DSTRD 35:32, NSSRS 36,
    CSS 44:37, BPS 45, MPSMIN 51:48, MPSMAX 55:52, CMBS 57."""
    return (mqes & 0xFFFF) | (int(cqr) << 16) | ((ams & 0x3) << 17) | ((to & 0xFF) << 24) \
        | ((dstrd & 0xF) << 32) | (int(nssrs) << 36) | ((css & 0xFF) << 37) | (int(bps) << 45) \
        | ((mpsmin & 0xF) << 48) | ((mpsmax & 0xF) << 52) | (int(cmbs) << 57)


def cap_mqes(cap: int) -> int:
    return cap & 0xFFFF


def cap_to(cap: int) -> int:
    return (cap >> 24) & 0xFF


class Cc(enum.IntEnum):
    """CC bit positions / masks."""

    EN = 0
    CSS_SHIFT = 4
    MPS_SHIFT = 7
    AMS_SHIFT = 11
    SHN_SHIFT = 14
    IOSQES_SHIFT = 16
    IOCQES_SHIFT = 20
    CRIME = 24


class ShutdownNotification(enum.IntEnum):
    NONE = 0
    NORMAL = 1
    ABRUPT = 2


@dataclass(slots=True)
class CcFields:
    en: bool
    css: int
    mps: int
    ams: int
    shn: int
    iosqes: int
    iocqes: int


def parse_cc(cc: int) -> CcFields:
    return CcFields(en=bool(cc & 1), css=(cc >> 4) & 0x7, mps=(cc >> 7) & 0xF,
                    ams=(cc >> 11) & 0x7, shn=(cc >> 14) & 0x3, iosqes=(cc >> 16) & 0xF,
                    iocqes=(cc >> 20) & 0xF)


def make_cc(*, en: bool, css: int = 0, mps: int = 0, ams: int = 0, shn: int = 0, iosqes: int = 6,
            iocqes: int = 4) -> int:
    return int(en) | ((css & 0x7) << 4) | ((mps & 0xF) << 7) | ((ams & 0x7) << 11) \
        | ((shn & 0x3) << 14) | ((iosqes & 0xF) << 16) | ((iocqes & 0xF) << 20)


class Csts(enum.IntFlag):
    RDY = 1 << 0
    CFS = 1 << 1
    SHST_OCCURRING = 1 << 2  # SHST (3:2) = 01b
    SHST_COMPLETE = 2 << 2  # SHST (3:2) = 10b
    NSSRO = 1 << 4
    PP = 1 << 5
    ST = 1 << 6


CSTS_SHST_MASK = 0x3 << 2
