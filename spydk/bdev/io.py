"""BdevIO: one block I/O request, its types and statuses.

A BdevIO is owned by the bdev layer and recycled after its completion callback returns:
callers and modules must not keep a reference to it (or to ``iovs`` the layer supplied)
beyond the callback.

Modules see these fields:

    io.type                 IoType value (plain int)
    io.offset_blocks        first block
    io.num_blocks           number of blocks
    io.nbytes               num_blocks * block_size
    io.iovs                 list of writable buffers whose lengths sum to nbytes
                            (READ/WRITE/COMPARE; None for a zero-copy read, see below)
    io.compare_iovs         COMPARE_AND_WRITE only: the data to compare (iovs is the write data)
    io.driver_ctx           free for the module's per-I/O state
    io.complete(status)     finish it (IoStatus.SUCCESS by default), from any code on the
                            channel's thread, during submit_request or later

A module that finishes an I/O inside submit_request may instead return its status from
submit_request (and not call complete): the layer then queues the completion itself.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spydk.bdev.bdev import Bdev
    from spydk.bdev.channel import BdevChannel


class IoType(enum.IntEnum):
    """SPDK's spdk_bdev_io_type numbering."""

    INVALID = 0
    READ = 1
    WRITE = 2
    UNMAP = 3
    FLUSH = 4
    RESET = 5
    NVME_ADMIN = 6
    NVME_IO = 7
    NVME_IO_MD = 8
    WRITE_ZEROES = 9
    ZCOPY = 10
    GET_ZONE_INFO = 11
    ZONE_MANAGEMENT = 12
    ZONE_APPEND = 13
    COMPARE = 14
    COMPARE_AND_WRITE = 15
    ABORT = 16
    SEEK_HOLE = 17
    SEEK_DATA = 18
    COPY = 19
    NVME_IOV_MD = 20


NUM_IO_TYPES = 21

# Keys of bdev_get_bdevs' "supported_io_types", in SPDK's order.
SUPPORTED_IO_TYPE_KEYS: tuple[tuple[str, IoType], ...] = (
    ("read", IoType.READ), ("write", IoType.WRITE), ("unmap", IoType.UNMAP),
    ("flush", IoType.FLUSH), ("reset", IoType.RESET), ("nvme_admin", IoType.NVME_ADMIN),
    ("nvme_io", IoType.NVME_IO), ("nvme_io_md", IoType.NVME_IO_MD),
    ("write_zeroes", IoType.WRITE_ZEROES), ("zcopy", IoType.ZCOPY),
    ("get_zone_info", IoType.GET_ZONE_INFO), ("zone_management", IoType.ZONE_MANAGEMENT),
    ("zone_append", IoType.ZONE_APPEND), ("compare", IoType.COMPARE),
    ("compare_and_write", IoType.COMPARE_AND_WRITE), ("abort", IoType.ABORT),
    ("seek_hole", IoType.SEEK_HOLE), ("seek_data", IoType.SEEK_DATA), ("copy", IoType.COPY),
    ("nvme_iov_md", IoType.NVME_IOV_MD),
)


class IoStatus(enum.IntEnum):
    """SPDK's spdk_bdev_io_status values."""

    AIO_ERROR = -8
    ABORTED = -7
    FIRST_FUSED_FAILED = -6
    MISCOMPARE = -5
    NOMEM = -4
    SCSI_ERROR = -3
    NVME_ERROR = -2
    FAILED = -1
    PENDING = 0
    SUCCESS = 1


# Plain ints for the hot path (IntEnum attribute lookups cost more than a global int).
READ = 1
WRITE = 2
UNMAP = 3
FLUSH = 4
RESET = 5
WRITE_ZEROES = 9
COMPARE = 14
COMPARE_AND_WRITE = 15
SUCCESS = 1
PENDING = 0
FAILED = -1
NOMEM = -4
MISCOMPARE = -5
ABORTED = -7
NVME_ERROR = -2

IoCallback = Callable[["BdevIO", bool, Any], Any]

