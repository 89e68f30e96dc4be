"""The split bdev module: cuts a base bdev into equal parts (SPDK's module/bdev/split).

Importing the package registers the module and its RPCs.

    split.py    the module and its bdev
    rpc.py      server-side RPC handlers (@rpc_method)
    rpc_cli.py  `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.split import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.split.split import (
    SplitBdev,
    SplitConfig,
    SplitModule,
    create_split,
    delete_split,
)

__all__ = ["SplitConfig", "SplitModule", "SplitBdev", "create_split", "delete_split"]
