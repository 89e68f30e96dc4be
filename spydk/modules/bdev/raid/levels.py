"""Per-level logic of the raid bdev: how big the array is and where each I/O goes.

raid0    strips of ``strip_size`` blocks dealt round-robin over the bases. The layer splits
         reads and writes at strip boundaries (optimal_io_boundary), so each one hits one
         base; UNMAP/FLUSH/WRITE_ZEROES are cut into one contiguous range per base.
concat   the bases one after the other (each rounded down to whole strips).
raid1    every base holds all the data: writes go to every writable base and succeed when
         at least one in-sync base took them (a base that failed is then failed out of the
         array); reads go to the in-sync base with the fewest reads in flight on this
         channel and are retried on the next one if a base fails them.
raid5f   striping with a rotating XOR parity strip, full-stripe writes only (raid5f.py).
"""
from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk.bdev.io import FAILED, FLUSH, NOMEM, READ, SUCCESS, UNMAP, WRITE, WRITE_ZEROES, BdevIO
from spydk.modules.bdev.raid.sb import Level

if TYPE_CHECKING:
    from spydk.modules.bdev.raid.bdev_raid import RaidBdev, RaidChannel


class LevelOps:
    level: Level
    min_bases = 1
    needs_strip = True
    redundant = False
    null_payload = True      # UNMAP/FLUSH/WRITE_ZEROES go to the bases (when they all have them)

    def survives(self, raid: RaidBdev) -> bool:
        """Whether the array still serves all its data with the bases now in sync."""
        return len(raid.read_slots) == raid.num_base_bdevs

    def sizes(self, raid: RaidBdev, data_sizes: list[int]) -> tuple[int, list[int]]:
        """(array size in blocks, data size used on each base) from the bases' usable sizes."""
        raise NotImplementedError

    def layout(self, raid: RaidBdev) -> None:
        """Called once the per-base data sizes are known (precompute lookups)."""

    def submit(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        raise NotImplementedError

    def rebuild_window(self, raid: RaidBdev, blocks: int) -> int:
        """The rebuild's window (array blocks) for a wanted size."""
        return blocks

    def rebuild_copy(self, raid: RaidBdev, rch: RaidChannel, target: int, offset: int, n: int,
                     done: Callable[[str, int], Any]) -> None:
        """Bring the target's part of array range [offset, offset+n) up to date, then
        ``done(what, slot)``: "ok"; "read" (that in-sync slot failed a read: try again);
        "busy" (out of resources: try again later); "write"/"submit" (the target failed)."""
        raise NotImplementedError


def _fanout_done(child: BdevIO, ok: bool, io: BdevIO) -> None:
    st: list[int] = io.driver_ctx
    st[0] -= 1
    if not ok:
        st[1] = child.status if child.status == NOMEM else FAILED
    if st[0] == 0:
        io.complete(st[1])


def _one_done(child: BdevIO, ok: bool, io: BdevIO) -> None:
    io.complete(SUCCESS if ok else (NOMEM if child.status == NOMEM else FAILED))


def _fanout(raid: RaidBdev, rch: RaidChannel, io: BdevIO, ranges: list[tuple[int, int, int]]) -> None:
    """Send io's type to each (slot, base offset, blocks); io completes when all did."""
    st = [len(ranges) + 1, SUCCESS]
    io.driver_ctx = st
    for slot, off, n in ranges:
        rc = raid.base_submit(rch, slot, io.type, None, off, n, _fanout_done, io)
        if rc:
            st[0] -= 1
            st[1] = NOMEM if rc == -12 else FAILED
    st[0] -= 1
    if st[0] == 0:
        io.complete(st[1])


class Raid0(LevelOps):
    level = Level.RAID0

    def sizes(self, raid: RaidBdev, data_sizes: list[int]) -> tuple[int, list[int]]:
        per = min(data_sizes) // raid.strip_size * raid.strip_size
        return per * len(data_sizes), [per] * len(data_sizes)

    def ranges(self, raid: RaidBdev, off: int, n: int) -> list[tuple[int, int, int]]:
        ss, nb = raid.strip_size, raid.num_base_bdevs
        first, last = off // ss, (off + n - 1) // ss
        out = []
        for slot in range(nb):
            s0 = first + (slot - first) % nb        # first strip of this base in range
            if s0 > last:
                continue
            s1 = last - (last - slot) % nb          # last strip of this base in range
            start = (s0 // nb) * ss + (off % ss if s0 == first else 0)
            end = (s1 // nb) * ss + ((off + n - 1) % ss + 1 if s1 == last else ss)
            out.append((slot, start, end - start))
        return out

    def submit(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        t = io.type
        if t == READ or t == WRITE:
            ss = raid.strip_size
            strip, within = divmod(io.offset_blocks, ss)
            slot = strip % raid.num_base_bdevs
            off = (strip // raid.num_base_bdevs) * ss + within
            rc = raid.base_submit(rch, slot, t, io.iovs, off, io.num_blocks, _one_done, io)
            if rc:
                io.complete(NOMEM if rc == -12 else FAILED)
        else:
            _fanout(raid, rch, io, self.ranges(raid, io.offset_blocks, io.num_blocks))


class Concat(LevelOps):
    level = Level.CONCAT

    def sizes(self, raid: RaidBdev, data_sizes: list[int]) -> tuple[int, list[int]]:
        per = [s // raid.strip_size * raid.strip_size for s in data_sizes]
        return sum(per), per

    def layout(self, raid: RaidBdev) -> None:
        starts, acc = [], 0
        for b in raid.bases:
            starts.append(acc)
            acc += b.data_size
        raid.level_ctx = starts

    def ranges(self, raid: RaidBdev, off: int, n: int) -> list[tuple[int, int, int]]:
        starts: list[int] = raid.level_ctx
        out = []
        end = off + n
        i = bisect.bisect_right(starts, off) - 1
        while off < end:
            base_end = starts[i] + raid.bases[i].data_size
            take = min(end, base_end) - off
            if take > 0:
                out.append((i, off - starts[i], take))
                off += take
            i += 1
        return out

    def submit(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        t = io.type
        if t == READ or t == WRITE:
            starts: list[int] = raid.level_ctx
            i = bisect.bisect_right(starts, io.offset_blocks) - 1
            rc = raid.base_submit(rch, i, t, io.iovs, io.offset_blocks - starts[i], io.num_blocks, _one_done, io)
            if rc:
                io.complete(NOMEM if rc == -12 else FAILED)
        else:
            _fanout(raid, rch, io, self.ranges(raid, io.offset_blocks, io.num_blocks))


class Raid1(LevelOps):
    level = Level.RAID1
    min_bases = 2
    needs_strip = False
    redundant = True

    def sizes(self, raid: RaidBdev, data_sizes: list[int]) -> tuple[int, list[int]]:
        per = min(data_sizes)
        return per, [per] * len(data_sizes)

    def survives(self, raid: RaidBdev) -> bool:
        return len(raid.read_slots) > 0

    def rebuild_copy(self, raid: RaidBdev, rch: RaidChannel, target: int, offset: int, n: int,
                     done: Callable[[str, int], Any]) -> None:
        """Read the range from an in-sync base, write it to the target."""
        src = raid.read_slots[0]
        buf = [raid.process.buffer(n * raid.block_size)]

        def written(io: BdevIO, ok: bool, _a: Any) -> None:
            done("ok" if ok else "write", target)

        def read(io: BdevIO, ok: bool, _a: Any) -> None:
            if not ok:
                done("busy" if io.status == NOMEM else "read", src)
                return
            rc = raid.base_submit(rch, target, WRITE, buf, offset, n, written, None)
            if rc:
                done("busy" if rc == -12 else "submit", target)
        rc = raid.base_submit(rch, src, READ, buf, offset, n, read, None)
        if rc:
            done("busy" if rc == -12 else "read", src)

    def submit(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        if io.type == READ:
            io.driver_ctx = 0               # bit mask of slots tried
            self._read(raid, rch, io)
        elif io.type in (WRITE, UNMAP, WRITE_ZEROES, FLUSH):
            if raid.lock is not None and io.type != FLUSH and raid.locked(io.offset_blocks, io.num_blocks):
                raid.waiting.append((rch, io))   # the rebuild is copying this range
                return
            self.write(raid, rch, io)
        else:
            io.complete(FAILED)

    def _read(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        tried: int = io.driver_ctx
        best = -1
        reads = rch.reads
        for slot in raid.read_slots:
            if not tried & (1 << slot) and (best < 0 or reads[slot] < reads[best]):
                best = slot
        if best < 0:
            io.complete(FAILED)
            return
        io.driver_ctx = tried | (1 << best)
        reads[best] += 1
        rc = raid.base_submit(rch, best, READ, io.iovs, io.offset_blocks, io.num_blocks,
                              self._read_done, (rch, best, io))
        if rc:
            reads[best] -= 1
            if rc == -12:
                io.complete(NOMEM)
            else:
                self._read(raid, rch, io)

    def _read_done(self, child: BdevIO, ok: bool, arg: tuple[Any, int, BdevIO]) -> None:
        rch, slot, io = arg
        rch.reads[slot] -= 1
        if ok:
            io.complete(SUCCESS)
            return
        raid = rch.raid
        if child.status != NOMEM:
            raid.base_failed(slot)
        self._read(raid, rch, io)

    def write(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        slots = raid.write_slots
        gen = raid.write_started()
        # [left, in-sync bases that took it, failed slots mask, generation, a base said NOMEM]
        st = [len(slots) + 1, 0, 0, gen, 0]
        io.driver_ctx = st
        t = io.type
        iovs = io.iovs if t == WRITE else None
        for slot in slots:
            rc = raid.base_submit(rch, slot, t, iovs, io.offset_blocks, io.num_blocks, self._write_done,
                                  (raid, slot, io))
            if rc:
                st[0] -= 1
                if rc == -12:
                    st[4] = 1
                else:
                    st[2] |= 1 << slot
        st[0] -= 1
        if st[0] == 0:
            self._write_finish(raid, io, st)

    def _write_done(self, child: BdevIO, ok: bool, arg: tuple[RaidBdev, int, BdevIO]) -> None:
        raid, slot, io = arg
        st: list[int] = io.driver_ctx
        if ok:
            if slot in raid.read_slots:
                st[1] += 1
        elif child.status == NOMEM:
            st[4] = 1
        else:
            st[2] |= 1 << slot
        st[0] -= 1
        if st[0] == 0:
            self._write_finish(raid, io, st)

    def _write_finish(self, raid: RaidBdev, io: BdevIO, st: list[int]) -> None:
        raid.write_finished(st[3])
        if st[4]:
            io.complete(NOMEM)   # the layer retries the whole write: writing again is harmless
            return
        failed = st[2]
        if failed and st[1]:
            for slot in range(raid.num_base_bdevs):
                if failed & (1 << slot):
                    raid.base_failed(slot)
        io.complete(SUCCESS if st[1] else FAILED)


from spydk.modules.bdev.raid.raid5f import Raid5f  # noqa: E402  (it builds on LevelOps above)

LEVELS: dict[str, type[LevelOps]] = {
    "raid0": Raid0, "0": Raid0, "raid1": Raid1, "1": Raid1, "concat": Concat, "raid5f": Raid5f, "5f": Raid5f,
}
LEVEL_NAMES = {Level.RAID0: "raid0", Level.RAID1: "raid1", Level.CONCAT: "concat", Level.RAID5F: "raid5f"}
BY_LEVEL: dict[Level, type[LevelOps]] = {Level.RAID0: Raid0, Level.RAID1: Raid1, Level.CONCAT: Concat,
                                        Level.RAID5F: Raid5f}
