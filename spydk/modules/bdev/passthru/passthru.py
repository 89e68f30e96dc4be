"""The passthru bdev (SPDK's module/bdev/passthru): claims a base bdev and forwards all I/O.

    bdev_passthru_create base_bdev_name name [uuid];  bdev_passthru_delete name

A passthru created before its base is remembered and built when the base registers
(examine), which is also how a saved config replays in any order.
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.bdev import Bdev, BdevError, get_bdev, register_bdev, unregister_bdev_by_name
from spydk.bdev.module import BdevModule, register_module
from spydk.bdev.vbdev import BaseHandle, StackedBdev, build_waiting

log = logging.getLogger("spydk.bdev")


@dataclass
class PassthruConfig:
    name: str
    base_bdev_name: str
    uuid: str | None


class PassthruModule(BdevModule):
    name = "passthru"

    def __init__(self) -> None:
        self.configs: dict[str, PassthruConfig] = {}

    def fini(self) -> None:
        # The configs belong to this app instance: forget them at shutdown, so a later app
        # in the same process (tests, embedding) does not re-create these bdevs on examine.
        self.configs.clear()

    def config_json(self) -> list[dict[str, Any]]:
        out = []
        for c in self.configs.values():
            b = get_bdev(c.name)
            uuid = str(b.uuid) if isinstance(b, PassthruBdev) else c.uuid
            p: dict[str, Any] = {"base_bdev_name": c.base_bdev_name, "name": c.name}
            if uuid:
                p["uuid"] = uuid
            out.append({"method": "bdev_passthru_create", "params": p})
        return out

    def examine_config(self, bdev: Bdev) -> None:
        build_waiting("passthru", self.configs.values(), bdev, _build)


module = register_module(PassthruModule())


class PassthruBdev(StackedBdev):
    pass


def _build(c: PassthruConfig) -> PassthruBdev:
    handle = BaseHandle(module, c.base_bdev_name)
    bdev = PassthruBdev(c.name, module, handle, uuid=c.uuid, product_name="passthru")
    try:
        register_bdev(bdev)
    except BdevError:
        bdev.destruct(lambda rc: None)
        raise
    return bdev


def create_passthru(base_bdev_name: str, name: str, uuid: str | None = None) -> str:
    if not name:
        raise BdevError(errno.EINVAL, "name must not be empty")
    if name in module.configs or get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev name {name!r} already exists")
    c = PassthruConfig(name, base_bdev_name, uuid)
    if get_bdev(base_bdev_name) is not None:
        _build(c)  # errors (base claimed, ...) refuse the RPC and leave no config behind
    module.configs[name] = c
    return name


def delete_passthru(name: str, cb: Callable[[int], Any]) -> None:
    c = module.configs.get(name)
    if c is None:
        raise BdevError(errno.ENODEV, f"passthru bdev {name!r} does not exist")
    del module.configs[name]
    if get_bdev(name) is None:
        cb(0)  # only configured, its base never appeared
        return
    unregister_bdev_by_name(name, module, cb)
