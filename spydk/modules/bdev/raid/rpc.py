"""SPDK's bdev_raid_* RPCs."""
from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

from spydk.bdev import BdevError, get_bdev
from spydk.bdev.modutil import call, rpc_error
from spydk.modules.bdev.raid import bdev_raid as core
from spydk.modules.bdev.raid.sb_io import read_superblock
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import errno_error, invalid_params
from spydk.thread import get_reactor


async def wait_rc(start: Callable[[Callable[[int], Any]], Any], what: str) -> bool:
    """Run start(cb) on the app thread (the raid's control thread) and wait for cb(rc)."""
    reactor = get_reactor()
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def settle(rc: int) -> None:
        if not fut.done():
            fut.set_result(rc)

    def done(rc: int) -> None:
        reactor.loop.call_soon(settle, rc)

    def go() -> None:
        try:
            start(done)
        except BdevError as e:
            if not fut.done():
                fut.set_exception(rpc_error(e))
    assert reactor.app_thread is not None
    reactor.app_thread.send_msg(go)
    rc = await fut
    if rc:
        raise errno_error(rc, f"{what} failed: rc {rc}")
    return True


LEVEL_CHOICES = ("raid0", "0", "raid1", "1", "raid5f", "5f", "concat")


@rpc_method("bdev_raid_create", [
    Param("name", "string", required=True), Param("strip_size_kb", "uint32"),
    Param("raid_level", "enum", required=True, choices=LEVEL_CHOICES),
    Param("base_bdevs", "array", required=True, items=Param("base_bdev", "string")),
    Param("uuid", "uuid"), Param("superblock", "boolean"),
])
async def bdev_raid_create(ctx: RpcContext, *, name: str, raid_level: str, base_bdevs: list[str],
                           strip_size_kb: int = 0, uuid: str | None = None, superblock: bool = False) -> bool:
    """Create a raid bdev (raid0, raid1, raid5f, concat) over base bdevs."""
    if superblock:
        # as SPDK: never write a superblock over another raid's (that would take its members)
        for b in base_bdevs:
            if get_bdev(b) is None:
                continue
            found = await _read_sb(b)
            if found is not None:
                raise errno_error(errno.EEXIST, f"base bdev {b} already has the superblock of raid {found.name!r}: "
                                                "delete that raid with clear_sb, or add it back with examine")
    reactor = get_reactor()
    assert reactor.app_thread is not None
    await reactor.call_on(reactor.app_thread, call, core.create_raid, name, raid_level, base_bdevs,
                          strip_size_kb, uuid, superblock)
    return True


async def _read_sb(bdev_name: str) -> Any:
    reactor = get_reactor()
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def got(sb: Any) -> None:
        reactor.loop.call_soon(lambda: None if fut.done() else fut.set_result(sb))
    assert reactor.app_thread is not None
    reactor.app_thread.send_msg(read_superblock, bdev_name, got)
    return await fut


@rpc_method("bdev_raid_get_bdevs", [
    Param("category", "enum", required=True, choices=("online", "configuring", "offline", "all")),
])
def bdev_raid_get_bdevs(ctx: RpcContext, *, category: str) -> list[dict[str, Any]]:
    """List raid bdevs of a category (online, configuring, offline, all)."""
    return [r.info() for r in core.module.raids.values() if category == "all" or r.state == category]


@rpc_method("bdev_raid_delete", [Param("name", "string", required=True), Param("clear_sb", "boolean")])
async def bdev_raid_delete(ctx: RpcContext, *, name: str, clear_sb: bool = False) -> bool:
    """Delete a raid bdev (clear_sb: wipe its superblocks)."""
    return await wait_rc(lambda cb: core.delete_raid(name, cb, clear_sb), f"deleting raid bdev {name!r}")


@rpc_method("bdev_raid_add_base_bdev", [
    Param("raid_bdev", "string", required=True), Param("base_bdev", "string", required=True),
])
async def bdev_raid_add_base_bdev(ctx: RpcContext, *, raid_bdev: str, base_bdev: str) -> bool:
    """Add a base bdev to a raid (an online raid1 or raid5f rebuilds onto it)."""
    return await wait_rc(lambda cb: core.add_base_bdev(raid_bdev, base_bdev, cb),
                         f"adding {base_bdev!r} to raid bdev {raid_bdev!r}")


@rpc_method("bdev_raid_remove_base_bdev", [Param("name", "string", required=True)])
async def bdev_raid_remove_base_bdev(ctx: RpcContext, *, name: str) -> bool:
    """Remove a base bdev from its raid."""
    return await wait_rc(lambda cb: core.remove_base_bdev(name, cb), f"removing base bdev {name!r}")


@rpc_method("bdev_raid_set_options", [
    Param("process_window_size_kb", "uint32"), Param("process_max_bandwidth_mb_sec", "uint32"),
])
def bdev_raid_set_options(ctx: RpcContext, *, process_window_size_kb: int | None = None,
                          process_max_bandwidth_mb_sec: int | None = None) -> bool:
    """Set the rebuild window size and bandwidth limit."""
    if process_window_size_kb is not None and process_window_size_kb < 1:
        raise invalid_params("process_window_size_kb must be at least 1")
    call(core.set_options, process_window_size_kb, process_max_bandwidth_mb_sec)
    return True
