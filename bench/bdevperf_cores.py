"""Benchmark: bdevperf scaling from one core to two (-m 0x1 vs -m 0x3 -C), spydk beside SPDK C.

    .venv/bin/python bench/bdevperf_cores.py [--time 5] [--rounds 2] \
        [--spdk /work/spdk-build/spdk/build/examples/bdevperf]

Malloc (64 MiB, 512-byte blocks), 4 KiB randread, QD128. Each run is a fresh process; both
bdevperfs pin their reactors to the cores of -m themselves (spydk: sched_setaffinity per
reactor process; SPDK: DPDK lcore affinity). The cases alternate (spydk 1, SPDK 1, spydk 2,
SPDK 2) so both see the same load on a shared machine; each figure is the best of --rounds.
The ratio column is -m 0x3 -C over -m 0x1 of the same implementation. Without --spdk (or when
the binary is absent) only spydk is run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

TOTAL = re.compile(r"^\s*Total\s+:\s+([\d.]+)", re.M)
SPDK_DEFAULT = "/work/spdk-build/spdk/build/examples/bdevperf"


def config(path: str) -> None:
    with open(path, "w") as f:
        json.dump({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 131072,
                                                        "block_size": 512}}]}]}, f)


def run(cmd: list[str], timeout: float) -> float:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    m = TOTAL.search(r.stdout)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return float(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--spdk", default=SPDK_DEFAULT, help="SPDK's bdevperf binary")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bpcores-")
    cfg = os.path.join(tmp, "malloc.json")
    config(cfg)
    common = ["-q", "128", "-o", "4096", "-w", "randread", "-t", f"{a.time:g}"]
    masks = {1: ["-m", "0x1"], 2: ["-m", "0x3", "-C"]}
    impls: dict[str, list[str]] = {"spydk": [sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", cfg]}
    if a.spdk and os.path.exists(a.spdk):
        impls["SPDK C"] = [a.spdk, "--no-huge", "-s", "1024", "--no-pci", "--disable-cpumask-locks",
                           "-r", os.path.join(tmp, "spdk.sock"), "--json", cfg]
    best: dict[tuple[str, int], float] = {}
    for _ in range(a.rounds):
        for n in (1, 2):
            for name, cmd in impls.items():
                iops = run([*cmd, *common, *masks[n]], timeout=a.time * 4 + 60)
                best[(name, n)] = max(best.get((name, n), 0.0), iops)
    print(f"bdevperf malloc 4 KiB randread QD128, {a.time:g} s, best of {a.rounds}, "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
    print(f"{'':8} {'-m 0x1 IOPS':>14} {'-m 0x3 -C IOPS':>16} {'ratio':>7}")
    ratios = {}
    for name in impls:
        one, two = best[(name, 1)], best[(name, 2)]
        ratios[name] = two / one
        print(f"{name:8} {one:14.0f} {two:16.0f} {two / one:7.2f}")
    if "SPDK C" in ratios:
        print(f"spydk's scaling is {ratios['spydk'] / ratios['SPDK C']:.0%} of SPDK C's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
