"""Bdev modules: the plug-in interface behind every block device type.

A module is a ``BdevModule`` subclass registered once (at import) with
``register_module``. It creates ``Bdev`` subclasses and registers them with
``spydk.bdev.register_bdev``. See docs/bdev-module.md for a walk-through.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from spydk.bdev.bdev import Bdev


class BdevModule:
    """Override what the module needs; the defaults do nothing.

    name          unique module name ("malloc", "null", ...), shown as claim owner
    async_init    True when init() returns an awaitable the bdev subsystem must wait for
    init()        called when the bdev subsystem starts
    fini()        called when it stops, after every bdev was unregistered
    config_json() module-wide settings as [{"method":..., "params":...}] (bdevs write
                  their own creation entries through Bdev.write_config_json)
    examine_config(bdev)        look at a new bdev's configuration (no I/O); synchronous
    examine_disk(bdev, done)    read from it if needed (e.g. a partition table) and call
                                done() when finished; may claim it (bdev.claim)
    """

    name: str = ""
    async_init: bool = False

    def init(self) -> Awaitable[None] | None:
        return None

    def fini(self) -> Awaitable[None] | None:
        return None

    def config_json(self) -> list[dict[str, Any]]:
        return []

    def examine_config(self, bdev: Bdev) -> None:
        return None

    def examine_disk(self, bdev: Bdev, done: Callable[[], None]) -> None:
        done()

    def has_examine_config(self) -> bool:
        return type(self).examine_config is not BdevModule.examine_config

    def has_examine_disk(self) -> bool:
        return type(self).examine_disk is not BdevModule.examine_disk

    def __repr__(self) -> str:
        return f"<BdevModule {self.name}>"


_modules: dict[str, BdevModule] = {}

M = TypeVar("M", bound=BdevModule)


def register_module(module: M) -> M:
    if not module.name:
        raise ValueError("a bdev module needs a name")
    if module.name in _modules:
        raise ValueError(f"bdev module {module.name!r} is registered twice")
    _modules[module.name] = module
    return module


def get_module(name: str) -> BdevModule | None:
    return _modules.get(name)


def modules() -> list[BdevModule]:
    return list(_modules.values())
