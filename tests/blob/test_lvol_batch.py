"""The lvol bdev's submit_batch: rw_batch's reads and writes to allocated clusters go to the
base bdev as one batch (BdevDesc.stacked_batch) when the base takes batches; what needs the
blob's general path (first writes that allocate, copy-on-write, a cluster boundary, a base
that answers later) is handed back and completes one by one. Data, cluster maps and iostat
must come out as the one-by-one path gives them."""
from __future__ import annotations

import asyncio
import random
from typing import Any

from spydk.apps.app import on_thread
from spydk.bdev.awaitable import AsyncDesc
from spydk.bdev.io import SUCCESS, BdevIO
from spydk.modules.bdev.lvol import lvol as v
from spydk.testing import AppHarness

from .helpers import iostat_ops as _ops

MIB = 1024 * 1024
BS = 512
IO = 4096
NB = IO // BS


class Calls:
    """What each call of the batch callback got: [(cb_arg, status), ...] per call."""

    def __init__(self, n: int):
        self.left = n
        self.calls: list[list[tuple[Any, int]]] = []
        self.done = asyncio.get_running_loop().create_future()

    def __call__(self, ios: list[BdevIO]) -> None:
        self.calls.append([(io.cb_arg, io.status) for io in ios])
        self.left -= len(ios)
        if not self.left and not self.done.done():
            self.done.set_result(None)

    def sizes(self) -> list[int]:
        return sorted(len(c) for c in self.calls)

    def args_of_batches(self) -> list[set[Any]]:
        return [{a for a, _ in c} for c in self.calls if len(c) > 1]

    def statuses(self) -> set[int]:
        return {st for c in self.calls for _, st in c}


