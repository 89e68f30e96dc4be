"""RPCs of the error bdev module: bdev_error_create, bdev_error_delete, bdev_error_inject_error, bdev_error_resume_pending."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.error.error import (
    ERROR_TYPES,
    IO_TYPES,
    _error_bdev,
    create_error_bdev,
    delete_error_bdev,
    inject_error,
)
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.schema import Param


@rpc_method("bdev_error_create", [Param("base_name", "string", required=True), Param("uuid", "uuid")])
def bdev_error_create(ctx: RpcContext, *, base_name: str, uuid: str | None = None) -> str:
    return call(create_error_bdev, base_name, uuid)  # type: ignore[no-any-return]


@rpc_method("bdev_error_delete", [Param("name", "string", required=True)])
async def bdev_error_delete(ctx: RpcContext, *, name: str) -> bool:
    return await wait_rc(lambda cb: delete_error_bdev(name, cb), f"deleting error bdev {name!r}")


@rpc_method("bdev_error_inject_error", [
    Param("name", "string", required=True),
    Param("io_type", "enum", required=True, choices=("clear", *IO_TYPES, "all")),
    Param("error_type", "enum", required=True, choices=ERROR_TYPES),
    Param("nvme_sct", "uint32"), Param("nvme_sc", "uint32"), Param("num", "uint32"),
    Param("queue_depth", "uint64"), Param("corrupt_offset", "uint64"), Param("corrupt_value", "uint8"),
])
def bdev_error_inject_error(ctx: RpcContext, *, name: str, io_type: str, error_type: str, num: int = 1,
                            queue_depth: int = 0, corrupt_offset: int = 0, corrupt_value: int = 0,
                            nvme_sct: int = 0, nvme_sc: int = 0) -> bool:
    call(inject_error, name, io_type, error_type, num, queue_depth, corrupt_offset, corrupt_value,
         nvme_sct, nvme_sc)
    return True


@rpc_method("bdev_error_resume_pending", [Param("name", "string", required=True)])
def bdev_error_resume_pending(ctx: RpcContext, *, name: str) -> bool:
    call(lambda: _error_bdev(name).resume_pending())
    return True
