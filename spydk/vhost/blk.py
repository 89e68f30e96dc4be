"""vhost-blk: a bdev served as a virtio-blk device (virtio 1.1 section 5.2).

Zero-copy: READ and WRITE hand the bdev layer the guest-memory views of the request's
descriptors; the bdev reads into / writes from guest memory directly.
"""
from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from spydk.bdev import BdevDesc, BdevEvent, BdevIO, IoType, open_ext
from spydk.bdev import BdevError as _BdevError
from spydk.bdev.io import READ, WRITE
from spydk.vhost.controller import RingState, VhostController, VhostError
from spydk.vhost.spec import (
    BLK_CONFIG,
    BLK_DISCARD_SEG,
    BLK_F_BLK_SIZE,
    BLK_F_DISCARD,
    BLK_F_FLUSH,
    BLK_F_MQ,
    BLK_F_RO,
    BLK_F_SEG_MAX,
    BLK_F_WRITE_ZEROES,
    BLK_ID_BYTES,
    BLK_REQ_HDR,
    BLK_S_IOERR,
    BLK_S_OK,
    BLK_S_UNSUPP,
    BLK_T_DISCARD,
    BLK_T_FLUSH,
    BLK_T_GET_ID,
    BLK_T_IN,
    BLK_T_OUT,
    BLK_T_WRITE_ZEROES,
    SECTOR,
    bit,
)
from spydk.vhost.virtqueue import Chain

log = logging.getLogger("spydk.vhost")

MAX_QUEUES = 16
SEG_MAX = 126
MAX_DISCARD_SECTORS = 0x3FFFFF     # 2 GiB - 512 per discard/write-zeroes request
_hdr_from = BLK_REQ_HDR.unpack_from
_HDR_SIZE = BLK_REQ_HDR.size


def take(views: list[memoryview], n: int) -> tuple[bytes, list[memoryview]]:
    """The first n bytes of a view list (copied: headers are small) and the views after them."""
    if views and len(views[0]) >= n:
        v = views[0]
        rest = views[1:] if len(v) == n else [v[n:], *views[1:]]
        return bytes(v[:n]), rest
    out = bytearray()
    i = 0
    while i < len(views) and len(out) < n:
        v = views[i]
        need = n - len(out)
        if len(v) > need:
            out += v[:need]
            return bytes(out), [v[need:], *views[i + 1:]]
        out += v
        i += 1
    return bytes(out), views[i:]


class BlkTask:
    __slots__ = ("rs", "head", "status", "written", "ctrlr")

    def __init__(self, ctrlr: VhostBlkController, rs: RingState, head: int, status: memoryview,
                 written: int):
        self.ctrlr = ctrlr
        self.rs = rs
        self.head = head
        self.status = status
        self.written = written


