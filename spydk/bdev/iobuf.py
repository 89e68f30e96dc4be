"""Pooled data buffers (SPDK's iobuf): small and large preallocated bytearrays.

Reads submitted without a buffer, bounce buffers for emulated COMPARE and split parents
take a buffer here and give it back when the I/O completes, so the I/O path does not
allocate. All spydk Threads of a process run on one OS thread, so one pool serves them all
without locking. Requests larger than a large buffer get a one-off bytearray (counted in
``oversize``).
"""
from __future__ import annotations

from dataclasses import dataclass

SMALL_BUF_SIZE = 8192
LARGE_BUF_SIZE = 135168  # 132 KiB: a 128 KiB I/O plus room, as SPDK sizes it


@dataclass
class IobufOptions:
    small_pool_count: int = 8192
    large_pool_count: int = 1024
    small_bufsize: int = SMALL_BUF_SIZE
    large_bufsize: int = LARGE_BUF_SIZE


class BufferPool:
    """Free lists of memoryviews over preallocated bytearrays, created lazily up to the
    configured counts; ``created`` counts buffers ever made (it stays flat in steady state)."""

    def __init__(self, opts: IobufOptions | None = None):
        self.opts = opts or IobufOptions()
        self._small: list[memoryview] = []
        self._large: list[memoryview] = []
        self.small_created = 0
        self.large_created = 0
        self.oversize = 0
        self.small_size = self.opts.small_bufsize
        self.large_size = self.opts.large_bufsize

    @property
    def created(self) -> int:
        return self.small_created + self.large_created

    def get(self, nbytes: int) -> memoryview:
        """A buffer of at least nbytes (its length is the pool's size; slice it)."""
        if nbytes <= self.small_size:
            if self._small:
                return self._small.pop()
            self.small_created += 1
            return memoryview(bytearray(self.small_size))
        if nbytes <= self.large_size:
            if self._large:
                return self._large.pop()
            self.large_created += 1
            return memoryview(bytearray(self.large_size))
        self.oversize += 1
        return memoryview(bytearray(nbytes))

    def put(self, buf: memoryview) -> None:
        n = len(buf)
        if n == self.small_size:
            if len(self._small) < self.opts.small_pool_count:
                self._small.append(buf)
        elif n == self.large_size:
            if len(self._large) < self.opts.large_pool_count:
                self._large.append(buf)
        # one-off buffers are dropped

    def stats(self) -> dict[str, int]:
        return {"small_free": len(self._small), "large_free": len(self._large),
                "small_created": self.small_created, "large_created": self.large_created,
                "oversize": self.oversize}


pool = BufferPool()

# A shared buffer of zeroes: the data of emulated WRITE_ZEROES and of null reads.
ZERO_BUF_SIZE = 1 << 20
ZEROES = memoryview(bytes(ZERO_BUF_SIZE))
