"""SPC-4 / SBC-3 wire constants, CDB layouts and sense data builders.

Everything here is pure data: opcodes, sense keys, additional sense codes, VPD and mode page
codes, and precompiled ``struct.Struct`` layouts for the CDBs the logical unit decodes.
"""
from __future__ import annotations

import enum
import struct
from functools import lru_cache


class Op(enum.IntEnum):
    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    WRITE_AND_VERIFY_10 = 0x2E
    VERIFY_10 = 0x2F
    PRE_FETCH_10 = 0x34
    SYNCHRONIZE_CACHE_10 = 0x35
    WRITE_SAME_10 = 0x41
    UNMAP = 0x42
    SANITIZE = 0x48
    LOG_SENSE = 0x4D
    MODE_SELECT_10 = 0x55
    RESERVE_10 = 0x56
    RELEASE_10 = 0x57
    MODE_SENSE_10 = 0x5A
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    READ_16 = 0x88
    COMPARE_AND_WRITE = 0x89
    WRITE_16 = 0x8A
    ORWRITE_16 = 0x8B
    WRITE_AND_VERIFY_16 = 0x8E
    VERIFY_16 = 0x8F
    PRE_FETCH_16 = 0x90
    SYNCHRONIZE_CACHE_16 = 0x91
    WRITE_SAME_16 = 0x93
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3
    READ_12 = 0xA8
    WRITE_12 = 0xAA
    WRITE_AND_VERIFY_12 = 0xAE
    VERIFY_12 = 0xAF


class SaIn16(enum.IntEnum):
    """SERVICE ACTION IN(16) service actions."""

    READ_CAPACITY_16 = 0x10
    GET_LBA_STATUS = 0x12


class MaintenanceIn(enum.IntEnum):
    REPORT_TARGET_PORT_GROUPS = 0x0A
    REPORT_SUPPORTED_OPCODES = 0x0C
    REPORT_SUPPORTED_TMFS = 0x0D


class PrIn(enum.IntEnum):
    READ_KEYS = 0
    READ_RESERVATION = 1
    REPORT_CAPABILITIES = 2
    READ_FULL_STATUS = 3


class PrOut(enum.IntEnum):
    REGISTER = 0
    RESERVE = 1
    RELEASE = 2
    CLEAR = 3
    PREEMPT = 4
    PREEMPT_AND_ABORT = 5
    REGISTER_AND_IGNORE_EXISTING_KEY = 6
    REGISTER_AND_MOVE = 7
    REPLACE_LOST_RESERVATION = 8


class PrType(enum.IntEnum):
    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 8


class SenseKey(enum.IntEnum):
    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    ABORTED_COMMAND = 0xB
    MISCOMPARE = 0xE


# Additional sense code / qualifier pairs, as (ASC << 8) | ASCQ.
class Asc(enum.IntEnum):
    NO_ADDITIONAL_SENSE = 0x0000
    LUN_NOT_READY_INIT_REQUIRED = 0x0402
    WRITE_ERROR = 0x0C00
    UNRECOVERED_READ_ERROR = 0x1100
    INVALID_FIELD_IN_INFORMATION_UNIT = 0x0E03
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    MISCOMPARE_DURING_VERIFY = 0x1D00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    LBA_OUT_OF_RANGE = 0x2100
    INVALID_FIELD_IN_CDB = 0x2400
    LOGICAL_UNIT_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION = 0x2604
    WRITE_PROTECTED = 0x2700
    POWER_ON_RESET_OCCURRED = 0x2900
    MODE_PARAMETERS_CHANGED = 0x2A01
    RESERVATIONS_PREEMPTED = 0x2A03
    RESERVATIONS_RELEASED = 0x2A04
    REGISTRATIONS_PREEMPTED = 0x2A05
    CAPACITY_DATA_HAS_CHANGED = 0x2A09
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = 0x2F00
    MEDIUM_NOT_PRESENT = 0x3A00
    SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900
    INTERNAL_TARGET_FAILURE = 0x4400
    MEDIUM_REMOVAL_PREVENTED = 0x5302
    REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E


