"""`spydk rpc` commands of the null bdev module, with rpc.py's arguments."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import Call, mib_to_blocks, positive, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    def cmd(name: str, help: str, run: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=run)
        return p

    p = cmd("bdev_null_create", "Create a null bdev",
            lambda a: print_json(call("bdev_null_create", {
                "name": a.name, "num_blocks": mib_to_blocks(a.total_size, a.block_size),
                "block_size": a.block_size, "physical_block_size": a.physical_block_size, "uuid": a.uuid,
                "md_size": a.md_size, "dif_type": a.dif_type})))
    p.add_argument("name", help="bdev name")
    p.add_argument("-u", "--uuid", help="UUID")
    p.add_argument("total_size", type=positive(int, " MiB"), help="size in MiB")
    p.add_argument("block_size", type=positive(int, " bytes"), help="block size in bytes")
    p.add_argument("-p", "--physical-block-size", type=int, help="physical block size")
    p.add_argument("-m", "--md-size", type=int, help="metadata size (not supported)")
    p.add_argument("-t", "--dif-type", type=int, choices=[0, 1, 2, 3], help="DIF type (not supported)")

    p = cmd("bdev_null_delete", "Delete a null bdev", lambda a: call("bdev_null_delete", {"name": a.name}))
    p.add_argument("name", help="null bdev name")

    p = cmd("bdev_null_resize", "Grow a null bdev",
            lambda a: print_json(call("bdev_null_resize", {"name": a.name, "new_size": a.new_size})))
    p.add_argument("name", help="null bdev name")
    p.add_argument("new_size", type=positive(int, " MiB"), help="new size in MiB")

