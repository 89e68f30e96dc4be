"""`spydk rpc` commands of the split bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_array


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    add_command(sub, call, "bdev_split_create", "split a bdev into equal parts <base>p0..", [
        arg("base_bdev", help="base bdev name"),
        arg("split_count", type=int, help="number of parts"),
        arg("-s", "--split-size-mb", type=int, help="size of each part in MiB (default: even split)"),
    ], print_array)
    add_command(sub, call, "bdev_split_delete", "delete the split of a bdev and its parts",
         [arg("base_bdev", help="base bdev name")])