class Vpd(enum.IntEnum):
    SUPPORTED_PAGES = 0x00
    UNIT_SERIAL_NUMBER = 0x80
    DEVICE_IDENTIFICATION = 0x83
    EXTENDED_INQUIRY = 0x86
    BLOCK_LIMITS = 0xB0
    BLOCK_DEVICE_CHARACTERISTICS = 0xB1
    LOGICAL_BLOCK_PROVISIONING = 0xB2


class ModePage(enum.IntEnum):
    READ_WRITE_ERROR_RECOVERY = 0x01
    CACHING = 0x08
    CONTROL = 0x0A
    INFORMATIONAL_EXCEPTIONS = 0x1C
    ALL = 0x3F


class ModePc(enum.IntEnum):
    """MODE SENSE page control."""

    CURRENT = 0
    CHANGEABLE = 1
    DEFAULT = 2
    SAVED = 3


# Designator types / code sets / associations for the Device Identification VPD page.
CODE_SET_BINARY = 1
CODE_SET_ASCII = 2
CODE_SET_UTF8 = 3
ASSOC_LU = 0
ASSOC_TARGET_PORT = 1
ASSOC_TARGET_DEVICE = 2
DESIG_T10_VENDOR = 1
DESIG_NAA = 3
DESIG_RELATIVE_TARGET_PORT = 4
DESIG_SCSI_NAME = 8
PROTOCOL_ISCSI = 5

# Version descriptors (SPC-4 annex) claimed in standard INQUIRY data.
VERSION_SAM5 = 0x00A0
VERSION_ISCSI = 0x0960
VERSION_SPC4 = 0x0460
VERSION_SBC3 = 0x04C0

PERIPHERAL_DIRECT_ACCESS = 0x00
PERIPHERAL_QUALIFIER_NO_LUN = 0x7F  # qualifier 011b, device type 1Fh

# Largest UNMAP parameter list: a 16-bit length holds an 8-byte header + 4095 descriptors.
UNMAP_MAX_DESCRIPTORS = (0xFFFF - 8) // 16
assert UNMAP_MAX_DESCRIPTORS == 4095


# --- CDB layouts (only the fields the logical unit reads; x = ignored/reserved here) ---

# READ/WRITE(6): opcode, 21-bit LBA in bytes 1..3, transfer length (0 = 256), control.
CDB6_RW = struct.Struct(">I B x")  # 4 bytes opcode+LBA, transfer length
assert CDB6_RW.size == 6
# 10-byte: opcode, flags, LBA(4), group, length(2), control.
CDB10 = struct.Struct(">x B I x H x")
assert CDB10.size == 10
# 12-byte: opcode, flags, LBA(4), length(4), group, control.
CDB12 = struct.Struct(">x B I I x x")
assert CDB12.size == 12
# 16-byte: opcode, flags, LBA(8), length(4), group, control.
CDB16 = struct.Struct(">x B Q I x x")
assert CDB16.size == 16
# COMPARE AND WRITE: opcode, flags, LBA(8), reserved(3), number of blocks, group, control.
CDB_CAW = struct.Struct(">x B Q 3x B x x")
assert CDB_CAW.size == 16
# SYNCHRONIZE CACHE(16)/PRE-FETCH(16) share CDB16; (10) versions share CDB10.
# INQUIRY: opcode, flags (EVPD), page code, allocation length(2), control.
CDB_INQUIRY = struct.Struct(">x B B H x")
assert CDB_INQUIRY.size == 6
# MODE SENSE(6): opcode, flags (DBD), PC|page, subpage, allocation length, control.
CDB_MODE_SENSE6 = struct.Struct(">x B B B B x")
assert CDB_MODE_SENSE6.size == 6
# MODE SENSE(10): opcode, flags (LLBAA, DBD), PC|page, subpage, reserved(3), alloc(2), control.
CDB_MODE_SENSE10 = struct.Struct(">x B B B 3x H x")
assert CDB_MODE_SENSE10.size == 10
# MODE SELECT(6): opcode, flags (PF, SP), reserved(2), parameter list length, control.
CDB_MODE_SELECT6 = struct.Struct(">x B 2x B x")
assert CDB_MODE_SELECT6.size == 6
# MODE SELECT(10): opcode, flags, reserved(5), parameter list length(2), control.
CDB_MODE_SELECT10 = struct.Struct(">x B 5x H x")
assert CDB_MODE_SELECT10.size == 10
# SERVICE ACTION IN(16): opcode, SA, LBA(8), allocation length(4), flags, control.
CDB_SAI16 = struct.Struct(">x B Q I B x")
assert CDB_SAI16.size == 16
# MAINTENANCE IN: opcode, SA, options, requested opcode, requested SA(2), alloc(4), r, control.
CDB_MAINT_IN = struct.Struct(">x B B B H I x x")
assert CDB_MAINT_IN.size == 12
# REPORT LUNS: opcode, r, select report, r(3), allocation length(4), r, control.
CDB_REPORT_LUNS = struct.Struct(">2x B 3x I x x")
assert CDB_REPORT_LUNS.size == 12
# PERSISTENT RESERVE IN: opcode, SA, r(5), allocation length(2), control.
CDB_PRIN = struct.Struct(">x B 5x H x")
assert CDB_PRIN.size == 10
# PERSISTENT RESERVE OUT: opcode, SA, scope|type, r(2), parameter list length(4), control.
CDB_PROUT = struct.Struct(">x B B 2x I x")
assert CDB_PROUT.size == 10
# UNMAP: opcode, ANCHOR, r(4), group, parameter list length(2), control.
CDB_UNMAP = struct.Struct(">x B 4x x H x")
assert CDB_UNMAP.size == 10
# READ CAPACITY(10): opcode, r, LBA(4), r(2), PMI, control.
CDB_READ_CAPACITY10 = struct.Struct(">2x I 2x B x")
assert CDB_READ_CAPACITY10.size == 10

