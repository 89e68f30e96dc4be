"""Logical volumes over a blobstore (SPDK's lib/lvol); see spydk/lvol/lvol.py."""
from spydk.lvol.lvol import (
    BSTYPE,
    CLEAR_METHODS,
    DEFAULT_CLUSTER_SZ,
    Lvol,
    LvolError,
    LvolStore,
    LvsOpts,
)

__all__ = ["BSTYPE", "CLEAR_METHODS", "DEFAULT_CLUSTER_SZ", "Lvol", "LvolError", "LvolStore", "LvsOpts"]
