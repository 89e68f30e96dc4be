"""Benchmark: spydk bdevperf on malloc and null, one core, beside SPDK's C figure.

    .venv/bin/python bench/bdevperf.py [--time 5] [--malloc-mib 128]
    .venv/bin/python bench/bdevperf.py --inproc 400000 [--bdev Null0] [--profile]

Runs each case in a fresh process (`python -m spydk.apps.main bdevperf ...`) and prints a
table. With SPDK_DIR=/path/to/spdk, SPDK's C bdevperf runs each case right after ours on
the same config, both pinned with taskset to one CPU (--cpu, default 0), and the table
gets SPDK's IOPS from the same run and the ratio. --inproc runs bdevperf's Job in this process for a fixed number of 4 KiB randread
I/Os at QD128 and prints CPU ns per I/O (best of 3; with --profile, a cProfile breakdown
of one more run); under `valgrind --tool=cachegrind`, the difference between two I/O
counts gives instructions per I/O, a figure other jobs on the machine do not disturb. Reference: SPDK's C bdevperf, malloc 4 KiB randread QD128 on one core of this kind
of machine, about 1.48 M IOPS (a noisy figure: compare the ratio, not the digits).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import gc
import io
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time

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


def run_case(config: str, bdev: str, workload: str, size: str, qd: int, secs: float,
             pin: list[str]) -> dict[str, float]:
    cmd = pin + [sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", config, "-T", bdev,
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


def run_spdk(spdk_dir: str, config: str, bdev: str, workload: str, size: str, qd: int, secs: float,
             pin: list[str], malloc_mib: int) -> float:
    """SPDK's C bdevperf on the same config, same case, same CPU: its IOPS."""
    exe = os.path.join(spdk_dir, "build", "examples", "bdevperf")
    sock = os.path.join(tempfile.gettempdir(), f"bench-bdevperf-{os.getpid()}.sock")
    # --no-huge: DPDK's memory (-s, MiB) must hold the malloc disk plus ~768 MiB for the app
    cmd = pin + [exe, "--no-huge", "-s", str(768 + malloc_mib), "--no-pci", "--disable-cpumask-locks",
                 "-m", "0x1", "-r", sock, "--json", config, "-T", bdev, "-q", str(qd), "-o", size,
                 "-w", workload, "-t", str(int(max(1, secs)))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs * 4 + 60)
    for line in out.stdout.splitlines():
        m = ROW.match(line)
        if m and m.group(1) == bdev:
            return float(m.group(3))
    raise SystemExit(f"no SPDK result for {bdev} {workload}:\n{out.stdout}\n{out.stderr}")


