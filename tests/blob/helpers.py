"""Helpers shared by the lvol tests: whole-bdev reads and writes on a running app."""
from __future__ import annotations

from spydk.testing import AppHarness


def read_bdev(h: AppHarness, name: str, offset: int, length: int) -> bytes:
    from spydk.bdev.awaitable import AsyncDesc

    async def go() -> bytes:
        d = await AsyncDesc.open(name)
        try:
            return await d.read(offset, length)
        finally:
            await d.close()
    return h.run(go())  # type: ignore[no-any-return]


def write_bdev(h: AppHarness, name: str, offset: int, data: bytes) -> None:
    from spydk.bdev.awaitable import AsyncDesc

    async def go() -> None:
        d = await AsyncDesc.open(name, write=True)
        try:
            await d.write(offset, data)
        finally:
            await d.close()
    h.run(go())


def iostat_ops(h: AppHarness, name: str) -> tuple[int, int]:
    """(reads, writes) completed on bdev ``name``, from bdev_get_iostat."""
    [st] = h.client.call("bdev_get_iostat", {"name": name})["bdevs"]
    return st["num_read_ops"], st["num_write_ops"]
