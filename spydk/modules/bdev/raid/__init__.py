"""RAID bdevs (SPDK's module/bdev/raid): raid0, raid1, raid5f, concat, SPDK's superblock, rebuild."""
from spydk.modules.bdev.raid import bdev_raid as bdev_raid  # noqa: F401
from spydk.modules.bdev.raid import rpc as rpc  # noqa: F401
