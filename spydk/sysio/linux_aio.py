"""Linux native AIO (io_setup/io_submit/io_getevents) over raw system calls.

Written by hand because no maintained Python binding exists for it and the kernel ABI is
small: a 64-byte iocb per request and a 32-byte io_event per completion. Every iocb
carries IOCB_FLAG_RESFD so the kernel bumps our eventfd on completion; the reactor waits
on that fd, so nothing polls and nothing blocks. Buffered (non-O_DIRECT) files are served
synchronously inside io_submit by the kernel: fast on tmpfs/page cache, but that is why
the bdev prefers O_DIRECT.
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Any

from spydk.sysio.base import MAX_IOVS, Engine, EngineError, syscall

IOCB = struct.Struct("<QIIHhIQQqQII")
assert IOCB.size == 64
IO_EVENT = struct.Struct("<QQqq")
assert IO_EVENT.size == 32
IOVEC = struct.Struct("<QQ")
assert IOVEC.size == 16

IOCB_CMD_FSYNC = 2
IOCB_CMD_FDSYNC = 3
IOCB_CMD_PREADV = 7
IOCB_CMD_PWRITEV = 8
IOCB_FLAG_RESFD = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class LinuxAio(Engine):
    def __init__(self, depth: int = 128):
        self.depth = depth
        ctx = ctypes.c_ulong(0)
        rc = syscall("io_setup", ctypes.c_uint(depth), ctypes.byref(ctx))
        if rc < 0:
            raise EngineError(-rc, f"io_setup({depth}) failed: {os.strerror(-rc)}")
        self.ctx = ctx.value
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._iocbs = (ctypes.c_char * (64 * depth))()
        self._iocb_base = ctypes.addressof(self._iocbs)
        self._iocb_mv = memoryview(self._iocbs).cast("B")
        self._iovs = (ctypes.c_char * (IOVEC.size * MAX_IOVS * depth))()
        self._iov_base = ctypes.addressof(self._iovs)
        self._iov_mv = memoryview(self._iovs).cast("B")
        self._events = (ctypes.c_char * (IO_EVENT.size * depth))()
        self._events_mv = memoryview(self._events).cast("B")
        self._ptrs = (ctypes.c_void_p * depth)()
        self._zero_ts = _Timespec(0, 0)
        self._free = list(range(depth - 1, -1, -1))
        self._tokens: list[Any] = [None] * depth
        self._pending: list[int] = []
        self._failed: list[tuple[Any, int]] = []
        self.inflight = 0
        self.closed = False

    def _slot(self) -> int:
        return self._free.pop() if self._free else -1

    def prep_rw(self, write: bool, fd: int, iov_addrs: list[tuple[int, int]], offset: int,
                token: Any) -> bool:
        slot = self._slot()
        if slot < 0:
            return False
        n = len(iov_addrs)
        assert n <= MAX_IOVS
        ivoff = slot * MAX_IOVS * IOVEC.size
        mv = self._iov_mv
        for i, (a, ln) in enumerate(iov_addrs):
            IOVEC.pack_into(mv, ivoff + 16 * i, a, ln)
        IOCB.pack_into(self._iocb_mv, slot * 64, slot, 0, 0,
                       IOCB_CMD_PWRITEV if write else IOCB_CMD_PREADV, 0, fd,
                       self._iov_base + ivoff, n, offset, 0, IOCB_FLAG_RESFD, self.efd)
        self._tokens[slot] = token
        self._pending.append(slot)
        return True

    def prep_fsync(self, fd: int, token: Any) -> bool:
        slot = self._slot()
        if slot < 0:
            return False
        IOCB.pack_into(self._iocb_mv, slot * 64, slot, 0, 0, IOCB_CMD_FDSYNC, 0, fd, 0, 0, 0, 0,
                       IOCB_FLAG_RESFD, self.efd)
        self._tokens[slot] = token
        self._pending.append(slot)
        return True

    def flush(self) -> int:
        pending = self._pending
        total = 0
        while pending:
            n = len(pending)
            ptrs = self._ptrs
            base = self._iocb_base
            for i, slot in enumerate(pending):
                ptrs[i] = base + slot * 64
            rc = syscall("io_submit", ctypes.c_ulong(self.ctx), ctypes.c_long(n), ptrs)
            if rc == -errno.EAGAIN or rc == -errno.EINTR:
                return total  # kernel queue full: retried on the next flush
            if rc <= 0:
                # the first iocb was refused (bad fd, unsupported op): fail it, go on
                slot = pending.pop(0)
                self._failed.append((self._tokens[slot], rc if rc < 0 else -errno.EIO))
                self._release(slot)
                continue
            self.inflight += rc
            total += rc
            del pending[:rc]
        return total

    def _release(self, slot: int) -> None:
        self._tokens[slot] = None
        self._free.append(slot)

    def reap(self, out: list[tuple[Any, int]]) -> int:
        got = 0
        if self._failed:
            out.extend(self._failed)
            got = len(self._failed)
            self._failed.clear()
        if not self.inflight:
            return got
        while True:
            rc = syscall("io_getevents", ctypes.c_ulong(self.ctx), ctypes.c_long(0),
                         ctypes.c_long(self.depth), self._events, ctypes.byref(self._zero_ts))
            if rc == -errno.EINTR:
                continue
            if rc <= 0:
                return got
            mv = self._events_mv
            tokens = self._tokens
            for i in range(rc):
                slot, _obj, res, _res2 = IO_EVENT.unpack_from(mv, 32 * i)
                out.append((tokens[slot], res))
                self._release(slot)
            self.inflight -= rc
            got += rc
            if rc < self.depth:
                return got

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        syscall("io_destroy", ctypes.c_ulong(self.ctx))  # waits for in-flight requests
        os.close(self.efd)
