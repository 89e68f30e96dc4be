"""The lvol bdev module: logical volumes on lvol stores (SPDK's module/bdev/lvol).

Importing the package registers the module and its RPCs.

    lvol.py      the module (examine finds lvol stores), the lvol bdev, store life cycle
    rpc.py       server-side RPC handlers (@rpc_method), SPDK's bdev_lvol_* methods
    rpc_cli.py   `spydk rpc` argument parsers (add_commands), rpc.py's flags
"""
from spydk.modules.bdev.lvol import rpc as _rpc  # noqa: F401  (registers the RPC methods)
from spydk.modules.bdev.lvol.lvol import LvolBdev, LvolModule, LvsBdev, create_lvs, load_lvs, unload_lvs

__all__ = ["LvolBdev", "LvolModule", "LvsBdev", "create_lvs", "load_lvs", "unload_lvs"]
