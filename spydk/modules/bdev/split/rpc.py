"""RPCs of the split bdev module: bdev_split_create, bdev_split_delete."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.split.split import create_split, delete_split
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.replica import replicated
from spydk.rpc.schema import Param


@rpc_method("bdev_split_create", [
    Param("base_bdev", "string", required=True), Param("split_count", "uint32", required=True),
    Param("split_size_mb", "uint64"),
])
def bdev_split_create(ctx: RpcContext, *, base_bdev: str, split_count: int, split_size_mb: int = 0) -> list[str]:
    return call(create_split, base_bdev, split_count, split_size_mb)  # type: ignore[no-any-return]


@rpc_method("bdev_split_delete", [Param("base_bdev", "string", required=True)])
async def bdev_split_delete(ctx: RpcContext, *, base_bdev: str) -> bool:
    return await wait_rc(lambda cb: delete_split(base_bdev, cb), f"deleting the split of {base_bdev!r}")


# Every reactor builds its own copy (over its own copy of the base bdev).
replicated("bdev_split_create")
replicated("bdev_split_delete")
