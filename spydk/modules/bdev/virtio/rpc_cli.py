"""`spydk rpc` commands of the virtio initiator bdev, with rpc.py's arguments."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, print_array, print_dict


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("bdev_virtio_attach_controller", help="attach a virtio device and create its bdevs")
    p.add_argument("name", help="name of the controller (and prefix of its bdevs)")
    p.add_argument("-t", "--trtype", required=True, help="transport: user (vhost-user socket) or pci")
    p.add_argument("-a", "--traddr", required=True, help="socket path (user) or PCI address (pci)")
    p.add_argument("-d", "--dev-type", dest="dev_type", required=True, help="blk or scsi")
    p.add_argument("--vq-count", type=int, help="number of request queues")
    p.add_argument("--vq-size", type=int, help="size of each queue")
    p.set_defaults(func=lambda a: print_array(call("bdev_virtio_attach_controller", {
        "name": a.name, "trtype": a.trtype, "traddr": a.traddr, "dev_type": a.dev_type,
        "vq_count": a.vq_count, "vq_size": a.vq_size})))

    p = sub.add_parser("bdev_virtio_scsi_get_devices", help="list virtio-scsi controllers")
    p.set_defaults(func=lambda a: print_dict(call("bdev_virtio_scsi_get_devices")))

    p = sub.add_parser("bdev_virtio_detach_controller", help="remove a virtio controller and its bdevs")
    p.add_argument("name", help="name of the controller")
    p.set_defaults(func=lambda a: call("bdev_virtio_detach_controller", {"name": a.name}))

    p = sub.add_parser("bdev_virtio_blk_set_hotplug", help="PCI hot-plug of virtio-blk devices")
    p.add_argument("-d", "--disable", dest="enable", action="store_false", default=True,
                   help="disable hot-plug (default: enable)")
    p.add_argument("-r", "--retry-count", dest="period_us", type=int,
                   help="period in microseconds between scans")
    p.set_defaults(func=lambda a: call("bdev_virtio_blk_set_hotplug",
                                       {"enable": a.enable, "period_us": a.period_us}))
