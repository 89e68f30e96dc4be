"""The delay bdev module: adds latency to reads and writes of a base (SPDK's module/bdev/delay).

Importing the package registers the module and its RPCs.

    delay.py    the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.delay import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.delay.delay import (
    DelayBdev,
    DelayConfig,
    DelayModule,
    create_delay,
    delete_delay,
    update_latency,
)

__all__ = ["DelayConfig", "DelayModule", "DelayBdev", "create_delay", "update_latency", "delete_delay"]
