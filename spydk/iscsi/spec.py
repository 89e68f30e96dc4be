"""iSCSI wire format (RFC 7143 section 11): Basic Header Segment layouts, opcodes, flags, codes.

Every PDU starts with a 48-byte Basic Header Segment (BHS).  Bytes 0..7 and 16..19 are
common to all opcodes (opcode, flags, TotalAHSLength, DataSegmentLength, ITT); the rest
is opcode specific.  Each layout below is one precompiled ``struct.Struct`` covering the
whole BHS so a header is parsed or built with a single (un)pack call.  The 24-bit
DataSegmentLength is carried as one byte TotalAHSLength + 3 bytes, packed as
``(ahs_len << 24) | data_len`` into a 32-bit word.
"""
from __future__ import annotations

import enum
import struct

BHS_SIZE = 48
DIGEST_SIZE = 4
ISCSI_VERSION = 0x00
RESERVED_TAG = 0xFFFFFFFF  # ITT/TTT value meaning "none"
MAX_DATA_SEGMENT = (1 << 24) - 1


class Opcode(enum.IntEnum):
    # initiator -> target
    NOP_OUT = 0x00
    SCSI_CMD = 0x01
    TASK_MGMT_REQ = 0x02
    LOGIN_REQ = 0x03
    TEXT_REQ = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQ = 0x06
    SNACK = 0x10
    # target -> initiator
    NOP_IN = 0x20
    SCSI_RSP = 0x21
    TASK_MGMT_RSP = 0x22
    LOGIN_RSP = 0x23
    TEXT_RSP = 0x24
    DATA_IN = 0x25
    LOGOUT_RSP = 0x26
    R2T = 0x31
    ASYNC_MSG = 0x32
    REJECT = 0x3F


INITIATOR_OPCODES = frozenset(
    {Opcode.NOP_OUT, Opcode.SCSI_CMD, Opcode.TASK_MGMT_REQ, Opcode.LOGIN_REQ, Opcode.TEXT_REQ,
     Opcode.DATA_OUT, Opcode.LOGOUT_REQ, Opcode.SNACK}
)

OPCODE_MASK = 0x3F
IMMEDIATE = 0x40  # byte 0: I bit (immediate delivery)

# Byte 1 flags.
FLAG_FINAL = 0x80
# SCSI Command
CMD_READ = 0x40
CMD_WRITE = 0x20
CMD_ATTR_MASK = 0x07
# SCSI Response / Data-In residuals
RSP_BIDI_OVERFLOW = 0x10
RSP_BIDI_UNDERFLOW = 0x08
RSP_OVERFLOW = 0x04
RSP_UNDERFLOW = 0x02
DATAIN_ACK = 0x40
DATAIN_STATUS = 0x01
# Text / Login
TEXT_CONTINUE = 0x40
LOGIN_TRANSIT = 0x80
LOGIN_CONTINUE = 0x40
LOGIN_CSG_MASK = 0x0C
LOGIN_CSG_SHIFT = 2
LOGIN_NSG_MASK = 0x03
# Task management / Logout / SNACK: low 7 or 4 bits of byte 1
TMF_FUNCTION_MASK = 0x7F
LOGOUT_REASON_MASK = 0x7F
SNACK_TYPE_MASK = 0x0F


class TaskAttr(enum.IntEnum):
    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class Stage(enum.IntEnum):
    """Login stages (CSG/NSG)."""

    SECURITY = 0
    OPERATIONAL = 1
    FULL_FEATURE = 3


class ScsiResponse(enum.IntEnum):
    COMPLETED = 0x00
    TARGET_FAILURE = 0x01


class LoginStatusClass(enum.IntEnum):
    SUCCESS = 0x00
    REDIRECT = 0x01
    INITIATOR_ERROR = 0x02
    TARGET_ERROR = 0x03


