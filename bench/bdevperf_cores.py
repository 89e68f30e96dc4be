"""Benchmark: bdevperf scaling from one core to two (-m 0x1 vs -m 0x3 -C), spydk beside SPDK C.

    .venv/bin/python bench/bdevperf_cores.py [--time 5] [--rounds 2] \
        [--spdk /work/spdk-build/spdk/build/examples/bdevperf]

Malloc (64 MiB, 512-byte blocks), 4 KiB randread, QD128. Each run is a fresh process; both
bdevperfs pin their reactors to the cores of -m themselves (spydk: sched_setaffinity per
reactor process; SPDK: DPDK lcore affinity). The cases alternate (spydk 1, SPDK 1, spydk 2,
SPDK 2) so both see the same load on a shared machine; each figure is the best of --rounds.
The ratio column is -m 0x3 -C over -m 0x1 of the same implementation. Without --spdk (or when
the binary is absent) only spydk is run.

On a shared machine the IOPS follow the CPU the scheduler gives, so each run also records its
CPU share: the running time of all its threads and processes (/proc/PID/task/TID/schedstat)
over a window in the middle of the run, as a fraction of one core. "IOPS per core" is IOPS
over that share, and its ratio says how the per-core work scales apart from the CPU given
(e.g. with autogroup scheduling, a session busy on two cores gets about the same total weight
as on one, so two reactors under contention each get less than one did).
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
import time

TOTAL = re.compile(r"^\s*Total\s+:\s+([\d.]+)", re.M)
SPDK_DEFAULT = "/work/spdk-build/spdk/build/examples/bdevperf"


def config(path: str) -> None:
    with open(path, "w") as f:
        json.dump({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 131072,
                                                        "block_size": 512}}]}]}, f)


def _tasks(pid: int) -> list[str]:
    """/proc paths of every thread of ``pid`` and of its child processes."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    for p in (pid, *kids):
        try:
            out += [f"/proc/{p}/task/{t}/schedstat" for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            pass
    return out


def _run_ns(paths: list[str]) -> dict[str, int]:
    out = {}
    for path in paths:
        try:
            with open(path) as f:
                out[path] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def run(cmd: list[str], timeout: float, seconds: float) -> tuple[float, float]:
    """(IOPS, CPU share in cores over the middle of the run)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    head = []
    for line in p.stdout:   # both bdevperfs print this when the jobs start
        head.append(line)
        if line.startswith("Running I/O"):
            break
    time.sleep(min(1.0, seconds / 4))
    paths = _tasks(p.pid)
    a, t0 = _run_ns(paths), time.monotonic_ns()
    time.sleep(seconds / 2)
    b, t1 = _run_ns(paths), time.monotonic_ns()
    share = sum(b[k] - a[k] for k in b if k in a) / (t1 - t0)
    out, err = p.communicate(timeout=timeout)
    out = "".join(head) + out
    m = TOTAL.search(out)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    return float(m.group(1)), share


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
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(a.rounds):
        for n in (1, 2):
            for name, cmd in impls.items():
                runs.setdefault((name, n), []).append(
                    run([*cmd, *common, *masks[n]], timeout=a.time * 4 + 60, seconds=a.time))
    with open("/proc/pressure/cpu") as f:
        pressure = f.readline().split()[1]
    print(f"bdevperf malloc 4 KiB randread QD128, {a.time:g} s, best of {a.rounds}, "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}, "
          f"cpu pressure {pressure}")
    for (name, n), rs in runs.items():
        print(f"  {name} -m {'0x1' if n == 1 else '0x3 -C'}: " + ", ".join(
            f"{iops:.0f} IOPS on {share:.2f} cores" for iops, share in rs))
    print(f"{'':8} {'-m 0x1 IOPS':>12} {'-m 0x3 -C IOPS':>15} {'ratio':>6}  "
          f"{'cores 1 / 2':>12} {'IOPS/core 1':>12} {'IOPS/core 2':>12} {'per-core ratio':>14}")
    ratios = {}
    for name in impls:
        one = max(runs[(name, 1)])
        two = max(runs[(name, 2)])
        ratios[name] = two[0] / one[0]
        pc1, pc2 = one[0] / one[1], two[0] / two[1]
        print(f"{name:8} {one[0]:12.0f} {two[0]:15.0f} {two[0] / one[0]:6.2f}  "
              f"{one[1]:5.2f} / {two[1]:4.2f} {pc1:12.0f} {pc2:12.0f} {pc2 / pc1:14.2f}")
    if "SPDK C" in ratios:
        print(f"spydk's scaling is {ratios['spydk'] / ratios['SPDK C']:.0%} of SPDK C's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
