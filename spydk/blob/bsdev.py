"""What a blobstore sits on: SPDK's spdk_bs_dev.

Metadata I/O is awaitable (control plane, on the blobstore's metadata thread); blob data
I/O goes through per-thread channels with callbacks (the fast path).

    BdevBsDev(desc)     a bdev opened (and claimed) by the caller
    FileBsDev(path)     a file or block device read with pread/pwrite: the offline tools
                        (spydk blobcli), no reactor needed; read-only unless asked
"""
from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import Any

from spydk.bdev import BdevChannel, BdevDesc, BdevError, BdevIO, IoType
from spydk.thread import Thread, get_thread, set_thread

DataCb = Callable[[bool, Any], None]


class BsDevError(OSError):
    pass


class BsDev:
    block_size: int = 512
    num_blocks: int = 0
    name: str = ""

    @property
    def size(self) -> int:
        return self.block_size * self.num_blocks

    async def read(self, offset: int, length: int) -> bytearray:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        raise NotImplementedError

    async def write_zeroes(self, offset: int, length: int) -> None:
        await self.write(offset, bytes(length))

    async def unmap(self, offset: int, length: int) -> None:
        await self.write_zeroes(offset, length)

    async def flush(self) -> None:
        return None

    # data path: channels are per Thread
    def get_channel(self) -> Any:
        raise BsDevError(errno.ENOTSUP, f"{self.name}: no data path")

    def put_channel(self, ch: Any) -> None:
        return None

    def readv(self, ch: Any, iovs: list[memoryview], offset_blocks: int, num_blocks: int,
              cb: DataCb, arg: Any) -> int:
        return -errno.ENOTSUP

    def writev(self, ch: Any, iovs: list[memoryview], offset_blocks: int, num_blocks: int,
               cb: DataCb, arg: Any) -> int:
        return -errno.ENOTSUP

    def write_zeroes_blocks(self, ch: Any, offset_blocks: int, num_blocks: int, cb: DataCb, arg: Any) -> int:
        return -errno.ENOTSUP

    def unmap_blocks(self, ch: Any, offset_blocks: int, num_blocks: int, cb: DataCb, arg: Any) -> int:
        return -errno.ENOTSUP

    def close(self) -> None:
        return None


class FileBsDev(BsDev):
    def __init__(self, path: str, *, writable: bool = False, block_size: int = 512):
        self.name = path
        self.writable = writable
        self.fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        size = os.lseek(self.fd, 0, os.SEEK_END)
        self.block_size = block_size
        self.num_blocks = size // block_size
        self.writes = 0

    async def read(self, offset: int, length: int) -> bytearray:
        data = bytearray(os.pread(self.fd, length, offset))
        if len(data) < length:
            data += bytes(length - len(data))
        return data

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        if not self.writable:
            raise BsDevError(errno.EROFS, f"{self.name} is opened read-only (use --repair to write)")
        self.writes += 1
        os.pwrite(self.fd, data, offset)

    async def flush(self) -> None:
        if self.writable:
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class _Waiter:
    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Any]):
        self.fut = fut


def _md_done(io: BdevIO, ok: bool, w: _Waiter) -> None:
    if not w.fut.done():
        if ok:
            w.fut.set_result(None)
        else:
            w.fut.set_exception(BsDevError(errno.EIO, "blobstore metadata I/O failed"))


def _data_done(io: BdevIO, ok: bool, arg: tuple[DataCb, Any]) -> None:
    arg[0](ok, arg[1])


class BdevBsDev(BsDev):
    """A blobstore device over an open bdev descriptor. Metadata I/O runs on ``md_thread``."""

    def __init__(self, desc: BdevDesc, md_thread: Thread | None = None):
        self.desc = desc
        b = desc.bdev
        self.bdev = b
        self.name = b.name
        self.block_size = b.block_size
        self.num_blocks = b.num_blocks
        self.md_thread = md_thread or get_thread()
        self._md_ch: BdevChannel | None = None

    def _md_submit(self, submit: Callable[..., int], *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        w = _Waiter(fut)
        prev = set_thread(self.md_thread)
        try:
            if self._md_ch is None:
                self._md_ch = self.desc.get_io_channel()
            rc = submit(self._md_ch, *args, _md_done, w)
        finally:
            set_thread(prev)
        if rc:
            fut.set_exception(BsDevError(-rc, f"{self.name}: metadata I/O refused: {errno.errorcode.get(-rc, rc)}"))
        return fut

    async def read(self, offset: int, length: int) -> bytearray:
        buf = bytearray(length)
        await self._md_submit(self.desc.read, buf, offset, length)
        return buf

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        await self._md_submit(self.desc.write, data, offset, len(data))

    async def write_zeroes(self, offset: int, length: int) -> None:
        bs = self.block_size
        step = 64 * 1024 * 1024  # bounded requests
        while length > 0:
            n = min(length, step)
            await self._md_submit(self.desc.write_zeroes_blocks, offset // bs, n // bs)
            offset += n
            length -= n

    async def unmap(self, offset: int, length: int) -> None:
        """A hint: a bdev without UNMAP keeps its data (SPDK's blob bdev does the same)."""
        if self.bdev.supports(IoType.UNMAP):
            bs = self.block_size
            step = 1 << 30
            while length > 0:
                n = min(length, step)
                await self._md_submit(self.desc.unmap_blocks, offset // bs, n // bs)
                offset += n
                length -= n

    async def flush(self) -> None:
        if self.bdev.supports(IoType.FLUSH):
            await self._md_submit(self.desc.flush_blocks, 0, self.num_blocks)

    def get_channel(self) -> BdevChannel:
        return self.desc.get_io_channel()

    def put_channel(self, ch: BdevChannel) -> None:
        self.desc.put_io_channel(ch)

    def readv(self, ch: BdevChannel, iovs: list[memoryview], offset_blocks: int, num_blocks: int,
              cb: DataCb, arg: Any) -> int:
        return self.desc.readv_blocks(ch, iovs, offset_blocks, num_blocks, _data_done, (cb, arg))  # type: ignore[arg-type]

    def writev(self, ch: BdevChannel, iovs: list[memoryview], offset_blocks: int, num_blocks: int,
               cb: DataCb, arg: Any) -> int:
        return self.desc.writev_blocks(ch, iovs, offset_blocks, num_blocks, _data_done, (cb, arg))  # type: ignore[arg-type]

    def write_zeroes_blocks(self, ch: BdevChannel, offset_blocks: int, num_blocks: int, cb: DataCb, arg: Any) -> int:
        return self.desc.write_zeroes_blocks(ch, offset_blocks, num_blocks, _data_done, (cb, arg))

    def unmap_blocks(self, ch: BdevChannel, offset_blocks: int, num_blocks: int, cb: DataCb, arg: Any) -> int:
        if not self.bdev.supports(IoType.UNMAP):
            cb(True, arg)   # called from a completion path, never inside a bdev submit
            return 0
        return self.desc.unmap_blocks(ch, offset_blocks, num_blocks, _data_done, (cb, arg))

    def close(self) -> None:
        if self._md_ch is not None:
            prev = set_thread(self.md_thread)
            try:
                self.desc.put_io_channel(self._md_ch)
            finally:
                set_thread(prev)
            self._md_ch = None


__all__ = ["BdevBsDev", "BsDev", "BsDevError", "BdevError", "DataCb", "FileBsDev"]
