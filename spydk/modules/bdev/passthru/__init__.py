"""The passthru bdev module: claims a base bdev and forwards all I/O (SPDK's module/bdev/passthru).

Importing the package registers the module and its RPCs.

    passthru.py  the module and its bdev
    rpc.py       server-side RPC handlers (@rpc_method)
    rpc_cli.py   `spydk rpc` argument parsers (add_commands)
"""
from spydk.modules.bdev.passthru import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.passthru.passthru import (
    PassthruBdev,
    PassthruConfig,
    PassthruModule,
    create_passthru,
    delete_passthru,
)

__all__ = ["PassthruConfig", "PassthruModule", "PassthruBdev", "create_passthru", "delete_passthru"]
