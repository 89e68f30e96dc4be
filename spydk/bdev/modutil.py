"""Helpers shared by bdev modules: block size checks and the glue of their RPC handlers."""
from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

from spydk.bdev.bdev import BdevError
from spydk.rpc.errors import RpcError, errno_error, invalid_params


def rpc_error(e: BdevError) -> RpcError:
    """A BdevError as the RPC error SPDK would send (EINVAL -> invalid params)."""
    if e.errno == errno.EINVAL:
        return invalid_params(e.message)
    return errno_error(e.errno, e.message)


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except BdevError as e:
        raise rpc_error(e) from None


async def wait_rc(start: Callable[[Callable[[int], Any]], Any], what: str) -> bool:
    """Run start(cb) and wait until cb(rc) is called; rc != 0 becomes an RPC error."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def done(rc: int) -> None:
        if not fut.done():
            fut.set_result(rc)
    call(start, done)
    rc = await fut
    if rc:
        raise errno_error(rc, f"{what} failed: rc {rc}")
    return True


def check_power_of_two_block_size(block_size: int, what: str = "block_size") -> None:
    if block_size < 512 or block_size & (block_size - 1):
        raise BdevError(errno.EINVAL, f"{what} {block_size} is invalid: it must be a power of two "
                                      "of at least 512 (512, 1024, 2048, 4096, ...)")


def check_block_size(block_size: int, what: str = "block_size") -> None:
    if block_size < 512 or block_size % 512 or block_size & (block_size - 1):
        raise BdevError(errno.EINVAL, f"{what} {block_size} is invalid: it must be a power of two and "
                                      "a multiple of 512 (512, 1024, 2048, 4096, ...)")
