"""`spydk hello_world`: SPDK's NVMe hello_world. For each active namespace of each controller:
write "Hello world!" to LBA 0, read it back, print what was read."""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from spydk.apps.nvme_common import add_transport_args, ctrlr_opts, new_loop, trids
from spydk.nvme.host import Controller, NvmeError, status_str

MESSAGE = b"Hello world!\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk hello_world",
                                description='Write "Hello world!" to LBA 0 of each namespace and read it back.')
    p.add_argument("-d", help=argparse.SUPPRESS)
    p.add_argument("-V", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-L", action="append", help=argparse.SUPPRESS)
    add_transport_args(p)
    return p


async def _io(fn: Any, *args: Any) -> int:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fn(*args, lambda _a, st, _d: fut.set_result(st), None)
    return await fut


async def run_hello(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    ctrlrs = []
    print("Initializing NVMe Controllers", file=out)
    for t in trids(args, "spydk hello_world"):
        print(f"Attaching to {t.traddr}", file=out)
        c = Controller(t, ctrlr_opts(args, t, arm_aer=False))
        try:
            await c.connect()
        except (NvmeError, ConnectionError) as e:
            print(f"spydk hello_world: cannot attach {t}: {e}", file=sys.stderr)
            return 1
        print(f"Attached to {t.traddr}", file=out)
        for ns in c.namespaces.values():
            print(f"  Namespace ID: {ns.nsid} size: {ns.num_blocks * ns.block_size // 1_000_000_000}GB",
                  file=out)
        ctrlrs.append(c)
    print("Initialization complete.", file=out)
    rc = 0
    for c in ctrlrs:
        q = c.io_qpairs[0]
        for ns in c.namespaces.values():
            print("INFO: using host memory buffer for IO", file=out)
            n = max(ns.block_size, 4096 // ns.block_size * ns.block_size)
            wbuf = bytearray(n)
            wbuf[:len(MESSAGE)] = MESSAGE
            st = await _io(q.write, ns.nsid, memoryview(wbuf), 0, n // ns.block_size)
            if st:
                print(f"I/O error status: {status_str(st)}\nWrite I/O failed, aborting run", file=sys.stderr)
                rc = 1
                continue
            rbuf = bytearray(n)
            st = await _io(q.read, ns.nsid, memoryview(rbuf), 0, n // ns.block_size)
            if st:
                print(f"I/O error status: {status_str(st)}\nRead I/O failed, aborting run", file=sys.stderr)
                rc = 1
                continue
            if rbuf != wbuf:
                print("Read data doesn't match write data", file=sys.stderr)
                rc = 1
            print(rbuf.split(b"\0", 1)[0].decode("ascii", "replace"), file=out)
        await c.detach()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loop = new_loop()
    try:
        return loop.run_until_complete(run_hello(args))
    finally:
        loop.close()