# Split/emulation stages kept in BdevIO.stage.
STAGE_NONE = 0
STAGE_SPLIT = 1
STAGE_COMPARE_READ = 2     # emulated COMPARE: reading into a bounce buffer
STAGE_CAW_READ = 3         # emulated COMPARE_AND_WRITE: compare step
STAGE_CAW_WRITE = 4        # emulated COMPARE_AND_WRITE: write step


class BdevIO:
    __slots__ = (
        "bdev", "ch", "type", "status", "offset_blocks", "num_blocks", "nbytes", "iovs",
        "compare_iovs", "cb", "cb_arg", "submit_ns", "in_submit", "parent", "pool_buf",
        "driver_ctx", "nvme_cdw0", "nvme_sct", "nvme_sc", "_iov1",
        # split / emulation state (parent side)
        "stage", "split_next", "split_left", "split_outstanding", "split_status",
        "split_byte", "zero_fill",
    )

    def __init__(self, ch: BdevChannel | None = None) -> None:
        self.bdev: Bdev | None = None
        self.ch: Any = ch
        self.type = 0
        self.status = PENDING
        self.offset_blocks = 0
        self.num_blocks = 0
        self.nbytes = 0
        self.iovs: list[Any] | None = None
        self.compare_iovs: list[Any] | None = None
        self.cb: IoCallback | None = None
        self.cb_arg: Any = None
        self.submit_ns = 0
        self.in_submit = False
        self.parent: BdevIO | None = None
        self.pool_buf: Any = None
        self.driver_ctx: Any = None
        self.nvme_cdw0 = 0
        self.nvme_sct = 0
        self.nvme_sc = 0
        self._iov1: list[Any] = [None]
        self.stage = STAGE_NONE
        self.split_next = 0
        self.split_left = 0
        self.split_outstanding = 0
        self.split_status = SUCCESS
        self.split_byte = 0
        self.zero_fill = False

    # -- completion (called by modules) ------------------------------------------------

    def complete(self, status: int = SUCCESS) -> None:
        """Finish the I/O. Called inside submit_request, the completion is queued on the
        channel and delivered from the thread's next message batch (so a callback that
        resubmits cannot recurse without bound); called later (from a poller or another
        I/O's callback), it is delivered at once."""
        self.status = status
        if self.in_submit:
            ch = self.ch
            cq = ch.cq
            if not cq:
                ch.thread.send_msg(ch.drain)
            cq.append(self)
        else:
            self.ch.finish(self)

    def complete_nvme(self, cdw0: int, sct: int, sc: int) -> None:
        """Finish with an NVMe status (sct/sc 0/0 means success)."""
        self.nvme_cdw0 = cdw0
        self.nvme_sct = sct
        self.nvme_sc = sc
        self.complete(SUCCESS if sct == 0 and sc == 0 else NVME_ERROR)

    # -- helpers for modules -------------------------------------------------------------

    def scatter(self, src: memoryview) -> None:
        """Copy ``src`` (nbytes long) into iovs (a module's read path)."""
        iovs = self.iovs
        assert iovs is not None
        if len(iovs) == 1:
            iovs[0][:] = src
            return
        pos = 0
        for iov in iovs:
            n = len(iov)
            iov[:] = src[pos:pos + n]
            pos += n

    def gather_into(self, dst: memoryview, iovs: list[Any] | None = None) -> None:
        """Copy iovs (or the given list) into ``dst`` (a module's write path)."""
        if iovs is None:
            iovs = self.iovs
        assert iovs is not None
        if len(iovs) == 1:
            dst[:] = iovs[0]
            return
        pos = 0
        for iov in iovs:
            n = len(iov)
            dst[pos:pos + n] = iov
            pos += n

    def data(self) -> bytes:
        """The iovs joined (a copy: for tests and slow paths)."""
        return b"".join(bytes(v) for v in (self.iovs or ()))

    @property
    def success(self) -> bool:
        return self.status == SUCCESS

    def __repr__(self) -> str:
        try:
            t = IoType(self.type).name
        except ValueError:
            t = str(self.type)
        name = self.bdev.name if self.bdev is not None else "?"
        return f"<BdevIO {t} {name} off={self.offset_blocks} n={self.num_blocks} status={self.status}>"
