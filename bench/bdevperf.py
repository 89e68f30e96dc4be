"""Benchmark: spydk bdevperf on malloc and null, one core, beside SPDK's C figure.

    .venv/bin/python bench/bdevperf.py [--time 5] [--malloc-mib 128]

Runs each case in a fresh process (`python -m spydk.apps.main bdevperf ...`) and prints a
table. Reference: SPDK's C bdevperf, malloc 4 KiB randread QD128 on one core of this kind
of machine, about 1.48 M IOPS (a noisy figure: compare the ratio, not the digits).
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

SPDK_MALLOC_4K_RANDREAD_QD128 = 1_480_000
CASES = [  # (bdev, workload, io size, queue depth)
    ("Malloc0", "randread", "4k", 128),
    ("Malloc0", "randwrite", "4k", 128),
    ("Malloc0", "read", "128k", 32),
    ("Null0", "randread", "4k", 128),
    ("Null0", "randwrite", "4k", 128),
    ("Null0", "read", "128k", 32),
]
CPU = re.compile(r"CPU: .* (\d+) I/O per CPU second")
ROW = re.compile(r"^\s+(\S+)\s+:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def run_case(config: str, bdev: str, workload: str, size: str, qd: int, secs: float) -> dict[str, float]:
    cmd = [sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", config, "-T", bdev,
           "-q", str(qd), "-o", size, "-w", workload, "-t", str(secs)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs * 4 + 60)
    res: dict[str, float] = {}
    for line in out.stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1) == bdev:
            res = {"iops": float(m.group(3)), "mibps": float(m.group(4)), "avg_us": float(m.group(7))}
        c = CPU.search(line)
        if c and res:
            res["per_cpu_s"] = float(c.group(1))
            return res
    raise SystemExit(f"no result for {bdev} {workload}:\n{out.stdout}\n{out.stderr}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time", type=float, default=5.0)
    ap.add_argument("--malloc-mib", type=int, default=128)
    a = ap.parse_args()
    cfg = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "block_size": 4096,
                                                    "num_blocks": a.malloc_mib * 256}},
        {"method": "bdev_null_create", "params": {"name": "Null0", "block_size": 4096,
                                                  "num_blocks": 1 << 20}}]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        path = f.name
    print(f"spydk bdevperf, one core, {a.time:g} s per case, {datetime.date.today()}, "
          f"malloc {a.malloc_mib} MiB (4 KiB blocks)")
    print(f"{'bdev':8} {'workload':10} {'size':>5} {'QD':>4} {'IOPS':>11} {'MiB/s':>9} {'avg us':>8} "
          f"{'IO/CPU-s':>10} {'vs SPDK':>8}")
    try:
        for bdev, w, size, qd in CASES:
            r = run_case(path, bdev, w, size, qd, a.time)
            ref = f"{r['iops'] / SPDK_MALLOC_4K_RANDREAD_QD128:7.1%}" \
                if (bdev, w, size, qd) == ("Malloc0", "randread", "4k", 128) else ""
            print(f"{bdev:8} {w:10} {size:>5} {qd:>4} {r['iops']:11.0f} {r['mibps']:9.1f} {r['avg_us']:8.1f} "
                  f"{r['per_cpu_s']:10.0f} {ref:>8}", flush=True)
    finally:
        os.unlink(path)
    print(f"SPDK C bdevperf reference: malloc 4k randread QD128 one core ~{SPDK_MALLOC_4K_RANDREAD_QD128:,} IOPS")
    print("IO/CPU-s: completions per second of CPU the run used (steadier than IOPS on a shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
