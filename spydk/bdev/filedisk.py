"""FileDisk: a bdev over a file or block device, driven by an asynchronous engine.

One engine per (module, thread): the module is the io_device, each thread's channel owns
an engine whose eventfd the reactor watches (reactor.add_reader), so completions arrive
as a callback on the channel's thread and nothing polls or blocks. Submissions made while
completions are being delivered are flushed with one system call at the end of the batch;
others are flushed from a message (one per batch of submissions).

O_DIRECT is used when the file system accepts it; caller buffers that are not aligned to
the block size (or read-only, or scattered over more than MAX_IOVS pieces) go through a
page-aligned bounce buffer.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from spydk.bdev.bdev import Bdev, BdevError, get_bdev, register_bdev
from spydk.bdev.io import FAILED, FLUSH, READ, RESET, SUCCESS, UNMAP, WRITE, WRITE_ZEROES, BdevIO
from spydk.bdev.module import BdevModule
from spydk.bdev.modutil import check_power_of_two_block_size
from spydk.sysio.base import MAX_IOVS, AlignedPool, Engine, EngineError, libc, writable_address
from spydk.thread import IoChannel, get_reactor, io_device_register, is_io_device

BLKSSZGET = 0x1268
BLKGETSIZE64 = 0x80081272
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10

ENGINE_DEPTH = 256


class EngineChannel:
    """A thread's engine and the I/O waiting for a free engine slot."""

    def __init__(self, engine: Engine, ioch: IoChannel):
        self.engine = engine
        self.thread = ioch.thread
        self.waiting: deque[tuple[FileDisk, BdevIO]] = deque()
        self.pool = AlignedPool()
        self.in_poll = False
        self.flush_queued = False
        self._out: list[tuple[Any, int]] = []
        self.flush_msg = self._flush_msg
        get_reactor().add_reader(engine.efd, self.thread, self.poll)

    def kick(self) -> None:
        """Make sure what was just queued gets submitted."""
        if not self.in_poll and not self.flush_queued:
            self.flush_queued = True
            self.thread.send_msg(self.flush_msg)

    def _flush_msg(self) -> None:
        self.flush_queued = False
        self.engine.flush()

    def poll(self) -> None:
        eng = self.engine
        eng.drain_eventfd()
        out = self._out
        self.in_poll = True
        try:
            while eng.reap(out):
                for io, res in out:
                    io.bdev.complete_io(self, io, res)  # type: ignore[union-attr]
                out.clear()
                w = self.waiting
                while w and eng.has_room():
                    disk, wio = w.popleft()
                    disk.submit_request(self, wio)
            eng.flush()
        finally:
            self.in_poll = False

    def close(self) -> None:
        get_reactor().remove_reader(self.engine.efd)
        self.engine.close()


class FileModule(BdevModule):
    """Base of the aio and uring modules: engine_factory makes a thread's engine."""

    engine_factory: Callable[[int], Engine]

    def io_device(self) -> Any:
        if not is_io_device(self):
            io_device_register(self, self._create_channel, self._destroy_channel, self.name)
        return self

    def _create_channel(self, dev: Any, ioch: IoChannel) -> None:
        ioch.ctx = EngineChannel(type(self).engine_factory(ENGINE_DEPTH), ioch)

    def _destroy_channel(self, dev: Any, ioch: IoChannel) -> None:
        ioch.ctx.close()


def _fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    rc = libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length))
    return 0 if rc == 0 else -ctypes.get_errno()


