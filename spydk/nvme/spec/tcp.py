"""NVMe/TCP transport binding (TP 8000) PDU layouts.

Every PDU starts with an 8-byte common header (CH): type, flags, HLEN (header length), PDO
(offset of the data in the PDU, 0 when none) and PLEN (total PDU length including digests and
padding). A PDU is CH + PDU-specific header [+ HDGST] [+ PAD] [+ DATA] [+ DDGST].
"""
from __future__ import annotations

import enum
import struct


class PduType(enum.IntEnum):
    IC_REQ = 0x00
    IC_RESP = 0x01
    H2C_TERM_REQ = 0x02
    C2H_TERM_REQ = 0x03
    CAPSULE_CMD = 0x04
    CAPSULE_RESP = 0x05
    H2C_DATA = 0x06
    C2H_DATA = 0x07
    R2T = 0x09


class PduFlags(enum.IntFlag):
    HDGSTF = 0x01  # header digest present
    DDGSTF = 0x02  # data digest present
    LAST_PDU = 0x04  # H2CData/C2HData: last PDU of the transfer (for the R2T or the command)
    SUCCESS = 0x08  # C2HData: command completed successfully, no CapsuleResp follows


HDGSTF = 0x01
DDGSTF = 0x02
LAST_PDU = 0x04
SUCCESS = 0x08


class Fes(enum.IntEnum):
    """Fatal Error Status carried by H2CTermReq/C2HTermReq."""

    INVALID_HEADER_FIELD = 0x01
    PDU_SEQUENCE_ERROR = 0x02
    HEADER_DIGEST_ERROR = 0x03
    DATA_TRANSFER_OUT_OF_RANGE = 0x04
    DATA_TRANSFER_LIMIT_EXCEEDED = 0x05  # also R2T limit exceeded
    UNSUPPORTED_PARAMETER = 0x06


DIGEST_LEN = 4
PFV_1_0 = 0
MAX_PDA = 31  # HPDA/CPDA are 0's based multiples of 4 bytes
MIN_MAXH2CDATA = 4096
DEFAULT_PORT = 4420
DISCOVERY_PORT = 8009


class DigestOption(enum.IntFlag):
    HEADER = 0x1
    DATA = 0x2


# Common header: type, flags, hlen, pdo, plen.
CH = struct.Struct("<BBBBI")
assert CH.size == 8

# ICReq: CH, PFV, HPDA, DGST, MAXR2T (0's based), 112 reserved.
IC_REQ = struct.Struct("<BBBBIHBBI112x")
assert IC_REQ.size == 128
# ICResp: CH, PFV, CPDA, DGST, MAXH2CDATA, 112 reserved.
IC_RESP = struct.Struct("<BBBBIHBBI112x")
assert IC_RESP.size == 128
IC_HLEN = 128
IC_OFF_PFV = 8
IC_OFF_PDA = 10
IC_OFF_DGST = 11
IC_OFF_MAXR2T = 12
IC_OFF_MAXH2CDATA = 12

# TermReq (both directions): CH, FES, FEI (4 bytes at an unaligned offset), 10 reserved; the
# header of the offending PDU follows as data (up to 128 bytes).
TERM_REQ = struct.Struct("<BBBBIHI10x")
assert TERM_REQ.size == 24
TERM_REQ_HLEN = 24
TERM_REQ_MAX_DATA = 128
TERM_REQ_MAX_PLEN = TERM_REQ_HLEN + TERM_REQ_MAX_DATA
TERM_OFF_FES = 8
TERM_OFF_FEI = 10

# CapsuleCmd: CH + 64-byte SQE.
CAPSULE_CMD_HLEN = 72
CAPSULE_CMD_SQE_OFF = 8
# CapsuleResp: CH + 16-byte CQE.
CAPSULE_RESP_HLEN = 24
CAPSULE_RESP_CQE_OFF = 8

# H2CData: CH, CCCID, TTAG, DATAO, DATAL, 4 reserved.
H2C_DATA = struct.Struct("<BBBBIHHII4x")
assert H2C_DATA.size == 24
# C2HData: CH, CCCID, 2 reserved, DATAO, DATAL, 4 reserved.
C2H_DATA = struct.Struct("<BBBBIH2xII4x")
assert C2H_DATA.size == 24
DATA_HLEN = 24
DATA_OFF_CCCID = 8
DATA_OFF_TTAG = 10
DATA_OFF_DATAO = 12
DATA_OFF_DATAL = 16
# PDU-specific part alone, for decoding after the CH.
H2C_DATA_PSH = struct.Struct("<HHII")
assert H2C_DATA_PSH.size == 12
C2H_DATA_PSH = struct.Struct("<H2xII")
assert C2H_DATA_PSH.size == 12

# R2T: CH, CCCID, TTAG, R2TO, R2TL, 4 reserved.
R2T = struct.Struct("<BBBBIHHII4x")
assert R2T.size == 24
R2T_HLEN = 24
R2T_PSH = struct.Struct("<HHII")
assert R2T_PSH.size == 12

# Expected HLEN per PDU type.
HLEN_BY_TYPE: dict[int, int] = {
    PduType.IC_REQ: IC_HLEN,
    PduType.IC_RESP: IC_HLEN,
    PduType.H2C_TERM_REQ: TERM_REQ_HLEN,
    PduType.C2H_TERM_REQ: TERM_REQ_HLEN,
    PduType.CAPSULE_CMD: CAPSULE_CMD_HLEN,
    PduType.CAPSULE_RESP: CAPSULE_RESP_HLEN,
    PduType.H2C_DATA: DATA_HLEN,
    PduType.C2H_DATA: DATA_HLEN,
    PduType.R2T: R2T_HLEN,
}

# PDU types that may carry a header digest (IC and TermReq PDUs never do).
DIGESTIBLE_TYPES = frozenset({PduType.CAPSULE_CMD, PduType.CAPSULE_RESP, PduType.H2C_DATA,
                              PduType.C2H_DATA, PduType.R2T})
# PDU types that may carry data (and thus a data digest). TermReq data is never digested.
DATA_TYPES = frozenset({PduType.CAPSULE_CMD, PduType.H2C_DATA, PduType.C2H_DATA})


def pda_alignment(pda: int) -> int:
    """HPDA/CPDA value -> alignment in bytes ((pda + 1) * 4; 0 means no requirement)."""
    return (pda + 1) * 4 if pda else 0


def data_offset(hlen: int, hdgst: bool, pda: int) -> int:
    """PDO for a data-carrying PDU: header (+ digest), rounded up to the receiver's alignment."""
    off = hlen + (DIGEST_LEN if hdgst else 0)
    align = pda_alignment(pda)
    if align:
        off = -(-off // align) * align
    return off
