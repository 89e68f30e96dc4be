"""RPCs of the uring bdev module: bdev_uring_create, bdev_uring_delete, bdev_uring_rescan."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.uring.uring import create_uring_disk, delete_uring_disk, rescan_uring_disk
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.replica import replicated
from spydk.rpc.schema import Param


@rpc_method("bdev_uring_create", [
    Param("filename", "string", required=True), Param("name", "string", required=True),
    Param("block_size", "uint32"), Param("uuid", "uuid"),
])
def bdev_uring_create(ctx: RpcContext, *, filename: str, name: str, block_size: int = 0,
                      uuid: str | None = None) -> str:
    return call(create_uring_disk, name, filename, block_size or None, uuid=uuid).name  # type: ignore[no-any-return]


@rpc_method("bdev_uring_delete", [Param("name", "string", required=True)])
async def bdev_uring_delete(ctx: RpcContext, *, name: str) -> bool:
    return await wait_rc(lambda cb: delete_uring_disk(name, cb), f"deleting uring bdev {name!r}")


@rpc_method("bdev_uring_rescan", [Param("name", "string", required=True)])
def bdev_uring_rescan(ctx: RpcContext, *, name: str) -> bool:
    call(rescan_uring_disk, name)
    return True


# Every reactor opens the file itself.
from spydk.bdev.rpc import same_bdev_on_every_reactor  # noqa: E402

replicated("bdev_uring_create", share=same_bdev_on_every_reactor)
replicated("bdev_uring_delete")
replicated("bdev_uring_rescan")
