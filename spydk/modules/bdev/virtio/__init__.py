"""The virtio initiator bdev (SPDK's module/bdev/virtio, user-vhost transport): connect to
a vhost-user socket as its front end and expose the device's disk as a bdev.

Importing this package registers the module and its RPCs.
"""
from spydk.modules.bdev.virtio import rpc as _rpc  # noqa: F401
from spydk.modules.bdev.virtio.virtio_blk import VirtioBlkBdev, VirtioUserDev, module
from spydk.modules.bdev.virtio.virtio_scsi import VirtioScsiBdev

__all__ = ["VirtioBlkBdev", "VirtioScsiBdev", "VirtioUserDev", "module"]
