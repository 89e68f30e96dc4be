"""The malloc bdev module: a RAM disk (SPDK's module/bdev/malloc).

Importing the package registers the module and its RPCs.

    malloc.py   the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.malloc import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.malloc.malloc import (
    MallocBdev,
    MallocModule,
    create_malloc_disk,
    delete_malloc_disk,
)

__all__ = ["MallocModule", "MallocBdev", "create_malloc_disk", "delete_malloc_disk"]
