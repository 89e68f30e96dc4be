"""Pooled data buffers (SPDK's iobuf): small and large preallocated bytearrays.

Reads submitted without a buffer, bounce buffers for emulated COMPARE, split parents and the
transports' receive buffers take a buffer here and give it back when the I/O completes, so
the I/O path does not allocate. All spydk Threads of a process run on one OS thread, so one
pool serves them all without locking.

The pool never holds more than its counts: ``get`` returns None when a class is exhausted and
the caller queues itself with ``wait`` (FIFO per class, SPDK's iobuf entries); ``put`` hands
the buffer straight to the oldest waiter. Requests larger than a large buffer get a one-off
bytearray from a byte budget (``oversize_bytes``, default room for 64 large buffers); past it
they wait too. A buffer the caller cannot give back (still referenced by a socket's write
queue) is ``forget``-ten: it no longer counts against the pool and the garbage collector
frees it when the socket is done with it.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

SMALL_BUF_SIZE = 8192
LARGE_BUF_SIZE = 135168  # 132 KiB: a 128 KiB I/O plus room, as SPDK sizes it

Waiter = Callable[[memoryview], object]


@dataclass
class IobufOptions:
    small_pool_count: int = 8192
    large_pool_count: int = 1024
    small_bufsize: int = SMALL_BUF_SIZE
    large_bufsize: int = LARGE_BUF_SIZE
    oversize_bytes: int = 64 * LARGE_BUF_SIZE


class BufferPool:
    """Free lists of memoryviews over preallocated bytearrays, created lazily up to the
    configured counts; ``created`` counts buffers in existence (at most the counts)."""

    def __init__(self, opts: IobufOptions | None = None):
        self.opts = opts or IobufOptions()
        self._small: list[memoryview] = []
        self._large: list[memoryview] = []
        self.small_created = 0
        self.large_created = 0
        self.oversize = 0          # one-off buffers handed out, in all
        self.oversize_out = 0      # bytes of one-off buffers not yet given back
        self.small_size = self.opts.small_bufsize
        self.large_size = self.opts.large_bufsize
        self._small_wait: deque[tuple[int, Waiter]] = deque()
        self._large_wait: deque[tuple[int, Waiter]] = deque()
        self._over_wait: deque[tuple[int, Waiter]] = deque()
        self.waited = 0            # requests that had to wait for a buffer, in all

    @property
    def created(self) -> int:
        return self.small_created + self.large_created

    def get(self, nbytes: int) -> memoryview | None:
        """A buffer of at least nbytes (its length is the class size; slice it), or None when
        the pool is exhausted (then ``wait``)."""
        if nbytes <= self.small_size:
            if self._small:
                return self._small.pop()
            if self.small_created < self.opts.small_pool_count:
                self.small_created += 1
                return memoryview(bytearray(self.small_size))
            return None
        if nbytes <= self.large_size:
            if self._large:
                return self._large.pop()
            if self.large_created < self.opts.large_pool_count:
                self.large_created += 1
                return memoryview(bytearray(self.large_size))
            return None
        if nbytes > self.opts.oversize_bytes:
            raise ValueError(f"iobuf: a {nbytes}-byte buffer is larger than the pool's "
                             f"oversize budget ({self.opts.oversize_bytes} bytes)")
        if self.oversize_out + nbytes > self.opts.oversize_bytes or self._over_wait:
            return None
        self.oversize += 1
        self.oversize_out += nbytes
        return memoryview(bytearray(nbytes))

    def wait(self, nbytes: int, cb: Waiter) -> None:
        """Call cb(buffer) once a buffer of nbytes is free (after ``get`` returned None)."""
        self.waited += 1
        self._queue(nbytes).append((nbytes, cb))

    def cancel(self, cb: Waiter) -> bool:
        """Withdraw a ``wait`` (its requester went away); True if it was still queued."""
        for q in (self._small_wait, self._large_wait, self._over_wait):
            for item in q:
                if item[1] is cb:
                    q.remove(item)
                    return True
        return False

    def _queue(self, nbytes: int) -> deque[tuple[int, Waiter]]:
        if nbytes <= self.small_size:
            return self._small_wait
        if nbytes <= self.large_size:
            return self._large_wait
        return self._over_wait

    def put(self, buf: memoryview) -> None:
        n = len(buf)
        if n == self.small_size:
            if self._small_wait:
                self._small_wait.popleft()[1](buf)
            else:
                self._small.append(buf)
        elif n == self.large_size:
            if self._large_wait:
                self._large_wait.popleft()[1](buf)
            else:
                self._large.append(buf)
        else:
            self.oversize_out -= n
            q = self._over_wait
            while q and self.oversize_out + q[0][0] <= self.opts.oversize_bytes:
                nbytes, cb = q.popleft()
                self.oversize += 1
                self.oversize_out += nbytes
                cb(memoryview(bytearray(nbytes)))

    def forget(self, buf: memoryview) -> None:
        """buf will not come back (the garbage collector frees it): stop counting it."""
        n = len(buf)
        if n == self.small_size:
            self.small_created -= 1
            if self._small_wait and self.small_created < self.opts.small_pool_count:
                self.small_created += 1
                self._small_wait.popleft()[1](memoryview(bytearray(self.small_size)))
        elif n == self.large_size:
            self.large_created -= 1
            if self._large_wait and self.large_created < self.opts.large_pool_count:
                self.large_created += 1
                self._large_wait.popleft()[1](memoryview(bytearray(self.large_size)))
        else:
            self.put(buf)

    def stats(self) -> dict[str, int]:
        return {"small_free": len(self._small), "large_free": len(self._large),
                "small_created": self.small_created, "large_created": self.large_created,
                "oversize": self.oversize, "oversize_bytes": self.oversize_out,
                "waiting": len(self._small_wait) + len(self._large_wait) + len(self._over_wait),
                "waited": self.waited}


pool = BufferPool()

# A shared buffer of zeroes: the data of emulated WRITE_ZEROES and of null reads.
ZERO_BUF_SIZE = 1 << 20
ZEROES = memoryview(bytes(ZERO_BUF_SIZE))
