"""`spydk rpc` commands of the passthru bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = arg("name", help="bdev name")
    uuid = arg("-u", "--uuid", help="UUID of the new bdev")
    base = arg("-b", "--base-bdev-name", required=True, help="existing bdev to build on")
    add_command(sub, call, "bdev_passthru_create", "create a pass-through bdev over another bdev", [
        base, arg("-p", "--name", required=True, help="new bdev name"), uuid], print_json)
    add_command(sub, call, "bdev_passthru_delete", "delete a pass-through bdev", [name])