class LoginStatus(enum.IntEnum):
    """(class << 8) | detail."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTH_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302

    @property
    def status_class(self) -> int:
        return self.value >> 8

    @property
    def detail(self) -> int:
        return self.value & 0xFF


class RejectReason(enum.IntEnum):
    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OP_REJECT = 0x0A
    NEGOTIATION_RESET = 0x0B  # deprecated
    WAITING_FOR_LOGOUT = 0x0C


class LogoutReason(enum.IntEnum):
    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_FOR_RECOVERY = 2


class LogoutResponse(enum.IntEnum):
    SUCCESS = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class AsyncEvent(enum.IntEnum):
    SCSI_EVENT = 0
    LOGOUT_REQUEST = 1
    CONNECTION_DROP = 2
    SESSION_DROP = 3
    NEGOTIATION_REQUEST = 4
    TASK_TERMINATION = 5
    VENDOR = 255


class SnackType(enum.IntEnum):
    DATA_R2T = 0
    STATUS = 1
    DATA_ACK = 2
    RDATA = 3


# ---------------------------------------------------------------------------------------
# Layouts.  Field order matches the wire; "x" runs are reserved bytes.
# Common prefix: B opcode(+I), B flags, 2 opcode-specific bytes, I (ahs_words<<24 | dlen).

# Common view used by the PDU reader: opcode, flags, b2, b3, ahs/dlen word, 8 bytes LUN or
# opcode specific, ITT, then 28 opcode-specific bytes.
BHS_COMMON = struct.Struct(">BBBBI8sI28x")

# NOP-Out (0x00): LUN, ITT, TTT, CmdSN, ExpStatSN
NOP_OUT = struct.Struct(">BBxxIQIIII16x")
# NOP-In (0x20): LUN, ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN
NOP_IN = struct.Struct(">BBxxIQIIIII12x")
# SCSI Command (0x01): flags, LUN, ITT, EDTL, CmdSN, ExpStatSN, CDB[16]
SCSI_CMD = struct.Struct(">BBxxIQIIII16s")
# SCSI Response (0x21): flags, response, status, ITT, SNACK tag, StatSN, ExpCmdSN, MaxCmdSN,
# ExpDataSN, bidi residual, residual
SCSI_RSP = struct.Struct(">BBBBI8xIIIIIIII")
# Task Management Request (0x02): function, LUN, ITT, RTT, CmdSN, ExpStatSN, RefCmdSN, ExpDataSN
TASK_MGMT_REQ = struct.Struct(">BBxxIQIIIIII8x")
# Task Management Response (0x22): response, ITT, StatSN, ExpCmdSN, MaxCmdSN
TASK_MGMT_RSP = struct.Struct(">BBBxI8xI4xIII12x")
# Login Request (0x03): flags, ver-max, ver-min, ISID[6], TSIH, ITT, CID, CmdSN, ExpStatSN
LOGIN_REQ = struct.Struct(">BBBBI6sHIH2xII16x")
# Login Response (0x23): flags, ver-max, ver-active, ISID, TSIH, ITT, StatSN, ExpCmdSN,
# MaxCmdSN, status class, status detail
LOGIN_RSP = struct.Struct(">BBBBI6sHI4xIIIBB10x")
# Text Request (0x04): flags, LUN, ITT, TTT, CmdSN, ExpStatSN
TEXT_REQ = struct.Struct(">BBxxIQIIII16x")
# Text Response (0x24): flags, LUN, ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN
TEXT_RSP = struct.Struct(">BBxxIQIIIII12x")
# SCSI Data-Out (0x05): flags, LUN, ITT, TTT, ExpStatSN, DataSN, BufferOffset
DATA_OUT = struct.Struct(">BBxxIQII4xI4xII4x")
# SCSI Data-In (0x25): flags, status, LUN, ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN, DataSN,
# BufferOffset, residual
DATA_IN = struct.Struct(">BBxBIQIIIIIIII")
# Logout Request (0x06): reason, ITT, CID, CmdSN, ExpStatSN
LOGOUT_REQ = struct.Struct(">BBxxI8xIH2xII16x")
# Logout Response (0x26): response, ITT, StatSN, ExpCmdSN, MaxCmdSN, Time2Wait, Time2Retain
LOGOUT_RSP = struct.Struct(">BBBxI8xI4xIII4xHH4x")
# R2T (0x31): LUN, ITT, TTT, StatSN, ExpCmdSN, MaxCmdSN, R2TSN, BufferOffset, DesiredLength
R2T = struct.Struct(">BBxxIQIIIIIIII")
# Async Message (0x32): LUN, ITT(=ffffffff), StatSN, ExpCmdSN, MaxCmdSN, event, vcode,
# param1, param2, param3
ASYNC_MSG = struct.Struct(">BBxxIQI4xIIIBBHHH4x")
# Reject (0x3f): reason, ITT(=ffffffff), StatSN, ExpCmdSN, MaxCmdSN, DataSN/R2TSN
REJECT = struct.Struct(">BBBxI8xI4xIIII8x")
# SNACK Request (0x10): type, LUN, ITT, TTT, ExpStatSN, BegRun, RunLength
SNACK = struct.Struct(">BBxxIQII4xI4xII4x")

for _s in (BHS_COMMON, NOP_OUT, NOP_IN, SCSI_CMD, SCSI_RSP, TASK_MGMT_REQ, TASK_MGMT_RSP, LOGIN_REQ,
           LOGIN_RSP, TEXT_REQ, TEXT_RSP, DATA_OUT, DATA_IN, LOGOUT_REQ, LOGOUT_RSP, R2T, ASYNC_MSG,
           REJECT, SNACK):
    assert _s.size == BHS_SIZE, _s.format
del _s

# Single fields read on the hot path without unpacking the whole header.
U32 = struct.Struct(">I")
U16 = struct.Struct(">H")
assert U32.size == 4 and U16.size == 2

OFF_AHS_DLEN = 4
OFF_LUN = 8
OFF_ITT = 16
OFF_CMDSN = 24     # CmdSN in initiator PDUs that carry one
OFF_EXPSTATSN = 28


def lengths_word(ahs_len: int, data_len: int) -> int:
    """Pack TotalAHSLength (bytes, multiple of 4) and DataSegmentLength into one word."""
    return ((ahs_len >> 2) << 24) | data_len


def pad_len(n: int) -> int:
    return -n & 3


# Single-level LUN addressing (SAM): the 8-byte LUN field encodes LUN < 256 as peripheral
# (0x00nn), larger ones as flat space (0x40nn | hi bits).
def encode_lun(lun: int) -> int:
    if lun < 256:
        return lun << 48
    return ((0x4000 | (lun & 0x3FFF)) << 48)


def decode_lun(raw: int) -> int:
    top = raw >> 48
    if top >> 14 == 1:  # flat space addressing
        return top & 0x3FFF
    return top & 0xFF  # peripheral device addressing (bus 0)
