"""NVMe base specification structures: SQE/CQE, opcodes, status codes, Identify and log pages.

Layouts follow the NVM Express Base Specification 2.0 (little-endian throughout). Every
struct is precompiled and its size asserted; builders are pure functions returning bytes.
"""
from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Submission and completion queue entries
# --------------------------------------------------------------------------------------------

# opcode, flags (FUSE 1:0, PSDT 7:6), cid, nsid, cdw2, cdw3, mptr, dptr1, dptr2, cdw10..cdw15
SQE = struct.Struct("<BBHIIIQQQIIIIII")
assert SQE.size == 64
SQE_SIZE = 64

SQE_OFF_OPCODE = 0
SQE_OFF_FLAGS = 1
SQE_OFF_CID = 2
SQE_OFF_NSID = 4
SQE_OFF_MPTR = 16
SQE_OFF_DPTR = 24
SQE_OFF_CDW10 = 40

# Small accessors used on the hot path: unpack_from on the SQE memoryview, no full decode.
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
SQE_HEAD = struct.Struct("<BBHI")  # opcode, flags, cid, nsid: one unpack on a hot path
assert SQE_HEAD.size == 8
_CDW10_15 = struct.Struct("<6I")
assert _CDW10_15.size == 24


def sqe_opcode(sqe: bytes | bytearray | memoryview) -> int:
    return sqe[SQE_OFF_OPCODE]


def sqe_fuse(sqe: bytes | bytearray | memoryview) -> int:
    return sqe[SQE_OFF_FLAGS] & 0x3


def sqe_psdt(sqe: bytes | bytearray | memoryview) -> int:
    return (sqe[SQE_OFF_FLAGS] >> 6) & 0x3


def sqe_cid(sqe: bytes | bytearray | memoryview) -> int:
    return _U16.unpack_from(sqe, SQE_OFF_CID)[0]


def sqe_nsid(sqe: bytes | bytearray | memoryview) -> int:
    return _U32.unpack_from(sqe, SQE_OFF_NSID)[0]


