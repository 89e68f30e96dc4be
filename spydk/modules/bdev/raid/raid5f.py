"""raid5f: striping with one distributed XOR parity strip per stripe, full-stripe writes only.

The on-disk layout is SPDK's (so arrays move between SPDK C and spydk). With ``n`` bases
and strips of ``ss`` blocks a stripe holds ``n - 1`` data strips (``ss * (n - 1)`` blocks of
the array) and one parity strip, all at the same offset ``stripe * ss`` on every base.
The parity of stripe ``s`` lives on base ``(n - 1) - s % n`` (the last base first, then
moving one base towards the first per stripe); the data strips fill the other bases in
slot order, skipping the parity slot.

Writes: the bdev's write unit is a whole stripe (``write_unit_size``,
``split_on_write_unit``): the bdev layer cuts longer writes into stripes and fails writes
that are not made of whole aligned stripes, so there is never a read-modify-write (and no
write hole to close). Reads: split at strip boundaries (``optimal_io_boundary``), each one
reads one data strip; when its base is missing or fails, the range is rebuilt by XOR of the
same range on every other base. The array survives one missing base.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk.bdev.channel import slice_iovs
from spydk.bdev.io import FAILED, NOMEM, READ, SUCCESS, WRITE, BdevIO
from spydk.modules.bdev.raid.levels import LevelOps
from spydk.modules.bdev.raid.sb import Level
from spydk.modules.bdev.raid.xor import xor_into

if TYPE_CHECKING:
    from spydk.modules.bdev.raid.bdev_raid import RaidBdev, RaidChannel


def parity_slot(stripe: int, n: int) -> int:
    """The base holding the parity strip of ``stripe`` in an array of ``n`` bases."""
    return (n - 1) - stripe % n


def data_slot(stripe: int, d: int, n: int) -> int:
    """The base holding data strip ``d`` (0 .. n-2) of ``stripe``."""
    p = (n - 1) - stripe % n
    return d if d < p else d + 1


def locate(raid_block: int, strip: int, n: int) -> tuple[int, int, int]:
    """(stripe, slot, base offset) of a block of the array."""
    stripe, within_stripe = divmod(raid_block, strip * (n - 1))
    d, within = divmod(within_stripe, strip)
    return stripe, data_slot(stripe, d, n), stripe * strip + within


class _Bufs:
    """A channel's spare buffers of one size (parity strips, reconstruction sources), so
    the write path does not allocate per I/O."""

    __slots__ = ("size", "free")

    def __init__(self, size: int):
        self.size = size
        self.free: list[memoryview] = []

    def get(self) -> memoryview:
        return self.free.pop() if self.free else memoryview(bytearray(self.size))

    def put(self, b: memoryview) -> None:
        if len(self.free) < 64:
            self.free.append(b)


class _Write:
    """One full-stripe write in flight."""

    __slots__ = ("io", "left", "failed", "nomem", "gen", "parity", "gathered")

    def __init__(self, io: BdevIO, gen: int):
        self.io = io
        self.left = 1
        self.failed = 0          # mask of slots that failed it
        self.nomem = False
        self.gen = gen
        self.parity: memoryview | None = None
        self.gathered: list[memoryview] = []


class _Others:
    """Reads of one range on every base but one (a degraded read, a rebuild window);
    ``then(self)`` runs once they all ended. ``srcs`` are the data, ``full`` the pooled
    buffers they are slices of."""

    __slots__ = ("left", "srcs", "full", "failed", "nomem", "then")

    def __init__(self, then: Callable[[_Others], Any]):
        self.left = 1
        self.srcs: list[memoryview] = []
        self.full: list[memoryview] = []
        self.failed = -1
        self.nomem = False
        self.then = then


class Raid5f(LevelOps):
    level = Level.RAID5F
    min_bases = 3
    redundant = True
    null_payload = False     # no UNMAP/FLUSH (SPDK's raid5f has none); WRITE_ZEROES is emulated

    def sizes(self, raid: RaidBdev, data_sizes: list[int]) -> tuple[int, list[int]]:
        per = min(data_sizes) // raid.strip_size * raid.strip_size
        return per * (len(data_sizes) - 1), [per] * len(data_sizes)

    def survives(self, raid: RaidBdev) -> bool:
        return len(raid.read_slots) >= raid.num_base_bdevs - 1

    def layout(self, raid: RaidBdev) -> None:
        n = raid.num_base_bdevs
        raid.write_unit_size = raid.strip_size * (n - 1)
        raid.split_on_write_unit = True
        raid.level_ctx = raid.strip_size * raid.block_size   # bytes of a strip

    def _bufs(self, rch: RaidChannel, nbytes: int) -> _Bufs:
        pools: dict[int, _Bufs] | None = rch.lvl
        if pools is None:
            pools = rch.lvl = {}
        b = pools.get(nbytes)
        if b is None:
            b = pools[nbytes] = _Bufs(nbytes)
        return b

    def submit(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        t = io.type
        if t == READ:
            self._read(raid, rch, io)
        elif t == WRITE:
            if raid.lock is not None and raid.locked(io.offset_blocks, io.num_blocks):
                raid.waiting.append((rch, io))   # the rebuild is rebuilding this range
                return
            self._write(raid, rch, io)
        else:
            io.complete(FAILED)

    # -- reads ------------------------------------------------------------------------------

    def _read(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        ss = raid.strip_size
        n = raid.num_base_bdevs
        stripe, slot, boff = locate(io.offset_blocks, ss, n)
        if (boff % ss) + io.num_blocks > ss:       # the layer splits at strips; never across
            io.complete(FAILED)
            return
        if slot in raid.read_slots:
            rc = raid.base_submit(rch, slot, READ, io.iovs, boff, io.num_blocks, self._read_done,
                                  (rch, slot, boff, io))
            if rc == 0:
                return
            if rc == -errno.ENOMEM:
                io.complete(NOMEM)
                return
        self._degraded_read(raid, rch, io, slot, boff)

    def _read_done(self, child: BdevIO, ok: bool, arg: tuple[RaidChannel, int, int, BdevIO]) -> None:
        rch, slot, boff, io = arg
        if ok:
            io.complete(SUCCESS)
            return
        if child.status == NOMEM:
            io.complete(NOMEM)
            return
        raid = rch.raid
        raid.base_failed(slot)
        self._degraded_read(raid, rch, io, slot, boff)

    def _degraded_read(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO, slot: int, boff: int) -> None:
        """Read ``slot``'s range as the XOR of the same range on every other base."""
        rs = raid.read_slots
        if any(s not in rs for s in range(raid.num_base_bdevs) if s != slot):
            io.complete(FAILED)          # a second base is missing: the data is gone
            return
        bufs = self._bufs(rch, raid.level_ctx)       # strip-sized, sliced to the read
        nbytes = io.num_blocks * raid.block_size

        def xored(r: _Others) -> None:
            if r.failed < 0 and not r.nomem:
                iovs = io.iovs or []
                if len(iovs) == 1:
                    xor_into(iovs[0], r.srcs)
                else:
                    xor_into(r.srcs[0], r.srcs)
                    io.scatter(r.srcs[0])
            for f in r.full:
                bufs.put(f)
            if r.nomem:
                io.complete(NOMEM)
            elif r.failed >= 0:
                raid.base_failed(r.failed)
                io.complete(FAILED)
            else:
                io.complete(SUCCESS)
        self._read_others(raid, rch, bufs, slot, boff, io.num_blocks, nbytes, xored)

    def _read_others(self, raid: RaidBdev, rch: RaidChannel, bufs: _Bufs, skip: int, boff: int,
                     nblocks: int, nbytes: int, then: Callable[[_Others], Any]) -> None:
        r = _Others(then)
        for s in range(raid.num_base_bdevs):
            if s == skip:
                continue
            full = bufs.get()
            buf = full[:nbytes]
            r.full.append(full)
            r.srcs.append(buf)
            r.left += 1
            rc = raid.base_submit(rch, s, READ, [buf], boff, nblocks, self._other_done, (r, s))
            if rc:
                r.left -= 1
                if rc == -errno.ENOMEM:
                    r.nomem = True
                else:
                    r.failed = s
                break
        r.left -= 1
        if r.left == 0:
            r.then(r)

    @staticmethod
    def _other_done(child: BdevIO, ok: bool, arg: tuple[_Others, int]) -> None:
        r, s = arg
        if not ok:
            if child.status == NOMEM:
                r.nomem = True
            elif r.failed < 0:
                r.failed = s
        r.left -= 1
        if r.left == 0:
            r.then(r)

    # -- writes -----------------------------------------------------------------------------

    def _write(self, raid: RaidBdev, rch: RaidChannel, io: BdevIO) -> None:
        ss = raid.strip_size
        n = raid.num_base_bdevs
        stripe, within = divmod(io.offset_blocks, ss * (n - 1))
        if within or io.num_blocks != ss * (n - 1):
            io.complete(FAILED)          # the layer only lets whole stripes through
            return
        strip_bytes: int = raid.level_ctx
        iovs = io.iovs or []
        w = _Write(io, raid.write_started())
        bufs = self._bufs(rch, strip_bytes)
        chunks: list[Any] = []
        if len(iovs) == 1:
            mv = memoryview(iovs[0]).cast("B")
            chunks = [mv[d * strip_bytes:(d + 1) * strip_bytes] for d in range(n - 1)]
        else:
            for d in range(n - 1):
                parts = slice_iovs(iovs, d * strip_bytes, strip_bytes)
                if len(parts) == 1:
                    chunks.append(parts[0])
                else:
                    g = bufs.get()
                    pos = 0
                    for part in parts:
                        g[pos:pos + len(part)] = part
                        pos += len(part)
                    w.gathered.append(g)
                    chunks.append(g)
        p = parity_slot(stripe, n)
        slots = raid.write_slots
        if p in slots:
            w.parity = bufs.get()
            xor_into(w.parity, chunks)
        io.driver_ctx = w
        boff = stripe * ss
        for slot in slots:
            buf = w.parity if slot == p else chunks[slot if slot < p else slot - 1]
            w.left += 1
            rc = raid.base_submit(rch, slot, WRITE, [buf], boff, ss, self._write_done, (raid, rch, slot, w))
            if rc:
                w.left -= 1
                if rc == -errno.ENOMEM:
                    w.nomem = True
                else:
                    w.failed |= 1 << slot
        w.left -= 1
        if w.left == 0:
            self._write_finish(raid, rch, w)

    def _write_done(self, child: BdevIO, ok: bool, arg: tuple[RaidBdev, RaidChannel, int, _Write]) -> None:
        raid, rch, slot, w = arg
        if not ok:
            if child.status == NOMEM:
                w.nomem = True
            else:
                w.failed |= 1 << slot
        w.left -= 1
        if w.left == 0:
            self._write_finish(raid, rch, w)

    def _write_finish(self, raid: RaidBdev, rch: RaidChannel, w: _Write) -> None:
        raid.write_finished(w.gen)
        bufs = self._bufs(rch, raid.level_ctx)
        if w.parity is not None:
            bufs.put(w.parity)
        for g in w.gathered:
            bufs.put(g)
        io = w.io
        if w.nomem:
            io.complete(NOMEM)          # the layer retries the whole stripe: writing it again is harmless
            return
        failed = w.failed
        if failed:
            # the stripe is readable while at most one base lacks it
            took = sum(1 for s in raid.read_slots if not failed & (1 << s))
            if took < raid.num_base_bdevs - 1:
                io.complete(FAILED)
                return
            for s in range(raid.num_base_bdevs):
                if failed & (1 << s):
                    raid.base_failed(s)
        io.complete(SUCCESS)

    # -- rebuild ----------------------------------------------------------------------------

    def rebuild_window(self, raid: RaidBdev, blocks: int) -> int:
        stripe_blocks = raid.strip_size * (raid.num_base_bdevs - 1)
        return max(1, blocks // stripe_blocks) * stripe_blocks

    def rebuild_copy(self, raid: RaidBdev, rch: RaidChannel, target: int, offset: int, n: int,
                     done: Callable[[str, int], Any]) -> None:
        """Rebuild the target's strips of the stripes in array range [offset, offset+n):
        read the others, XOR, write the result to the target."""
        ss = raid.strip_size
        stripe_blocks = ss * (raid.num_base_bdevs - 1)
        stripes = n // stripe_blocks
        boff = offset // stripe_blocks * ss
        nblocks = stripes * ss
        nbytes = nblocks * raid.block_size
        bufs = self._bufs(rch, nbytes)

        def xored(r: _Others) -> None:
            if r.failed >= 0 or r.nomem:
                for f in r.full:
                    bufs.put(f)
                if r.failed >= 0:
                    done("read", r.failed)
                else:
                    done("busy", -1)
                return
            out = r.srcs[0]
            xor_into(out, r.srcs)
            for f in r.full[1:]:
                bufs.put(f)

            def written(child: BdevIO, ok: bool, _a: Any) -> None:
                bufs.put(out)
                done("ok" if ok else "write", target)
            rc = raid.base_submit(rch, target, WRITE, [out], boff, nblocks, written, None)
            if rc:
                bufs.put(out)
                done("busy" if rc == -errno.ENOMEM else "submit", target)
        self._read_others(raid, rch, bufs, target, boff, nblocks, nbytes, xored)
