"""vhost-user and virtio structures (vhost-user protocol spec, virtio 1.1 spec).

Every wire/ring structure is a precompiled ``struct.Struct`` whose size is checked at
import, so a typo in a format string fails loudly instead of corrupting guest memory.
All multi-byte fields are little-endian (virtio 1.x, vhost-user on x86/arm).
"""
from __future__ import annotations

import enum
import struct

# -- vhost-user message header ------------------------------------------------------------

HDR = struct.Struct("<III")             # request, flags, size
VERSION = 0x1
FLAG_VERSION_MASK = 0x3
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3

# Payloads
U64 = struct.Struct("<Q")
VRING_STATE = struct.Struct("<II")      # index, num
VRING_ADDR = struct.Struct("<IIQQQQ")   # index, flags, desc, used, avail, log (front-end VAs)
MEM_HDR = struct.Struct("<II")          # nregions, padding
MEM_REGION = struct.Struct("<QQQQ")     # guest_phys_addr, memory_size, userspace_addr, mmap_offset
CONFIG_HDR = struct.Struct("<III")      # offset, size, flags
INFLIGHT = struct.Struct("<QQHH")       # mmap_size, mmap_offset, num_queues, queue_size
# INFLIGHT is padded to 8 bytes on the wire by C compilers (24 bytes).
INFLIGHT_WIRE_SIZE = 24

MAX_MEM_REGIONS = 8
MAX_CONFIG_SIZE = 256
# Largest payload we accept: the memory table with 8 regions is the biggest fixed one.
MAX_PAYLOAD = 4096
VRING_IDX_MASK = 0xFF
VRING_NOFD = 1 << 8

for _s, _n in ((HDR, 12), (U64, 8), (VRING_STATE, 8), (VRING_ADDR, 40), (MEM_HDR, 8),
               (MEM_REGION, 32), (CONFIG_HDR, 12), (INFLIGHT, 20)):
    assert _s.size == _n, (_s.format, _s.size, _n)


class Req(enum.IntEnum):
    """Front-end requests (VHOST_USER_*)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


# Requests whose answer is a reply message of their own (not the REPLY_ACK u64).
HAS_REPLY = frozenset({Req.GET_FEATURES, Req.GET_PROTOCOL_FEATURES, Req.GET_VRING_BASE,
                       Req.GET_QUEUE_NUM, Req.GET_CONFIG, Req.GET_INFLIGHT_FD,
                       Req.GET_MAX_MEM_SLOTS, Req.GET_STATUS})


class ProtoFeature(enum.IntEnum):
    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    MTU = 4
    BACKEND_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


# -- virtio feature bits --------------------------------------------------------------------

F_NOTIFY_ON_EMPTY = 24
F_ANY_LAYOUT = 27
F_RING_INDIRECT_DESC = 28
F_RING_EVENT_IDX = 29
F_PROTOCOL_FEATURES = 30          # vhost-user: GET/SET_PROTOCOL_FEATURES are available
F_VERSION_1 = 32
F_RING_PACKED = 34

# virtio-blk
BLK_F_SIZE_MAX = 1
BLK_F_SEG_MAX = 2
BLK_F_GEOMETRY = 4
BLK_F_RO = 5
BLK_F_BLK_SIZE = 6
BLK_F_FLUSH = 9
BLK_F_TOPOLOGY = 10
BLK_F_CONFIG_WCE = 11
BLK_F_MQ = 12
BLK_F_DISCARD = 13
BLK_F_WRITE_ZEROES = 14

# virtio-scsi
SCSI_F_INOUT = 0
SCSI_F_HOTPLUG = 1
SCSI_F_CHANGE = 2


def bit(n: int) -> int:
    return 1 << n


# -- split virtqueue ------------------------------------------------------------------------

DESC = struct.Struct("<QIHH")           # addr, len, flags, next
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
U16 = struct.Struct("<H")
USED_ELEM = struct.Struct("<II")        # id, len
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1
MAX_QUEUE_SIZE = 32768
assert DESC.size == 16 and USED_ELEM.size == 8 and U16.size == 2


def desc_table_size(num: int) -> int:
    return 16 * num


def avail_size(num: int) -> int:
    return 4 + 2 * num + 2              # flags, idx, ring[num], used_event


def used_size(num: int) -> int:
    return 4 + 8 * num + 2              # flags, idx, ring[num], avail_event


def need_event(event: int, new: int, old: int) -> bool:
    """virtio's vring_need_event: did idx cross ``event`` going from old to new?"""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


# -- virtio-blk -----------------------------------------------------------------------------

# capacity, size_max, seg_max, geometry (cylinders, heads, sectors), blk_size,
# topology (physical_block_exp, alignment_offset, min_io_size, opt_io_size), writeback,
# unused0, num_queues, max_discard_sectors, max_discard_seg, discard_sector_alignment,
# max_write_zeroes_sectors, max_write_zeroes_seg, write_zeroes_may_unmap, unused1[3]
BLK_CONFIG = struct.Struct("<QIIHBBIBBHIBBHIIIIIB3x")
assert BLK_CONFIG.size == 60, BLK_CONFIG.size

BLK_REQ_HDR = struct.Struct("<IIQ")     # type, ioprio, sector (512-byte units)
BLK_DISCARD_SEG = struct.Struct("<QII")  # sector, num_sectors, flags
assert BLK_REQ_HDR.size == 16 and BLK_DISCARD_SEG.size == 16

BLK_T_IN = 0
BLK_T_OUT = 1
BLK_T_FLUSH = 4
BLK_T_GET_ID = 8
BLK_T_DISCARD = 11
BLK_T_WRITE_ZEROES = 13
BLK_S_OK = 0
BLK_S_IOERR = 1
BLK_S_UNSUPP = 2
BLK_ID_BYTES = 20
SECTOR = 512

# -- virtio-scsi ----------------------------------------------------------------------------

# lun[8], tag, task_attr, prio, crn; then the CDB (cdb_size, 32 by default)
SCSI_REQ_HDR = struct.Struct("<8sQBBB")
assert SCSI_REQ_HDR.size == 19
# sense_len, resid, status_qualifier, status, response; then sense (sense_size, 96)
SCSI_RESP_HDR = struct.Struct("<IIHBB")
assert SCSI_RESP_HDR.size == 12
SCSI_CDB_SIZE = 32
SCSI_SENSE_SIZE = 96
# num_queues, seg_max, max_sectors, cmd_per_lun, event_info_size, sense_size, cdb_size,
# max_channel, max_target, max_lun
SCSI_CONFIG = struct.Struct("<IIIIIIIHHI")
assert SCSI_CONFIG.size == 36
SCSI_TMF_HDR = struct.Struct("<II8sQ")  # type, subtype, lun, tag
SCSI_T_TMF = 0
SCSI_T_AN_QUERY = 1
SCSI_T_AN_SUBSCRIBE = 2
SCSI_S_OK = 0
SCSI_S_OVERRUN = 1
SCSI_S_BAD_TARGET = 3
SCSI_S_FAILURE = 9
SCSI_S_FUNCTION_SUCCEEDED = 10
SCSI_S_FUNCTION_REJECTED = 11
