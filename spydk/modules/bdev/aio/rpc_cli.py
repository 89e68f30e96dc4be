"""`spydk rpc` commands of the aio bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = arg("name", help="bdev name")
    bs = arg("block_size", type=int, nargs="?", help="block size (detected when omitted)")
    uuid = arg("-u", "--uuid", help="UUID of the new bdev")
    add_command(sub, call, "bdev_aio_create", "create a bdev over a file or block device (Linux AIO)", [
        arg("filename", help="file or block device path"), name, bs,
        arg("-r", "--readonly", action="store_true", default=None, help="read-only bdev"),
        arg("--fallocate", action="store_true", default=None, help="UNMAP/WRITE_ZEROES by fallocate"),
        uuid, arg("--no-wait", dest="nowait", action="store_true", default=None,
                 help="RWF_NOWAIT (accepted; spydk never blocks the reactor anyway)"),
    ], print_json)
    add_command(sub, call, "bdev_aio_delete", "delete an aio bdev", [name])
    add_command(sub, call, "bdev_aio_rescan", "pick up a new size of an aio bdev's file", [name], print_json)
