"""The aio bdev module: a file or block device through Linux native AIO (SPDK's module/bdev/aio).

Importing the package registers the module and its RPCs.

    aio.py      the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.aio import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.aio.aio import (
    AioDisk,
    AioModule,
    create_aio_disk,
    delete_aio_disk,
    rescan_aio_disk,
)

__all__ = ["AioModule", "AioDisk", "create_aio_disk", "delete_aio_disk", "rescan_aio_disk"]
