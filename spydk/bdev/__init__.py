"""Block devices: the generic bdev layer, its modules (malloc, null) and RPCs.

Importing this package registers the "bdev" subsystem, the bdev RPCs and the built-in
modules. The API for users and module authors lives in spydk.bdev.bdev (see its
docstring and docs/bdev-module.md).
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

# Built-in modules (malloc, null, aio, uring, passthru, delay, error, split), RPCs and the subsystem register themselves on import.
from spydk.bdev import aio as _aio  # noqa: E402,F401
from spydk.bdev import delay as _delay  # noqa: E402,F401
from spydk.bdev import error as _error  # noqa: E402,F401
from spydk.bdev import malloc as _malloc  # noqa: E402,F401
from spydk.bdev import null as _null  # noqa: E402,F401
from spydk.bdev import passthru as _passthru  # noqa: E402,F401
from spydk.bdev import rpc as _rpc  # noqa: E402,F401
from spydk.bdev import split as _split  # noqa: E402,F401
from spydk.bdev import uring as _uring  # noqa: E402,F401
