"""The lvol bdev module: logical volumes on lvol stores (SPDK's module/bdev/lvol)."""
from spydk.modules.bdev.lvol import rpc as _rpc  # noqa: F401  (registers the RPCs)
from spydk.modules.bdev.lvol import vbdev_lvol as _vbdev_lvol  # noqa: F401  (registers the module)
