"""The error bdev module: a pass-through that fails I/O on request (SPDK's module/bdev/error).

Importing the package registers the module and its RPCs.

    error.py    the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.error import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.error.error import (
    ErrorBdev,
    ErrorModule,
    Injection,
    create_error_bdev,
    delete_error_bdev,
    inject_error,
)

__all__ = ["Injection", "ErrorModule", "ErrorBdev", "create_error_bdev", "inject_error", "delete_error_bdev"]
