"""`spydk rpc` commands of the uring bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = arg("name", help="bdev name")
    bs = arg("block_size", type=int, nargs="?", help="block size (detected when omitted)")
    uuid = arg("-u", "--uuid", help="UUID of the new bdev")
    add_command(sub, call, "bdev_uring_create", "create a bdev over a file or block device (io_uring)", [
        arg("filename", help="file or block device path"), name, bs, uuid], print_json)
    add_command(sub, call, "bdev_uring_delete", "delete a uring bdev", [name])
    add_command(sub, call, "bdev_uring_rescan", "pick up a new size of a uring bdev's file", [name], print_json)
