"""io_uring over raw system calls: io_uring_setup/io_uring_enter and mmap'ed rings.

Why not a binding: the PyPI ``liburing`` wrapper (checked 2026.3.30) refuses memoryviews
in io_uring_prep_read and lacks io_uring_peek_batch_cqe, and marks parts untested; the
ABI we need is small (one setup, one enter, one register, three mmaps, 64-byte SQEs and
16-byte CQEs), so it is written here with struct and mmap and no native dependency.

No SQPOLL: the kernel reads the submission tail inside io_uring_enter, whose entry is a
full barrier, so plain stores into the mmap are ordered enough. Completions are read
from the CQ ring between our reads of the kernel-written tail and our head update.
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from typing import Any

from spydk.sysio.base import MAX_IOVS, Engine, EngineError, syscall

# struct io_uring_params: 10 u32 then the two offset blocks (10 u32 + u64 each... see below)
PARAMS = struct.Struct("<IIIIII I III" + "IIIIIIIIQ" + "IIIIIIIIQ")
assert PARAMS.size == 120
SQE = struct.Struct("<BBHiQQIIQHHiQQ")
assert SQE.size == 64
CQE = struct.Struct("<QiI")
assert CQE.size == 16
IOVEC = struct.Struct("<QQ")

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_FEAT_SINGLE_MMAP = 1
IORING_REGISTER_EVENTFD = 4
IORING_ENTER_GETEVENTS = 1

OP_READV = 1
OP_WRITEV = 2
OP_FSYNC = 3
IORING_FSYNC_DATASYNC = 1


class IoUring(Engine):
    def __init__(self, depth: int = 128):
        self.depth = depth
        params = ctypes.create_string_buffer(PARAMS.size)
        fd = syscall("io_uring_setup", ctypes.c_uint(depth), params)
        if fd < 0:
            why = os.strerror(-fd)
            if fd in (-errno.EPERM, -errno.ENOSYS):
                why += " (io_uring disabled: see /proc/sys/kernel/io_uring_disabled, seccomp)"
            raise EngineError(-fd, f"io_uring_setup({depth}) failed: {why}")
        self.fd = fd
        p = PARAMS.unpack(params.raw)
        sq_entries, cq_entries, _flags, _cpu, _idle, features = p[0:6]
        (sq_head, sq_tail, sq_mask, _sq_n, _sq_flags, _dropped, sq_array) = p[10:17]
        (cq_head, cq_tail, cq_mask, _cq_n, _overflow, cq_cqes) = p[19:25]
        sq_size = sq_array + sq_entries * 4
        cq_size = cq_cqes + cq_entries * CQE.size
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        try:
            if features & IORING_FEAT_SINGLE_MMAP:
                sq_size = cq_size = max(sq_size, cq_size)
                self._sq_map = mmap.mmap(fd, sq_size, flags, prot, offset=IORING_OFF_SQ_RING)
                self._cq_map = self._sq_map
            else:
                self._sq_map = mmap.mmap(fd, sq_size, flags, prot, offset=IORING_OFF_SQ_RING)
                self._cq_map = mmap.mmap(fd, cq_size, flags, prot, offset=IORING_OFF_CQ_RING)
            self._sqe_map = mmap.mmap(fd, sq_entries * SQE.size, flags, prot, offset=IORING_OFF_SQES)
        except OSError as e:
            os.close(fd)
            raise EngineError(e.errno or errno.ENOMEM, f"io_uring ring mmap failed: {e}") from None
        self.sq_entries = sq_entries
        self.cq_entries = cq_entries
        self._sq_u32 = memoryview(self._sq_map).cast("I")
        self._cq_u32 = memoryview(self._cq_map).cast("I")
        self._sq_head_i = sq_head // 4
        self._sq_tail_i = sq_tail // 4
        self._sq_mask = self._sq_u32[sq_mask // 4]
        self._sq_array_i = sq_array // 4
        self._cq_head_i = cq_head // 4
        self._cq_tail_i = cq_tail // 4
        self._cq_mask = self._cq_u32[cq_mask // 4]
        self._cqes = cq_cqes
        self._cq_mv = memoryview(self._cq_map)
        self._sqe_mv = memoryview(self._sqe_map)
        self._sq_tail = self._sq_u32[self._sq_tail_i]
        self._to_submit = 0
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        efd_arg = ctypes.c_int32(self.efd)
        rc = syscall("io_uring_register", ctypes.c_int(fd), ctypes.c_uint(IORING_REGISTER_EVENTFD),
                     ctypes.byref(efd_arg), ctypes.c_uint(1))
        if rc < 0:
            self.close()
            raise EngineError(-rc, f"io_uring eventfd registration failed: {os.strerror(-rc)}")
        # Per-request state: request ids index these; iovec arrays are preallocated.
        self._free = list(range(depth - 1, -1, -1))
        self._tokens: list[Any] = [None] * depth
        self._iovs = (ctypes.c_char * (IOVEC.size * MAX_IOVS * depth))()
        self._iov_base = ctypes.addressof(self._iovs)
        self._iov_mv = memoryview(self._iovs).cast("B")
        self.inflight = 0
        self.closed = False

    def _next_sqe(self, slot: int) -> int:
        """Index of a free SQE (the ring is at least ``depth`` long, and at most depth
        requests are outstanding, so it never overflows)."""
        tail = self._sq_tail
        idx = tail & self._sq_mask
        self._sq_u32[self._sq_array_i + idx] = idx
        self._sq_tail = (tail + 1) & 0xFFFFFFFF
        self._to_submit += 1
        return idx

    def prep_rw(self, write: bool, fd: int, iov_addrs: list[tuple[int, int]], offset: int,
                token: Any) -> bool:
        if not self._free:
            return False
        slot = self._free.pop()
        n = len(iov_addrs)
        assert n <= MAX_IOVS
        ivoff = slot * MAX_IOVS * IOVEC.size
        mv = self._iov_mv
        for i, (a, ln) in enumerate(iov_addrs):
            IOVEC.pack_into(mv, ivoff + 16 * i, a, ln)
        idx = self._next_sqe(slot)
        SQE.pack_into(self._sqe_mv, idx * 64, OP_WRITEV if write else OP_READV, 0, 0, fd, offset,
                      self._iov_base + ivoff, n, 0, slot, 0, 0, 0, 0, 0)
        self._tokens[slot] = token
        return True

    def prep_fsync(self, fd: int, token: Any) -> bool:
        if not self._free:
            return False
        slot = self._free.pop()
        idx = self._next_sqe(slot)
        SQE.pack_into(self._sqe_mv, idx * 64, OP_FSYNC, 0, 0, fd, 0, 0, 0, IORING_FSYNC_DATASYNC,
                      slot, 0, 0, 0, 0, 0)
        self._tokens[slot] = token
        return True

    def flush(self) -> int:
        n = self._to_submit
        if not n:
            return 0
        self._sq_u32[self._sq_tail_i] = self._sq_tail  # publish the tail
        while True:
            rc = syscall("io_uring_enter", ctypes.c_int(self.fd), ctypes.c_uint(n), ctypes.c_uint(0),
                         ctypes.c_uint(0), None, ctypes.c_size_t(0))
            if rc == -errno.EINTR:
                continue
            break
        if rc < 0:
            return rc  # EAGAIN/EBUSY: entries stay in the ring, the next flush retries
        self._to_submit -= rc
        self.inflight += rc
        return rc

    def reap(self, out: list[tuple[Any, int]]) -> int:
        cq = self._cq_u32
        head = cq[self._cq_head_i]
        tail = cq[self._cq_tail_i]
        if head == tail:
            return 0
        mask = self._cq_mask
        mv = self._cq_mv
        base = self._cqes
        tokens = self._tokens
        free = self._free
        got = 0
        while head != tail:
            slot, res, _flags = CQE.unpack_from(mv, base + (head & mask) * 16)
            out.append((tokens[slot], res))
            tokens[slot] = None
            free.append(slot)
            head = (head + 1) & 0xFFFFFFFF
            got += 1
        cq[self._cq_head_i] = head
        self.inflight -= got
        return got

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for name in ("_sq_u32", "_cq_u32", "_cq_mv", "_sqe_mv"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
        for m in {id(self._sq_map): self._sq_map, id(self._cq_map): self._cq_map}.values():
            m.close()
        self._sqe_map.close()
        os.close(self.efd)
        os.close(self.fd)