class VhostBlkController(VhostController):
    kind = "blk"

    def __init__(self, name: str, socket_dir: Path, bdev_name: str, *, readonly: bool = False,
                 cpumask: int = 1, packed_ring: bool = False):
        super().__init__(name, socket_dir, cpumask)
        self.bdev_name = bdev_name
        self.readonly = readonly
        self.packed_ring = packed_ring
        try:
            self.desc: BdevDesc = open_ext(bdev_name, not readonly, self._bdev_event)
        except _BdevError as e:
            raise VhostError(f"controller {name}: {e}", e.errno) from None
        self.bdev = self.desc.bdev
        self.ch: Any = None
        self.serial = self.bdev.name.encode()[:BLK_ID_BYTES].ljust(BLK_ID_BYTES, b"\0")

    def _bdev_event(self, ev: BdevEvent, bdev: Any, ctx: Any) -> None:
        if ev == BdevEvent.REMOVE:
            log.warning("%s: bdev %s is being removed; disconnecting the front end", self.name, bdev.name)
            self.disconnect(self._release_bdev)

    def _release_bdev(self) -> None:
        if self.ch is not None:
            self.desc.put_io_channel(self.ch)
            self.ch = None
        self.desc.close()

    def close(self, done: Any) -> None:
        def after() -> None:
            if not self.desc.closed:
                self._release_bdev()
            done()
        super().close(after)

    # -- device ---------------------------------------------------------------------------

    def max_queues(self) -> int:
        return MAX_QUEUES

    def device_features(self) -> int:
        f = bit(BLK_F_SEG_MAX) | bit(BLK_F_BLK_SIZE) | bit(BLK_F_MQ)
        b = self.bdev
        if self.readonly:
            f |= bit(BLK_F_RO)
        if b.supports(IoType.FLUSH):
            f |= bit(BLK_F_FLUSH)
        if not self.readonly and b.supports(IoType.UNMAP):
            f |= bit(BLK_F_DISCARD)
        if not self.readonly and b.supports(IoType.WRITE_ZEROES):
            f |= bit(BLK_F_WRITE_ZEROES)
        return f

    def config_space(self) -> bytes:
        b = self.bdev
        capacity = b.num_blocks * b.block_size // SECTOR
        align = max(1, b.block_size // SECTOR)
        return BLK_CONFIG.pack(capacity, 0, SEG_MAX, 0, 0, 0, b.block_size,
                               0, 0, 1, 0,          # topology
                               0, 0, MAX_QUEUES,    # writeback, unused, num_queues
                               MAX_DISCARD_SECTORS, 1, align,
                               MAX_DISCARD_SECTORS, 1, 1)

    def on_ring_started(self, rs: RingState) -> None:
        if self.ch is None and not self.desc.closed:
            self.ch = self.desc.get_io_channel()

    def on_all_stopped(self) -> None:
        if self.ch is not None:
            self.desc.put_io_channel(self.ch)
            self.ch = None

    def config_entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"method": "vhost_create_blk_controller", "params": {
            "ctrlr": self.name, "dev_name": self.bdev_name, "readonly": self.readonly,
            "cpumask": f"0x{self.cpumask:x}"}}]
        return out + self.coalescing_entries()

    def backend_info(self) -> dict[str, Any]:
        return {"block": {"readonly": self.readonly, "bdev": self.bdev_name,
                          "transport": "vhost_user_blk"}}

    # -- requests -------------------------------------------------------------------------

    def handle_chain(self, rs: RingState, chain: Chain) -> None:
        w = chain.writable
        if not w:
            self.fail(rs, f"request {chain.head} has no device-writable status byte")
            rs.outstanding -= 1
            return
        last = w[-1]
        status = last[len(last) - 1:]
        data_in = w[:-1] if len(last) == 1 else [*w[:-1], last[:-1]]
        r = chain.readable
        if r and len(r[0]) == _HDR_SIZE:     # the header in a descriptor of its own (Linux, QEMU)
            typ, _prio, sector = _hdr_from(r[0])
            data_out = r[1:]
        else:
            hdr, data_out = take(r, _HDR_SIZE)
            if len(hdr) < _HDR_SIZE:
                self.fail(rs, f"request {chain.head} has a {len(hdr)}-byte header")
                rs.outstanding -= 1
                return
            typ, _prio, sector = _hdr_from(hdr)
        task = BlkTask(self, rs, chain.head, status, 1)
        b = self.bdev
        bs = b.block_size
        desc, ch = self.desc, self.ch
        if ch is None:
            self._finish(task, BLK_S_IOERR)
            return
        if typ == BLK_T_IN or typ == BLK_T_OUT:
            views = data_in if typ == BLK_T_IN else data_out
            nbytes = 0
            for v in views:
                nbytes += len(v)
            off = sector * SECTOR
            if nbytes == 0 or nbytes % bs or off % bs:
                self._finish(task, BLK_S_IOERR)
                return
            if typ == BLK_T_IN:
                task.written = nbytes + 1
                io_type = READ
            elif self.readonly:
                self._finish(task, BLK_S_IOERR)
                return
            else:
                io_type = WRITE
            # stacked_rw returns 1 when the bdev (malloc, null) finished the I/O in this call:
            # the request completes here, with no completion message and reactor iteration.
            rc = desc.stacked_rw(ch, io_type, views, off // bs, nbytes // bs, _io_done, task)
            if rc == 1:
                status[0] = BLK_S_OK
                self.complete(rs, task.head, task.written)
                return
        elif typ == BLK_T_FLUSH:
            rc = desc.flush_blocks(ch, 0, b.num_blocks, _io_done, task)
            if rc == -errno.ENOTSUP:
                self._finish(task, BLK_S_OK)
                return
        elif typ == BLK_T_GET_ID:
            n = 0
            for v in data_in:
                k = min(len(v), BLK_ID_BYTES - n)
                v[:k] = self.serial[n:n + k]
                n += k
            task.written = n + 1
            self._finish(task, BLK_S_OK)
            return
        elif typ == BLK_T_DISCARD or typ == BLK_T_WRITE_ZEROES:
            seg, _rest = take(data_out, BLK_DISCARD_SEG.size)
            if self.readonly or len(seg) < BLK_DISCARD_SEG.size:
                self._finish(task, BLK_S_IOERR)
                return
            s_sector, s_num, _flags = BLK_DISCARD_SEG.unpack(seg)
            off, length = s_sector * SECTOR, s_num * SECTOR
            if off % bs or length % bs or not length:
                self._finish(task, BLK_S_IOERR)
                return
            if typ == BLK_T_DISCARD:
                rc = desc.unmap_blocks(ch, off // bs, length // bs, _io_done, task)
            else:
                rc = desc.write_zeroes_blocks(ch, off // bs, length // bs, _io_done, task)
        else:
            self._finish(task, BLK_S_UNSUPP)
            return
        if rc:
            if rc == -errno.ENOTSUP:
                self._finish(task, BLK_S_UNSUPP)
            else:
                # -EINVAL (out of range) and -ENOMEM: the request fails, the device lives on
                self._finish(task, BLK_S_IOERR)

    def _finish(self, task: BlkTask, st: int) -> None:
        task.status[0] = st
        self.complete(task.rs, task.head, task.written)


def _io_done(io: BdevIO, success: bool, task: BlkTask) -> None:
    task.status[0] = BLK_S_OK if success else BLK_S_IOERR
    task.ctrlr.complete(task.rs, task.head, task.written if success else 1)