class FileDisk(Bdev):
    """Subclasses set product_name and config methods; the I/O path is here."""

    def __init__(self, name: str, module: FileModule, filename: str, fd: int, direct: bool,
                 block_size: int, num_blocks: int, *, uuid: str | None, readonly: bool,
                 block_size_override: bool, fallocate: bool, product_name: str):
        super().__init__(name, module, block_size, num_blocks, uuid=uuid, product_name=product_name,
                         write_cache=not direct)
        self.filename = filename
        self.fd = fd
        self.direct = direct
        self.readonly = readonly
        self.block_size_override = block_size_override
        self.fallocate = fallocate
        self.io_device = module.io_device()
        self._shift = block_size.bit_length() - 1
        self._mask = block_size - 1

    def io_type_supported(self, io_type: int) -> bool:
        if io_type in (READ, FLUSH, RESET):
            return True
        if io_type == WRITE:
            return not self.readonly
        if io_type in (UNMAP, WRITE_ZEROES):
            return self.fallocate and not self.readonly
        return False

    def submit_request(self, ctx: EngineChannel, io: BdevIO) -> None:
        t = io.type
        if t == READ or t == WRITE:
            self._rw(ctx, io, t == WRITE)
        elif t == FLUSH:
            if not ctx.engine.prep_fsync(self.fd, io):
                ctx.waiting.append((self, io))
                return
            ctx.kick()
        elif t == UNMAP or t == WRITE_ZEROES:
            # fallocate has no Linux AIO form; it is a metadata update, done inline as SPDK does
            mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            rc = _fallocate(self.fd, mode, io.offset_blocks << self._shift, io.nbytes)
            io.complete(SUCCESS if rc == 0 else FAILED)
        elif t == RESET:
            io.complete(SUCCESS)  # the layer has drained outstanding I/O already
        else:
            io.complete(FAILED)

    def _rw(self, ctx: EngineChannel, io: BdevIO, write: bool) -> None:
        iovs = io.iovs
        assert iovs is not None
        addrs: list[tuple[int, int]] = []
        keep: list[Any] = []
        bounce = None
        mask = self._mask if self.direct else 0
        if len(iovs) <= MAX_IOVS:
            for iov in iovs:
                r = writable_address(iov)
                n = len(iov)
                if r is None or (r[0] | n) & mask:
                    break
                addrs.append((r[0], n))
                keep.append(r[1])
            else:
                bounce = None
        if len(addrs) != len(iovs):
            bounce = ctx.pool.get(io.nbytes)
            keep.clear()
            if write:
                io.gather_into(bounce[2][:io.nbytes])
            addrs = [(bounce[0], io.nbytes)]
        io.driver_ctx = (keep, bounce)
        if not ctx.engine.prep_rw(write, self.fd, addrs, io.offset_blocks << self._shift, io):
            io.driver_ctx = None
            if bounce is not None:
                ctx.pool.put(bounce)
            ctx.waiting.append((self, io))
            return
        ctx.kick()

    def complete_io(self, ctx: EngineChannel, io: BdevIO, res: int) -> None:
        dc = io.driver_ctx
        io.driver_ctx = None
        ok = res == io.nbytes if io.type != FLUSH else res == 0
        if dc is not None:
            bounce = dc[1]
            if bounce is not None:
                if ok and io.type == READ:
                    io.scatter(bounce[2][:io.nbytes])
                ctx.pool.put(bounce)
        io.complete(SUCCESS if ok else FAILED)

    def rescan(self) -> None:
        size = _size_of(self.fd)
        blocks = size >> self._shift
        if blocks != self.num_blocks:
            self.notify_blockcnt_change(blocks)

    def destruct(self, done: Callable[[int], Any]) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        done(0)


def _size_of(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("<Q", buf)[0])
    return st.st_size


def open_file_disk(cls: type[FileDisk], module: FileModule, name: str, filename: str,
                   block_size: int | None, *, uuid: str | None, readonly: bool = False,
                   fallocate: bool = False) -> FileDisk:
    """Validate, open (O_DIRECT when the file system allows), size and register."""
    if not name:
        raise BdevError(errno.EINVAL, "name must not be empty")
    if not filename:
        raise BdevError(errno.EINVAL, "filename must not be empty")
    if get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev name {name!r} already exists")
    if block_size:  # 0 or absent: detect
        check_power_of_two_block_size(block_size)
    if uuid is not None:
        import uuid as _uuid
        try:
            _uuid.UUID(uuid)
        except ValueError:
            raise BdevError(errno.EINVAL, f"uuid {uuid!r} is not a valid UUID") from None
    try:
        st = os.stat(filename)
    except FileNotFoundError:
        raise BdevError(errno.ENOENT, f"filename {filename!r} does not exist") from None
    except OSError as e:
        raise BdevError(e.errno or errno.EIO, f"filename {filename!r}: {e.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise BdevError(errno.EINVAL, f"filename {filename!r} is neither a regular file nor a block device")
    flags = (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC
    direct = True
    try:
        fd = os.open(filename, flags | os.O_DIRECT)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise BdevError(e.errno or errno.EIO, f"cannot open filename {filename!r}: {e.strerror}") from None
        direct = False  # e.g. tmpfs refuses O_DIRECT: buffered I/O, said in driver_specific
        try:
            fd = os.open(filename, flags)
        except OSError as e2:
            raise BdevError(e2.errno or errno.EIO, f"cannot open filename {filename!r}: {e2.strerror}") from None
    try:
        if stat.S_ISBLK(st.st_mode):
            detected = struct.unpack("<i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))[0]
        else:
            detected = st.st_blksize or 512
        bs = block_size or detected
        if block_size and stat.S_ISBLK(st.st_mode) and block_size < detected:
            raise BdevError(errno.EINVAL, f"block_size {block_size} is smaller than the device's "
                                          f"logical block size {detected}")
        size = _size_of(fd)
        num_blocks = size // bs
        if num_blocks < 1:
            raise BdevError(errno.EINVAL, f"filename {filename!r} is too small ({size} bytes) for "
                                          f"one block of {bs} bytes")
        module.io_device()
        try:
            disk = cls(name, module, filename, fd, direct, bs, num_blocks, uuid=uuid, readonly=readonly,
                       block_size_override=bool(block_size), fallocate=fallocate,
                       product_name=cls.product)  # type: ignore[attr-defined]
            register_bdev(disk)
        except BdevError:
            raise
    except BaseException:
        os.close(fd)
        raise
    return disk


def probe_engine(factory: Callable[[int], Engine], what: str) -> None:
    """Create and close an engine now, so a kernel that refuses it fails the RPC clearly."""
    try:
        factory(2).close()
    except EngineError as e:
        raise BdevError(e.errno or errno.ENOSYS, f"{what} is not available: {e.strerror or e}") from None
