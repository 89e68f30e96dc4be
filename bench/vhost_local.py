#!/usr/bin/env python3
"""vhost-user-blk without a guest: spydk's vhost target (malloc bdev) driven by spydk's own
virtio initiator bdev running bdevperf in a second process; the target's CPU time per I/O.

    .venv/bin/python bench/vhost_local.py [--time 5] [-w randread] [-q 32] [--spin-us N] [--profile FILE]

The target (`spydk vhost`) is pinned to --target-cpu (default 0), bdevperf to --init-cpu
(default 1). Target CPU is utime+stime from /proc/<pid>/stat across the whole bdevperf run
(attach included, which is small against the run), divided by bdevperf's I/O count. With
--profile the target runs under cProfile and the stats go to FILE (slower; look at the
shares, not the CPU figure). This is not the guest figure of bench/vhost.py: no TCG guest,
and the initiator batches differently from a Linux guest's virtio-blk driver.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK = os.sysconf("SC_CLK_TCK")
ROW = re.compile(r"^\s+(\S+)\s+:\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def cpu_s(pid: int) -> tuple[float, float]:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(f[11]) / CLK, int(f[12]) / CLK    # utime, stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=5, help="bdevperf seconds (default 5)")
    ap.add_argument("-w", dest="workload", default="randread", help="bdevperf workload (default randread)")
    ap.add_argument("-q", dest="qd", type=int, default=32, help="queue depth (default 32)")
    ap.add_argument("--spin-us", type=int, default=None, help="the target's --spin-us (default: the app's)")
    ap.add_argument("--target-cpu", type=int, default=0)
    ap.add_argument("--init-cpu", type=int, default=1)
    ap.add_argument("--profile", metavar="FILE", help="run the target under cProfile, stats to FILE")
    ap.add_argument("--cachegrind", metavar="FILE",
                    help="run the target under valgrind's cachegrind, counts to FILE (instructions: "
                         "compare two --time values, the difference over the I/O difference)")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="spydk-vl-", dir="/tmp") as d:
        wd = Path(d)
        tcfg = {"subsystems": [
            {"subsystem": "bdev", "config": [{"method": "bdev_malloc_create", "params": {
                "name": "Malloc0", "num_blocks": 64 * 2048, "block_size": 512}}]},
            {"subsystem": "vhost_blk", "config": [{"method": "vhost_create_blk_controller",
                                                   "params": {"ctrlr": "vhost.0", "dev_name": "Malloc0"}}]}]}
        icfg = {"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_virtio_attach_controller", "params": {
                "name": "VirtioBlk0", "trtype": "user", "traddr": str(wd / "vhost.0"), "dev_type": "blk",
                "vq_count": 1, "vq_size": 128}}]}]}
        (wd / "t.json").write_text(json.dumps(tcfg))
        (wd / "i.json").write_text(json.dumps(icfg))
        prof = ["-m", "cProfile", "-o", os.path.abspath(args.profile)] if args.profile else []
        vg = (["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={args.cachegrind}"]
              if args.cachegrind else [])
        tcmd = ["taskset", "-c", str(args.target_cpu), *vg, py, *prof, "-m", "spydk.apps.main", "vhost",
                "-m", hex(1 << args.target_cpu), "-S", str(wd), "-r", str(wd / "t.sock"), "--json", str(wd / "t.json")]
        if args.spin_us is not None:
            tcmd += ["--spin-us", str(args.spin_us)]
        tlog = open(wd / "t.log", "wb")
        tgt = subprocess.Popen(tcmd, stdin=subprocess.DEVNULL, stdout=tlog, stderr=subprocess.STDOUT)
        try:
            for _ in range(3000 if vg else 300):
                if (wd / "vhost.0").is_socket() or tgt.poll() is not None:
                    break
                time.sleep(0.1)
            if not (wd / "vhost.0").is_socket():
                raise SystemExit(f"target did not start:\n{(wd / 't.log').read_text()}")
            time.sleep(0.5)
            c0 = cpu_s(tgt.pid)
            out = subprocess.run(["taskset", "-c", str(args.init_cpu), py, "-m", "spydk.apps.main", "bdevperf",
                                  "-m", hex(1 << args.init_cpu), "-c", str(wd / "i.json"), "-q", str(args.qd), "-o", "4096",
                                  "-w", args.workload, "-t", str(args.time)],
                                 capture_output=True, text=True, timeout=args.time * 4 + 60)
            c1 = cpu_s(tgt.pid)
        finally:
            tgt.send_signal(signal.SIGINT)
            try:
                tgt.wait(120)
            except subprocess.TimeoutExpired:
                tgt.kill()
            tlog.close()
        iops = None
        for line in out.stdout.splitlines():
            m = ROW.match(line)
            if m and m.group(1) == "VirtioBlk0":
                iops = float(m.group(3))
        if iops is None:
            raise SystemExit(f"no bdevperf result:\n{out.stdout}\n{out.stderr}\n{(wd / 't.log').read_text()}")
        ios = iops * args.time
        if args.cachegrind:
            m = re.search(r"summary: (\d+)", Path(args.cachegrind).read_text())
            print(f"target instructions {int(m[1]) if m else -1} for {ios:.0f} I/Os")
        usr, sys_ = c1[0] - c0[0], c1[1] - c0[1]
        print(f"{args.workload} QD{args.qd} 4 KiB: {iops:,.0f} IOPS, target CPU {usr + sys_:.2f} s "
              f"(user {usr:.2f}, system {sys_:.2f}), {(usr + sys_) / ios * 1e6:.1f} us per I/O "
              f"(load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
