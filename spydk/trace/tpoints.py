"""Trace point groups and trace points, numbered as SPDK numbers them.

A trace point id is ``group * 64 + index``. Groups and trace points that SPDK v24.01 has
keep SPDK's id, name, owner and object type, so masks given to ``-e`` or the trace RPCs mean
the same thing against spydk and SPDK. spydk adds a few of its own: thread/poller events
(indexes 0x10 and up in the ``thread`` group) and the NVMe-oF controller group ``nvmf_ctrlr``
(id 0x20, above every SPDK group).
"""
from __future__ import annotations

from dataclasses import dataclass, field

TPOINTS_PER_GROUP = 64
MAX_GROUPS = 64

# Owner types (who records) and object types (what a record is about), SPDK's values.
OWNER_NONE = 0
OWNER_ISCSI_CONN = 0x1
OWNER_BDEV = 0x2
OWNER_NVMF_TCP = 0x30
OWNER_SCSI_DEV = 0x10
OWNER_THREAD = 0x7
OWNER_NVMF_CTRLR = 0x31  # spydk

OBJECT_NONE = 0
OBJECT_ISCSI_PDU = 0x1
OBJECT_BDEV_IO = 0x2
OBJECT_SCSI_TASK = 0x10
OBJECT_NVMF_TCP_IO = 0x80
OBJECT_NVMF_CTRLR_IO = 0x81  # spydk

# One-letter prefixes spdk_trace prints before owner and object ids.
OWNER_PREFIX = {OWNER_ISCSI_CONN: "c", OWNER_BDEV: "b", OWNER_NVMF_TCP: "t", OWNER_SCSI_DEV: "d",
                OWNER_THREAD: "h", OWNER_NVMF_CTRLR: "n"}
OBJECT_PREFIX = {OBJECT_ISCSI_PDU: "p", OBJECT_BDEV_IO: "i", OBJECT_SCSI_TASK: "t",
                 OBJECT_NVMF_TCP_IO: "r", OBJECT_NVMF_CTRLR_IO: "c"}

# Groups: SPDK's ids (include/spdk_internal/trace_defs.h), then spydk's.
GROUP_ISCSI = 0x1
GROUP_SCSI = 0x2
GROUP_BDEV = 0x3
GROUP_NVMF_RDMA = 0x4
GROUP_NVMF_TCP = 0x5
GROUP_FTL = 0x6
GROUP_BLOBFS = 0x7
GROUP_NVMF_FC = 0x8
GROUP_ACCEL_DSA = 0x9
GROUP_THREAD = 0xA
GROUP_NVME_PCIE = 0xB
GROUP_ACCEL_IAA = 0xC
GROUP_NVME_TCP = 0xD
GROUP_BDEV_NVME = 0xE
GROUP_NVMF_CTRLR = 0x20

# Only groups something in spydk records into are registered (SPDK lists only the groups
# of the libraries linked into an app, too).
GROUP_NAMES: dict[int, str] = {
    GROUP_ISCSI: "iscsi_conn",
    GROUP_SCSI: "scsi",
    GROUP_BDEV: "bdev",
    GROUP_NVMF_TCP: "nvmf_tcp",
    GROUP_THREAD: "thread",
    GROUP_NVMF_CTRLR: "nvmf_ctrlr",
}


def tpoint_id(group: int, index: int) -> int:
    return group * TPOINTS_PER_GROUP + index


@dataclass(frozen=True)
class Tpoint:
    name: str
    id: int
    owner_type: int
    object_type: int
    new_object: bool           # this record starts the object's life (its id gets a number)
    args: tuple[str, ...] = field(default=())   # names of arg0..arg2; "" unused
    str_arg: str = ""          # name of the short string argument, if any

    @property
    def group(self) -> int:
        return self.id // TPOINTS_PER_GROUP


def _t(group: int, index: int, name: str, owner: int, obj: int, new: bool,
       args: tuple[str, ...] = (), str_arg: str = "") -> Tpoint:
    return Tpoint(name, tpoint_id(group, index), owner, obj, new, args, str_arg)


# bdev (SPDK: BDEV_IO_START args type, ctx, offset, len, name)
BDEV_IO_START = tpoint_id(GROUP_BDEV, 0x0)
BDEV_IO_DONE = tpoint_id(GROUP_BDEV, 0x1)
BDEV_IOCH_CREATE = tpoint_id(GROUP_BDEV, 0x2)
BDEV_IOCH_DESTROY = tpoint_id(GROUP_BDEV, 0x3)

