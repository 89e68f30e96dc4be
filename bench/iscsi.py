#!/usr/bin/env python3
"""iSCSI target throughput with libiscsi's ``iscsi-perf``: spydk against Debian's tgt
(RAM-backed LUN) and, when an SPDK build is at hand (``--spdk-dir`` or ``SPDK_DIR``: a
built SPDK v24.01 tree with build/bin/iscsi_tgt), SPDK's own iscsi_tgt, in one run.

    .venv/bin/python bench/iscsi.py [--runs 5] [--seconds 5] [--poll] [--skip-tgt] [--spdk-dir DIR]

SPDK's iscsi_tgt runs with ``--no-huge -s 2048 -m 0x1`` and the same JSON config as spydk; it
busy-polls its core, so its CPU per I/O column only says that it used the whole core.

Workloads: 4 KiB random read at 32 and at 1 in flight, 128 KiB sequential read at 8 in
flight. Each figure is the median of --runs runs of --seconds each. spydk exports a
256 MiB Malloc bdev; tgt a 256 MiB file in /dev/shm (tmpfs, so RAM). Reference figures
(median of 5 runs on this machine kind, 4 KiB random read): QD32 tgt 36 K IOPS, SPDK
141 K IOPS; QD1 tgt 8.5 K, SPDK 29.6 K.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
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


def start_spdk_iscsi_tgt(spdk_dir: Path, tmp: str, port: int,
                         stack: contextlib.ExitStack) -> subprocess.Popen[bytes]:
    """SPDK's iscsi_tgt on 127.0.0.1:port with spydk_config(port); returns once it serves."""
    binary = spdk_dir / "build" / "bin" / "iscsi_tgt"
    if not binary.exists():
        sys.exit(f"{binary} is missing: --spdk-dir/SPDK_DIR must point to a built SPDK tree")
    cfg = Path(tmp) / "spdk-iscsi.json"
    cfg.write_text(json.dumps(spydk_config(port)))
    sock = str(Path(tmp) / "spdk-iscsi.sock")
    log = open(Path(tmp) / "spdk-iscsi.log", "wb")
    stack.callback(log.close)
    proc = subprocess.Popen([str(binary), "--no-huge", "-s", "2048", "-m", "0x1", "-r", sock,
                             "--json", str(cfg)], stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    stack.callback(stop)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"SPDK iscsi_tgt exited with {proc.returncode}; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    sys.exit("SPDK iscsi_tgt did not start listening within 30 s")


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


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def measure(targets: dict[str, tuple[str, int]], args: argparse.Namespace,
            iops: dict[tuple[str, str], list[float]], cpu: dict[tuple[str, str], list[float]]) -> None:
    """Runs alternate between the targets, so background load hits them alike."""
    for url, _ in targets.values():
        # warm-up (login, caches); SPDK's iscsi_tgt listens before its JSON config has added
        # the target node, so a first login may find no target yet
        deadline = time.monotonic() + 30
        while True:
            try:
                iscsi_perf(url, 8, 32, True, 2)
                break
            except RuntimeError as e:
                if "Target not found" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    for label, blocks, depth, random in WORKLOADS:
        for _ in range(args.runs):
            for name, (url, pid) in targets.items():
                c0 = cpu_seconds(pid)
                rate = iscsi_perf(url, blocks, depth, random, args.seconds)
                used = cpu_seconds(pid) - c0
                iops.setdefault((name, label), []).append(rate)
                cpu.setdefault((name, label), []).append(1e6 * used / max(1.0, rate * args.seconds))
        for name in targets:
            runs = iops[(name, label)]
            print(f"{name:6} {label:22} {statistics.median(runs):>10,.0f} IOPS "
                  f"{statistics.median(cpu[(name, label)]):6.1f} us CPU/IO "
                  f"(runs: {', '.join(f'{x:,.0f}' for x in runs)})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--poll", action="store_true", help="run spydk with a busy-polling reactor")
    ap.add_argument("--spin-us", type=int, metavar="US",
                    help="start spydk with --spin-us US (event mode's spin after work; default: its default)")
    ap.add_argument("--skip-tgt", action="store_true")
    ap.add_argument("--spdk-dir", default=os.environ.get("SPDK_DIR"),
                    help="a built SPDK tree: also measure its iscsi_tgt (default: $SPDK_DIR)")
    args = ap.parse_args()
    if shutil.which("iscsi-perf") is None:
        sys.exit("iscsi-perf missing: apt-get install libiscsi-bin")
    # Both targets run at once and the runs alternate between them, so background load on
    # a shared machine hits both alike. Besides IOPS, the target's own CPU time per I/O
    # (utime+stime from /proc) is reported: it does not depend on how busy the machine is.
    targets: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="iscsi-bench-") as tmp, contextlib.ExitStack() as stack:
        port = free_tcp_port()
        t = start_target(tmp, spydk_config(port), app="iscsi_tgt",
                         extra_args=(["--poll"] if args.poll else [])
                         + ([f"--spin-us={args.spin_us}"] if args.spin_us is not None else []))
        stack.callback(t.stop)
        targets["spydk"] = (f"iscsi://127.0.0.1:{port}/{IQN}/0", t.pid)
        if not args.skip_tgt:
            shm = Path(tempfile.mkdtemp(prefix="iscsi-bench-tgt-", dir="/dev/shm"))
            stack.callback(shutil.rmtree, shm, True)
            tgt = start_tgt(shm, lun_mb=LUN_MB)
            stack.callback(tgt.stop)
            targets["tgt"] = (f"iscsi://127.0.0.1:{tgt.port}/{tgt.iqn}/1", tgt.proc.pid)
        iops: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        measure(targets, args, iops, cpu)
        if args.spdk_dir:
            # SPDK's reactor spins on its core even when idle: measured in a phase of its own
            # so that it does not take a core away from the targets above.
            sport = free_tcp_port()
            sp = start_spdk_iscsi_tgt(Path(args.spdk_dir), tmp, sport, stack)
            spdk = {"SPDK": (f"iscsi://127.0.0.1:{sport}/{IQN}/0", sp.pid)}
            measure(spdk, args, iops, cpu)
            targets.update(spdk)
    print()
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load average {load:.1f} at the end, "
          f"median of {args.runs} x {args.seconds:g} s, spydk {'poll' if args.poll else 'event'} mode"
          f"{'' if args.poll or args.spin_us is None else f', --spin-us {args.spin_us}'}")
    names = list(targets)
    print("| workload | " + " | ".join(f"{n} IOPS | {n} CPU/IO" for n in names)
          + " | reference tgt | reference SPDK |")
    print("|---|" + "---:|" * (2 * len(names) + 2))
    for label, *_ in WORKLOADS:
        cells = []
        for n in names:
            cells += [f"{statistics.median(iops[(n, label)]):,.0f}",
                      f"{statistics.median(cpu[(n, label)]):.1f} us"]
        refs = [f"{REFERENCE[(label, k)]:,}" if (label, k) in REFERENCE else "" for k in ("tgt", "SPDK")]
        print(f"| {label} | " + " | ".join(cells + refs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
