"""raid1 rebuild: copy the array onto a new base, window by window, while I/O continues.

The target takes every write from the moment it joins (it is in ``write_slots`` but not
in ``read_slots``). Each window is copied under a lock: new writes to the window wait, the
writes already in flight finish, the window is read from an in-sync base and written to
the target, then the held writes go on. Behind the window the target is therefore always
current; ahead of it, the copy will overwrite whatever it got. When the last window is
done the target becomes an in-sync member and the superblock says so.

Runs on the app thread with the raid's app-thread channel; ``process_window_size_kb``
sets the window, ``process_max_bandwidth_mb_sec`` (0: unlimited) paces it.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from spydk.bdev.io import READ, WRITE, BdevIO
from spydk.thread import get_reactor

if TYPE_CHECKING:
    from spydk.modules.bdev.raid.bdev_raid import BaseInfo, RaidBdev

log = logging.getLogger("spydk.bdev.raid")


class Rebuild:
    def __init__(self, raid: RaidBdev, target: BaseInfo):
        from spydk.modules.bdev.raid.bdev_raid import options
        self.raid = raid
        self.target = target
        self.window = max(1, options.process_window_size_kb * 1024 // raid.block_size)
        self.max_bps = options.process_max_bandwidth_mb_sec * 1024 * 1024
        self.offset = 0
        self.buf = memoryview(bytearray(self.window * raid.block_size))
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

    def _copy(self, n: int) -> None:
        raid = self.raid
        rch = raid.app_ch
        src = raid.read_slots[0] if raid.read_slots else -1
        if self.aborted is not None or rch is None or src < 0:
            raid.unlock_range()
            self._end(f"stopped: {self.aborted or 'no in-sync base bdev to copy from'}")
            return
        buf = [self.buf[:n * raid.block_size]]

        def written(io: BdevIO, ok: bool, _a: Any) -> None:
            raid.unlock_range()
            if not ok:
                self._end(f"writing to {self.target.name} failed")
                raid.base_failed(self.target.slot)
                return
            self.offset += n
            self._next()

        def read(io: BdevIO, ok: bool, _a: Any) -> None:
            if not ok:
                raid.unlock_range()
                raid.base_failed(src)
                self._next()          # try again from another in-sync base (or stop)
                return
            if self.aborted is not None:
                raid.unlock_range()
                self._next()
                return
            rc = raid.base_submit(rch, self.target.slot, WRITE, buf, self.offset, n, written, None)
            if rc:
                raid.unlock_range()
                self._end(f"cannot write to {self.target.name}: {rc}")
        rc = raid.base_submit(rch, src, READ, buf, self.offset, n, read, None)
        if rc:
            raid.unlock_range()
            self._end(f"cannot read the source base bdev: {rc}")

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
