"""The uring bdev: a file or block device through io_uring (SPDK's module/bdev/uring).

    bdev_uring_create filename name [block_size] [uuid];  bdev_uring_delete name
    bdev_uring_rescan name

The engine (spydk.sysio.io_uring) talks to the kernel through raw system calls;
if the kernel refuses io_uring (disabled by sysctl, seccomp, too old) the create RPC
fails with the kernel's reason: there is no silent fallback to another engine.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from spydk.bdev.bdev import BdevError, get_bdev, unregister_bdev_by_name
from spydk.bdev.filedisk import FileDisk, FileModule, open_file_disk, probe_engine
from spydk.bdev.module import register_module
from spydk.sysio.io_uring import IoUring


class UringModule(FileModule):
    name = "uring"
    engine_factory = IoUring


module = register_module(UringModule())


class UringDisk(FileDisk):
    product = "URING bdev"

    def dump_info_json(self) -> dict[str, Any]:
        return {"uring": {"filename": self.filename, "o_direct": self.direct}}

    def write_config_json(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": self.name, "filename": self.filename, "uuid": str(self.uuid)}
        if self.block_size_override:
            params["block_size"] = self.block_size
        return {"method": "bdev_uring_create", "params": params}


def create_uring_disk(name: str, filename: str, block_size: int | None = None, *,
                      uuid: str | None = None) -> UringDisk:
    probe_engine(IoUring, "io_uring")
    return open_file_disk(UringDisk, module, name, filename, block_size, uuid=uuid)  # type: ignore[return-value]


def delete_uring_disk(name: str, cb: Callable[[int], Any]) -> None:
    unregister_bdev_by_name(name, module, cb)


def rescan_uring_disk(name: str) -> None:
    b = get_bdev(name)
    if not isinstance(b, UringDisk):
        raise BdevError(errno.ENODEV, f"uring bdev {name!r} does not exist")
    b.rescan()
