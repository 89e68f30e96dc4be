#!/usr/bin/env python3
"""Idle cost of `spydk tgt`: start-to-RPC-ready time, CPU used while idle, RSS.

    .venv/bin/python bench/app_idle.py [--seconds 10] [--poll] [--default-config] [-m 0x3]

Start-up is timed from spawning the process to the first answered spdk_get_version after
framework_wait_init. Idle CPU is utime+stime from /proc/<pid>/stat over the window, as a
percentage of one core, summed over the target and its worker reactor processes (-m with
several cores). RSS is VmRSS of the main process at the end of the window.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from spydk.testing import start_target  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(seconds: float, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        t = start_target(tmp, None, extra_args=extra)
        ready = time.perf_counter() - t0
        try:
            pids = [t.pid, *children(t.pid)]
            c0, w0 = tree_cpu_seconds(pids), time.perf_counter()
            time.sleep(seconds)
            c1, w1 = tree_cpu_seconds(pids), time.perf_counter()
            rss = rss_mib(t.pid)
        finally:
            rc = t.stop()
    return {"ready_s": ready, "cpu_pct": 100 * (c1 - c0) / (w1 - w0), "rss_mib": rss, "exit": rc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll", action="store_true", help="also measure --poll (busy-polling) mode")
    ap.add_argument("--default-config", action="store_true", help="start with --default-config")
    ap.add_argument("-m", "--cpumask", default="0x1", help="the target's -m (0x3: a worker reactor too)")
    args = ap.parse_args()
    base = ["-m", args.cpumask] + (["--default-config"] if args.default_config else [])
    modes = [("event (default)", base)] + ([("poll (--poll)", base + ["--poll"])] if args.poll else [])
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"spydk tgt -m {args.cpumask} idle cost, {args.seconds:g} s window, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"commit {rev}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<18} {'start->ready':>13} {'idle CPU':>9} {'RSS':>9}")
    for name, extra in modes:
        r = measure(args.seconds, extra)
        print(f"{name:<18} {r['ready_s'] * 1000:>10.0f} ms {r['cpu_pct']:>8.2f}% {r['rss_mib']:>6.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
