"""Ceph RBD bdevs (SPDK's module/bdev/rbd) on librbd through ctypes."""
from spydk.modules.bdev.rbd import bdev_rbd as bdev_rbd  # noqa: F401
from spydk.modules.bdev.rbd import rpc as rpc  # noqa: F401
