"""spydk's virtio initiator bdev attached to qemu-storage-daemon's vhost-user-blk export
(a back end we did not write): data written through the bdev is in qsd's backing file and
reads back; many requests in flight; flush goes through; a long verify run at queue depth
32 (tens of thousands of requests: the run that used to end in qsd's "Virtqueue size
exceeded" when a ring index was published with a clearing store)."""
from __future__ import annotations

import asyncio
import os

import pytest

import spydk.modules.bdev.virtio  # noqa: F401
from spydk.bdev import registry as core
from spydk.bdev.awaitable import AsyncDesc
from spydk.modules.bdev.virtio.virtio_blk import attach_blk

pytestmark = pytest.mark.interop


# 32 workers x 1500 rounds x (write + read) = 96,000 requests through a 128-entry ring
WORKERS = 32
ROUNDS = 1500


async def verify_run(a: AsyncDesc) -> None:
    """Each worker owns 8 blocks of 4 KiB and, round after round, writes a fresh pattern
    to one of them and reads it back: 32 requests in flight all the time."""
    async def worker(w: int) -> None:
        base = (8 << 20) + w * 8 * 4096
        for r in range(ROUNDS):
            off = base + (r % 8) * 4096
            pattern = bytes([w, r & 0xFF]) * 2048
            await a.write(off, pattern)
            got = await a.read(off, 4096)
            assert got == pattern, f"worker {w} round {r}: read back differs"
    await asyncio.gather(*(worker(w) for w in range(WORKERS)))


def test_virtio_bdev_against_qsd(rh, qsd_target) -> None:  # type: ignore[no-untyped-def]
    core._reset_for_tests()
    qsd = qsd_target(size_mb=16)
    data = os.urandom(1 << 20)

    async def go() -> None:
        from spydk.thread import set_thread
        prev = set_thread(rh.thread)  # as the RPC dispatcher does for a coroutine handler
        try:
            await body()
        finally:
            set_thread(prev)

    async def body() -> None:
        b = await attach_blk("VirtioQsd0", str(qsd.socket_path), 1, 128)
        assert b.num_blocks * b.block_size == 16 << 20
        a = await AsyncDesc.open("VirtioQsd0", write=True)
        await a.write(1 << 20, data)
        assert await a.read(1 << 20, len(data)) == data
        chunks = [os.urandom(4096) for _ in range(64)]
        await asyncio.gather(*(a.write((4 << 20) + i * 4096, c) for i, c in enumerate(chunks)))
        got = await asyncio.gather(*(a.read((4 << 20) + i * 4096, 4096) for i in range(64)))
        assert got == chunks
        await a.flush()
        await verify_run(a)
        await a.close()
        done = asyncio.get_running_loop().create_future()
        core.unregister_bdev(b, lambda rc: done.set_result(rc))
        assert await done == 0

    async def on_thread() -> None:
        fut = rh.reactor.call_on(rh.thread, lambda: asyncio.ensure_future(go()))
        await (await fut)
    rh.run(on_thread())
    with open(qsd.backing, "rb") as f:
        f.seek(1 << 20)
        assert f.read(len(data)) == data
    core._reset_for_tests()
