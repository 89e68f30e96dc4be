"""RPCs of the malloc bdev module: bdev_malloc_create, bdev_malloc_delete."""
from __future__ import annotations

import errno
from typing import Any

from spydk.bdev import BdevError
from spydk.bdev.modutil import check_block_size
from spydk.modules.bdev.malloc.malloc import adopt_memory, create_malloc_disk, delete_malloc_disk, memfd_of
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import invalid_params
from spydk.rpc.replica import replicated


@rpc_method("bdev_malloc_create", [
    Param("name", "string"), Param("block_size", "uint32", required=True),
    Param("num_blocks", "uint64", required=True), Param("uuid", "uuid"),
    Param("optimal_io_boundary", "uint32"), Param("md_size", "uint32"), Param("md_interleave", "boolean"),
    Param("dif_type", "int32"), Param("dif_is_head_of_md", "boolean"),
    Param("physical_block_size", "uint32"), Param("dif_pi_format", "uint32"), Param("numa_id", "int32"),
])
def rpc_bdev_malloc_create(ctx: RpcContext, block_size: int, num_blocks: int, name: str | None = None,
                           uuid: str | None = None, optimal_io_boundary: int = 0, md_size: int = 0,
                           md_interleave: bool = False, dif_type: int = 0, dif_is_head_of_md: bool = False,
                           physical_block_size: int = 0, dif_pi_format: int = 0, numa_id: int = -1) -> str:
    """Create a RAM disk; returns its name."""
    from spydk.bdev.rpc import rpc_error
    if md_size or dif_type:
        raise invalid_params("parameters 'md_size' and 'dif_type' are not supported: spydk bdevs carry no metadata")
    if num_blocks < 1:
        raise invalid_params(f"parameter 'num_blocks' must be at least 1, got {num_blocks}")
    try:
        check_block_size(block_size)
        return create_malloc_disk(name, block_size, num_blocks, uuid=uuid, optimal_io_boundary=optimal_io_boundary,
                                  physical_block_size=physical_block_size).name
    except BdevError as e:
        if e.errno == errno.EINVAL:
            raise invalid_params(e.message) from None
        raise rpc_error(e) from None


@rpc_method("bdev_malloc_delete", [Param("name", "string", required=True)])
def rpc_bdev_malloc_delete(ctx: RpcContext, name: str) -> Any:
    """Delete a malloc bdev (waits until its users have closed it)."""
    from spydk.bdev.rpc import unregister_future
    return unregister_future(lambda cb: delete_malloc_disk(name, cb))


def _share(params: Any, result: Any) -> tuple[Any, list[int]]:
    from spydk.bdev.rpc import same_bdev_on_every_reactor
    out, _ = same_bdev_on_every_reactor(params, result)
    fd = memfd_of(result)
    return out, [fd] if fd >= 0 else []


def _adopt(params: Any, fds: list[int]) -> None:
    if fds:
        adopt_memory(params["name"], fds[0])


# Every reactor has the bdev, over the same memory (a memfd main maps and passes along).
replicated("bdev_malloc_create", share=_share, adopt=_adopt)
replicated("bdev_malloc_delete")