async def _batch(name: str, write: bool, bufs: list[Any], offsets: list[int]) -> Calls:
    """rw_batch on ``name`` (byte offsets, IO bytes each); waits for every completion."""
    d = await AsyncDesc.open(name, write=write)
    try:
        calls = Calls(len(bufs))

        def go() -> int:
            assert d.ch.batch_fn is not None, "the lvol takes batches"
            n: int = d.desc.rw_batch(d.ch, write, bufs, [o // BS for o in offsets], NB, calls,
                                     list(range(len(bufs))))
            return n
        async def submit() -> int:
            return go()
        assert await on_thread(submit(), d.thread) == len(bufs)
        await asyncio.wait_for(calls.done, 30)
        return calls
    finally:
        await d.close()


async def _read(name: str, offset: int, length: int) -> bytes:
    d = await AsyncDesc.open(name)
    try:
        return await d.read(offset, length)
    finally:
        await d.close()


def _store(h: AppHarness, base: str, thin: bool = False) -> None:
    c = h.client
    c.call("bdev_lvol_create_lvstore", {"bdev_name": base, "lvs_name": "lvs", "cluster_sz": MIB})
    c.call("bdev_lvol_create", {"lvol_name": "v", "size_in_mib": 4, "lvs_name": "lvs", "thin_provision": thin})


def test_thick_lvol_batch_is_one_base_batch_with_exact_counts() -> None:
    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M0", "num_blocks": 32768, "block_size": BS})
        _store(h, "M0")
        vol = v.find_lvol("lvs/v")
        rng = random.Random(11)
        offs = [k * IO for k in rng.sample(range(4 * MIB // IO), 48)]
        data = [rng.randbytes(IO) for _ in offs]
        b0, l0 = _ops(h, "M0"), _ops(h, "lvs/v")
        w = h.run(_batch("lvs/v", True, [memoryview(bytearray(x)) for x in data], offs))
        assert w.sizes() == [48] and w.statuses() == {SUCCESS}     # one call: nothing handed back
        bufs = [memoryview(bytearray(b"\xee" * IO)) for _ in offs]
        r = h.run(_batch("lvs/v", False, bufs, offs))
        assert r.sizes() == [48]
        assert [bytes(b) for b in bufs] == data
        # each lvol I/O is one base I/O, counted on both bdevs
        assert _ops(h, "M0") == (b0[0] + 48, b0[1] + 48)
        assert _ops(h, "lvs/v") == (l0[0] + 48, l0[1] + 48)
        # the data is where the cluster map says
        for o, x in list(zip(offs, data, strict=True))[:6]:
            phys = vol.blob.clusters[o // MIB] * MIB + o % MIB
            assert h.run(_read("M0", phys, IO)) == x


def test_across_a_cluster_boundary_is_handed_back() -> None:
    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M1", "num_blocks": 32768, "block_size": BS})
        _store(h, "M1")
        offs = [0, MIB - IO // 2, 2 * MIB]          # the second spans clusters 0 and 1
        data = [bytes([i + 1]) * IO for i in range(3)]
        w = h.run(_batch("lvs/v", True, data, offs))
        assert w.sizes() == [1, 2] and w.args_of_batches() == [{0, 2}]
        bufs = [bytearray(IO) for _ in offs]
        r = h.run(_batch("lvs/v", False, bufs, offs))
        assert r.sizes() == [1, 2]
        assert [bytes(b) for b in bufs] == data


def test_thin_first_writes_allocate_one_by_one_and_unwritten_reads_are_zeroes() -> None:
    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M2", "num_blocks": 32768, "block_size": BS})
        _store(h, "M2", thin=True)
        blob = v.find_lvol("lvs/v").blob
        h.run(_batch("lvs/v", True, [b"\x01" * IO], [0]))        # allocates cluster 0
        assert blob.clusters[0] and not any(blob.clusters[1:])
        offs = [IO, 2 * IO, 2 * MIB, 2 * MIB + IO, 3 * IO]        # cluster 2 is not allocated
        data = [bytes([0x10 + i]) * IO for i in range(len(offs))]
        w = h.run(_batch("lvs/v", True, data, offs))
        assert w.args_of_batches() == [{0, 1, 4}] and w.sizes() == [1, 1, 3]
        assert w.statuses() == {SUCCESS}
        assert blob.clusters[2]
        # unwritten cluster 3 reads as zeroes inside the batch, whatever the buffer held
        roffs = [*offs, 3 * MIB, 3 * MIB + IO]
        bufs = [bytearray(b"\xee" * IO) for _ in roffs]
        r = h.run(_batch("lvs/v", False, bufs, roffs))
        assert r.sizes() == [len(roffs)]
        assert [bytes(b) for b in bufs] == [*data, bytes(IO), bytes(IO)]


def test_clone_reads_through_and_writes_copy_on_write() -> None:
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "M3", "num_blocks": 32768, "block_size": BS})
        _store(h, "M3")
        offs = [0, MIB + IO, 3 * MIB]
        old = [bytes([0x30 + i]) * IO for i in range(3)]
        h.run(_batch("lvs/v", True, old, offs))
        snap = c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/v", "snapshot_name": "s"})
        blob = v.find_lvol("lvs/v").blob
        assert not any(blob.clusters)
        bufs = [bytearray(IO) for _ in offs]
        r = h.run(_batch("lvs/v", False, bufs, offs))
        assert r.sizes() == [3] and [bytes(b) for b in bufs] == old     # from the snapshot's clusters
        new = [bytes([0x40 + i]) * IO for i in range(3)]
        w = h.run(_batch("lvs/v", True, new, offs))
        assert w.sizes() == [1, 1, 1]                                     # each copies its cluster
        assert h.run(_read("lvs/v", 0, IO)) == new[0]
        assert h.run(_read("lvs/v", IO, IO)) == bytes(IO)                 # copied with the cluster
        assert [h.run(_read(snap, o, IO)) for o in offs] == old


def test_base_without_batches_takes_everything_one_by_one() -> None:
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "M4", "num_blocks": 32768, "block_size": BS})
        c.call("bdev_delay_create", {"name": "D4", "base_bdev_name": "M4", "avg_read_latency": 0,
                                     "p99_read_latency": 0, "avg_write_latency": 0, "p99_write_latency": 0})
        try:
            _store(h, "D4")
            offs = [0, IO, 2 * MIB]
            data = [bytes([0x50 + i]) * IO for i in range(3)]
            w = h.run(_batch("lvs/v", True, data, offs))
            assert w.sizes() == [1, 1, 1] and w.statuses() == {SUCCESS}
            bufs = [bytearray(IO) for _ in offs]
            h.run(_batch("lvs/v", False, bufs, offs))
            assert [bytes(b) for b in bufs] == data
            assert v.find_lvol("lvs/v").blob.inflight == 0
        finally:
            c.call("bdev_delay_delete", {"name": "D4"})


def test_read_only_snapshot_refuses_batched_writes_one_by_one() -> None:
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "M5", "num_blocks": 32768, "block_size": BS})
        _store(h, "M5")
        h.run(_batch("lvs/v", True, [b"\x61" * IO], [0]))
        snap = c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/v", "snapshot_name": "s5"})
        sb = v.find_lvol(snap)

        async def try_write() -> tuple[int, list[int]]:
            d = await AsyncDesc.open(snap, write=True)
            try:
                got: list[int] = []

                def cb(ios: list[BdevIO]) -> None:
                    got.extend(io.status for io in ios)

                async def submit() -> int:
                    return d.desc.rw_batch(d.ch, True, [b"x" * IO], [0], NB, cb, [0])  # type: ignore[no-any-return]
                n = await on_thread(submit(), d.thread)
                for _ in range(50):
                    if got or not n:
                        break
                    await asyncio.sleep(0.01)
                return n, got
            finally:
                await d.close()
        n, got = h.run(try_write())
        # SPDK opens a snapshot read-only for writes or refuses the write: either way no data changes
        assert n == 0 or got and got[0] != SUCCESS
        assert sb.blob.read_only
        assert h.run(_read(snap, 0, IO)) == b"\x61" * IO


