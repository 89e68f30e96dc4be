"""The lvol bdev's I/O fast path: an I/O inside one cluster whose data is allocated (in the
volume or, for a read, in an ancestor) goes straight to the base bdev (BdevDesc.stacked_rw);
on a base that answers at once (malloc) it finishes in the lvol's submit, on one that
answers later (delay) it completes through a callback and counts as in flight, so that a
snapshot waits for it."""
from __future__ import annotations

import asyncio
from typing import Any

from spydk.apps.app import on_thread
from spydk.bdev.awaitable import AsyncDesc
from spydk.modules.bdev.lvol import lvol as v
from spydk.testing import AppHarness

from .helpers import iostat_ops as _ops

MIB = 1024 * 1024


def _setup(h: AppHarness, base: str) -> None:
    c = h.client
    c.call("bdev_lvol_create_lvstore", {"bdev_name": base, "lvs_name": "lvs", "cluster_sz": MIB})
    c.call("bdev_lvol_create", {"lvol_name": "thick", "size_in_mib": 4, "lvs_name": "lvs"})
    c.call("bdev_lvol_create", {"lvol_name": "thin", "size_in_mib": 4, "lvs_name": "lvs", "thin_provision": True})


async def _read_dirty(name: str, offset: int, length: int) -> bytes:
    """Read into a buffer full of 0xee, so that zeroes must really be written into it."""
    d = await AsyncDesc.open(name)
    try:
        buf = bytearray(b"\xee" * length)
        await d._run(d.desc.read, buf, offset, length)
        return bytes(buf)
    finally:
        await d.close()


async def _rw(name: str, offset: int, data: bytes | None, length: int = 0) -> bytes:
    d = await AsyncDesc.open(name, write=data is not None)
    try:
        if data is not None:
            await d.write(offset, data)
            return b""
        return await d.read(offset, length)
    finally:
        await d.close()


def test_fast_path_on_malloc_maps_clusters_and_counts_base_io() -> None:
    with AppHarness() as h:
        h.client.call("bdev_malloc_create", {"name": "M0", "num_blocks": 32768, "block_size": 512})
        _setup(h, "M0")
        thick = v.find_lvol("lvs/thick")
        data = bytes(range(256)) * 16
        r0, w0 = _ops(h, "M0")
        lr0, lw0 = _ops(h, "lvs/thick")
        h.run(_rw("lvs/thick", MIB + 8192, data))
        assert h.run(_rw("lvs/thick", MIB + 8192, None, 4096)) == data
        assert _ops(h, "M0") == (r0 + 1, w0 + 1)            # one base I/O each way, no split
        phys = thick.blob.clusters[1] * MIB + 8192          # where cluster 1 lives on the base
        assert h.run(_rw("M0", phys, None, 4096)) == data
        assert _ops(h, "lvs/thick") == (lr0 + 1, lw0 + 1)
        # a thin volume's unwritten clusters read as zeroes, whatever the buffer held
        assert h.run(_read_dirty("lvs/thin", 2 * MIB, 8192)) == bytes(8192)
        # a read across a cluster boundary takes the general path and joins both sides
        h.run(_rw("lvs/thick", 2 * MIB - 4096, data))
        h.run(_rw("lvs/thick", 2 * MIB, b"\x77" * 4096))
        assert h.run(_rw("lvs/thick", 2 * MIB - 4096, None, 8192)) == data + b"\x77" * 4096
        # after a snapshot the volume (now a clone) reads through to the snapshot's clusters,
        # a write to it allocates its own cluster, and the snapshot keeps the old data
        snap = h.client.call("bdev_lvol_snapshot", {"lvol_name": "lvs/thick", "snapshot_name": "snap"})
        assert thick.blob.clusters[1] == 0
        assert h.run(_rw("lvs/thick", MIB + 8192, None, 4096)) == data
        h.run(_rw("lvs/thick", MIB + 8192, b"\x55" * 4096))
        assert thick.blob.clusters[1] != 0
        assert h.run(_rw("lvs/thick", MIB + 8192, None, 4096)) == b"\x55" * 4096
        assert h.run(_rw(snap, MIB + 8192, None, 4096)) == data
        # the read-only snapshot refuses writes
        fails: list[Any] = []
        try:
            h.run(_rw(snap, 0, b"x" * 512))
        except Exception as e:  # noqa: BLE001 - the refusal is what is tested
            fails.append(e)
        assert fails


