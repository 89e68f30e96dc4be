"""Benchmark: bdevperf 4 KiB randwrite and randread at QD128 on lvols over malloc (a thick
volume, a thin one whose first writes allocate clusters, a clone of a snapshot), beside
malloc itself, and beside SPDK C's bdevperf on the same JSON configuration when SPDK_DIR
points at a built SPDK tree.

    .venv/bin/python bench/lvol.py [--time 3]
    SPDK_DIR=/path/to/spdk .venv/bin/python bench/lvol.py
    .venv/bin/python bench/lvol.py --instructions     # cachegrind instructions per I/O, every case
    .venv/bin/python bench/lvol.py --inproc 200000 --bdev lvs/thick --workload randread [--profile]

Every case is a fresh process, so the thin volume starts unallocated each time. spydk's
bdevperf prints I/O per CPU second (what one core would do, whatever else the machine
runs); SPDK's C bdevperf busy-polls one core, so its IOPS is its one-core figure.

--inproc runs bdevperf's Job in this process on the same configuration for a fixed number
of 4 KiB I/Os at QD128 and prints CPU ns per I/O; --instructions runs it twice under
valgrind's cachegrind with different I/O counts: the difference in instructions divided
by the difference in I/Os is a per-I/O cost the machine's load does not move (start-up,
set-up and the thin volume's first-write allocations, which all happen in the first
thousand or so I/Os of both runs, cancel out).
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


def inproc(bdev: str, workload: str, n_ios: int, profile: bool) -> None:
    """CPU per I/O of bdevperf's Job on ``bdev`` (4 KiB, QD128), in this process."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from spydk.apps.app import App, AppOptions
    from spydk.apps.bdevperf import Job
    from spydk.bdev import wait_for_examine

    async def run() -> None:
        loop = asyncio.get_running_loop()
        app = App(AppOptions(name="lvol_bench", rpc_socket=None, config=CONFIG, subsystems=("bdev",)))
        await app.start()
        thread = app.thread
        assert thread is not None
        examined: asyncio.Future[bool] = loop.create_future()
        thread.send_msg(wait_for_examine, lambda: examined.done() or examined.set_result(True))
        await examined
        args = argparse.Namespace(workload=workload, queue_depth=128, io_size=4096, rwmixread=100)
        best = []
        for rep in range(2 if profile else 1):
            job = Job(bdev, thread, 0, args, 1 + rep)
            fut: asyncio.Future[None] = loop.create_future()
            thread.send_msg(lambda j=job, f=fut: (j.setup(), f.set_result(None)))
            await fut
            gc.collect()
            gc.freeze()
            done = loop.create_future()
            job.on_finished = lambda j, d=done: d.set_result(True)
            prof = cProfile.Profile() if profile and rep == 1 else None
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
            if job.failed:
                raise SystemExit(f"{bdev} {workload}: {job.failed} I/Os failed")
            fut2: asyncio.Future[None] = loop.create_future()
            thread.send_msg(lambda j=job, f=fut2: (j.teardown(), f.set_result(None)))
            await fut2
            if prof is None:
                best.append(cpu / ios)
                print(f"N {ios} I/Os: {cpu / ios:.0f} ns CPU per I/O", flush=True)
            else:
                out = io.StringIO()
                st = pstats.Stats(prof, stream=out)
                total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
                rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
                print("cProfile, share of tottime (call overhead inflated):")
                for (file, line, fn), v in rows[:16]:
                    print(f"  {v[2] / total:6.1%}  {v[0] / ios:5.2f}/IO  {os.path.basename(file)}:{line}({fn})")
        app.shutdown()
        await app.wait_shutdown()
    asyncio.run(run())


def instructions(cases: list[tuple[str, str]]) -> None:
    """Instructions per I/O of each case: two cachegrind runs of --inproc, their difference
    divided by the difference in I/O count."""
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, instructions per 4 KiB I/O at QD128"
          " (cachegrind)")
    base: dict[str, float] = {}
    for bdev, w in cases:
        counts = []
        for n in (10_000, 40_000):
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                   sys.executable, os.path.abspath(__file__), "--inproc", str(n), "--bdev", bdev,
                   "--workload", w]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            refs = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
            ios = sum(int(m) for m in re.findall(r"^N (\d+) I/Os", out.stdout, re.M))
            if refs is None or not ios:
                raise SystemExit(f"valgrind run failed:\n{out.stdout}\n{out.stderr[-2000:]}")
            counts.append((int(refs.group(1).replace(",", "")), ios))
        (i1, n1), (i2, n2) = counts
        per = (i2 - i1) / (n2 - n1)
        if bdev == "Malloc0":
            base[w] = per
        ratio = f"{per / base[w]:.2f}x malloc" if w in base else ""
        print(f"{bdev:<11} {w:<10} {per:>9,.0f} instructions per I/O  {ratio}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=float, default=3.0, help="seconds per case")
    ap.add_argument("--inproc", type=int, metavar="N", help="in-process CPU per I/O over N I/Os of --bdev")
    ap.add_argument("--bdev", default="lvs/thick", choices=BDEVS, help="with --inproc: the bdev")
    ap.add_argument("--workload", default="randread", choices=WORKLOADS, help="with --inproc: the workload")
    ap.add_argument("--profile", action="store_true", help="with --inproc: cProfile breakdown of a second run")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per I/O of every case under valgrind (slow: minutes)")
    ap.add_argument("--cases", help="with --instructions: comma-separated bdev:workload (default: all)")
    args = ap.parse_args()
    if args.inproc:
        inproc(args.bdev, args.workload, args.inproc, args.profile)
        return
    if args.instructions:
        cases = [(b, w) for b in BDEVS for w in WORKLOADS]
        if args.cases:
            cases = [(c.split(":")[0], c.split(":")[1]) for c in args.cases.split(",")]
        instructions(cases)
        return
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
