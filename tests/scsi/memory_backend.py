"""An in-memory BlockBackend for tests: error injection and deferred completion."""
from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Callable
from dataclasses import dataclass

from spydk.scsi.backend import IoCallback, SeekCallback


@dataclass(slots=True)
class InjectedError:
    op: str  # "read", "write", "unmap", "write_zeroes", "flush", "reset", "seek"
    offset_blocks: int = 0
    num_blocks: int = 1 << 62
    count: int = -1  # how many more I/Os to fail; -1 = forever


class MemoryBackend:
    """RAM disk implementing BlockBackend.

    ``deferred=True`` queues every completion in ``pending`` until ``complete_next()`` or
    ``complete_all()``, which lets tests hold I/O in flight (task management). ``inject()``
    makes I/Os that touch a block range fail.
    """

    def __init__(self, name: str = "Malloc0", num_blocks: int = 1024, block_size: int = 512, *,
                 write_cache: bool = True, supports_unmap: bool = True,
                 supports_write_zeroes: bool = True, unmap_reads_zeroes: bool = True,
                 supports_seek: bool = True, max_unmap_blocks: int = 0,
                 max_unmap_descriptors: int = 0, max_transfer_blocks: int = 0,
                 optimal_io_boundary: int = 0, physical_block_exp: int = 0,
                 deferred: bool = False, uuid: uuid_mod.UUID | None = None) -> None:
        self.name = name
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.uuid = uuid or uuid_mod.uuid5(uuid_mod.NAMESPACE_OID, name)
        self.write_cache = write_cache
        self.supports_unmap = supports_unmap
        self.supports_write_zeroes = supports_write_zeroes
        self.unmap_reads_zeroes = unmap_reads_zeroes
        self.supports_seek = supports_seek
        self.max_unmap_blocks = max_unmap_blocks
        self.max_unmap_descriptors = max_unmap_descriptors
        self.max_transfer_blocks = max_transfer_blocks
        self.optimal_io_boundary = optimal_io_boundary
        self.physical_block_exp = physical_block_exp
        self.data = bytearray(num_blocks * block_size)
        self.mapped = bytearray(num_blocks)  # 1 = allocated
        self.deferred = deferred
        self.pending: list[Callable[[], None]] = []
        self.errors: list[InjectedError] = []
        self.calls: list[tuple[str, int, int]] = []  # (op, offset, num) log for assertions

    # --- test controls ---

    def inject(self, op: str, offset_blocks: int = 0, num_blocks: int = 1 << 62,
               count: int = -1) -> InjectedError:
        err = InjectedError(op, offset_blocks, num_blocks, count)
        self.errors.append(err)
        return err

    def resize(self, num_blocks: int) -> None:
        bs = self.block_size
        if num_blocks > self.num_blocks:
            self.data.extend(bytes((num_blocks - self.num_blocks) * bs))
            self.mapped.extend(bytes(num_blocks - self.num_blocks))
        else:
            del self.data[num_blocks * bs:]
            del self.mapped[num_blocks:]
        self.num_blocks = num_blocks

    def complete_next(self) -> bool:
        if not self.pending:
            return False
        self.pending.pop(0)()
        return True

    def complete_all(self) -> int:
        n = 0
        while self.complete_next():
            n += 1
        return n

    # --- internals ---

    def _fails(self, op: str, offset: int, num: int) -> bool:
        for err in self.errors:
            if err.op == op and err.count != 0 and offset < err.offset_blocks + err.num_blocks \
                    and err.offset_blocks < offset + max(num, 1):
                if err.count > 0:
                    err.count -= 1
                return True
        return False

    def _finish(self, fn: Callable[[], None]) -> None:
        if self.deferred:
            self.pending.append(fn)
        else:
            fn()

    def _check_range(self, offset: int, num: int) -> None:
        if offset < 0 or num < 0 or offset + num > self.num_blocks:
            raise ValueError(f"I/O beyond capacity: {offset}+{num} > {self.num_blocks}")

    # --- BlockBackend ---

    def read(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview],
             cb: IoCallback) -> None:
        self._check_range(offset_blocks, num_blocks)
        self.calls.append(("read", offset_blocks, num_blocks))
        fail = self._fails("read", offset_blocks, num_blocks)

        def done() -> None:
            if not fail:
                pos = offset_blocks * self.block_size
                for iov in iovs:
                    n = len(iov)
                    iov[:] = self.data[pos:pos + n]
                    pos += n
            cb(not fail)
        self._finish(done)

    def write(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview],
              cb: IoCallback) -> None:
        self._check_range(offset_blocks, num_blocks)
        if sum(len(v) for v in iovs) != num_blocks * self.block_size:
            raise ValueError("write iovs do not match num_blocks")
        self.calls.append(("write", offset_blocks, num_blocks))
        fail = self._fails("write", offset_blocks, num_blocks)
        payload = b"".join(iovs)  # snapshot now, as a real device would DMA it

        def done() -> None:
            if not fail:
                pos = offset_blocks * self.block_size
                self.data[pos:pos + len(payload)] = payload
                self.mapped[offset_blocks:offset_blocks + num_blocks] = b"\x01" * num_blocks
            cb(not fail)
        self._finish(done)

    def unmap(self, ranges: list[tuple[int, int]], cb: IoCallback) -> None:
        for off, num in ranges:
            self._check_range(off, num)
        self.calls.extend(("unmap", off, num) for off, num in ranges)
        fail = any(self._fails("unmap", off, num) for off, num in ranges)

        def done() -> None:
            if not fail:
                bs = self.block_size
                for off, num in ranges:
                    self.data[off * bs:(off + num) * bs] = bytes(num * bs)
                    self.mapped[off:off + num] = bytes(num)
            cb(not fail)
        self._finish(done)

    def write_zeroes(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None:
        self._check_range(offset_blocks, num_blocks)
        self.calls.append(("write_zeroes", offset_blocks, num_blocks))
        fail = self._fails("write_zeroes", offset_blocks, num_blocks)

        def done() -> None:
            if not fail:
                bs = self.block_size
                self.data[offset_blocks * bs:(offset_blocks + num_blocks) * bs] = \
                    bytes(num_blocks * bs)
                self.mapped[offset_blocks:offset_blocks + num_blocks] = b"\x01" * num_blocks
            cb(not fail)
        self._finish(done)

    def flush(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None:
        self.calls.append(("flush", offset_blocks, num_blocks))
        fail = self._fails("flush", offset_blocks, num_blocks)
        self._finish(lambda: cb(not fail))

    def reset(self, cb: IoCallback) -> None:
        self.calls.append(("reset", 0, 0))
        fail = self._fails("reset", 0, 1)
        # A reset completes whatever is still queued first, as a device drains on reset.
        pending, self.pending = self.pending, []
        for fn in pending:
            fn()
        cb(not fail)

    def seek_data(self, offset_blocks: int, cb: SeekCallback) -> None:
        if self._fails("seek", offset_blocks, 1):
            cb(-1)
            return
        pos = self.mapped.find(b"\x01", offset_blocks)
        cb(self.num_blocks if pos < 0 else pos)

    def seek_hole(self, offset_blocks: int, cb: SeekCallback) -> None:
        if self._fails("seek", offset_blocks, 1):
            cb(-1)
            return
        pos = self.mapped.find(b"\x00", offset_blocks)
        cb(self.num_blocks if pos < 0 else pos)
