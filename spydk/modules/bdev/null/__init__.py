"""The null bdev module: discards writes, reads return without data (SPDK's module/bdev/null).

Importing the package registers the module and its RPCs.

    null.py     the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.null import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.null.null import (
    NullBdev,
    NullModule,
    create_null_disk,
    delete_null_disk,
    resize_null_disk,
)

__all__ = ["NullModule", "NullBdev", "create_null_disk", "delete_null_disk", "resize_null_disk"]
