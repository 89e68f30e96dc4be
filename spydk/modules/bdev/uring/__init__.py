"""The uring bdev module: a file or block device through io_uring (SPDK's module/bdev/uring).

Importing the package registers the module and its RPCs.

    uring.py    the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.uring import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.uring.uring import (
    UringDisk,
    UringModule,
    create_uring_disk,
    delete_uring_disk,
    rescan_uring_disk,
)

__all__ = ["UringModule", "UringDisk", "create_uring_disk", "delete_uring_disk", "rescan_uring_disk"]
