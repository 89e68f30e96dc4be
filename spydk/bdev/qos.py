"""Per-bdev rate limits (bdev_set_qos_limit), timeslice based like SPDK's.

Time is cut into 1 ms slices. Each limit has a budget per slice; an I/O goes through when
every limit that applies to it has budget left (> 0), and is charged in full, so a large
I/O may push a budget negative: the debt is paid from the next slices. I/O that must wait
is queued here (for every channel of the bdev) and released by a timed poller on the
thread that set the limits, which calls ``tick(now)``; tests call ``tick`` with their own
clock.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk.bdev.io import READ, UNMAP, WRITE, WRITE_ZEROES, BdevIO
from spydk.thread import Poller, Thread, get_thread

if TYPE_CHECKING:
    from spydk.bdev.bdev import Bdev
    from spydk.bdev.channel import BdevChannel

TIMESLICE_US = 1000
# SPDK's granularity: IOPS limits are multiples of 1000, byte limits whole MiB/s.
IOS_PER_SEC_MULTIPLE = 1000

LIMIT_NAMES = ("rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec")


def _counts(limit: int, io: BdevIO) -> int:
    """How much ``io`` costs against limit #limit (0 = not subject to it)."""
    t = io.type
    if limit == 0:
        return 1 if t in (READ, WRITE, UNMAP, WRITE_ZEROES) else 0
    if limit == 1:
        return io.nbytes if t in (READ, WRITE) else 0
    if limit == 2:
        return io.nbytes if t == READ else 0
    return io.nbytes if t == WRITE else 0


class Qos:
    def __init__(self, bdev: Bdev, thread: Thread | None, now_ns: Callable[[], int] = time.monotonic_ns):
        self.bdev = bdev
        self.thread = thread
        self._clock = now_ns
        self.limits = [0, 0, 0, 0]          # per second, in LIMIT_NAMES order (0 = off)
        self.per_slice = [0, 0, 0, 0]
        self.remaining = [0, 0, 0, 0]
        self.queue: deque[BdevIO] = deque()
        self.slice_ns = TIMESLICE_US * 1000
        self.last_slice = now_ns()
        self.poller: Poller | None = None

    @property
    def active(self) -> bool:
        return any(self.limits)

    def set_limits(self, rw_ios_per_sec: int | None = None, rw_mbytes_per_sec: int | None = None,
                   r_mbytes_per_sec: int | None = None, w_mbytes_per_sec: int | None = None) -> None:
        new = [rw_ios_per_sec, rw_mbytes_per_sec, r_mbytes_per_sec, w_mbytes_per_sec]
        for i, v in enumerate(new):
            if v is None:
                continue
            per_sec = v if i == 0 else v * 1024 * 1024
            self.limits[i] = per_sec
            self.per_slice[i] = max(1, per_sec * TIMESLICE_US // 1_000_000) if per_sec else 0
            self.remaining[i] = self.per_slice[i]
        self._apply()

    def _apply(self) -> None:
        from spydk.bdev.channel import BLOCK_QOS
        on = self.active
        for ch in list(self.bdev._channels):
            ch._set_blocked(BLOCK_QOS, on)
        if on and self.poller is None and self.thread is not None:
            self.poller = self.thread.poller_register(self._poll, None, TIMESLICE_US, f"bdev_qos_{self.bdev.name}")
        if not on:
            self.stop()

    def stop(self) -> None:
        """Turn off: release every queued I/O and the poller."""
        from spydk.bdev.channel import BLOCK_QOS
        self.limits = [0, 0, 0, 0]
        self.per_slice = [0, 0, 0, 0]
        if self.poller is not None:
            self.poller.unregister()
            self.poller = None
        for ch in list(self.bdev._channels):
            ch._set_blocked(BLOCK_QOS, False)
        q, self.queue = self.queue, deque()
        for io in q:
            self._release(io)

    def _poll(self, _arg: Any) -> int:
        return self.tick(self._clock())

    def tick(self, now_ns: int) -> int:
        """Refill budgets for the slices elapsed up to now_ns, then release what fits."""
        n = (now_ns - self.last_slice) // self.slice_ns
        if n > 0:
            self.last_slice += n * self.slice_ns
            for i, per in enumerate(self.per_slice):
                if per:
                    self.remaining[i] = min(per, self.remaining[i] + per * n)
        return self.dispatch()

    def enqueue(self, io: BdevIO) -> None:
        self.queue.append(io)
        if len(self.queue) == 1:
            self.dispatch()

    def dispatch(self) -> int:
        q = self.queue
        done = 0
        while q and self._allowed(q[0]):
            io = q.popleft()
            self._charge(io)
            self._release(io)
            done += 1
        return done

    def _allowed(self, io: BdevIO) -> bool:
        for i in range(4):
            if self.per_slice[i] and _counts(i, io) and self.remaining[i] <= 0:
                return False
        return True

    def _charge(self, io: BdevIO) -> None:
        for i in range(4):
            if self.per_slice[i]:
                self.remaining[i] -= _counts(i, io)

    def _release(self, io: BdevIO) -> None:
        ch: BdevChannel = io.ch
        if ch.thread is get_thread() or ch.thread.exited:
            ch.qos_release(io)
        else:
            ch.thread.send_msg(ch.qos_release, io)

    def take_channel(self, ch: BdevChannel) -> list[BdevIO]:
        """Remove and return the queued I/O of one channel (a reset is starting)."""
        mine = [io for io in self.queue if io.ch is ch]
        if mine:
            self.queue = deque(io for io in self.queue if io.ch is not ch)
        return mine

    def to_json(self) -> dict[str, int]:
        return {
            "rw_ios_per_sec": self.limits[0],
            "rw_mbytes_per_sec": self.limits[1] // (1024 * 1024),
            "r_mbytes_per_sec": self.limits[2] // (1024 * 1024),
            "w_mbytes_per_sec": self.limits[3] // (1024 * 1024),
        }