def test_pending_base_io_holds_a_snapshot_until_it_completes() -> None:
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "MD0", "num_blocks": 32768, "block_size": 512})
        c.call("bdev_delay_create", {"name": "D0", "base_bdev_name": "MD0", "avg_read_latency": 0,
                                     "p99_read_latency": 0, "avg_write_latency": 0, "p99_write_latency": 0})
        _setup(h, "D0")
        thick = v.find_lvol("lvs/thick")
        c.call("bdev_delay_update_latency", {"delay_bdev_name": "D0", "latency_type": "p99_write",
                                             "latency_us": 300_000})
        c.call("bdev_delay_update_latency", {"delay_bdev_name": "D0", "latency_type": "avg_write",
                                             "latency_us": 300_000})
        order: list[str] = []

        async def go() -> None:
            d = await AsyncDesc.open("lvs/thick", write=True)
            try:
                w = asyncio.ensure_future(d.write(0, b"\x42" * 4096))
                w.add_done_callback(lambda _f: order.append("write"))
                await asyncio.sleep(0)
                assert thick.blob.inflight == 1           # pending on the delay bdev
                s = thick.store
                snap = await s.lvs.snapshot(thick.lvol, "snap")
                order.append("snapshot")
                v.register_new_lvol(s, snap)
                await w
            finally:
                await d.close()
        async def main() -> None:
            await on_thread(go(), h.app.thread)
        h.run(main())
        assert order == ["write", "snapshot"]
        assert thick.blob.inflight == 0
        c.call("bdev_delay_update_latency", {"delay_bdev_name": "D0", "latency_type": "avg_write",
                                             "latency_us": 0})
        c.call("bdev_delay_update_latency", {"delay_bdev_name": "D0", "latency_type": "p99_write",
                                             "latency_us": 0})
        assert h.run(_rw("lvs/snap", 0, None, 4096)) == b"\x42" * 4096
        assert h.run(_rw("lvs/thick", 0, None, 4096)) == b"\x42" * 4096
        # nothing is left counted in flight: a second snapshot does not wait forever
        c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/thick", "snapshot_name": "snap2"})
        c.call("bdev_delay_delete", {"name": "D0"})   # the delay module keeps its configs across apps


def test_ten_deep_chain_reads_through_the_fast_path() -> None:
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "MC0", "num_blocks": 65536, "block_size": 512})
        c.call("bdev_lvol_create_lvstore", {"bdev_name": "MC0", "lvs_name": "lvc", "cluster_sz": MIB})
        c.call("bdev_lvol_create", {"lvol_name": "v", "size_in_mib": 12, "lvs_name": "lvc", "thin_provision": True})
        for i in range(10):
            h.run(_rw("lvc/v", i * MIB + 4096, bytes([65 + i]) * 4096))
            c.call("bdev_lvol_snapshot", {"lvol_name": "lvc/v", "snapshot_name": f"s{i}"})
        assert not any(v.find_lvol("lvc/v").blob.clusters)      # every cluster is in an ancestor
        for i in range(12):
            want = bytes([65 + i]) * 4096 if i < 10 else bytes(4096)
            assert h.run(_read_dirty("lvc/v", i * MIB + 4096, 4096)) == want, i
        for k in (0, 4, 9):         # snapshot k holds clusters 0..k (the older ones in its parents)
            for i in range(10):
                want = bytes([65 + i]) * 4096 if i <= k else bytes(4096)
                assert h.run(_read_dirty(f"lvc/s{k}", i * MIB + 4096, 4096)) == want, (k, i)
        clone = c.call("bdev_lvol_clone", {"snapshot_name": "lvc/s4", "clone_name": "c4"})
        assert h.run(_read_dirty(clone, 3 * MIB + 4096, 4096)) == bytes([68]) * 4096
        assert h.run(_read_dirty(clone, 7 * MIB + 4096, 4096)) == bytes(4096)
        # deleting s9 (one clone: v) merges it into v; v still reads the whole chain
        c.call("bdev_lvol_delete", {"name": "lvc/s9"})
        for i in range(10):
            assert h.run(_read_dirty("lvc/v", i * MIB + 4096, 4096)) == bytes([65 + i]) * 4096, i
