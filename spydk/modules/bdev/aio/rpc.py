"""RPCs of the aio bdev module: bdev_aio_create, bdev_aio_delete, bdev_aio_rescan."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.aio.aio import create_aio_disk, delete_aio_disk, rescan_aio_disk
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.replica import replicated
from spydk.rpc.schema import Param


@rpc_method("bdev_aio_create", [
    Param("name", "string", required=True), Param("filename", "string", required=True),
    Param("block_size", "uint32"), Param("readonly", "boolean"), Param("fallocate", "boolean"),
    Param("uuid", "uuid"), Param("nowait", "boolean"),
])
def bdev_aio_create(ctx: RpcContext, *, name: str, filename: str, block_size: int = 0,
                    readonly: bool = False, fallocate: bool = False, uuid: str | None = None,
                    nowait: bool = False) -> str:
    # nowait (RWF_NOWAIT) is accepted and ignored: submissions never block the reactor here
    return call(create_aio_disk, name, filename, block_size or None, readonly=readonly,
                fallocate=fallocate, uuid=uuid).name  # type: ignore[no-any-return]


@rpc_method("bdev_aio_delete", [Param("name", "string", required=True)])
async def bdev_aio_delete(ctx: RpcContext, *, name: str) -> bool:
    return await wait_rc(lambda cb: delete_aio_disk(name, cb), f"deleting aio bdev {name!r}")


@rpc_method("bdev_aio_rescan", [Param("name", "string", required=True)])
def bdev_aio_rescan(ctx: RpcContext, *, name: str) -> bool:
    call(rescan_aio_disk, name)
    return True


# Every reactor opens the file itself.
from spydk.bdev.rpc import same_bdev_on_every_reactor  # noqa: E402

replicated("bdev_aio_create", share=same_bdev_on_every_reactor)
replicated("bdev_aio_delete")
replicated("bdev_aio_rescan")
