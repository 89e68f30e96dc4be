"""The generic block device layer (SPDK's lib/bdev): registration, descriptors, channels, I/O.

Modules (malloc, null, aio, ...) live apart, in spydk.modules.bdev.<name>; this layer never
imports them. The layer's own RPCs and the "bdev" subsystem are in rpc.py, their `spydk rpc`
commands in rpc_cli.py; both are found by the plugin loader (spydk.apps.plugins). Building
blocks for module authors: vbdev.py (bdevs stacked on a base), filedisk.py (bdevs over a
file I/O engine), modutil.py (RPC helpers). See docs/bdev-module.md.
"""
from spydk.bdev.bdev import (
    Bdev,
    BdevChannel,
    BdevDesc,
    BdevError,
    BdevEvent,
    BdevOptions,
    ClaimType,
    bdevs,
    examine,
    get_bdev,
    open_ext,
    options,
    register_bdev,
    unregister_bdev,
    unregister_bdev_by_name,
    wait_for_examine,
)
from spydk.bdev.io import BdevIO, IoStatus, IoType
from spydk.bdev.module import BdevModule, get_module, modules, register_module

__all__ = [
    "Bdev", "BdevChannel", "BdevDesc", "BdevError", "BdevEvent", "BdevIO", "BdevModule",
    "BdevOptions", "ClaimType", "IoStatus", "IoType", "bdevs", "examine", "get_bdev",
    "get_module", "modules", "open_ext", "options", "register_bdev", "register_module",
    "unregister_bdev", "unregister_bdev_by_name", "wait_for_examine",
]