# nvmf_tcp: request states as SPDK's tcp transport names them
TCP_REQ_NEW = tpoint_id(GROUP_NVMF_TCP, 0x00)
TCP_REQ_NEED_BUFFER = tpoint_id(GROUP_NVMF_TCP, 0x01)
TCP_REQ_TX_H_TO_C = tpoint_id(GROUP_NVMF_TCP, 0x04)
TCP_REQ_RDY_TO_EXECUTE = tpoint_id(GROUP_NVMF_TCP, 0x05)
TCP_REQ_EXECUTING = tpoint_id(GROUP_NVMF_TCP, 0x06)
TCP_REQ_EXECUTED = tpoint_id(GROUP_NVMF_TCP, 0x08)
TCP_REQ_RDY_TO_COMPLETE = tpoint_id(GROUP_NVMF_TCP, 0x09)
TCP_REQ_TRANSFER_C2H = tpoint_id(GROUP_NVMF_TCP, 0x0a)
TCP_REQ_COMPLETED = tpoint_id(GROUP_NVMF_TCP, 0x0c)
TCP_WRITE_START = tpoint_id(GROUP_NVMF_TCP, 0x0d)
TCP_WRITE_DONE = tpoint_id(GROUP_NVMF_TCP, 0x0e)
TCP_READ_DONE = tpoint_id(GROUP_NVMF_TCP, 0x0f)
TCP_REQ_AWAIT_R2T_ACK = tpoint_id(GROUP_NVMF_TCP, 0x10)
TCP_QP_CREATE = tpoint_id(GROUP_NVMF_TCP, 0x11)
TCP_QP_STATE_CHANGE = tpoint_id(GROUP_NVMF_TCP, 0x13)
TCP_QP_DISCONNECT = tpoint_id(GROUP_NVMF_TCP, 0x14)
TCP_QP_DESTROY = tpoint_id(GROUP_NVMF_TCP, 0x15)

# iscsi_conn and scsi
ISCSI_READ_DONE = tpoint_id(GROUP_ISCSI, 0x0)
ISCSI_READ_PDU = tpoint_id(GROUP_ISCSI, 0x3)
ISCSI_TASK_DONE = tpoint_id(GROUP_ISCSI, 0x4)
ISCSI_TASK_QUEUE = tpoint_id(GROUP_ISCSI, 0x5)
ISCSI_TASK_EXECUTED = tpoint_id(GROUP_ISCSI, 0x6)
ISCSI_PDU_COMPLETED = tpoint_id(GROUP_ISCSI, 0x7)
SCSI_TASK_DONE = tpoint_id(GROUP_SCSI, 0x0)
SCSI_TASK_START = tpoint_id(GROUP_SCSI, 0x1)

# thread (0x0, 0x1 are SPDK's; 0x10.. spydk's)
THREAD_IOCH_GET = tpoint_id(GROUP_THREAD, 0x0)
THREAD_IOCH_PUT = tpoint_id(GROUP_THREAD, 0x1)
THREAD_CREATE = tpoint_id(GROUP_THREAD, 0x10)
THREAD_EXIT = tpoint_id(GROUP_THREAD, 0x11)
POLLER_REGISTER = tpoint_id(GROUP_THREAD, 0x12)
POLLER_UNREGISTER = tpoint_id(GROUP_THREAD, 0x13)
POLLER_PAUSE = tpoint_id(GROUP_THREAD, 0x14)
POLLER_RESUME = tpoint_id(GROUP_THREAD, 0x15)

# nvmf_ctrlr (spydk): a command inside the controller, between transport and bdev
NVMF_CTRLR_IO_START = tpoint_id(GROUP_NVMF_CTRLR, 0x0)
NVMF_CTRLR_IO_DONE = tpoint_id(GROUP_NVMF_CTRLR, 0x1)

