"""The awaitable façade."""
from __future__ import annotations

import pytest

from spydk.bdev.awaitable import AsyncDesc
from spydk.bdev.bdev import BdevError
from spydk.modules.bdev.malloc.malloc import create_malloc_disk

from .conftest import Env


def test_async_read_write(env: Env) -> None:
    env.call(lambda: create_malloc_disk("AM", 512, 128))

    async def go() -> None:
        a = await AsyncDesc.open("AM", write=True)
        await a.write(1024, b"hello".ljust(512, b"."))
        assert (await a.read(1024, 512)).startswith(b"hello...")
        await a.write_zeroes(1024, 512)
        assert await a.read(1024, 512) == bytes(512)
        await a.reset()
        with pytest.raises(BdevError, match="submit refused"):
            await a.read(128 * 512, 512)
        await a.close()
    env.rh.run(go())