def sqe_header(sqe: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """(opcode, flags, cid, nsid) in one unpack."""
    return SQE_HEAD.unpack_from(sqe, 0)


def sqe_cdw(sqe: bytes | memoryview, n: int) -> int:
    """Command dword n (0..15)."""
    return _U32.unpack_from(sqe, 4 * n)[0]


def sqe_cdw10_15(sqe: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int]:
    return _CDW10_15.unpack_from(sqe, SQE_OFF_CDW10)  # type: ignore[return-value]


def sqe_prp(sqe: bytes | bytearray | memoryview) -> tuple[int, int]:
    return _PRP.unpack_from(sqe, SQE_OFF_DPTR)  # type: ignore[return-value]


_PRP = struct.Struct("<QQ")
assert _PRP.size == 16


def build_sqe(opcode: int, cid: int, nsid: int = 0, *, fuse: int = 0, psdt: int = 0, cdw2: int = 0,
              cdw3: int = 0, mptr: int = 0, dptr: bytes = b"", cdw10: int = 0, cdw11: int = 0,
              cdw12: int = 0, cdw13: int = 0, cdw14: int = 0, cdw15: int = 0) -> bytes:
    """A 64-byte SQE; dptr is 16 raw bytes (PRP pair or SGL1 descriptor) or empty for zero."""
    out = bytearray(SQE.pack(opcode, (psdt << 6) | fuse, cid, nsid, cdw2, cdw3, mptr, 0, 0,
                             cdw10, cdw11, cdw12, cdw13, cdw14, cdw15))
    if dptr:
        if len(dptr) != 16:
            raise ValueError("dptr must be 16 bytes")
        out[SQE_OFF_DPTR:SQE_OFF_DPTR + 16] = dptr
    return bytes(out)


# SGL descriptor (16 B): address, length, 3 reserved, type (7:4) / subtype (3:0).
SGL_DESC = struct.Struct("<QI3xB")
assert SGL_DESC.size == 16


class SglType(enum.IntEnum):
    DATA_BLOCK = 0x0
    BIT_BUCKET = 0x1
    SEGMENT = 0x2
    LAST_SEGMENT = 0x3
    KEYED_DATA_BLOCK = 0x4
    TRANSPORT_DATA_BLOCK = 0x5


class SglSubtype(enum.IntEnum):
    ADDRESS = 0x0
    OFFSET = 0x1
    TRANSPORT = 0xA


class Psdt(enum.IntEnum):
    PRP = 0
    SGL_MPTR_CONTIG = 1
    SGL_MPTR_SGL = 2


def build_sgl(address: int, length: int, sgl_type: int, subtype: int) -> bytes:
    return SGL_DESC.pack(address, length, (sgl_type << 4) | subtype)


def sqe_sgl1(sqe: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """(address, length, type, subtype) of SGL1 in DPTR."""
    addr, length, ts = SGL_DESC.unpack_from(sqe, SQE_OFF_DPTR)
    return addr, length, ts >> 4, ts & 0xF


# dw0, dw1, sqhd, sqid, cid, status (phase bit 0, SC 8:1, SCT 11:9, CRD 13:12, M 14, DNR 15)
CQE = struct.Struct("<IIHHHH")
assert CQE.size == 16
CQE_SIZE = 16
CQE_OFF_CID = 12
CQE_OFF_STATUS = 14


class StatusCodeType(enum.IntEnum):
    GENERIC = 0x0
    COMMAND_SPECIFIC = 0x1
    MEDIA_ERROR = 0x2
    PATH = 0x3
    VENDOR_SPECIFIC = 0x7


def make_status(sc: int, sct: int = 0, *, dnr: bool = False, more: bool = False, crd: int = 0,
                phase: int = 0) -> int:
    """The 16-bit status field (including the phase tag bit)."""
    return (phase & 1) | ((sc & 0xFF) << 1) | ((sct & 0x7) << 9) | ((crd & 0x3) << 12) \
        | (int(more) << 14) | (int(dnr) << 15)


def status_sc(status: int) -> int:
    return (status >> 1) & 0xFF


def status_sct(status: int) -> int:
    return (status >> 9) & 0x7


def status_dnr(status: int) -> bool:
    return bool(status >> 15)


def status_phase(status: int) -> int:
    return status & 1


def build_cqe(cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0, sqhd: int = 0,
              sqid: int = 0) -> bytes:
    return CQE.pack(dw0, dw1, sqhd, sqid, cid, status)


def pack_cqe_into(buf: bytearray | memoryview, offset: int, cid: int, status: int = 0, dw0: int = 0,
                  dw1: int = 0, sqhd: int = 0, sqid: int = 0) -> None:
    CQE.pack_into(buf, offset, dw0, dw1, sqhd, sqid, cid, status)


def cqe_cid(cqe: bytes | bytearray | memoryview) -> int:
    return _U16.unpack_from(cqe, CQE_OFF_CID)[0]


def cqe_status(cqe: bytes | bytearray | memoryview) -> int:
    return _U16.unpack_from(cqe, CQE_OFF_STATUS)[0]


# --------------------------------------------------------------------------------------------
# Opcodes
# --------------------------------------------------------------------------------------------


class AdminOpcode(enum.IntEnum):
    DELETE_IO_SQ = 0x00
    CREATE_IO_SQ = 0x01
    GET_LOG_PAGE = 0x02
    DELETE_IO_CQ = 0x04
    CREATE_IO_CQ = 0x05
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    NS_MANAGEMENT = 0x0D
    FIRMWARE_COMMIT = 0x10
    FIRMWARE_IMAGE_DOWNLOAD = 0x11
    DEVICE_SELF_TEST = 0x14
    NS_ATTACHMENT = 0x15
    KEEP_ALIVE = 0x18
    DIRECTIVE_SEND = 0x19
    DIRECTIVE_RECEIVE = 0x1A
    VIRTUALIZATION_MANAGEMENT = 0x1C
    NVME_MI_SEND = 0x1D
    NVME_MI_RECEIVE = 0x1E
    CAPACITY_MANAGEMENT = 0x20
    DOORBELL_BUFFER_CONFIG = 0x7C
    FABRICS = 0x7F
    FORMAT_NVM = 0x80
    SECURITY_SEND = 0x81
    SECURITY_RECEIVE = 0x82
    SANITIZE = 0x84
    GET_LBA_STATUS = 0x86


class NvmOpcode(enum.IntEnum):
    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_UNCORRECTABLE = 0x04
    COMPARE = 0x05
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09
    VERIFY = 0x0C
    RESERVATION_REGISTER = 0x0D
    RESERVATION_REPORT = 0x0E
    RESERVATION_ACQUIRE = 0x11
    RESERVATION_RELEASE = 0x15
    COPY = 0x19
    FABRICS = 0x7F


FABRICS_OPCODE = 0x7F


class DataTransfer(enum.IntEnum):
    """Opcode bits 1:0 (and fabrics fctype bits 1:0): direction of the data transfer."""

    NONE = 0
    HOST_TO_CONTROLLER = 1
    CONTROLLER_TO_HOST = 2
    BIDIRECTIONAL = 3


def sqe_data_transfer(sqe: bytes | bytearray | memoryview) -> int:
    """Direction of a command's data; fabrics commands encode it in FCTYPE (byte 4)."""
    opc = sqe[0]
    if opc == FABRICS_OPCODE:
        return sqe[4] & 0x3
    return opc & 0x3


# --------------------------------------------------------------------------------------------
# Status codes
# --------------------------------------------------------------------------------------------


class GenericStatus(enum.IntEnum):
    SUCCESS = 0x00
    INVALID_OPCODE = 0x01
    INVALID_FIELD = 0x02
    COMMAND_ID_CONFLICT = 0x03
    DATA_TRANSFER_ERROR = 0x04
    ABORTED_POWER_LOSS = 0x05
    INTERNAL_DEVICE_ERROR = 0x06
    ABORTED_BY_REQUEST = 0x07
    ABORTED_SQ_DELETION = 0x08
    ABORTED_FAILED_FUSED = 0x09
    ABORTED_MISSING_FUSED = 0x0A
    INVALID_NAMESPACE_OR_FORMAT = 0x0B
    COMMAND_SEQUENCE_ERROR = 0x0C
    INVALID_SGL_SEG_DESCRIPTOR = 0x0D
    INVALID_NUM_SGL_DESCRIPTORS = 0x0E
    DATA_SGL_LENGTH_INVALID = 0x0F
    METADATA_SGL_LENGTH_INVALID = 0x10
    SGL_DESCRIPTOR_TYPE_INVALID = 0x11
    INVALID_CONTROLLER_MEM_BUF = 0x12
    INVALID_PRP_OFFSET = 0x13
    ATOMIC_WRITE_UNIT_EXCEEDED = 0x14
    OPERATION_DENIED = 0x15
    INVALID_SGL_OFFSET = 0x16
    HOSTID_INCONSISTENT_FORMAT = 0x18
    KEEP_ALIVE_EXPIRED = 0x19
    KEEP_ALIVE_INVALID = 0x1A
    ABORTED_PREEMPT = 0x1B
    SANITIZE_FAILED = 0x1C
    SANITIZE_IN_PROGRESS = 0x1D
    SGL_DATA_BLOCK_GRANULARITY_INVALID = 0x1E
    COMMAND_INVALID_IN_CMB = 0x1F
    NAMESPACE_IS_WRITE_PROTECTED = 0x20
    COMMAND_INTERRUPTED = 0x21
    TRANSIENT_TRANSPORT_ERROR = 0x22
    COMMAND_PROHIBITED_BY_LOCKDOWN = 0x23
    ADMIN_COMMAND_MEDIA_NOT_READY = 0x24
    # NVM command set specific generic codes
    LBA_OUT_OF_RANGE = 0x80
    CAPACITY_EXCEEDED = 0x81
    NAMESPACE_NOT_READY = 0x82
    RESERVATION_CONFLICT = 0x83
    FORMAT_IN_PROGRESS = 0x84


class CommandSpecificStatus(enum.IntEnum):
    COMPLETION_QUEUE_INVALID = 0x00
    INVALID_QUEUE_IDENTIFIER = 0x01
    INVALID_QUEUE_SIZE = 0x02
    ABORT_COMMAND_LIMIT_EXCEEDED = 0x03
    ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED = 0x05
    INVALID_FIRMWARE_SLOT = 0x06
    INVALID_FIRMWARE_IMAGE = 0x07
    INVALID_INTERRUPT_VECTOR = 0x08
    INVALID_LOG_PAGE = 0x09
    INVALID_FORMAT = 0x0A
    FIRMWARE_REQ_CONVENTIONAL_RESET = 0x0B
    INVALID_QUEUE_DELETION = 0x0C
    FEATURE_ID_NOT_SAVEABLE = 0x0D
    FEATURE_NOT_CHANGEABLE = 0x0E
    FEATURE_NOT_NAMESPACE_SPECIFIC = 0x0F
    FIRMWARE_REQ_NVM_RESET = 0x10
    FIRMWARE_REQ_RESET = 0x11
    FIRMWARE_REQ_MAX_TIME_VIOLATION = 0x12
    FIRMWARE_ACTIVATION_PROHIBITED = 0x13
    OVERLAPPING_RANGE = 0x14
    NAMESPACE_INSUFFICIENT_CAPACITY = 0x15
    NAMESPACE_ID_UNAVAILABLE = 0x16
    NAMESPACE_ALREADY_ATTACHED = 0x18
    NAMESPACE_IS_PRIVATE = 0x19
    NAMESPACE_NOT_ATTACHED = 0x1A
    THIN_PROVISIONING_NOT_SUPPORTED = 0x1B
    CONTROLLER_LIST_INVALID = 0x1C
    DEVICE_SELF_TEST_IN_PROGRESS = 0x1D
    BOOT_PARTITION_WRITE_PROHIBITED = 0x1E
    INVALID_CONTROLLER_ID = 0x1F
    INVALID_SECONDARY_CONTROLLER_STATE = 0x20
    INVALID_NUM_CONTROLLER_RESOURCES = 0x21
    INVALID_RESOURCE_ID = 0x22
    ANA_GROUP_ID_INVALID = 0x24
    ANA_ATTACH_FAILED = 0x25
    # NVM command set
    CONFLICTING_ATTRIBUTES = 0x80
    INVALID_PROTECTION_INFO = 0x81
    ATTEMPTED_WRITE_TO_RO_RANGE = 0x82


class FabricsStatus(enum.IntEnum):
    """Command-specific status values for Fabrics commands (SCT 1)."""

    INCOMPATIBLE_FORMAT = 0x80
    CONTROLLER_BUSY = 0x81
    CONNECT_INVALID_PARAMETERS = 0x82
    CONNECT_RESTART_DISCOVERY = 0x83
    CONNECT_INVALID_HOST = 0x84
    INVALID_QUEUE_TYPE = 0x85
    DISCOVER_RESTART = 0x90
    AUTH_REQUIRED = 0x91


class MediaStatus(enum.IntEnum):
    WRITE_FAULT = 0x80
    UNRECOVERED_READ_ERROR = 0x81
    GUARD_CHECK_ERROR = 0x82
    APPLICATION_TAG_CHECK_ERROR = 0x83
    REFERENCE_TAG_CHECK_ERROR = 0x84
    COMPARE_FAILURE = 0x85
    ACCESS_DENIED = 0x86
    DEALLOCATED_OR_UNWRITTEN_BLOCK = 0x87


class PathStatus(enum.IntEnum):
    INTERNAL_PATH_ERROR = 0x00
    ANA_PERSISTENT_LOSS = 0x01
    ANA_INACCESSIBLE = 0x02
    ANA_TRANSITION = 0x03
    CONTROLLER_PATHING_ERROR = 0x60
    HOST_PATHING_ERROR = 0x70
    ABORTED_BY_HOST = 0x71


# --------------------------------------------------------------------------------------------
# Identify, log pages, features
# --------------------------------------------------------------------------------------------


class IdentifyCns(enum.IntEnum):
    NAMESPACE = 0x00
    CONTROLLER = 0x01
    ACTIVE_NS_LIST = 0x02
    NS_ID_DESCRIPTOR_LIST = 0x03
    NVM_SET_LIST = 0x04
    IOCS_NAMESPACE = 0x05
    IOCS_CONTROLLER = 0x06
    IOCS_ACTIVE_NS_LIST = 0x07
    INDEPENDENT_NAMESPACE = 0x08
    ALLOCATED_NS_LIST = 0x10
    ALLOCATED_NAMESPACE = 0x11
    NS_ATTACHED_CTRLR_LIST = 0x12
    CTRLR_LIST = 0x13
    PRIMARY_CTRLR_CAPS = 0x14
    SECONDARY_CTRLR_LIST = 0x15
    NS_GRANULARITY_LIST = 0x16
    UUID_LIST = 0x17
    IOCS = 0x1C


class LogPageId(enum.IntEnum):
    ERROR = 0x01
    HEALTH = 0x02
    FIRMWARE_SLOT = 0x03
    CHANGED_NS_LIST = 0x04
    COMMANDS_SUPPORTED_AND_EFFECTS = 0x05
    DEVICE_SELF_TEST = 0x06
    TELEMETRY_HOST = 0x07
    TELEMETRY_CTRLR = 0x08
    ENDURANCE_GROUP_INFO = 0x09
    PREDICTABLE_LATENCY = 0x0A
    PREDICTABLE_LATENCY_EVENT = 0x0B
    ANA = 0x0C
    PERSISTENT_EVENT = 0x0D
    LBA_STATUS = 0x0E
    ENDURANCE_GROUP_EVENT = 0x0F
    DISCOVERY = 0x70
    RESERVATION_NOTIFICATION = 0x80
    SANITIZE_STATUS = 0x81


class FeatureId(enum.IntEnum):
    ARBITRATION = 0x01
    POWER_MANAGEMENT = 0x02
    LBA_RANGE_TYPE = 0x03
    TEMPERATURE_THRESHOLD = 0x04
    ERROR_RECOVERY = 0x05
    VOLATILE_WRITE_CACHE = 0x06
    NUMBER_OF_QUEUES = 0x07
    INTERRUPT_COALESCING = 0x08
    INTERRUPT_VECTOR_CONFIG = 0x09
    WRITE_ATOMICITY = 0x0A
    ASYNC_EVENT_CONFIG = 0x0B
    AUTONOMOUS_POWER_STATE_TRANSITION = 0x0C
    HOST_MEM_BUFFER = 0x0D
    TIMESTAMP = 0x0E
    KEEP_ALIVE_TIMER = 0x0F
    HOST_CONTROLLED_THERMAL_MGMT = 0x10
    NON_OP_POWER_STATE_CONFIG = 0x11
    READ_RECOVERY_LEVEL_CONFIG = 0x12
    PREDICTABLE_LATENCY_MODE_CONFIG = 0x13
    PREDICTABLE_LATENCY_MODE_WINDOW = 0x14
    LBA_STATUS_INFO_ATTRIBUTES = 0x15
    HOST_BEHAVIOR_SUPPORT = 0x16
    SANITIZE_CONFIG = 0x17
    ENDURANCE_GROUP_EVENT_CONFIG = 0x18
    IO_COMMAND_SET_PROFILE = 0x19
    SOFTWARE_PROGRESS_MARKER = 0x80
    HOST_IDENTIFIER = 0x81
    HOST_RESERVE_MASK = 0x82
    HOST_RESERVE_PERSIST = 0x83
    NS_WRITE_PROTECTION_CONFIG = 0x84


class AnaState(enum.IntEnum):
    OPTIMIZED = 0x1
    NON_OPTIMIZED = 0x2
    INACCESSIBLE = 0x3
    PERSISTENT_LOSS = 0x4
    CHANGE = 0xF


class NsIdType(enum.IntEnum):
    EUI64 = 0x1
    NGUID = 0x2
    UUID = 0x3
    CSI = 0x4


class CommandSetId(enum.IntEnum):
    NVM = 0x0
    KEY_VALUE = 0x1
    ZONED = 0x2


def nvme_version(major: int, minor: int, tertiary: int = 0) -> int:
    """VER / VS value: MJR 31:16, MNR 15:8, TER 7:0."""
    return (major << 16) | (minor << 8) | tertiary


IDENTIFY_SIZE = 4096


def _put_ascii(buf: bytearray, off: int, size: int, text: str) -> None:
    """Space-padded ASCII field (SN, MN, FR)."""
    raw = text.encode("ascii")[:size]
    buf[off:off + size] = raw.ljust(size, b" ")


def _put_nqn(buf: bytearray, off: int, size: int, text: str) -> None:
    """NUL-padded UTF-8 string field (NQNs, TRADDR...)."""
    raw = text.encode()
    if len(raw) >= size:
        raise ValueError(f"string too long for {size}-byte field: {text!r}")
    buf[off:off + len(raw)] = raw


# Identify Controller field offsets (bytes).
class IdCtrlOff(enum.IntEnum):
    VID = 0
    SSVID = 2
    SN = 4
    MN = 24
    FR = 64
    RAB = 72
    IEEE = 73
    CMIC = 76
    MDTS = 77
    CNTLID = 78
    VER = 80
    RTD3R = 84
    RTD3E = 88
    OAES = 92
    CTRATT = 96
    CNTRLTYPE = 111
    OACS = 256
    ACL = 258
    AERL = 259
    FRMW = 260
    LPA = 261
    ELPE = 262
    NPSS = 263
    KAS = 320
    ANATT = 342
    ANACAP = 343
    ANAGRPMAX = 344
    NANAGRPID = 348
    SQES = 512
    CQES = 513
    MAXCMD = 514
    NN = 516
    ONCS = 520
    FUSES = 522
    FNA = 524
    VWC = 525
    AWUN = 526
    AWUPF = 528
    ACWU = 532
    SGLS = 536
    MNAN = 540
    SUBNQN = 768
    IOCCSZ = 1792
    IORCSZ = 1796
    ICDOFF = 1800
    FCATT = 1802
    MSDBD = 1803
    OFCS = 1804
    PSD0 = 2048


_ID_CTRL_HEAD = struct.Struct("<HH20s40s8sB3sBBHIIIII")
assert _ID_CTRL_HEAD.size == IdCtrlOff.CTRATT + 4
_ID_CTRL_ADMIN = struct.Struct("<HBBBBBB")
_ID_CTRL_CRDT = struct.Struct("<HHH")  # CRDT1..CRDT3 at bytes 134..139
ID_CTRL_OFF_CRDT1 = 134
assert _ID_CTRL_ADMIN.size == IdCtrlOff.NPSS + 1 - IdCtrlOff.OACS
_ID_CTRL_ANA = struct.Struct("<BBII")
assert _ID_CTRL_ANA.size == IdCtrlOff.NANAGRPID + 4 - IdCtrlOff.ANATT
_ID_CTRL_NVM = struct.Struct("<BBHIHHBBHHBBHHII")
assert _ID_CTRL_NVM.size == IdCtrlOff.MNAN + 4 - IdCtrlOff.SQES
_ID_CTRL_FABRICS = struct.Struct("<IIHBBH")
assert _ID_CTRL_FABRICS.size == IdCtrlOff.OFCS + 2 - IdCtrlOff.IOCCSZ
# Power state descriptor: MP, rsvd, MXPS/NOPS flags, ENLAT, EXLAT, RRT, RRL, RWT, RWL, ...
_PSD = struct.Struct("<HxBIIBBBB16x")
assert _PSD.size == 32


class Oncs(enum.IntFlag):
    COMPARE = 1 << 0
    WRITE_UNCORRECTABLE = 1 << 1
    DATASET_MANAGEMENT = 1 << 2
    WRITE_ZEROES = 1 << 3
    SAVE_SELECT = 1 << 4
    RESERVATIONS = 1 << 5
    TIMESTAMP = 1 << 6
    VERIFY = 1 << 7
    COPY = 1 << 8


class Oaes(enum.IntFlag):
    NS_ATTRIBUTE_NOTICES = 1 << 8
    FW_ACTIVATION_NOTICES = 1 << 9
    ANA_CHANGE_NOTICES = 1 << 11
    DISCOVERY_LOG_CHANGE_NOTICES = 1 << 31


@dataclass(slots=True)
class ControllerData:
    """Parameters for Identify Controller; defaults describe a plain NVMe-oF I/O controller."""

    vid: int = 0x4E58  # 'NX'-ish placeholder; set per product
    ssvid: int = 0x4E58
    serial: str = ""
    model: str = "spydk Controller"
    firmware_rev: str = "0.1"
    rab: int = 6
    ieee: int = 0x000000  # OUI, stored little-endian in 3 bytes
    cmic: int = 0b1011  # multi-port, multi-controller, ANA reporting
    mdts: int = 5  # 2^5 * min page size (4 KiB) = 128 KiB
    cntlid: int = 1
    ver: int = nvme_version(1, 4)
    rtd3r: int = 0
    rtd3e: int = 0
    oaes: int = Oaes.NS_ATTRIBUTE_NOTICES | Oaes.ANA_CHANGE_NOTICES
    ctratt: int = 0x1  # 128-bit host identifier
    crdt: tuple[int, int, int] = (0, 0, 0)  # command retry delay times 1..3, 100 ms units
    cntrltype: int = 1  # I/O controller (2 = discovery, 3 = admin)
    oacs: int = 0
    acl: int = 3  # 0's based
    aerl: int = 3  # 0's based
    frmw: int = 0x3  # slot 1 read-only, one slot
    lpa: int = 0x6  # command effects log, extended data for Get Log Page
    elpe: int = 127  # 0's based error log entries
    npss: int = 0
    kas: int = 10  # keep-alive granularity, 100 ms units
    anatt: int = 10
    anacap: int = 0x47  # report optimized/non-opt/inaccessible/persistent loss, ANAGRPID not changing
    anagrpmax: int = 32
    nanagrpid: int = 32
    sqes: int = 0x66  # required and max 2^6 = 64
    cqes: int = 0x44  # 2^4 = 16
    maxcmd: int = 128
    nn: int = 32
    oncs: int = Oncs.DATASET_MANAGEMENT | Oncs.WRITE_ZEROES | Oncs.RESERVATIONS
    fuses: int = 0x1  # compare and write
    fna: int = 0
    vwc: int = 0x1  # volatile write cache present
    awun: int = 0
    awupf: int = 0
    acwu: int = 0
    sgls: int = (1 << 0) | (1 << 2) | (1 << 20)  # SGLs, keyed data block, offset addressing
    mnan: int = 0
    subnqn: str = ""
    ioccsz: int = 4 + 512  # 16-byte units: 64 B SQE + 8 KiB in-capsule data
    iorcsz: int = 1
    icdoff: int = 0
    fcatt: int = 0  # dynamic controller model
    msdbd: int = 1
    ofcs: int = 0
    power_states: Sequence[int] = field(default_factory=lambda: [0])  # max power, centiwatts


def build_identify_controller(c: ControllerData) -> bytes:
    buf = bytearray(IDENTIFY_SIZE)
    _ID_CTRL_HEAD.pack_into(buf, 0, c.vid, c.ssvid, b"", b"", b"", c.rab,
                            c.ieee.to_bytes(3, "little"), c.cmic, c.mdts, c.cntlid, c.ver, c.rtd3r,
                            c.rtd3e, c.oaes, c.ctratt)
    _put_ascii(buf, IdCtrlOff.SN, 20, c.serial)
    _put_ascii(buf, IdCtrlOff.MN, 40, c.model)
    _put_ascii(buf, IdCtrlOff.FR, 8, c.firmware_rev)
    buf[IdCtrlOff.CNTRLTYPE] = c.cntrltype
    _ID_CTRL_CRDT.pack_into(buf, ID_CTRL_OFF_CRDT1, *c.crdt)
    _ID_CTRL_ADMIN.pack_into(buf, IdCtrlOff.OACS, c.oacs, c.acl, c.aerl, c.frmw, c.lpa, c.elpe,
                             c.npss)
    _U16.pack_into(buf, IdCtrlOff.KAS, c.kas)
    _ID_CTRL_ANA.pack_into(buf, IdCtrlOff.ANATT, c.anatt, c.anacap, c.anagrpmax, c.nanagrpid)
    _ID_CTRL_NVM.pack_into(buf, IdCtrlOff.SQES, c.sqes, c.cqes, c.maxcmd, c.nn, c.oncs, c.fuses,
                           c.fna, c.vwc, c.awun, c.awupf, 0, 0, c.acwu, 0, c.sgls, c.mnan)
    _put_nqn(buf, IdCtrlOff.SUBNQN, 256, c.subnqn)
    _ID_CTRL_FABRICS.pack_into(buf, IdCtrlOff.IOCCSZ, c.ioccsz, c.iorcsz, c.icdoff, c.fcatt,
                               c.msdbd, c.ofcs)
    if len(c.power_states) != c.npss + 1 or len(c.power_states) > 32:
        raise ValueError("power_states must have npss + 1 entries (max 32)")
    for i, mp in enumerate(c.power_states):
        _PSD.pack_into(buf, IdCtrlOff.PSD0 + 32 * i, mp, 0, 0, 0, i, i, i, i)
    assert len(buf) == IDENTIFY_SIZE
    return bytes(buf)


# Identify Namespace (NVM command set)
class IdNsOff(enum.IntEnum):
    NSZE = 0
    NCAP = 8
    NUSE = 16
    NSFEAT = 24
    NLBAF = 25
    FLBAS = 26
    MC = 27
    DPC = 28
    DPS = 29
    NMIC = 30
    RESCAP = 31
    FPI = 32
    DLFEAT = 33
    NAWUN = 34
    NAWUPF = 36
    NACWU = 38
    NABSN = 40
    NABO = 42
    NABSPF = 44
    NOIOB = 46
    NVMCAP = 48
    NPWG = 64
    NPWA = 66
    NPDG = 68
    NPDA = 70
    NOWS = 72
    ANAGRPID = 92
    NSATTR = 99
    NVMSETID = 100
    ENDGID = 102
    NGUID = 104
    EUI64 = 120
    LBAF0 = 128


_ID_NS_HEAD = struct.Struct("<QQQBBBBBBBBBBHHHHHHH16sHHHHH")
assert _ID_NS_HEAD.size == IdNsOff.NOWS + 2
_ID_NS_TAIL = struct.Struct("<I3xBHH16s8s")
assert _ID_NS_TAIL.size == IdNsOff.LBAF0 - IdNsOff.ANAGRPID
LBAF = struct.Struct("<HBB")  # MS, LBADS, RP (bits 1:0)
assert LBAF.size == 4


@dataclass(slots=True)
class NamespaceData:
    """Parameters for Identify Namespace (one LBA format unless lba_formats is given)."""

    nsze: int
    block_size: int = 512
    ncap: int | None = None  # defaults to nsze
    nuse: int | None = None  # defaults to nsze
    nsfeat: int = 0
    flbas: int = 0  # index of the LBA format in use
    lba_formats: Sequence[tuple[int, int]] = ()  # (metadata size, block size); default one format
    dlfeat: int = 0
    nmic: int = 1  # may be attached to several controllers
    rescap: int = 0
    nawun: int = 0
    nawupf: int = 0
    noiob: int = 0
    npwg: int = 0
    nows: int = 0
    anagrpid: int = 0
    nsattr: int = 0
    nguid: bytes = bytes(16)
    eui64: bytes = bytes(8)


def build_identify_namespace(n: NamespaceData) -> bytes:
    buf = bytearray(IDENTIFY_SIZE)
    formats = list(n.lba_formats) or [(0, n.block_size)]
    if not 1 <= len(formats) <= 64:
        raise ValueError("1..64 LBA formats")
    if len(n.nguid) != 16 or len(n.eui64) != 8:
        raise ValueError("nguid must be 16 bytes, eui64 8 bytes")
    ncap = n.nsze if n.ncap is None else n.ncap
    nuse = n.nsze if n.nuse is None else n.nuse
    nvmcap = (ncap * formats[n.flbas & 0xF][1]).to_bytes(16, "little")
    _ID_NS_HEAD.pack_into(buf, 0, n.nsze, ncap, nuse, n.nsfeat, len(formats) - 1, n.flbas, 0, 0, 0,
                          n.nmic, n.rescap, 0, n.dlfeat, n.nawun, n.nawupf, 0, 0, 0, 0, n.noiob,
                          nvmcap, n.npwg, 0, 0, 0, n.nows)
    _ID_NS_TAIL.pack_into(buf, IdNsOff.ANAGRPID, n.anagrpid, n.nsattr, 0, 0, n.nguid, n.eui64)
    for i, (ms, bs) in enumerate(formats):
        lbads = bs.bit_length() - 1
        if bs != 1 << lbads or lbads < 9:
            raise ValueError(f"block size must be a power of two >= 512: {bs}")
        LBAF.pack_into(buf, IdNsOff.LBAF0 + 4 * i, ms, lbads, 0)
    assert len(buf) == IDENTIFY_SIZE
    return bytes(buf)


def build_ns_list(nsids: Iterable[int], start_after: int = 0) -> bytes:
    """Active (or allocated) namespace list: ascending NSIDs greater than start_after, max 1024."""
    ids = sorted(i for i in nsids if i > start_after)[:1024]
    return struct.pack(f"<{len(ids)}I", *ids).ljust(IDENTIFY_SIZE, b"\0")


_NID_HDR = struct.Struct("<BBxx")
assert _NID_HDR.size == 4
_NID_LENGTHS = {NsIdType.EUI64: 8, NsIdType.NGUID: 16, NsIdType.UUID: 16, NsIdType.CSI: 1}


def build_ns_id_descriptors(*, eui64: bytes | None = None, nguid: bytes | None = None,
                            uuid: bytes | None = None, csi: int | None = None) -> bytes:
    """Namespace Identification Descriptor list (CNS 03h); all-zero identifiers are skipped."""
    out = bytearray()
    items: list[tuple[NsIdType, bytes]] = []
    if eui64 is not None and any(eui64):
        items.append((NsIdType.EUI64, eui64))
    if nguid is not None and any(nguid):
        items.append((NsIdType.NGUID, nguid))
    if uuid is not None and any(uuid):
        items.append((NsIdType.UUID, uuid))
    if csi is not None:
        items.append((NsIdType.CSI, bytes([csi])))
    for nidt, nid in items:
        if len(nid) != _NID_LENGTHS[nidt]:
            raise ValueError(f"{nidt.name} must be {_NID_LENGTHS[nidt]} bytes")
        out += _NID_HDR.pack(nidt, len(nid)) + nid
    return bytes(out.ljust(IDENTIFY_SIZE, b"\0"))


# --------------------------------------------------------------------------------------------
# Log pages
# --------------------------------------------------------------------------------------------

# error count, sqid, cid, status, param error location, lba, nsid, vs, trtype, csi, cmd specific,
# transport specific info
ERROR_LOG_ENTRY = struct.Struct("<QHHHHQIBBxxQH22x")
assert ERROR_LOG_ENTRY.size == 64


@dataclass(slots=True)
class ErrorLogEntry:
    error_count: int
    sqid: int = 0
    cid: int = 0
    status: int = 0
    param_error_location: int = 0xFFFF
    lba: int = 0
    nsid: int = 0
    trtype: int = 0
    cmd_specific: int = 0
    trtype_specific: int = 0


def build_error_log(entries: Sequence[ErrorLogEntry]) -> bytes:
    """Error Information log: newest first, 64 bytes per entry."""
    return b"".join(ERROR_LOG_ENTRY.pack(e.error_count, e.sqid, e.cid, e.status,
                                         e.param_error_location, e.lba, e.nsid, 0, e.trtype,
                                         e.cmd_specific, e.trtype_specific) for e in entries)


HEALTH_LOG_SIZE = 512
_HEALTH_HEAD = struct.Struct("<BHBBBB25x")
assert _HEALTH_HEAD.size == 32
_HEALTH_COUNTERS_OFF = 32  # 10 x 16-byte counters
_HEALTH_TAIL = struct.Struct("<II8HIIII")
assert _HEALTH_TAIL.size == 232 - 192


@dataclass(slots=True)
class HealthData:
    critical_warning: int = 0
    temperature_k: int = 273 + 35
    available_spare: int = 100
    available_spare_threshold: int = 10
    percentage_used: int = 0
    endurance_group_warning: int = 0
    data_units_read: int = 0  # thousands of 512-byte units
    data_units_written: int = 0
    host_read_commands: int = 0
    host_write_commands: int = 0
    controller_busy_time: int = 0
    power_cycles: int = 0
    power_on_hours: int = 0
    unsafe_shutdowns: int = 0
    media_errors: int = 0
    num_error_log_entries: int = 0
    warning_temp_time: int = 0
    critical_temp_time: int = 0


def build_health_log(h: HealthData) -> bytes:
    buf = bytearray(HEALTH_LOG_SIZE)
    _HEALTH_HEAD.pack_into(buf, 0, h.critical_warning, h.temperature_k, h.available_spare,
                           h.available_spare_threshold, h.percentage_used,
                           h.endurance_group_warning)
    counters = (h.data_units_read, h.data_units_written, h.host_read_commands,
                h.host_write_commands, h.controller_busy_time, h.power_cycles, h.power_on_hours,
                h.unsafe_shutdowns, h.media_errors, h.num_error_log_entries)
    for i, v in enumerate(counters):
        off = _HEALTH_COUNTERS_OFF + 16 * i
        buf[off:off + 16] = v.to_bytes(16, "little")
    _HEALTH_TAIL.pack_into(buf, 192, h.warning_temp_time, h.critical_temp_time, *([0] * 8),
                           0, 0, 0, 0)
    return bytes(buf)


FW_SLOT_LOG_SIZE = 512


def build_firmware_slot_log(revisions: Sequence[str], active_slot: int = 1) -> bytes:
    """Firmware Slot Information: AFI then up to 7 8-byte revision strings."""
    if not 1 <= len(revisions) <= 7 or not 1 <= active_slot <= len(revisions):
        raise ValueError("1..7 firmware slots, active slot among them")
    buf = bytearray(FW_SLOT_LOG_SIZE)
    buf[0] = active_slot & 0x7
    for i, rev in enumerate(revisions):
        _put_ascii(buf, 8 + 8 * i, 8, rev)
    return bytes(buf)


def build_changed_ns_list(nsids: Sequence[int]) -> bytes:
    """Changed Namespace List: up to 1024 NSIDs; more than that is reported as FFFFFFFFh."""
    ids = [0xFFFFFFFF] if len(nsids) > 1024 else sorted(nsids)
    return struct.pack(f"<{len(ids)}I", *ids).ljust(4096, b"\0")


class CmdEffect(enum.IntFlag):
    CSUPP = 1 << 0  # command supported
    LBCC = 1 << 1  # logical block content change
    NCC = 1 << 2  # namespace capability change
    NIC = 1 << 3  # namespace inventory change
    CCC = 1 << 4  # controller capability change


def build_commands_effects_log(admin: dict[int, int], io: dict[int, int]) -> bytes:
    """Commands Supported and Effects: opcode -> effects bits for admin and I/O commands."""
    buf = bytearray(4096)
    for base, table in ((0, admin), (1024, io)):
        for opc, eff in table.items():
            if not 0 <= opc <= 0xFF:
                raise ValueError(f"opcode out of range: {opc}")
            _U32.pack_into(buf, base + 4 * opc, eff)
    return bytes(buf)


ANA_LOG_HEADER = struct.Struct("<QH6x")
assert ANA_LOG_HEADER.size == 16
ANA_GROUP_DESC = struct.Struct("<IIQB15x")
assert ANA_GROUP_DESC.size == 32


@dataclass(slots=True)
class AnaGroup:
    anagrpid: int
    state: int
    nsids: Sequence[int] = ()
    change_count: int = 0


def build_ana_log(change_count: int, groups: Sequence[AnaGroup], *, include_nsids: bool = True) -> bytes:
    """ANA log page; with include_nsids False (RGO) the NSID lists are omitted."""
    out = bytearray(ANA_LOG_HEADER.pack(change_count, len(groups)))
    for g in groups:
        ids = sorted(g.nsids) if include_nsids else []
        out += ANA_GROUP_DESC.pack(g.anagrpid, len(ids), g.change_count, g.state & 0xF)
        out += struct.pack(f"<{len(ids)}I", *ids)
    return bytes(out)


# Discovery log page (NVMe over Fabrics)
DISC_LOG_HEADER = struct.Struct("<QQH1006x")
assert DISC_LOG_HEADER.size == 1024
DISC_LOG_ENTRY = struct.Struct("<BBBBHHHH20x32s192x256s256s256s")
assert DISC_LOG_ENTRY.size == 1024
DISC_ENTRY_OFF_TRSVCID = 32
DISC_ENTRY_OFF_SUBNQN = 256
DISC_ENTRY_OFF_TRADDR = 512
DISC_ENTRY_OFF_TSAS = 768


class TransportType(enum.IntEnum):
    RDMA = 1
    FC = 2
    TCP = 3
    INTRA_HOST = 254


class AddressFamily(enum.IntEnum):
    IPV4 = 1
    IPV6 = 2
    IB = 3
    FC = 4
    INTRA_HOST = 254


class SubsystemType(enum.IntEnum):
    DISCOVERY_REFERRAL = 1
    NVME = 2
    CURRENT_DISCOVERY = 3


class Treq(enum.IntFlag):
    SECURE_CHANNEL_REQUIRED = 0x1
    SECURE_CHANNEL_NOT_REQUIRED = 0x2
    DISABLE_SQFLOW = 0x4


class TcpSecType(enum.IntEnum):
    NONE = 0
    TLS12 = 1
    TLS13 = 2


@dataclass(slots=True)
class DiscoveryEntry:
    subnqn: str
    traddr: str
    trsvcid: str
    trtype: int = TransportType.TCP
    adrfam: int = AddressFamily.IPV4
    subtype: int = SubsystemType.NVME
    treq: int = Treq.SECURE_CHANNEL_NOT_REQUIRED
    portid: int = 0
    cntlid: int = 0xFFFF  # dynamic controller model
    asqsz: int = 32
    eflags: int = 0
    tcp_sectype: int = TcpSecType.NONE


def _fixed(text: str, size: int) -> bytes:
    raw = text.encode()
    if len(raw) > size:
        raise ValueError(f"string too long for {size}-byte field: {text!r}")
    return raw  # struct pads 's' fields with NULs


def build_discovery_log(genctr: int, entries: Sequence[DiscoveryEntry], recfmt: int = 0) -> bytes:
    out = bytearray(DISC_LOG_HEADER.pack(genctr, len(entries), recfmt))
    for e in entries:
        tsas = bytes([e.tcp_sectype]) if e.trtype == TransportType.TCP else b""
        # TRSVCID and TRADDR are space-padded ASCII in the spec.
        out += DISC_LOG_ENTRY.pack(e.trtype, e.adrfam, e.subtype, e.treq, e.portid, e.cntlid,
                                   e.asqsz, e.eflags, _fixed(e.trsvcid, 32).ljust(32, b" "),
                                   _fixed(e.subnqn, 255), _fixed(e.traddr, 256).ljust(256, b" "),
                                   tsas)
    return bytes(out)
