"""An awaitable façade over the callback API, for Python programs (not the I/O hot path).

    adesc = await AsyncDesc.open("Malloc0", write=True)
    await adesc.write(0, b"x" * 4096)
    data = await adesc.read(0, 4096)        # bytes
    await adesc.close()

Coroutines run on the reactor's event loop (the same OS thread as every spydk Thread),
so submissions go straight to the descriptor's channel on ``thread`` (the reactor's app
thread by default); errors raise BdevError.
"""
from __future__ import annotations

import asyncio
import errno
from typing import Any

from spydk.bdev.bdev import BdevError, BdevEvent
from spydk.bdev.channel import BdevChannel
from spydk.bdev.desc import BdevDesc
from spydk.bdev.io import BdevIO, IoStatus
from spydk.bdev.registry import open_ext
from spydk.thread import Thread, get_reactor, set_thread


class AsyncDesc:
    def __init__(self, desc: BdevDesc, ch: BdevChannel, thread: Thread):
        self.desc = desc
        self.ch = ch
        self.thread = thread
        self.removed = asyncio.Event()

    @classmethod
    async def open(cls, name: str, write: bool = False, thread: Thread | None = None) -> AsyncDesc:
        reactor = get_reactor()
        t = thread or reactor.app_thread
        if t is None:
            raise RuntimeError("the reactor has no thread")
        holder: list[AsyncDesc] = []

        def event(ev: BdevEvent, bdev: Any, ctx: Any) -> None:
            if ev is BdevEvent.REMOVE and holder:
                holder[0].removed.set()

        def setup() -> AsyncDesc:
            desc = open_ext(name, write, event)
            a = cls(desc, desc.get_io_channel(), t)
            holder.append(a)
            return a
        result: AsyncDesc = await reactor.call_on(t, setup)
        return result

    @property
    def block_size(self) -> int:
        return self.desc.bdev.block_size

    @property
    def size(self) -> int:
        return self.desc.bdev.num_blocks * self.desc.bdev.block_size

    def _run(self, submit: Any, *args: Any) -> asyncio.Future[Any]:
        """submit(ch, *args, cb, None); the future gets None or raises BdevError."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def cb(io: BdevIO, ok: bool, _arg: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(None)
            else:
                fut.set_exception(BdevError(errno.EIO, f"{self.desc.bdev.name}: I/O failed "
                                                       f"({IoStatus(io.status).name})"))
        prev = set_thread(self.thread)
        try:
            rc = submit(self.ch, *args, cb, None)
        finally:
            set_thread(prev)
        if rc:
            fut.set_exception(BdevError(-rc, f"{self.desc.bdev.name}: submit refused: {errno.errorcode.get(-rc, rc)}"))
        return fut

    async def read(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at byte ``offset`` (both multiples of the block size)."""
        buf = bytearray(length)
        await self._run(self.desc.read, buf, offset, length)
        return bytes(buf)

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        await self._run(self.desc.write, data, offset, len(data))

    async def write_zeroes(self, offset: int, length: int) -> None:
        bs = self.block_size
        await self._run(self.desc.write_zeroes_blocks, offset // bs, length // bs)

    async def unmap(self, offset: int, length: int) -> None:
        bs = self.block_size
        await self._run(self.desc.unmap_blocks, offset // bs, length // bs)

    async def flush(self) -> None:
        await self._run(self.desc.flush_blocks, 0, self.desc.bdev.num_blocks)

    async def reset(self) -> None:
        await self._run(self.desc.reset)

    async def close(self) -> None:
        def teardown() -> None:
            self.desc.put_io_channel(self.ch)
            self.desc.close()
        await get_reactor().call_on(self.thread, teardown)
