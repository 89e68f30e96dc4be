"""`spydk rpc` commands of the malloc bdev module, with rpc.py's arguments."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import Call, mib_to_blocks, positive, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    def cmd(name: str, help: str, run: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=run)
        return p

    p = cmd("bdev_malloc_create", "Create a RAM disk",
            lambda a: print_json(call("bdev_malloc_create", {
                "num_blocks": mib_to_blocks(a.total_size, a.block_size), "block_size": a.block_size,
                "physical_block_size": a.physical_block_size, "name": a.name, "uuid": a.uuid,
                "optimal_io_boundary": a.optimal_io_boundary, "md_size": a.md_size,
                "md_interleave": a.md_interleave or None, "dif_type": a.dif_type})))
    p.add_argument("-b", "--name", help="bdev name (default Malloc<N>)")
    p.add_argument("-u", "--uuid", help="UUID")
    p.add_argument("total_size", type=positive(float, " MiB"), help="size in MiB")
    p.add_argument("block_size", type=positive(int, " bytes"), help="block size in bytes")
    p.add_argument("-p", "--physical-block-size", type=int, help="physical block size")
    p.add_argument("-o", "--optimal-io-boundary", type=int, help="split I/O at this boundary (blocks)")
    p.add_argument("-m", "--md-size", type=int, help="metadata size (not supported)")
    p.add_argument("-i", "--md-interleave", action="store_true", help="interleaved metadata (not supported)")
    p.add_argument("-t", "--dif-type", type=int, choices=[0, 1, 2, 3], help="DIF type (not supported)")

    p = cmd("bdev_malloc_delete", "Delete a malloc bdev", lambda a: call("bdev_malloc_delete", {"name": a.name}))
    p.add_argument("name", help="malloc bdev name")

