"""NVMe/TCP 4 KiB randread against a target on one core (-m 0x1) and on two (-m 0x3), for
spydk and for SPDK's nvmf_tgt, side by side; SPDK's spdk_nvme_perf is the load generator with
two I/O queues (two spdk_nvme_perf processes of one queue each, sharing the generator core),
so that with -m 0x3 each reactor gets one.

    SPDK_DIR=/path/to/spdk .venv/bin/python bench/nvmf_tcp_cores.py [--seconds 5] [--runs 3]
        [--qd 64] [--gen-core 1]

The generator is pinned to --gen-core (its -c mask). With -m 0x1 the target runs on core 0,
apart from the generator; with -m 0x3 the target takes both cores of a two-core machine, so the
generator shares core 1 with the target's second reactor (there is no third CPU set to give
it): the table says which. spydk's target CPU time counts the main process and its workers.
Both SPDK programs run without hugepages (--no-huge).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nvmf_tcp import CLK, NQN, PERF_MEM_MB, free_port, parse_perf, target_config  # noqa: E402


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def cpu_ticks_tree(pid: int) -> int:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def start(kind: str, mask: str, port: int, spdk_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    d = Path(tempfile.mkdtemp(prefix=f"{kind}-cores-"))
    cfg = d / "cfg.json"
    cfg.write_text(json.dumps(target_config(port)))
    sock = d / "rpc.sock"
    log = open(d / "tgt.log", "wb")
    if kind == "spydk":
        cmd = [sys.executable, "-m", "spydk.apps.main", "nvmf_tgt", "-m", mask, "-r", str(sock),
               "--json", str(cfg)]
    else:
        cmd = [str(spdk_dir / "build/bin/nvmf_tgt"), "--no-huge", "-s", str(PERF_MEM_MB), "-m", mask,
               "--no-pci", "--disable-cpumask-locks", "-r", str(sock), "--json", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, d
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} target did not start: " + (d / "tgt.log").read_text())


def poll_groups(kind: str, d: Path) -> list[int]:
    """completed_nvme_io per poll group (spydk only: SPDK's counters are per transport)."""
    if kind != "spydk":
        return []
    from spydk.rpc.client import Client
    with Client(str(d / "rpc.sock")) as c:
        return [g["completed_nvme_io"] for g in c.call("nvmf_get_stats")["poll_groups"]]


def one_run(kind: str, mask: str, a: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    proc, d = start(kind, mask, port, a.spdk_dir)
    try:
        trid = f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{NQN}"
        # Two generator processes of one I/O queue each: each queue keeps its own depth, so
        # each reactor's rate shows (one spdk_nvme_perf -P 2 takes its queues in turn for each
        # new I/O, so both get the same count whatever each reactor's speed).
        cmd = [str(a.spdk_dir / "build/bin/spdk_nvme_perf"), "--no-huge", "-s", "1024", "-r", trid,
               "-q", str(a.qd), "-o", "4096", "-w", "randread", "-t", str(a.seconds), "-P", "1",
               "-c", hex(1 << a.gen_core)]
        c0 = cpu_ticks_tree(proc.pid)
        ps = [subprocess.Popen(cmd + ["-i", str(i + 1)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for i in range(2)]
        outs = [q.communicate(timeout=a.seconds + 60) for q in ps]
        c1 = cpu_ticks_tree(proc.pid)
        rs = [parse_perf(o[0]) for o in outs]
        if any(q.returncode for q in ps) or any(r is None for r in rs):
            raise RuntimeError(f"spdk_nvme_perf failed: {outs[0][1][-300:]} {outs[1][1][-300:]}")
        r = (sum(x[0] for x in rs if x), 0.0, statistics.mean(x[2] for x in rs if x))
        groups = poll_groups(kind, d)
        return {"iops": r[0], "lat_us": r[2], "tgt_cpu_s": (c1 - c0) / CLK, "groups": groups}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--qd", type=int, default=64, help="queue depth per I/O queue (two queues)")
    ap.add_argument("--gen-core", type=int, default=1)
    ap.add_argument("--spdk-dir", type=Path, default=os.environ.get("SPDK_DIR"))
    ap.add_argument("--kinds", default="spydk,spdk")
    a = ap.parse_args()
    if a.spdk_dir is None or not (a.spdk_dir / "build/bin/spdk_nvme_perf").exists():
        sys.exit("needs SPDK_DIR (or --spdk-dir) with build/bin/spdk_nvme_perf and nvmf_tgt")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2 x spdk_nvme_perf -P 1 -q {a.qd} -o 4096 "
          f"-w randread -t {a.seconds} -c {hex(1 << a.gen_core)}; median of {a.runs}")
    print("| target | -m | generator CPU set | IOPS | avg lat (us) | target CPU s/s | I/O per poll group |")
    print("|---|---|---|---|---|---|---|")
    for kind in a.kinds.split(","):
        for mask in ("0x1", "0x3"):
            runs = [one_run(kind, mask, a) for _ in range(a.runs)]
            runs.sort(key=lambda r: r["iops"])
            m = runs[len(runs) // 2]
            shared = "core 1 (shared with the target's 2nd reactor)" if mask == "0x3" else "core 1 (apart)"
            print(f"| {'spydk' if kind == 'spydk' else 'SPDK nvmf_tgt'} | {mask} | {shared} | {m['iops']:,.0f} | "
                  f"{m['lat_us']:.0f} | {m['tgt_cpu_s'] / a.seconds:.2f} | "
                  f"{' / '.join(str(x) for x in m['groups']) or 'n/a'} |", flush=True)
            print(f"<!-- {kind} {mask} all runs IOPS: {[round(r['iops']) for r in runs]}, "
                  f"spread {statistics.pstdev([r['iops'] for r in runs]):,.0f} -->", flush=True)


if __name__ == "__main__":
    main()
