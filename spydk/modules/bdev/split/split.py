"""The split bdev (SPDK's module/bdev/split): cuts a base bdev into equal parts.

    bdev_split_create base_bdev split_count [split_size_mb]   -> ["<base>p0", ...]
    bdev_split_delete base_bdev

Without split_size_mb the base is divided evenly (the remainder stays unused). The split
is a module configuration applied by examine: created before its base, it happens when
the base registers, and a saved config replays in any order.
"""
from __future__ import annotations

import errno
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.bdev import Bdev, BdevError, get_bdev, register_bdev, unregister_bdev
from spydk.bdev.module import BdevModule, register_module
from spydk.bdev.vbdev import BaseHandle, StackedBdev

log = logging.getLogger("spydk.bdev")
MIB = 1024 * 1024


@dataclass
class SplitConfig:
    base_bdev: str
    split_count: int
    split_size_mb: int
    parts: list[SplitBdev]


class SplitModule(BdevModule):
    name = "split"

    def __init__(self) -> None:
        self.configs: dict[str, SplitConfig] = {}

    def fini(self) -> None:
        # The configs belong to this app instance: forget them at shutdown, so a later app
        # in the same process (tests, embedding) does not re-create these bdevs on examine.
        self.configs.clear()

    def config_json(self) -> list[dict[str, Any]]:
        return [{"method": "bdev_split_create",
                 "params": {"base_bdev": c.base_bdev, "split_count": c.split_count,
                            "split_size_mb": c.split_size_mb}}
                for c in self.configs.values()]

    def examine_config(self, bdev: Bdev) -> None:
        c = self.configs.get(bdev.name)
        if c is not None and not c.parts:
            try:
                _build(c, bdev)
            except BdevError as e:
                log.error("split of %s: %s", bdev.name, e.message)


module = register_module(SplitModule())


class SplitBdev(StackedBdev):
    def write_config_json(self) -> None:
        return None  # the module's config recreates every part

    def destruct(self, done: Callable[[int], Any]) -> None:
        for c in module.configs.values():
            if self in c.parts:
                c.parts.remove(self)
        super().destruct(done)


def _geometry(c: SplitConfig, base: Bdev) -> int:
    """Blocks per part; BdevError when the base cannot hold the split."""
    if c.split_size_mb:
        if (c.split_size_mb * MIB) % base.block_size:
            raise BdevError(errno.EINVAL, f"split_size_mb {c.split_size_mb} is not a multiple of the "
                                          f"block size {base.block_size}")
        per = c.split_size_mb * MIB // base.block_size
        if per * c.split_count > base.num_blocks:
            raise BdevError(errno.EINVAL, f"split_count {c.split_count} x split_size_mb {c.split_size_mb} "
                                          f"exceeds base bdev {base.name!r} "
                                          f"({base.num_blocks * base.block_size // MIB} MiB)")
    else:
        per = base.num_blocks // c.split_count
        if per < 1:
            raise BdevError(errno.EINVAL, f"split_count {c.split_count} exceeds the {base.num_blocks} "
                                          f"blocks of base bdev {base.name!r}")
    return per


def _build(c: SplitConfig, base: Bdev) -> list[str]:
    per = _geometry(c, base)
    names = [f"{base.name}p{i}" for i in range(c.split_count)]
    for n in names:
        if get_bdev(n) is not None:
            raise BdevError(errno.EEXIST, f"bdev name {n!r} already exists")
    handle = BaseHandle(module, base.name)
    for i, n in enumerate(names):
        # derived from the base's UUID, so a replayed config gives the parts the same UUIDs
        part = SplitBdev(n, module, handle, offset_blocks=i * per, num_blocks=per, product_name="Split Disk",
                         uuid=str(uuid.uuid5(base.uuid, f"split{i}")))
        try:
            register_bdev(part)
        except BdevError:
            part.destruct(lambda rc: None)
            for p in list(c.parts):
                unregister_bdev(p)
            raise
        c.parts.append(part)
    return names


def create_split(base_bdev: str, split_count: int, split_size_mb: int = 0) -> list[str]:
    if not base_bdev:
        raise BdevError(errno.EINVAL, "base_bdev must not be empty")
    if split_count < 1:
        raise BdevError(errno.EINVAL, f"split_count must be at least 1, got {split_count}")
    if split_size_mb < 0:
        raise BdevError(errno.EINVAL, f"split_size_mb must not be negative, got {split_size_mb}")
    if base_bdev in module.configs:
        raise BdevError(errno.EEXIST, f"base_bdev {base_bdev!r} is already split")
    c = SplitConfig(base_bdev, split_count, split_size_mb, [])
    base = get_bdev(base_bdev)
    names = _build(c, base) if base is not None else []
    module.configs[base_bdev] = c
    return names


def delete_split(base_bdev: str, cb: Callable[[int], Any]) -> None:
    c = module.configs.pop(base_bdev, None)
    if c is None:
        raise BdevError(errno.ENODEV, f"base_bdev {base_bdev!r} is not split")
    parts = list(c.parts)
    if not parts:
        cb(0)
        return
    left = [len(parts)]

    def one(rc: int) -> None:
        left[0] -= 1
        if left[0] == 0:
            cb(0)
    for p in parts:
        unregister_bdev(p, one)
