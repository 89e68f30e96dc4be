"""RPCs of the virtio initiator bdev, with SPDK's names and parameters."""
from __future__ import annotations

import errno
from typing import Any

from spydk.bdev import BdevError, bdevs
from spydk.rpc import Param, RpcContext, State, rpc_method
from spydk.rpc.errors import errno_error, invalid_params

_hotplug: dict[str, Any] = {"enable": False, "period_us": 0}


@rpc_method("bdev_virtio_attach_controller", [
    Param("name", "string", required=True),
    Param("trtype", "enum", required=True, choices=("pci", "user", "vfio-user")),
    Param("traddr", "string", required=True),
    Param("dev_type", "enum", required=True, choices=("blk", "scsi")),
    Param("vq_count", "uint32"), Param("vq_size", "uint32")])
async def bdev_virtio_attach_controller(ctx: RpcContext, *, name: str, trtype: str, traddr: str,
                                        dev_type: str, vq_count: int = 1,
                                        vq_size: int = 512) -> list[str]:
    """Connect to a virtio device (vhost-user socket) and create bdevs of its disks."""
    from spydk.modules.bdev.virtio.virtio_blk import attach_blk
    from spydk.modules.bdev.virtio.virtio_scsi import attach_scsi
    if trtype != "user":
        raise invalid_params(f"trtype {trtype!r}: spydk's virtio bdev connects to vhost-user sockets "
                             "only (trtype 'user'); PCI needs a kernel driver spydk does not have")
    try:
        if dev_type == "scsi":
            return [b.name for b in await attach_scsi(name, traddr, vq_count, vq_size)]
        bdev = await attach_blk(name, traddr, vq_count, vq_size)
    except BdevError as e:
        if e.errno == errno.EINVAL:
            raise invalid_params(e.message) from None
        raise errno_error(e.errno, e.message) from None
    return [bdev.name]


@rpc_method("bdev_virtio_detach_controller", [Param("name", "string", required=True)])
def bdev_virtio_detach_controller(ctx: RpcContext, *, name: str) -> Any:
    """Remove a virtio controller's bdevs and close its connection."""
    from spydk.bdev import unregister_bdev
    from spydk.bdev.rpc import unregister_future
    from spydk.modules.bdev.virtio.virtio_blk import VirtioBlkBdev
    from spydk.modules.bdev.virtio.virtio_scsi import controllers
    sdev = controllers().get(name)
    if sdev is not None:
        targets = list(sdev.bdevs.values())
        if not targets:
            sdev.close()
            return True
        return unregister_future(lambda cb: _unregister_all(targets, cb))
    mine = [b for b in bdevs() if isinstance(b, VirtioBlkBdev) and b.name == name]
    if not mine:
        raise errno_error(errno.ENODEV, f"virtio controller {name!r} does not exist")
    return unregister_future(lambda cb: unregister_bdev(mine[0], cb))


def _unregister_all(targets: list[Any], cb: Any) -> None:
    from spydk.bdev import unregister_bdev
    left = [len(targets)]
    first_rc = [0]

    def one(rc: int) -> None:
        if rc and not first_rc[0]:
            first_rc[0] = rc
        left[0] -= 1
        if not left[0]:
            cb(first_rc[0])
    for b in targets:
        unregister_bdev(b, one)


@rpc_method("bdev_virtio_scsi_get_devices")
def bdev_virtio_scsi_get_devices(ctx: RpcContext) -> list[dict[str, Any]]:
    """List the attached virtio-scsi controllers."""
    from spydk.modules.bdev.virtio.virtio_scsi import controllers
    return [{"name": d.name, "virtio": {"vq_count": d.vq_count, "vq_size": d.vq_size, "type": "user",
                                        "socket": d.path}} for d in controllers().values()]


@rpc_method("bdev_virtio_blk_set_hotplug", [Param("enable", "boolean", required=True),
                                            Param("period_us", "uint64")], states=State.ANY)
def bdev_virtio_blk_set_hotplug(ctx: RpcContext, *, enable: bool, period_us: int = 0) -> bool:
    """PCI hot-plug monitoring of virtio-blk devices (recorded; there is no PCI transport)."""
    _hotplug.update(enable=enable, period_us=period_us)
    return True