def test_bdevperf_regroups_handed_back_writes_into_full_batches(monkeypatch: Any) -> None:
    """A thin volume's first writes are handed back and complete alone; bdevperf gathers
    such slots again, so that the queue returns to one batch of the queue depth."""
    import argparse

    from spydk.apps.bdevperf import Job
    from spydk.bdev.desc import BdevDesc

    sizes: list[int] = []
    orig = BdevDesc.rw_batch

    def rw_batch(self: BdevDesc, ch: Any, write: bool, bufs: list[Any], offsets: list[int], *a: Any) -> int:
        sizes.append(len(offsets))
        return orig(self, ch, write, bufs, offsets, *a)
    monkeypatch.setattr(BdevDesc, "rw_batch", rw_batch)
    qd = 32
    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M6", "num_blocks": 32768, "block_size": BS})
        _store(h, "M6", thin=True)

        async def run() -> tuple[int, int]:
            loop = asyncio.get_running_loop()
            args = argparse.Namespace(workload="randwrite", queue_depth=qd, io_size=IO, rwmixread=100)
            job = Job("lvs/v", h.app.thread, 0, args, 7)
            job.setup()
            done = loop.create_future()
            job.on_finished = lambda _j: done.set_result(None)
            job.start()
            while job.done + job.failed < 200 * qd:
                await asyncio.sleep(0.005)
            job.stop()
            await asyncio.wait_for(done, 30)
            job.teardown()
            return job.done, job.failed

        async def main() -> tuple[int, int]:
            r: tuple[int, int] = await on_thread(run(), h.app.thread)
            return r
        ok, failed = h.run(main())
        assert failed == 0 and ok >= 200 * qd
        blob = v.find_lvol("lvs/v").blob
        assert all(blob.clusters)                        # every cluster was allocated by a first write
        assert min(sizes) < qd                           # handed-back writes completed alone ...
        assert sizes[-20:] == [qd] * 20                  # ... and were gathered into full batches again


def test_reads_without_buffers_take_pooled_buffers_in_one_batch() -> None:
    """The NVMe/TCP target hands reads over without buffers; an lvol is not zero-copy, so
    rw_batch gives each a pooled buffer, the batch stays one call, and every buffer goes
    back to the pool after the callback."""
    from spydk.bdev.iobuf import pool

    def out() -> int:
        st = pool.stats()
        return st["small_created"] + st["large_created"] - st["small_free"] - st["large_free"]

    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M7", "num_blocks": 32768, "block_size": BS})
        _store(h, "M7", thin=True)
        offs = [0, IO, 2 * MIB]
        data = [bytes([0x70 + i]) * IO for i in range(3)]
        h.run(_batch("lvs/v", True, data[:2], offs[:2]))

        async def go() -> tuple[list[int], list[bytes], int]:
            d = await AsyncDesc.open("lvs/v")
            try:
                sizes: list[int] = []
                got: dict[int, bytes] = {}
                fut = asyncio.get_running_loop().create_future()

                def cb(ios: list[BdevIO]) -> None:
                    sizes.append(len(ios))
                    for io in ios:
                        assert io.status == SUCCESS
                        got[io.cb_arg] = bytes(io.iovs[0])  # type: ignore[index]
                    if len(got) == 3:
                        fut.set_result(None)

                async def submit() -> int:
                    return d.desc.rw_batch(d.ch, False, [None] * 3, [o // BS for o in offs], NB, cb,  # type: ignore[no-any-return]
                                           [0, 1, 2])
                before = out()
                assert await on_thread(submit(), d.thread) == 3
                await asyncio.wait_for(fut, 30)
                await asyncio.sleep(0.05)
                assert out() == before
                return sizes, [got[i] for i in range(3)], before
            finally:
                await d.close()
        sizes, read, _ = h.run(go())
        assert sizes == [3]
        assert read == [*data[:2], bytes(IO)]
