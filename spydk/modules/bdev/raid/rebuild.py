"""Rebuild (raid1, raid5f): bring a new base up to date, window by window, while I/O continues.

The target takes every write from the moment it joins (it is in ``write_slots`` but not
in ``read_slots``). Each window is copied under a lock: new writes to the window wait, the
writes already in flight finish, the window is copied to the target, then the held writes
go on. Behind the window the target is therefore always current; ahead of it, the copy
will overwrite whatever it got. When the last window is done the target becomes an
in-sync member and the superblock says so. The level copies a window (``rebuild_copy``):
raid1 reads it from an in-sync base; raid5f XORs the other bases' strips of whole stripes
(its window is a whole number of stripes).

Runs on the app thread with the raid's app-thread channel; ``process_window_size_kb``
sets the window, ``process_max_bandwidth_mb_sec`` (0: unlimited) paces it.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from spydk.thread import get_reactor

if TYPE_CHECKING:
    from spydk.modules.bdev.raid.bdev_raid import BaseInfo, RaidBdev

log = logging.getLogger("spydk.bdev.raid")


class Rebuild:
    def __init__(self, raid: RaidBdev, target: BaseInfo):
        from spydk.modules.bdev.raid.bdev_raid import options
        self.raid = raid
        self.target = target
        self.window = raid.ops.rebuild_window(raid, max(1, options.process_window_size_kb * 1024 // raid.block_size))
        self.max_bps = options.process_max_bandwidth_mb_sec * 1024 * 1024
        self.offset = 0
        self.buf: memoryview | None = None
        self.aborted: str | None = None
        self.thread = get_reactor().app_thread
        self.started_ns = 0
        self._poller: Any = None

    def info(self) -> dict[str, Any]:
        total = self.raid.num_blocks
        return {"type": "rebuild", "target": self.target.name, "target_slot": self.target.slot,
                "progress": {"blocks": self.offset,
                             "percent": int(self.offset * 100 / total) if total else 100}}

    def start(self) -> None:
        log.info("raid %s: rebuilding onto %s", self.raid.name, self.target.name)
        self.started_ns = time.monotonic_ns()
        self._next()

    def abort(self, why: str) -> None:
        if self.aborted is None:
            self.aborted = why

    def _next(self) -> None:
        raid = self.raid
        if self.aborted is not None:
            self._end(f"stopped: {self.aborted}")
            return
        if self.offset >= raid.num_blocks:
            self._finish()
            return
        if self.max_bps:
            # pace: the copy may not run ahead of the allowed bandwidth
            due = self.started_ns + self.offset * raid.block_size * 1_000_000_000 // self.max_bps
            if time.monotonic_ns() < due:
                self._wait_until(due)
                return
        n = min(self.window, raid.num_blocks - self.offset)
        raid.lock_range(self.offset, self.offset + n, lambda: self._copy(n))

    def _wait_until(self, due_ns: int) -> None:
        assert self.thread is not None

        def tick(_a: Any) -> int:
            if time.monotonic_ns() < due_ns and self.aborted is None:
                return 0
            self._poller.unregister()
            self._poller = None
            self._next()
            return 1
        self._poller = self.thread.poller_register(tick, None, 1000, "raid_rebuild_pace")

    def buffer(self, nbytes: int) -> memoryview:
        """The copy buffer (raid1), made on first use."""
        if self.buf is None or len(self.buf) < nbytes:
            self.buf = memoryview(bytearray(nbytes))
        return self.buf[:nbytes]

    def _copy(self, n: int) -> None:
        raid = self.raid
        rch = raid.app_ch
        if self.aborted is not None or rch is None or not raid.ops.survives(raid):
            raid.unlock_range()
            self._end(f"stopped: {self.aborted or 'the in-sync base bdevs no longer hold all the data'}")
            return

        def done(what: str, slot: int) -> None:
            raid.unlock_range()
            if what == "ok":
                self.offset += n
                self._next()
            elif what == "read":
                raid.base_failed(slot)
                self._next()          # again, from the bases left (or stop)
            elif what == "busy":
                self._wait_until(time.monotonic_ns() + 1_000_000)
            else:
                self._end(f"writing to {self.target.name} failed")
                raid.base_failed(self.target.slot)
        raid.ops.rebuild_copy(raid, rch, self.target.slot, self.offset, n, done)

    def _finish(self) -> None:
        from spydk.modules.bdev.raid.bdev_raid import CONFIGURED
        raid = self.raid
        self.target.state = CONFIGURED
        raid.recompute_slots()
        raid.process = None
        secs = (time.monotonic_ns() - self.started_ns) / 1e9
        log.info("raid %s: rebuild onto %s done (%d blocks in %.2f s)", raid.name, self.target.name,
                 raid.num_blocks, secs)
        if raid.superblock_enabled and raid.sb is not None:
            raid.write_superblock(lambda rc: None)

    def _end(self, why: str) -> None:
        log.error("raid %s: rebuild onto %s %s", self.raid.name, self.target.name, why)
        if self.raid.process is self:
            self.raid.process = None
