"""A namespace backed by a bdev: NVMe I/O -> bdev I/O, bdev status -> NVMe status."""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk import bdev as bdev_mod
from spydk.bdev import io as bio
from spydk.nvme.spec import GenericStatus, MediaStatus, StatusCodeType
from spydk.nvmf.io import complete_fused

if TYPE_CHECKING:
    from spydk.bdev import Bdev, BdevChannel, BdevEvent
    from spydk.nvmf.request import Buffer, Request


def _st(sc: int, sct: int = 0, dnr: bool = True) -> int:
    return (sc << 1) | (sct << 9) | (int(dnr) << 15)


ST_INTERNAL = _st(GenericStatus.INTERNAL_DEVICE_ERROR, dnr=False)
ST_ABORTED = _st(GenericStatus.ABORTED_BY_REQUEST, dnr=False)
ST_MISCOMPARE = _st(MediaStatus.COMPARE_FAILURE, StatusCodeType.MEDIA_ERROR)
ST_INVALID_OPCODE = _st(GenericStatus.INVALID_OPCODE)
ST_LBA_RANGE = _st(GenericStatus.LBA_OUT_OF_RANGE)
ST_NOT_READY = _st(GenericStatus.NAMESPACE_NOT_READY, dnr=False)
ST_WRITE_PROTECTED = _st(GenericStatus.NAMESPACE_IS_WRITE_PROTECTED)


def io_status(io: bio.BdevIO) -> int:
    """CQE status field of a failed bdev I/O."""
    s = io.status
    if s == bio.MISCOMPARE:
        return ST_MISCOMPARE
    if s == bio.NVME_ERROR:
        return _st(io.nvme_sc, io.nvme_sct)
    if s == bio.ABORTED:
        return ST_ABORTED
    return ST_INTERNAL


def rc_status(rc: int) -> int:
    """CQE status field for a submit that was refused with -errno."""
    if rc == -errno.EINVAL:
        return ST_LBA_RANGE
    if rc == -errno.ENOTSUP:
        return ST_INVALID_OPCODE
    if rc == -errno.EBADF:
        return ST_WRITE_PROTECTED
    if rc == -errno.ENOMEM:
        return ST_NOT_READY
    return ST_INTERNAL


def _done(io: bio.BdevIO, success: bool, req: Request) -> None:
    req.io_done(0 if success else io_status(io))


def _read_zcopy_done(io: bio.BdevIO, success: bool, req: Request) -> None:
    if success:
        iovs = io.iovs
        assert iovs is not None
        req.data = iovs[0] if len(iovs) == 1 else list(iovs)  # type: ignore[assignment]
        if io.pool_buf is not None:  # split read: pooled data, given back once it is sent
            req.pool_buf = io.pool_buf
            io.pool_buf = None
        req.io_done(0)
    else:
        req.io_done(io_status(io))


def _caw_done(io: bio.BdevIO, success: bool, req: Request) -> None:
    complete_fused(req, 0 if success else io_status(io))


class _Unmap:
    """Several DSM ranges in flight; completes the request after the last."""

    __slots__ = ("req", "left", "status")

    def __init__(self, req: Request, n: int):
        self.req = req
        self.left = n
        self.status = 0

    def done(self, status: int) -> None:
        if status and not self.status:
            self.status = status
        self.left -= 1
        if self.left == 0:
            self.req.io_done(self.status)


def _unmap_done(io: bio.BdevIO, success: bool, u: _Unmap) -> None:
    u.done(0 if success else io_status(io))


def _flush_done(io: bio.BdevIO, success: bool, req: Request) -> None:
    req.io_done(0 if success else io_status(io))


class BdevBackend:
    """NamespaceBackend over an open bdev descriptor; call from the app thread."""

    def __init__(self, bdev_name: str, on_remove: Callable[[], Any] | None = None):
        self.on_remove = on_remove
        self.desc = bdev_mod.open_ext(bdev_name, True, self._event)
        self.bdev: Bdev = self.desc.bdev
        self.block_size = self.bdev.block_size
        self.num_blocks = self.bdev.num_blocks
        self.uuid = self.bdev.uuid.bytes
        self.zcopy = self.bdev.zcopy_read
        # This thread's channel, taken on first use (the app thread runs all NVMe-oF I/O).
        self.io_channel: BdevChannel | None = None

    def _event(self, ev: BdevEvent, bdev: Bdev, _ctx: Any) -> None:
        if ev == bdev_mod.BdevEvent.REMOVE:
            if self.on_remove is not None:
                self.on_remove()
            self.close()
        elif ev == bdev_mod.BdevEvent.RESIZE:
            self.num_blocks = bdev.num_blocks

    def channel(self) -> BdevChannel:
        """The channel for desc.read_blocks/write_blocks; fast paths write
        ``b.io_channel or b.channel()`` to skip the call once it exists."""
        ch = self.io_channel
        if ch is None:
            ch = self.io_channel = self.desc.get_io_channel()
        return ch

    def close(self) -> None:
        if self.io_channel is not None:
            self.desc.put_io_channel(self.io_channel)
            self.io_channel = None
        self.desc.close()

    # -- I/O ------------------------------------------------------------------------------------

    def read(self, req: Request, offset_blocks: int, num_blocks: int) -> None:
        # No buffer: the bdev's own memory (zero-copy) or a pooled buffer the layer supplies,
        # waiting for one when the pool is exhausted; given back once the data is sent.
        rc = self.desc.read_blocks(self.io_channel or self.channel(), None, offset_blocks, num_blocks,
                                   _read_zcopy_done, req)
        if rc:
            req.io_done(rc_status(rc))

    def write(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None:
        rc = self.desc.write_blocks(self.io_channel or self.channel(), data, offset_blocks, num_blocks,
                                    _done, req)
        if rc:
            req.io_done(rc_status(rc))

    def compare(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None:
        rc = self.desc.compare_blocks(self.io_channel or self.channel(), data, offset_blocks, num_blocks,
                                      _done, req)
        if rc:
            req.io_done(rc_status(rc))

    def compare_and_write(self, req: Request, offset_blocks: int, num_blocks: int,
                          compare_data: Buffer, write_data: Buffer) -> None:
        rc = self.desc.compare_and_write_blocks(self.io_channel or self.channel(), [compare_data],
                                                [write_data], offset_blocks, num_blocks,
                                                _caw_done, req)
        if rc:
            complete_fused(req, rc_status(rc))

    def flush(self, req: Request) -> None:
        if not self.bdev.supports(bio.FLUSH):
            req.io_done(0)  # nothing cached
            return
        rc = self.desc.flush_blocks(self.io_channel or self.channel(), 0, self.num_blocks, _flush_done, req)
        if rc:
            req.io_done(rc_status(rc))

    def write_zeroes(self, req: Request, offset_blocks: int, num_blocks: int) -> None:
        rc = self.desc.write_zeroes_blocks(self.io_channel or self.channel(), offset_blocks, num_blocks,
                                           _done, req)
        if rc:
            req.io_done(rc_status(rc))

    def unmap(self, req: Request, ranges: list[tuple[int, int]]) -> None:
        if not self.bdev.supports(bio.UNMAP):
            req.io_done(0)  # deallocation is advisory
            return
        u = _Unmap(req, len(ranges))
        ch = self.io_channel or self.channel()
        for off, n in ranges:
            rc = self.desc.unmap_blocks(ch, off, n, _unmap_done, u)
            if rc:
                u.done(rc_status(rc))
