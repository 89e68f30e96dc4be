"""A bdev descriptor and channel as the SCSI layer's BlockBackend.

    backend = open_bdev_backend("Malloc0")   # on a spydk Thread; raises bdev.BdevError
    device.add_lun(0, backend)
    backend.close()

Completion callbacks ride in the bdev layer's ``cb_arg``, so an I/O allocates nothing
here. A submission the bdev layer refuses for lack of BdevIOs (-ENOMEM) is retried from
the thread's next message; any other refusal completes the command as failed.
"""
from __future__ import annotations

import errno
import uuid as uuid_mod
from collections.abc import Callable
from typing import Any

from spydk import bdev as bdev_mod
from spydk.bdev import Bdev, BdevChannel, BdevDesc, BdevEvent
from spydk.bdev.io import UNMAP, BdevIO
from spydk.scsi.backend import IoCallback, SeekCallback
from spydk.thread import get_thread

_ENOMEM = -errno.ENOMEM


def _done(io: BdevIO, ok: bool, cb: IoCallback) -> None:
    cb(ok)


class BdevBackend:
    """BlockBackend over one open bdev (one channel: the opening thread's)."""

    def __init__(self, desc: BdevDesc) -> None:
        bdev: Bdev = desc.bdev
        self.desc = desc
        self.bdev = bdev
        self.ch: BdevChannel = desc.get_io_channel()
        self.thread = get_thread()
        self.name = bdev.name
        self.block_size = bdev.block_size
        self.uuid: uuid_mod.UUID = bdev.uuid
        self.write_cache = bdev.write_cache
        self.supports_unmap = bdev.supports(UNMAP)
        self.supports_write_zeroes = True  # the bdev layer emulates it with writes
        self.unmap_reads_zeroes = bool(getattr(bdev, "unmap_reads_zeroes", False))
        self.supports_seek = False
        self.max_unmap_blocks = 0
        self.max_unmap_descriptors = 0
        self.max_transfer_blocks = bdev.max_rw_blocks
        self.optimal_io_boundary = bdev.optimal_io_boundary
        ratio = max(1, bdev.physical_block_size // bdev.block_size)
        self.physical_block_exp = ratio.bit_length() - 1
        # Set by the owner: the ScsiLun (for RESIZE) and what to do when the bdev goes away.
        self.lun: Any = None
        self.on_remove: Callable[[BdevBackend], Any] | None = None
        self.closed = False

    @property
    def num_blocks(self) -> int:
        return self.bdev.num_blocks

    def _event(self, ev: BdevEvent) -> None:
        if ev == BdevEvent.RESIZE and self.lun is not None:
            self.lun.capacity_changed()
        elif ev == BdevEvent.REMOVE:
            if self.on_remove is not None:
                self.on_remove(self)
            else:
                self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.desc.put_io_channel(self.ch)
        self.desc.close()

    # -- submission -------------------------------------------------------------------

    def _check(self, rc: int, retry: Callable[[], None], cb: IoCallback) -> None:
        if rc == 0:
            return
        if rc == _ENOMEM and self.thread is not None and not self.closed:
            self.thread.send_msg(retry)
        else:
            cb(False)

    def read(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview], cb: IoCallback) -> None:
        if self.closed:
            return cb(False)
        rc = self.desc.readv_blocks(self.ch, iovs, offset_blocks, num_blocks, _done, cb)
        if rc:
            self._check(rc, lambda: self.read(offset_blocks, num_blocks, iovs, cb), cb)

    def write(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview], cb: IoCallback) -> None:
        if self.closed:
            return cb(False)
        rc = self.desc.writev_blocks(self.ch, iovs, offset_blocks, num_blocks, _done, cb)
        if rc:
            self._check(rc, lambda: self.write(offset_blocks, num_blocks, iovs, cb), cb)

    def unmap(self, ranges: list[tuple[int, int]], cb: IoCallback) -> None:
        ranges = [r for r in ranges if r[1] > 0]
        if not ranges:
            return cb(True)
        if self.closed:
            return cb(False)
        state = [len(ranges), True]

        def one(io: Any, ok: bool, _arg: Any) -> None:
            state[0] -= 1
            if not ok:
                state[1] = False
            if state[0] == 0:
                cb(bool(state[1]))

        for off, num in ranges:
            rc = self.desc.unmap_blocks(self.ch, off, num, one)
            if rc:
                one(None, False, None)

    def write_zeroes(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None:
        if num_blocks == 0:
            return cb(True)
        if self.closed:
            return cb(False)
        rc = self.desc.write_zeroes_blocks(self.ch, offset_blocks, num_blocks, _done, cb)
        if rc:
            self._check(rc, lambda: self.write_zeroes(offset_blocks, num_blocks, cb), cb)

    def flush(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None:
        if self.closed:
            return cb(False)
        if num_blocks == 0:  # SYNCHRONIZE CACHE with 0 blocks: to the end of the medium
            num_blocks = max(0, self.bdev.num_blocks - offset_blocks)
        rc = self.desc.flush_blocks(self.ch, offset_blocks, num_blocks, _done, cb)
        if rc == -errno.ENOTSUP:
            cb(True)  # nothing volatile to flush
        elif rc:
            self._check(rc, lambda: self.flush(offset_blocks, num_blocks, cb), cb)

    def reset(self, cb: IoCallback) -> None:
        if self.closed:
            return cb(False)
        rc = self.desc.reset(self.ch, _done, cb)
        if rc:
            self._check(rc, lambda: self.reset(cb), cb)

    def seek_data(self, offset_blocks: int, cb: SeekCallback) -> None:
        cb(-1)  # supports_seek is False: the SCSI layer reports everything mapped

    def seek_hole(self, offset_blocks: int, cb: SeekCallback) -> None:
        cb(-1)


def open_bdev_backend(name: str, write: bool = True) -> BdevBackend:
    """Open bdev ``name`` on the current thread. Raises bdev.BdevError (errno set)."""
    holder: list[BdevBackend] = []

    def event(ev: BdevEvent, _bdev: Bdev, _ctx: Any) -> None:
        if holder:
            holder[0]._event(ev)

    desc = bdev_mod.open_ext(name, write, event)
    backend = BdevBackend(desc)
    holder.append(backend)
    return backend
