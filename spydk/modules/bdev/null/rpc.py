"""RPCs of the null bdev module: bdev_null_create, bdev_null_delete, bdev_null_resize."""
from __future__ import annotations

import errno
from typing import Any

from spydk.bdev import BdevError
from spydk.modules.bdev.null.null import create_null_disk, delete_null_disk, resize_null_disk
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import invalid_params
from spydk.rpc.replica import replicated


@rpc_method("bdev_null_create", [
    Param("name", "string", required=True), Param("block_size", "uint32", required=True),
    Param("num_blocks", "uint64", required=True), Param("uuid", "uuid"),
    Param("physical_block_size", "uint32"), Param("md_size", "uint32"), Param("dif_type", "int32"),
    Param("dif_pi_format", "uint32"), Param("dif_is_head_of_md", "boolean"),
    Param("preferred_write_granularity", "uint32"), Param("preferred_write_alignment", "uint32"),
    Param("optimal_write_size", "uint32"), Param("preferred_unmap_granularity", "uint32"),
    Param("preferred_unmap_alignment", "uint32"),
])
def rpc_bdev_null_create(ctx: RpcContext, name: str, block_size: int, num_blocks: int, uuid: str | None = None,
                         physical_block_size: int = 0, md_size: int = 0, dif_type: int = 0,
                         **_hints: Any) -> str:
    """Create a null bdev; returns its name."""
    from spydk.bdev.rpc import rpc_error
    if md_size or dif_type:
        raise invalid_params("parameters 'md_size' and 'dif_type' are not supported: spydk bdevs carry no metadata")
    if num_blocks < 1:
        raise invalid_params(f"parameter 'num_blocks' must be at least 1, got {num_blocks}")
    try:
        return create_null_disk(name, block_size, num_blocks, uuid=uuid,
                                physical_block_size=physical_block_size).name
    except BdevError as e:
        if e.errno == errno.EINVAL:
            raise invalid_params(e.message) from None
        raise rpc_error(e) from None


@rpc_method("bdev_null_delete", [Param("name", "string", required=True)])
def rpc_bdev_null_delete(ctx: RpcContext, name: str) -> Any:
    """Delete a null bdev."""
    from spydk.bdev.rpc import unregister_future
    return unregister_future(lambda cb: delete_null_disk(name, cb))


@rpc_method("bdev_null_resize", [Param("name", "string", required=True), Param("new_size", "uint64", required=True)])
def rpc_bdev_null_resize(ctx: RpcContext, name: str, new_size: int) -> bool:
    """Grow a null bdev to new_size MiB."""
    from spydk.bdev.rpc import rpc_error
    try:
        resize_null_disk(name, new_size)
    except BdevError as e:
        if e.errno == errno.EINVAL:
            raise invalid_params(e.message) from None
        raise rpc_error(e) from None
    return True


# Every reactor builds its own copy (over its own copy of the base bdev).
from spydk.bdev.rpc import same_bdev_on_every_reactor  # noqa: E402

replicated("bdev_null_create", share=same_bdev_on_every_reactor)
replicated("bdev_null_delete")
replicated("bdev_null_resize")
