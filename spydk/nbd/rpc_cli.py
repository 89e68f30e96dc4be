"""`spydk rpc` commands of NBD: SPDK rpc.py's nbd_start_disk/nbd_stop_disk/nbd_get_disks and
the NBD server's own."""
from __future__ import annotations

import argparse
import json
from typing import Any

from spydk.rpc.cli import Call


def _out(res: Any) -> None:
    print(json.dumps(res, indent=2))


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("nbd_start_disk", help="export a bdev as a kernel /dev/nbdX device")
    p.add_argument("bdev_name", help="bdev name")
    p.add_argument("nbd_device", nargs="?", help="/dev/nbdN (a free one when omitted)")
    p.set_defaults(func=lambda a: print(call("nbd_start_disk", {"bdev_name": a.bdev_name,
                                                                "nbd_device": a.nbd_device})))
    p = sub.add_parser("nbd_stop_disk", help="detach a kernel NBD device")
    p.add_argument("nbd_device", help="/dev/nbdN")
    p.set_defaults(func=lambda a: call("nbd_stop_disk", {"nbd_device": a.nbd_device}))
    p = sub.add_parser("nbd_get_disks", help="list kernel NBD devices")
    p.add_argument("-n", "--nbd-device", help="only this device")
    p.set_defaults(func=lambda a: _out(call("nbd_get_disks", {"nbd_device": a.nbd_device})))

    p = sub.add_parser("nbd_server_listen", help="start an NBD server listener (spydk)")
    p.add_argument("-a", "--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=10809, help="port (default 10809, 0: any free)")
    p.set_defaults(func=lambda a: print(call("nbd_server_listen", {"host": a.host, "port": a.port})))
    p = sub.add_parser("nbd_server_stop_listen", help="stop an NBD server listener (spydk)")
    p.add_argument("-a", "--host", required=True, help="address")
    p.add_argument("-p", "--port", type=int, required=True, help="port")
    p.set_defaults(func=lambda a: call("nbd_server_stop_listen", {"host": a.host, "port": a.port}))
    p = sub.add_parser("nbd_server_start_export", help="export a bdev over the NBD server (spydk)")
    p.add_argument("bdev_name", help="bdev name")
    p.add_argument("-n", "--name", help="export name (default: the bdev name)")
    p.add_argument("-r", "--read-only", action="store_true", default=None, help="read-only export")
    p.add_argument("-d", "--description", help="description shown to clients")
    p.set_defaults(func=lambda a: print(call("nbd_server_start_export", {
        "bdev_name": a.bdev_name, "name": a.name, "read_only": a.read_only, "description": a.description})))
    p = sub.add_parser("nbd_server_stop_export", help="remove an NBD export (spydk)")
    p.add_argument("name", help="export name")
    p.set_defaults(func=lambda a: call("nbd_server_stop_export", {"name": a.name}))
    p = sub.add_parser("nbd_server_get_exports", help="list NBD exports (spydk)")
    p.add_argument("-n", "--name", help="only this export")
    p.set_defaults(func=lambda a: _out(call("nbd_server_get_exports", {"name": a.name})))
    p = sub.add_parser("nbd_server_get_listeners", help="list NBD listeners (spydk)")
    p.set_defaults(func=lambda a: _out(call("nbd_server_get_listeners")))
