"""`spydk discover`: connect to a discovery controller and print its log page (the layout of
nvme-cli's `nvme discover`). -r defaults the subsystem NQN to the discovery NQN."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from spydk.apps.nvme_common import add_transport_args, ctrlr_opts, new_loop, trids
from spydk.nvme.host import Controller, NvmeError
from spydk.nvme.host.identify import DiscoveryLogEntry, discovery_log_header, parse_discovery_log
from spydk.nvme.spec import LogPageId

TRTYPE = {1: "rdma", 2: "fc", 3: "tcp", 254: "loop"}
ADRFAM = {1: "ipv4", 2: "ipv6", 3: "ib", 4: "fc"}
SUBTYPE = {1: "discovery subsystem referral", 2: "nvme subsystem", 3: "current discovery subsystem"}
TREQ = {0: "not specified", 1: "required", 2: "not required"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk discover", description="Print an NVMe-oF discovery log.")
    add_transport_args(p)
    return p


async def read_discovery_log(c: Controller) -> tuple[int, list[DiscoveryLogEntry]]:
    """Header first, then every record; read again if the generation counter moved."""
    for _ in range(5):
        head = await c.get_log_page(LogPageId.DISCOVERY, 1024, nsid=0)
        genctr, numrec, _fmt = discovery_log_header(head)
        size = 1024 * (numrec + 1)
        page = await c.get_log_page(LogPageId.DISCOVERY, size, nsid=0) if numrec else head
        if discovery_log_header(page)[0] == genctr:
            return genctr, parse_discovery_log(page, numrec)
    raise NvmeError(f"discovery log of {c.name} kept changing while being read")


def print_log(genctr: int, entries: list[DiscoveryLogEntry], out: Any) -> None:
    print(f"\nDiscovery Log Number of Records {len(entries)}, Generation counter {genctr}", file=out)
    for i, e in enumerate(entries):
        print(f"=====Discovery Log Entry {i}======", file=out)
        print(f"trtype:  {TRTYPE.get(e.trtype, str(e.trtype))}", file=out)
        print(f"adrfam:  {ADRFAM.get(e.adrfam, str(e.adrfam))}", file=out)
        print(f"subtype: {SUBTYPE.get(e.subtype, str(e.subtype))}", file=out)
        print(f"treq:    {TREQ.get(e.treq & 3, str(e.treq))}", file=out)
        print(f"portid:  {e.portid}", file=out)
        print(f"trsvcid: {e.trsvcid}", file=out)
        print(f"subnqn:  {e.subnqn}", file=out)
        print(f"traddr:  {e.traddr}", file=out)
        print("eflags:  none", file=out)
        print("sectype: none", file=out)


async def run_discover(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    rc = 0
    for t in trids(args, "spydk discover"):
        c = Controller(t, ctrlr_opts(args, t))
        try:
            await c.connect()
            genctr, entries = await read_discovery_log(c)
        except (NvmeError, ConnectionError) as e:
            print(f"spydk discover: {t}: {e}", file=sys.stderr)
            rc = 1
            continue
        finally:
            await c.detach()
        print_log(genctr, entries, out)
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loop = new_loop()
    try:
        return loop.run_until_complete(run_discover(args))
    finally:
        loop.close()