# --- Parameter data layouts ---

PROUT_PARAMS = struct.Struct(">Q Q 4x B x 2x")  # key, service action key, flags
assert PROUT_PARAMS.size == 24
UNMAP_HEADER = struct.Struct(">H H 4x")  # unmap data length, block descriptor data length
assert UNMAP_HEADER.size == 8
UNMAP_DESCRIPTOR = struct.Struct(">Q I 4x")
assert UNMAP_DESCRIPTOR.size == 16
READ_CAPACITY10_DATA = struct.Struct(">I I")
assert READ_CAPACITY10_DATA.size == 8
# last LBA, block length, P_TYPE/PROT_EN, exponents, LBPME/LBPRZ/lowest aligned(2), reserved.
READ_CAPACITY16_DATA = struct.Struct(">Q I B B H 16x")
assert READ_CAPACITY16_DATA.size == 32
LBA_STATUS_DESCRIPTOR = struct.Struct(">Q I B 3x")
assert LBA_STATUS_DESCRIPTOR.size == 16
MODE_HEADER6 = struct.Struct(">B B B B")  # data length, medium type, device specific, bd length
assert MODE_HEADER6.size == 4
MODE_HEADER10 = struct.Struct(">H B B B x H")  # length, medium, dev-specific, LONGLBA, bd length
assert MODE_HEADER10.size == 8
BLOCK_DESCRIPTOR_SHORT = struct.Struct(">I x 3s")  # number of blocks, block length (24-bit)
assert BLOCK_DESCRIPTOR_SHORT.size == 8
BLOCK_DESCRIPTOR_LONG = struct.Struct(">Q 4x I")
assert BLOCK_DESCRIPTOR_LONG.size == 16
# Standard INQUIRY data: 96 bytes (36 mandatory + version descriptors).
INQUIRY_STD = struct.Struct(">B B B B B B B B 8s 16s 4s 20s 2x 16s 22x")
assert INQUIRY_STD.size == 96
# Block Limits VPD page (B0h): header + 60 bytes.
# devtype, page, length, WSNZ, max CAW, opt granularity, max xfer, opt xfer, max prefetch,
# max unmap LBAs, max unmap descriptors, opt unmap granularity, UGAVALID|alignment, max WS.
VPD_BLOCK_LIMITS = struct.Struct(">B B H B B H I I I I I I I Q 20x")
assert VPD_BLOCK_LIMITS.size == 64
VPD_HEADER = struct.Struct(">B B H")  # device type, page code, page length
assert VPD_HEADER.size == 4
DESIGNATOR_HEADER = struct.Struct(">B B x B")
assert DESIGNATOR_HEADER.size == 4

