"""Benchmark: bdevperf 4 KiB randwrite and randread at QD128 on lvols over malloc (a thick
volume, a thin one whose first writes allocate clusters, a clone of a snapshot), beside
malloc itself, and beside SPDK C's bdevperf on the same JSON configuration when SPDK_DIR
points at a built SPDK tree.

    .venv/bin/python bench/lvol.py [--time 3]
    SPDK_DIR=/path/to/spdk .venv/bin/python bench/lvol.py

Every case is a fresh process, so the thin volume starts unallocated each time. spydk's
bdevperf prints I/O per CPU second (what one core would do, whatever else the machine
runs); SPDK's C bdevperf busy-polls one core, so its IOPS is its one-core figure.
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

MIB = 1024 * 1024
CONFIG = {"subsystems": [{"subsystem": "bdev", "config": [
    {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 262144, "block_size": 512}},
    {"method": "bdev_malloc_create", "params": {"name": "Malloc1", "num_blocks": 262144, "block_size": 512}},
    {"method": "bdev_lvol_create_lvstore", "params": {"bdev_name": "Malloc1", "lvs_name": "lvs",
                                                       "cluster_sz": MIB}},
    {"method": "bdev_lvol_create", "params": {"lvol_name": "thick", "size_in_mib": 32, "lvs_name": "lvs"}},
    {"method": "bdev_lvol_create", "params": {"lvol_name": "thin", "size_in_mib": 32, "lvs_name": "lvs",
                                              "thin_provision": True}},
    {"method": "bdev_lvol_create", "params": {"lvol_name": "base", "size_in_mib": 32, "lvs_name": "lvs"}},
    {"method": "bdev_lvol_snapshot", "params": {"lvol_name": "lvs/base", "snapshot_name": "snap"}},
    {"method": "bdev_lvol_clone", "params": {"snapshot_name": "lvs/snap", "clone_name": "clone"}},
]}]}
BDEVS = ["Malloc0", "lvs/thick", "lvs/thin", "lvs/clone"]
WORKLOADS = ["randwrite", "randread"]
ROW = re.compile(r"^\s+(\S+?)\s*:\s+([\d.]+)\s+([\d.]+)\s+")
CPU = re.compile(r"CPU: .* (\d+) I/O per CPU second")


def spydk_case(cfg: str, bdev: str, workload: str, secs: float) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", cfg, "-T", bdev, "-q", "128",
           "-o", "4k", "-w", workload, "-t", str(secs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs * 4 + 60).stdout
    iops = cpu = 0.0
    for line in out.splitlines():
        m = ROW.match(line)
        if m and not iops and m.group(1) != "Total":
            iops = float(m.group(3))
        c = CPU.search(line)
        if c:
            cpu = float(c.group(1))
    if not iops:
        raise SystemExit(f"spydk bdevperf gave no result for {bdev} {workload}:\n{out}")
    return iops, cpu


def spdk_case(spdk: str, cfg: str, bdev: str, workload: str, secs: float) -> float:
    sock = tempfile.mktemp(prefix="lvbench-", suffix=".sock")
    cmd = [os.path.join(spdk, "build/examples/bdevperf"), "--no-huge", "-s", "2048", "--no-pci",
           "--disable-cpumask-locks", "-m", "0x1", "-r", sock, "--json", cfg, "-q", "128", "-o", "4096",
           "-w", workload, "-t", str(int(round(secs))), "-T", bdev]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=secs * 4 + 60)
    out = res.stdout + res.stderr
    for line in out.replace("\r", "\n").splitlines():
        m = ROW.match(line)
        if m and m.group(1) not in ("Total",) and "Job" not in line:
            return float(m.group(3))
    raise SystemExit(f"SPDK bdevperf gave no result for {bdev} {workload}:\n{out[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=float, default=3.0, help="seconds per case")
    args = ap.parse_args()
    spdk = os.environ.get("SPDK_DIR")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(CONFIG, f)
        cfg = f.name
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, 4 KiB QD128, {args.time:g} s per case,"
          f" load average {os.getloadavg()[0]:.1f}")
    head = f"{'bdev':<11} {'workload':<10} {'spydk IOPS':>11} {'spydk I/O per CPU s':>20} {'x malloc cost':>14}"
    print(head + (f" {'SPDK C IOPS':>12} {'spydk/SPDK':>11}" if spdk else ""))
    base: dict[str, float] = {}
    try:
        for bdev in BDEVS:
            for w in WORKLOADS:
                iops, cpu = spydk_case(cfg, bdev, w, args.time)
                if bdev == "Malloc0":
                    base[w] = cpu
                ratio = base[w] / cpu if cpu else 0.0
                line = f"{bdev:<11} {w:<10} {iops:>11,.0f} {cpu:>20,.0f} {ratio:>13.2f}x"
                if spdk:
                    c_iops = spdk_case(spdk, cfg, bdev, w, args.time)
                    line += f" {c_iops:>12,.0f} {cpu / c_iops:>10.0%}"
                print(line, flush=True)
    finally:
        os.unlink(cfg)


if __name__ == "__main__":
    main()