_Q = ("qpair",)
TPOINTS: tuple[Tpoint, ...] = (
    _t(GROUP_ISCSI, 0x0, "ISCSI_READ_DONE", OWNER_ISCSI_CONN, OBJECT_NONE, False, ("",)),
    _t(GROUP_ISCSI, 0x3, "ISCSI_READ_PDU", OWNER_ISCSI_CONN, OBJECT_ISCSI_PDU, True, ("opc",)),
    _t(GROUP_ISCSI, 0x4, "ISCSI_TASK_DONE", OWNER_ISCSI_CONN, OBJECT_SCSI_TASK, False, ("",)),
    _t(GROUP_ISCSI, 0x5, "ISCSI_TASK_QUEUE", OWNER_ISCSI_CONN, OBJECT_SCSI_TASK, True, ("pdu",)),
    _t(GROUP_ISCSI, 0x6, "ISCSI_TASK_EXECUTED", OWNER_ISCSI_CONN, OBJECT_ISCSI_PDU, False, ("",)),
    _t(GROUP_ISCSI, 0x7, "ISCSI_PDU_COMPLETED", OWNER_ISCSI_CONN, OBJECT_ISCSI_PDU, False, ("",)),
    _t(GROUP_SCSI, 0x0, "SCSI_TASK_DONE", OWNER_SCSI_DEV, OBJECT_SCSI_TASK, False, ("",)),
    _t(GROUP_SCSI, 0x1, "SCSI_TASK_START", OWNER_SCSI_DEV, OBJECT_SCSI_TASK, False, ("",)),
    _t(GROUP_BDEV, 0x0, "BDEV_IO_START", OWNER_BDEV, OBJECT_BDEV_IO, True,
       ("type", "ctx", "offset"), "name"),
    _t(GROUP_BDEV, 0x1, "BDEV_IO_DONE", OWNER_BDEV, OBJECT_BDEV_IO, False, ("ctx",)),
    _t(GROUP_BDEV, 0x2, "BDEV_IOCH_CREATE", OWNER_BDEV, OBJECT_NONE, True, ("thread_id",), "name"),
    _t(GROUP_BDEV, 0x3, "BDEV_IOCH_DESTROY", OWNER_BDEV, OBJECT_NONE, False, ("thread_id",), "name"),
    _t(GROUP_NVMF_TCP, 0x00, "TCP_REQ_NEW", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, True, _Q),
    _t(GROUP_NVMF_TCP, 0x01, "TCP_REQ_NEED_BUFFER", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x04, "TCP_REQ_TX_H_TO_C", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x05, "TCP_REQ_RDY_TO_EXECUTE", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x06, "TCP_REQ_EXECUTING", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x08, "TCP_REQ_EXECUTED", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x09, "TCP_REQ_RDY_TO_COMPLETE", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x0a, "TCP_REQ_TRANSFER_C2H", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x0c, "TCP_REQ_COMPLETED", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x0d, "TCP_WRITE_START", OWNER_NVMF_TCP, OBJECT_NONE, False, _Q),
    _t(GROUP_NVMF_TCP, 0x0e, "TCP_WRITE_DONE", OWNER_NVMF_TCP, OBJECT_NONE, False, _Q),
    _t(GROUP_NVMF_TCP, 0x0f, "TCP_READ_DONE", OWNER_NVMF_TCP, OBJECT_NONE, False, _Q),
    _t(GROUP_NVMF_TCP, 0x10, "TCP_REQ_AWAIT_R2T_ACK", OWNER_NVMF_TCP, OBJECT_NVMF_TCP_IO, False, _Q),
    _t(GROUP_NVMF_TCP, 0x11, "TCP_QP_CREATE", OWNER_NVMF_TCP, OBJECT_NONE, False, ("",)),
    _t(GROUP_NVMF_TCP, 0x13, "TCP_QP_STATE_CHANGE", OWNER_NVMF_TCP, OBJECT_NONE, False, ("state",)),
    _t(GROUP_NVMF_TCP, 0x14, "TCP_QP_DISCONNECT", OWNER_NVMF_TCP, OBJECT_NONE, False, ("",)),
    _t(GROUP_NVMF_TCP, 0x15, "TCP_QP_DESTROY", OWNER_NVMF_TCP, OBJECT_NONE, False, ("",)),
    _t(GROUP_THREAD, 0x0, "THREAD_IOCH_GET", OWNER_NONE, OBJECT_NONE, False, ("refcnt",), "name"),
    _t(GROUP_THREAD, 0x1, "THREAD_IOCH_PUT", OWNER_NONE, OBJECT_NONE, False, ("refcnt",), "name"),
    _t(GROUP_THREAD, 0x10, "THREAD_CREATE", OWNER_THREAD, OBJECT_NONE, False, ("id",), "name"),
    _t(GROUP_THREAD, 0x11, "THREAD_EXIT", OWNER_THREAD, OBJECT_NONE, False, ("id",), "name"),
    _t(GROUP_THREAD, 0x12, "POLLER_REGISTER", OWNER_THREAD, OBJECT_NONE, False, ("id", "period_us"), "name"),
    _t(GROUP_THREAD, 0x13, "POLLER_UNREGISTER", OWNER_THREAD, OBJECT_NONE, False, ("id",), "name"),
    _t(GROUP_THREAD, 0x14, "POLLER_PAUSE", OWNER_THREAD, OBJECT_NONE, False, ("id",), "name"),
    _t(GROUP_THREAD, 0x15, "POLLER_RESUME", OWNER_THREAD, OBJECT_NONE, False, ("id",), "name"),
    _t(GROUP_NVMF_CTRLR, 0x0, "NVMF_CTRLR_IO_START", OWNER_NVMF_CTRLR, OBJECT_NVMF_CTRLR_IO, True,
       ("opc", "ctx", "nsid"), "subnqn"),
    _t(GROUP_NVMF_CTRLR, 0x1, "NVMF_CTRLR_IO_DONE", OWNER_NVMF_CTRLR, OBJECT_NVMF_CTRLR_IO, False,
       ("status",)),
)

TPOINTS_BY_ID: dict[int, Tpoint] = {t.id: t for t in TPOINTS}
assert len(TPOINTS_BY_ID) == len(TPOINTS), "duplicate trace point id"
assert all(t.group in GROUP_NAMES for t in TPOINTS), "trace point in an unregistered group"


def group_by_name(name: str) -> int | None:
    for gid, gname in GROUP_NAMES.items():
        if gname == name:
            return gid
    return None