# Fixed-format sense: response code, obsolete, key, information(4), additional length,
# command-specific(4), ASC, ASCQ, FRU, sense-key-specific(3).
SENSE_FIXED = struct.Struct(">B x B I B 4x B B x 3s")
assert SENSE_FIXED.size == 18
SENSE_DESC_HEADER = struct.Struct(">B B B B 3x B")
assert SENSE_DESC_HEADER.size == 8
SENSE_DESC_INFORMATION = struct.Struct(">B B B x Q")  # type 0, length 0x0A, VALID, info
assert SENSE_DESC_INFORMATION.size == 12
SENSE_DESC_SKS = struct.Struct(">B B 2x 3s x")  # type 2, length 6, sense-key-specific
assert SENSE_DESC_SKS.size == 8

SENSE_FIXED_CURRENT = 0x70
SENSE_DESC_CURRENT = 0x72
SENSE_VALID = 0x80


def sense_key_specific_field(field: int, bit: int = -1, in_cdb: bool = True) -> bytes:
    """Sense-key specific bytes pointing at the offending byte (and bit) of a CDB or list."""
    b0 = 0x80 | (0x40 if in_cdb else 0)
    if 0 <= bit <= 7:
        b0 |= 0x08 | bit
    return bytes((b0, (field >> 8) & 0xFF, field & 0xFF))


@lru_cache(maxsize=256)
def _sense_plain(key: int, asc_ascq: int, descriptor: bool) -> bytes:
    return build_sense(key, asc_ascq, descriptor=descriptor)


def sense(key: int, asc_ascq: int, *, descriptor: bool = False, info: int | None = None,
          sks: bytes | None = None) -> bytes:
    """Sense data; the common no-information form is cached so error paths do not rebuild it."""
    if info is None and sks is None:
        return _sense_plain(key, asc_ascq, descriptor)
    return build_sense(key, asc_ascq, descriptor=descriptor, info=info, sks=sks)


def build_sense(key: int, asc_ascq: int, *, descriptor: bool = False, info: int | None = None,
                sks: bytes | None = None) -> bytes:
    asc, ascq = asc_ascq >> 8, asc_ascq & 0xFF
    if not descriptor:
        code = SENSE_FIXED_CURRENT
        if info is not None:
            code |= SENSE_VALID
        return SENSE_FIXED.pack(code, key, (info or 0) & 0xFFFFFFFF, 10, asc, ascq,
                                sks or b"\x00\x00\x00")
    body = b""
    if info is not None:
        body += SENSE_DESC_INFORMATION.pack(0x00, 0x0A, SENSE_VALID, info & 0xFFFFFFFFFFFFFFFF)
    if sks is not None:
        body += SENSE_DESC_SKS.pack(0x02, 0x06, sks)
    return SENSE_DESC_HEADER.pack(SENSE_DESC_CURRENT, key, asc, ascq, len(body)) + body


def parse_sense(data: bytes) -> tuple[int, int, int | None]:
    """(sense key, ASC<<8|ASCQ, information or None) from fixed or descriptor sense; for tests
    and transports that need to inspect what the logical unit returned."""
    if len(data) < 8:
        raise ValueError("sense data too short")
    code = data[0] & 0x7F
    if code in (0x70, 0x71):
        if len(data) < 14:
            raise ValueError("fixed sense data too short")
        info = int.from_bytes(data[3:7], "big") if data[0] & SENSE_VALID else None
        return data[2] & 0x0F, (data[12] << 8) | data[13], info
    if code in (0x72, 0x73):
        info = None
        pos, end = 8, 8 + data[7]
        while pos + 2 <= min(end, len(data)):
            dtype, dlen = data[pos], data[pos + 1]
            if dtype == 0 and dlen >= 0x0A and pos + 12 <= len(data):
                info = int.from_bytes(data[pos + 4:pos + 12], "big")
            pos += 2 + dlen
        return data[1] & 0x0F, (data[2] << 8) | data[3], info
    raise ValueError(f"unknown sense response code {code:#x}")


def cdb_length(opcode: int) -> int:
    """CDB length implied by the opcode's group code (0 for reserved/vendor groups)."""
    return (6, 10, 10, 0, 16, 12, 0, 0)[opcode >> 5]
