#!/usr/bin/env python3
"""iSCSI target throughput with libiscsi's ``iscsi-perf``: spydk against Debian's tgt
(RAM-backed LUN), and SPDK's iscsi_tgt when ``--spdk PATH`` names a build, in one run.

    .venv/bin/python bench/iscsi.py [--runs 5] [--seconds 5] [--poll]

Workloads: 4 KiB random read at 32 and at 1 in flight, 128 KiB sequential read at 8 in
flight. Each figure is the median of --runs runs of --seconds each. spydk exports a
256 MiB Malloc bdev; tgt a 256 MiB file in /dev/shm (tmpfs, so RAM). Reference figures
(median of 5 runs on this machine kind, 4 KiB random read): QD32 tgt 36 K IOPS, SPDK
141 K IOPS; QD1 tgt 8.5 K, SPDK 29.6 K.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spydk.testing import start_target  # noqa: E402
from tests.interop.targets import free_tcp_port, start_tgt  # noqa: E402

IQN = "iqn.2016-06.io.spdk:disk1"
LUN_MB = 256
WORKLOADS = [  # (label, blocks of 512 B per request, in flight, random)
    ("4 KiB randread QD32", 8, 32, True),
    ("4 KiB randread QD1", 8, 1, True),
    ("128 KiB seqread QD8", 256, 8, False),
]
REFERENCE = {("4 KiB randread QD32", "tgt"): 36_000, ("4 KiB randread QD32", "SPDK"): 141_000,
             ("4 KiB randread QD1", "tgt"): 8_500, ("4 KiB randread QD1", "SPDK"): 29_600}


def spydk_config(port: int) -> dict:
    return {"subsystems": [
        {"subsystem": "bdev", "config": [{"method": "bdev_malloc_create", "params": {
            "name": "Malloc0", "num_blocks": LUN_MB * 2048, "block_size": 512}}]},
        {"subsystem": "iscsi", "config": [
            {"method": "iscsi_create_portal_group",
             "params": {"tag": 1, "portals": [{"host": "127.0.0.1", "port": str(port)}]}},
            {"method": "iscsi_create_initiator_group",
             "params": {"tag": 1, "initiators": ["ANY"], "netmasks": ["ANY"]}},
            {"method": "iscsi_create_target_node", "params": {
                "name": "disk1", "alias_name": "bench", "luns": [{"bdev_name": "Malloc0", "lun_id": 0}],
                "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 64}},
        ]}]}


def iscsi_perf(url: str, blocks: int, depth: int, random: bool, seconds: float) -> float:
    """IOPS of one iscsi-perf run (its last reported rate over the whole run)."""
    argv = ["iscsi-perf", "-m", str(depth), "-b", str(blocks), "-t", str(int(seconds))]
    if random:
        argv.append("-r")
    proc = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60)
    out = proc.stdout + proc.stderr
    rates = [float(x) for x in re.findall(r"iops average (\d+)", out)]
    if not rates:
        raise RuntimeError(f"no IOPS figure from {' '.join(argv)} {url}:\n{out[-2000:]}")
    return rates[-1]


def measure(name: str, url: str, runs: int, seconds: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    iscsi_perf(url, 8, 32, True, 2)  # warm-up (login, caches)
    for label, blocks, depth, random in WORKLOADS:
        out[label] = [iscsi_perf(url, blocks, depth, random, seconds) for _ in range(runs)]
        print(f"{name:6} {label:22} {statistics.median(out[label]):>10,.0f} IOPS "
              f"(runs: {', '.join(f'{x:,.0f}' for x in out[label])})", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--poll", action="store_true", help="run spydk with a busy-polling reactor")
    ap.add_argument("--spdk", help="path of SPDK's iscsi_tgt binary, to measure it too")
    ap.add_argument("--skip-tgt", action="store_true")
    args = ap.parse_args()
    if shutil.which("iscsi-perf") is None:
        sys.exit("iscsi-perf missing: apt-get install libiscsi-bin")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="iscsi-bench-") as tmp:
        port = free_tcp_port()
        t = start_target(tmp, spydk_config(port), app="iscsi_tgt",
                         extra_args=["--poll"] if args.poll else [])
        try:
            results["spydk"] = measure("spydk", f"iscsi://127.0.0.1:{port}/{IQN}/0", args.runs, args.seconds)
        finally:
            t.stop()
        if not args.skip_tgt:
            shm = Path(tempfile.mkdtemp(prefix="iscsi-bench-tgt-", dir="/dev/shm"))
            tgt = start_tgt(shm, lun_mb=LUN_MB)
            try:
                results["tgt"] = measure("tgt", f"iscsi://127.0.0.1:{tgt.port}/{tgt.iqn}/1",
                                         args.runs, args.seconds)
            finally:
                tgt.stop()
                shutil.rmtree(shm, ignore_errors=True)
    print()
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, median of {args.runs} x {args.seconds:g} s, "
          f"spydk {'poll' if args.poll else 'event'} mode")
    names = list(results)
    print("| workload | " + " | ".join(names) + " | reference tgt | reference SPDK |")
    print("|---|" + "---:|" * (len(names) + 2))
    for label, *_ in WORKLOADS:
        cells = [f"{statistics.median(results[n][label]):,.0f}" for n in names]
        refs = [f"{REFERENCE[(label, k)]:,}" if (label, k) in REFERENCE else "" for k in ("tgt", "SPDK")]
        print(f"| {label} | " + " | ".join(cells + refs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
