"""bdev_nvme: NVMe namespaces reached through spydk's NVMe host driver become bdevs.

Importing the package registers the module, its RPCs (rpc.py) and CLI (rpc_cli.py)."""
from spydk.modules.bdev.nvme import bdev_nvme, rpc

__all__ = ["bdev_nvme", "rpc"]