def inproc(bdev: str, n_ios: int, malloc_mib: int, profile: bool) -> None:
    """CPU per I/O of bdevperf's Job driving 4 KiB randread at QD128, in this process."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import spydk.bdev  # noqa: F401  (modules and RPCs)
    from spydk.apps.bdevperf import Job
    from spydk.modules.bdev.malloc.malloc import create_malloc_disk
    from spydk.modules.bdev.null.null import create_null_disk
    from spydk.thread import init_reactor

    async def run() -> None:
        loop = asyncio.get_running_loop()
        reactor = init_reactor(loop)
        thread = reactor.create_thread("bench")
        await reactor.call_on(thread, lambda: (create_malloc_disk("Malloc0", 4096, malloc_mib * 256),
                                               create_null_disk("Null0", 4096, 1 << 20)))
        args = argparse.Namespace(workload="randread", queue_depth=128, io_size=4096, rwmixread=100)
        best = []
        for rep in range(4 if profile else 3):
            job = Job(bdev, thread, 0, args, 1 + rep)
            await reactor.call_on(thread, job.setup)
            gc.collect()
            gc.freeze()
            done = loop.create_future()
            job.on_finished = lambda j, d=done: d.set_result(True)
            prof = cProfile.Profile() if profile and rep == 3 else None
            cpu = time.process_time_ns()
            if prof is not None:
                prof.enable()
            thread.send_msg(job.start)
            while job.done + job.failed < n_ios:
                await asyncio.sleep(0.01)
            thread.send_msg(job.stop)
            await done
            if prof is not None:
                prof.disable()
            cpu = time.process_time_ns() - cpu
            gc.unfreeze()
            ios = job.done + job.failed
            await reactor.call_on(thread, job.teardown)
            if prof is None:
                best.append(cpu / ios)
                print(f"N {ios} I/Os: {cpu / ios:.0f} ns CPU per I/O", flush=True)
            else:
                out = io.StringIO()
                st = pstats.Stats(prof, stream=out)
                total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
                rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
                print("cProfile, share of tottime (call overhead inflated):")
                for (file, line, fn), v in rows[:14]:
                    print(f"  {v[2] / total:6.1%}  {v[0] / ios:5.2f}/IO  {os.path.basename(file)}:{line}({fn})")
        print(f"{bdev} 4k randread QD128: best {min(best):.0f} ns CPU per I/O = {1e9 / min(best):,.0f} I/O per CPU second")
    asyncio.run(run())


def instructions(bdev: str, malloc_mib: int, trace_groups: str | None = None) -> None:
    """Instructions per I/O: two cachegrind runs of --inproc, their difference divided by
    the difference in I/O count (start-up and set-up cancel out)."""
    counts = []
    for n in (10_000, 40_000):
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, os.path.abspath(__file__), "--inproc", str(n), "--bdev", bdev,
               "--malloc-mib", str(malloc_mib)] + (["--trace", trace_groups] if trace_groups else [])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        refs = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
        ios = sum(int(m) for m in re.findall(r"^N (\d+) I/Os", out.stdout, re.M))
        if refs is None or not ios:
            raise SystemExit(f"valgrind run failed:\n{out.stdout}\n{out.stderr[-2000:]}")
        counts.append((int(refs.group(1).replace(",", "")), ios))
    (i1, n1), (i2, n2) = counts
    print(f"{bdev} 4k randread QD128{', trace ' + trace_groups if trace_groups else ''}: "
          f"{(i2 - i1) / (n2 - n1):,.0f} instructions per I/O")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time", type=float, default=5.0)
    ap.add_argument("--malloc-mib", type=int, default=128)
    ap.add_argument("--inproc", type=int, metavar="N", help="in-process CPU per I/O over N I/Os")
    ap.add_argument("--bdev", default="Malloc0", help="with --inproc: Malloc0 or Null0")
    ap.add_argument("--profile", action="store_true", help="with --inproc: cProfile breakdown")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per I/O of --bdev under valgrind (slow: about a minute)")
    ap.add_argument("--trace", metavar="GROUPS",
                    help="with --inproc/--instructions: trace groups to turn on (as -e), to measure their cost")
    ap.add_argument("--cpu", type=int, help="pin each run to this CPU (taskset; CPU 0 when SPDK_DIR is set)")
    ap.add_argument("--case", action="append", metavar="BDEV:WORKLOAD:SIZE",
                    help="only these cases, e.g. Malloc0:randread:4k (repeatable)")
    ap.add_argument("--plot", metavar="FILE", help="also draw the table as a bar chart (.png/.svg)")
    a = ap.parse_args()
    if a.trace:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        import atexit

        from spydk import trace
        trace.configure("bench_bdevperf", shm_id=os.getpid())
        trace.apply_arg(a.trace)
        atexit.register(trace.close)
    if a.instructions:
        instructions(a.bdev, a.malloc_mib, a.trace)
        return 0
    if a.inproc:
        inproc(a.bdev, a.inproc, a.malloc_mib, a.profile)
        return 0
    cfg = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "block_size": 4096,
                                                    "num_blocks": a.malloc_mib * 256}},
        {"method": "bdev_null_create", "params": {"name": "Null0", "block_size": 4096,
                                                  "num_blocks": 1 << 20}}]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
        path = f.name
    spdk_dir = os.environ.get("SPDK_DIR")
    pin = ["taskset", "-c", str(0 if a.cpu is None else a.cpu)] if a.cpu is not None or spdk_dir else []
    cases = [c for c in CASES if not a.case or f"{c[0]}:{c[1]}:{c[2]}" in a.case]
    print(f"spydk bdevperf, one core{f' (CPU {pin[-1]})' if pin else ''}, {a.time:g} s per case, "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, malloc {a.malloc_mib} MiB "
          f"(4 KiB blocks), load average {os.getloadavg()[0]:.2f}")
    if spdk_dir:
        print(f"SPDK C column: {spdk_dir}/build/examples/bdevperf, same case and CPU, run right after ours")
    print(f"{'bdev':8} {'workload':10} {'size':>5} {'QD':>4} {'IOPS':>11} {'MiB/s':>9} {'avg us':>8} "
          f"{'IO/CPU-s':>10} {'SPDK IOPS':>11} {'vs SPDK':>8}")
    rows: list[tuple[str, float]] = []
    try:
        for bdev, w, size, qd in cases:
            r = run_case(path, bdev, w, size, qd, a.time, pin)
            rows.append((f"{bdev} {w} {size} QD{qd}", r["iops"]))
            if spdk_dir:
                ref_iops = run_spdk(spdk_dir, path, bdev, w, size, qd, a.time, pin, a.malloc_mib)
                spdk_col = f"{ref_iops:11.0f}"
            else:
                ref_iops = SPDK_MALLOC_4K_RANDREAD_QD128 \
                    if (bdev, w, size, qd) == ("Malloc0", "randread", "4k", 128) else 0
                spdk_col = f"{'~' + format(ref_iops, 'd'):>11}" if ref_iops else ""
            ref = f"{r['iops'] / ref_iops:7.1%}" if ref_iops else ""
            print(f"{bdev:8} {w:10} {size:>5} {qd:>4} {r['iops']:11.0f} {r['mibps']:9.1f} {r['avg_us']:8.1f} "
                  f"{r['per_cpu_s']:10.0f} {spdk_col:>11} {ref:>8}", flush=True)
    finally:
        os.unlink(path)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if not spdk_dir:
        print(f"SPDK C bdevperf reference (not run: set SPDK_DIR): malloc 4k randread QD128 one core "
              f"~{SPDK_MALLOC_4K_RANDREAD_QD128:,} IOPS")
    print("IO/CPU-s: completions per second of CPU the run used (steadier than IOPS on a shared machine)")
    if a.plot:
        from spydk.apps.plots import bar_table
        bar_table([n for n, _ in rows], {"spydk bdevperf": [v for _, v in rows]}, a.plot,
                  f"spydk bdevperf, one core, {datetime.date.today()}", "IOPS")
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
