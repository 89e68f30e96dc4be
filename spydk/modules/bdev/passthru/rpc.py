"""RPCs of the passthru bdev module: bdev_passthru_create, bdev_passthru_delete."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.passthru.passthru import create_passthru, delete_passthru
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.replica import replicated
from spydk.rpc.schema import Param


@rpc_method("bdev_passthru_create", [
    Param("name", "string", required=True), Param("base_bdev_name", "string", required=True),
    Param("uuid", "uuid"),
])
def bdev_passthru_create(ctx: RpcContext, *, name: str, base_bdev_name: str, uuid: str | None = None) -> str:
    return call(create_passthru, base_bdev_name, name, uuid)  # type: ignore[no-any-return]


@rpc_method("bdev_passthru_delete", [Param("name", "string", required=True)])
async def bdev_passthru_delete(ctx: RpcContext, *, name: str) -> bool:
    return await wait_rc(lambda cb: delete_passthru(name, cb), f"deleting passthru bdev {name!r}")


# Every reactor builds its own copy (over its own copy of the base bdev).
from spydk.bdev.rpc import same_bdev_on_every_reactor  # noqa: E402

replicated("bdev_passthru_create", share=same_bdev_on_every_reactor)
replicated("bdev_passthru_delete")
