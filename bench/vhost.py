#!/usr/bin/env python3
"""vhost-user-blk from a QEMU guest: guest fio 4 KiB randread and randwrite (QD32) against
spydk's vhost target, qemu-storage-daemon and, when /work/spdk-build/READY exists (or
--spdk-dir), SPDK's own vhost app; same guest image, same run.

    .venv/bin/python bench/vhost.py [--seconds 10] [--spdk-dir DIR]

The guest is TCG (no KVM), so absolute IOPS mostly measure the emulated guest; the figures
that mean something are the ratios and the target's CPU time per I/O, taken from
/proc/<pid>/stat between the guest's start and end markers of each fio phase. Every target
serves a 64 MiB RAM disk: spydk and SPDK a malloc bdev, qemu-storage-daemon a raw file in
/dev/shm. SPDK busy-polls its core, so its CPU per I/O is its whole core divided by the I/O.
Without a guest (quicker, steadier, cachegrind-able): bench/vhost_local.py.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.interop import guest_run  # noqa: E402
from tests.interop.targets import start_qsd, start_spydk, stop_pid  # noqa: E402

MB = 64
CLK = os.sysconf("SC_CLK_TCK")

GUEST = """\
. /etc/guest/lib.sh
wait_for /dev/vda 10 || die "no /dev/vda"
for rw in randread randwrite; do
  echo "BENCH-START $rw"
  fio --eta=never --name=b --filename=/dev/vda --direct=1 --ioengine=libaio --iodepth=32 \\
      --rw=$rw --bs=4k --size=48M --time_based --runtime=$SECONDS_EACH --group_reporting \\
      --output-format=terse --terse-version=3 > /tmp/f.out 2>&1 || die "fio $rw"
  echo "BENCH-END $rw"
  echo "BENCH-TERSE $rw $(head -1 /tmp/f.out)"
done
echo "BENCH DONE"
"""


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK    # utime + stime


def run_guest(image: guest_run.GuestImage, sock: Path, pid: int, seconds: int) -> dict[str, dict]:
    marks: dict[str, float] = {}
    out: dict[str, dict] = {}

    def on_line(line: str) -> None:
        m = re.match(r"BENCH-(START|END) (\w+)", line)
        if m:
            marks[f"{m[1]} {m[2]}"] = cpu_s(pid)
        m = re.match(r"BENCH-TERSE (\w+) (.*)", line)
        if m:
            f = m[2].split(";")
            # fio terse v3 (0-based): read IOPS is field 7, write IOPS field 48
            rd_iops, wr_iops = float(f[7]), float(f[48])
            iops = rd_iops if m[1] == "randread" else wr_iops
            out[m[1]] = {"iops": iops}
    res = guest_run.run(image, GUEST, env={"SECONDS_EACH": str(seconds)}, vhost_user_blk=[sock],
                        timeout=600, on_line=on_line)
    if res.rc != 0 or "BENCH DONE" not in res.console:
        raise SystemExit(f"guest failed (rc {res.rc}):\n{res.console[-3000:]}")
    for rw, d in out.items():
        cpu = marks[f"END {rw}"] - marks[f"START {rw}"]
        ios = d["iops"] * seconds
        d["cpu_s"] = cpu
        d["cpu_us_per_io"] = cpu / ios * 1e6 if ios else float("nan")
    return out


def bench_spydk(image: guest_run.GuestImage, seconds: int, wd: Path) -> dict:
    cfg = {"subsystems": [
        {"subsystem": "bdev", "config": [{"method": "bdev_malloc_create", "params": {
            "name": "Malloc0", "num_blocks": MB * 2048, "block_size": 512}}]},
        {"subsystem": "vhost_blk", "config": [{"method": "vhost_create_blk_controller",
                                               "params": {"ctrlr": "vhost.0", "dev_name": "Malloc0"}}]}]}
    t = start_spydk(cfg, wd)
    try:
        return run_guest(image, wd / "vhost.0", t.proc.pid, seconds)
    finally:
        t.stop()


def bench_qsd(image: guest_run.GuestImage, seconds: int, wd: Path) -> dict:
    t = start_qsd(wd, size_mb=MB)
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        # qsd's fixture serves a file in wd; move it to RAM for a fair comparison
        stop_pid(t.proc)
        backing = shm / "disk.img"
        with open(backing, "wb") as f:
            f.truncate(MB << 20)
        sock = wd / "vub.sock"
        sock.unlink(missing_ok=True)
        proc = subprocess.Popen(
            ["qemu-storage-daemon",
             "--blockdev", f"driver=file,node-name=file0,filename={backing}",
             "--blockdev", "driver=raw,node-name=disk0,file=file0",
             "--export", f"type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                         f"addr.path={sock},writable=on"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for _ in range(100):
            if sock.is_socket():
                break
            time.sleep(0.1)
        try:
            return run_guest(image, sock, proc.pid, seconds)
        finally:
            stop_pid(proc)
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def bench_spdk(image: guest_run.GuestImage, seconds: int, wd: Path, spdk: Path) -> dict:
    vdir = wd / "spdk"
    vdir.mkdir()
    rpc_sock = vdir / "rpc.sock"
    proc = subprocess.Popen([str(spdk / "build/bin/vhost"), "-S", str(vdir), "--no-huge", "-s", "1024",
                             "-m", "0x1", "--no-pci", "--disable-cpumask-locks", "-r", str(rpc_sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=str(spdk / "python"))
    rpc = [sys.executable, str(spdk / "scripts/rpc.py"), "-s", str(rpc_sock), "-r", "50"]
    try:
        subprocess.run([*rpc, "bdev_malloc_create", "-b", "Malloc0", str(MB), "512"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([*rpc, "vhost_create_blk_controller", "vhost.0", "Malloc0"], env=env, check=True)
        return run_guest(image, vdir / "vhost.0", proc.pid, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="fio seconds per workload (default 10)")
    ap.add_argument("--spdk-dir", default=os.environ.get("SPDK_DIR") or
                    ("/work/spdk-build/spdk" if Path("/work/spdk-build/READY").exists() else None))
    args = ap.parse_args()
    image = guest_run.prepare()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="spydk-bv-", dir="/tmp") as d:
        wd = Path(d)
        results["spydk"] = bench_spydk(image, args.seconds, wd / "spydk")
        results["qsd"] = bench_qsd(image, args.seconds, wd / "qsd")
        if args.spdk_dir:
            results["SPDK"] = bench_spdk(image, args.seconds, wd, Path(args.spdk_dir))
    print(f"{'target':8} {'workload':10} {'IOPS':>8} {'CPU s':>7} {'CPU us/IO':>10}")
    for tgt, r in results.items():
        for rw, v in r.items():
            print(f"{tgt:8} {rw:10} {v['iops']:8.0f} {v['cpu_s']:7.2f} {v['cpu_us_per_io']:10.1f}")
    for rw in ("randread", "randwrite"):
        s = results["spydk"][rw]
        q = results["qsd"][rw]
        line = (f"{rw}: spydk/qsd IOPS {s['iops'] / q['iops']:.2f}, "
                f"CPU per I/O {s['cpu_us_per_io'] / q['cpu_us_per_io']:.2f}")
        if "SPDK" in results:
            p = results["SPDK"][rw]
            line += (f"; spydk/SPDK IOPS {s['iops'] / p['iops']:.2f}, "
                     f"CPU per I/O {s['cpu_us_per_io'] / p['cpu_us_per_io']:.2f}")
        print(line)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
