"""The aio bdev: a file or block device through Linux native AIO (SPDK's module/bdev/aio).

    bdev_aio_create filename name [block_size] [readonly] [fallocate] [uuid]
    bdev_aio_delete name;  bdev_aio_rescan name (picks up a changed file/device size)

I/O goes through spydk.sysio.linux_aio on the channel's thread; see
engines/filedisk.py for the data path. ``fallocate`` enables UNMAP and WRITE_ZEROES as
hole punching (done inline: Linux AIO has no fallocate).
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from spydk.bdev.bdev import BdevError, get_bdev, unregister_bdev_by_name
from spydk.bdev.filedisk import FileDisk, FileModule, open_file_disk, probe_engine
from spydk.bdev.module import register_module
from spydk.sysio.linux_aio import LinuxAio


class AioModule(FileModule):
    name = "aio"
    engine_factory = LinuxAio


module = register_module(AioModule())


class AioDisk(FileDisk):
    product = "AIO disk"

    def dump_info_json(self) -> dict[str, Any]:
        return {"aio": {"filename": self.filename, "block_size_override": self.block_size_override,
                        "readonly": self.readonly, "fallocate": self.fallocate,
                        "o_direct": self.direct}}

    def write_config_json(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": self.name, "filename": self.filename,
                                  "readonly": self.readonly, "fallocate": self.fallocate,
                                  "uuid": str(self.uuid)}
        if self.block_size_override:
            params["block_size"] = self.block_size
        return {"method": "bdev_aio_create", "params": params}


def create_aio_disk(name: str, filename: str, block_size: int | None = None, *, readonly: bool = False,
                    fallocate: bool = False, uuid: str | None = None) -> AioDisk:
    probe_engine(LinuxAio, "Linux AIO")
    return open_file_disk(AioDisk, module, name, filename, block_size, uuid=uuid, readonly=readonly,
                          fallocate=fallocate)  # type: ignore[return-value]


def delete_aio_disk(name: str, cb: Callable[[int], Any]) -> None:
    unregister_bdev_by_name(name, module, cb)


def rescan_aio_disk(name: str) -> None:
    b = get_bdev(name)
    if not isinstance(b, AioDisk):
        raise BdevError(errno.ENODEV, f"aio bdev {name!r} does not exist")
    b.rescan()
