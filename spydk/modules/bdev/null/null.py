"""The null bdev: discards writes, completes reads without touching the caller's buffer
(as SPDK's module/bdev/null does). A read with no caller buffer gets a view of a shared
zero buffer. Useful to measure the layers above without a storage cost.
"""
from __future__ import annotations

import errno
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from spydk.bdev import Bdev, BdevError, get_bdev, register_bdev, unregister_bdev_by_name
from spydk.bdev.io import FLUSH, READ, RESET, SUCCESS, WRITE, WRITE_ZEROES, BdevIO
from spydk.bdev.iobuf import ZERO_BUF_SIZE, ZEROES
from spydk.bdev.module import BdevModule, register_module
from spydk.bdev.modutil import check_block_size
from spydk.thread import io_device_register, is_io_device

_SUPPORTED = frozenset((READ, WRITE, WRITE_ZEROES, FLUSH, RESET))


class NullModule(BdevModule):
    name = "null"

    def io_device(self) -> Any:
        if not is_io_device(self):
            io_device_register(self, lambda dev, ch: None, lambda dev, ch: None, "null")
        return self


module = register_module(NullModule())


class NullBdev(Bdev):
    zcopy_read = True

    def __init__(self, name: str, block_size: int, num_blocks: int, *, uuid: str | None = None,
                 physical_block_size: int = 0):
        super().__init__(name, module, block_size, num_blocks, uuid=uuid, product_name="Null disk",
                         physical_block_size=physical_block_size)
        self.io_device = module.io_device()
        self.max_rw_blocks = 0

    def io_type_supported(self, io_type: int) -> bool:
        return io_type in _SUPPORTED

    def submit_request(self, ctx: Any, io: BdevIO) -> int:
        if io.iovs is None and io.type == READ:
            n = io.nbytes
            iov1 = io._iov1
            iov1[0] = ZEROES[:n] if n <= ZERO_BUF_SIZE else memoryview(bytes(n))
            io.iovs = iov1
        return SUCCESS  # done at once: the layer completes it

    def submit_batch(self, ctx: Any, ios: list[BdevIO]) -> None:
        # BdevDesc.rw_batch: reads leave the caller's buffers as they are (a zero-copy read,
        # io.iovs None, gets zeroes), writes go nowhere
        for io in ios:
            if io.iovs is None:
                n = io.nbytes
                iov1 = io._iov1
                iov1[0] = ZEROES[:n] if n <= ZERO_BUF_SIZE else memoryview(bytes(n))
                io.iovs = iov1
            io.status = SUCCESS

    def write_config_json(self) -> dict[str, Any]:
        return {"method": "bdev_null_create", "params": {
            "name": self.name, "uuid": str(self.uuid), "num_blocks": self.num_blocks,
            "block_size": self.block_size, "physical_block_size": self.physical_block_size,
            "md_size": 0, "dif_type": 0, "dif_is_head_of_md": False, "dif_pi_format": 0}}


def create_null_disk(name: str, block_size: int, num_blocks: int, *, uuid: str | None = None,
                     physical_block_size: int = 0) -> NullBdev:
    if not name:
        raise BdevError(errno.EINVAL, "name must not be empty")
    check_block_size(block_size)
    if physical_block_size:
        check_block_size(physical_block_size, "physical_block_size")
    if num_blocks < 1:
        raise BdevError(errno.EINVAL, f"num_blocks must be at least 1, got {num_blocks}")
    if get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev name {name!r} already exists")
    if uuid is not None:
        _uuid.UUID(uuid)
    bdev = NullBdev(name, block_size, num_blocks, uuid=uuid, physical_block_size=physical_block_size)
    register_bdev(bdev)
    return bdev


def delete_null_disk(name: str, cb: Callable[[int], Any]) -> None:
    unregister_bdev_by_name(name, module, cb)


def resize_null_disk(name: str, new_size_mib: int) -> None:
    bdev = get_bdev(name)
    if bdev is None or not isinstance(bdev, NullBdev):
        raise BdevError(errno.ENODEV, f"null bdev {name!r} does not exist")
    new_blocks = new_size_mib * 1024 * 1024 // bdev.block_size
    if new_blocks < bdev.num_blocks:
        raise BdevError(errno.EINVAL, f"new_size {new_size_mib} MiB is smaller than the current size "
                                      f"({bdev.num_blocks * bdev.block_size // (1024 * 1024)} MiB); null bdevs only grow")
    if new_blocks == bdev.num_blocks:
        return
    bdev.notify_blockcnt_change(new_blocks)
