"""What the aio and uring engines share: syscall access, buffer addresses, the interface."""
from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import Any

libc = ctypes.CDLL(None, use_errno=True)
_syscall = libc.syscall
_syscall.restype = ctypes.c_long

# x86_64 and aarch64 numbers; other architectures are refused at engine creation.
_NR: dict[str, dict[str, int]] = {
    "x86_64": {"io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209,
               "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427},
    "aarch64": {"io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_getevents": 4,
                "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427},
}
NR = _NR.get(os.uname().machine, {})

# Vectors per request kept in preallocated iovec arrays; longer lists go through a bounce buffer.
MAX_IOVS = 64


class EngineError(OSError):
    """An engine could not be set up (kernel refused, architecture unknown)."""


def syscall(name: str, *args: Any) -> int:
    """Raw system call; returns the result or -errno (never raises)."""
    nr = NR.get(name)
    if nr is None:
        return -errno.ENOSYS
    r = _syscall(nr, *args)
    if r < 0:
        return -ctypes.get_errno()
    return int(r)


def writable_address(buf: Any) -> tuple[int, Any] | None:
    """(address, keep-alive) of a writable contiguous buffer, or None when it is read-only.
    The keep-alive object pins the buffer (an export) until it is dropped."""
    try:
        c = ctypes.c_char.from_buffer(buf)
    except TypeError:
        return None
    return ctypes.addressof(c), c


class AlignedPool:
    """Page-aligned bounce buffers (anonymous mmaps) for O_DIRECT requests whose caller
    buffers are misaligned, and for read-only write sources. Reused by size."""

    def __init__(self) -> None:
        self._free: dict[int, list[tuple[int, Any, memoryview]]] = {}

    def get(self, nbytes: int) -> tuple[int, Any, memoryview]:
        size = (nbytes + 4095) & ~4095
        lst = self._free.get(size)
        if lst:
            return lst.pop()
        import mmap
        m = mmap.mmap(-1, size)
        c = ctypes.c_char.from_buffer(m)
        return ctypes.addressof(c), (m, c), memoryview(m)

    def put(self, item: tuple[int, Any, memoryview]) -> None:
        self._free.setdefault(len(item[2]), []).append(item)


Completion = Callable[[Any, int], Any]


class Engine:
    """Interface of an engine. Requests carry an opaque token returned by reap with the
    kernel's result (bytes transferred or -errno)."""

    efd: int
    depth: int
    inflight: int
    _free: list[int]

    def has_room(self) -> bool:
        return bool(self._free)

    def prep_rw(self, write: bool, fd: int, iov_addrs: list[tuple[int, int]], offset: int,
                token: Any) -> bool:
        """Queue a vectored read/write; False when the queue is full (retry later)."""
        raise NotImplementedError

    def prep_fsync(self, fd: int, token: Any) -> bool:
        raise NotImplementedError

    def flush(self) -> int:
        """Submit what is queued; returns the number submitted or -errno."""
        raise NotImplementedError

    def reap(self, out: list[tuple[Any, int]]) -> int:
        """Append (token, result) for finished requests; returns how many."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def drain_eventfd(self) -> None:
        try:
            os.read(self.efd, 8)
        except BlockingIOError:
            pass
