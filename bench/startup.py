"""Benchmark: start-up of `spydk tgt` to its RPC socket answering framework_wait_init.

    .venv/bin/python bench/startup.py [--masks 0x1,0x3] [--runs 5] [--no-bytecode]

For each run: wall time from exec to the first successful framework_wait_init answer, and the
CPU time (user + system, from /proc/PID/stat) the target's processes had used by then: the main
process and, with several cores, its worker reactors. On a shared machine the wall time is
mostly waiting for a CPU (check /proc/pressure/cpu); the CPU time is what start-up costs
and what the wall time would be on an idle core. ``--no-bytecode`` runs a copy of the spydk
package without its bytecode cache, under PYTHONDONTWRITEBYTECODE=1, so every spydk module is
compiled at each start (the standard library and the dependencies keep theirs): a checkout
whose cache was never written starts that way.
Also prints ``-X importtime``'s total for the main process's imports of one extra run.
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

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system time of one process, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK   # utime, stime (fields 14, 15)


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def ready(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "framework_wait_init"}).encode())
            return b'"result"' in s.recv(4096)
    except OSError:
        return False


def one(mask: str, env: dict[str, str], tmp: str, extra: list[str] | None = None,
        cwd: str | None = None) -> tuple[float, float, str]:
    sock = os.path.join(tmp, f"startup{time.monotonic_ns()}.sock")
    cmd = [sys.executable, *(extra or []), "-m", "spydk.apps.main", "tgt", "-m", mask, "-r", sock]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not ready(sock):
            if p.poll() is not None:
                raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.read() if p.stderr else ''}")
            if time.monotonic() - t0 > 60:
                raise SystemExit(f"{' '.join(cmd)}: not ready in 60 s")
            time.sleep(0.002)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(p.pid) + sum(cpu_seconds(c) for c in children(p.pid))
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
    return wall, cpu, err


def import_total(stderr: str) -> float:
    """Sum of the top-level cumulative times of an -X importtime log, in seconds."""
    tot = 0
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "[us]" not in line:
            _, cum, name = line[len("import time:"):].split("|")
            if name.startswith(" ") and not name.startswith("  "):
                tot += int(cum)
    return tot / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", default="0x1,0x3")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-bytecode", action="store_true", help="compile every module from source")
    a = ap.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="spydk-startup-") as tmp:
        cwd = None
        if a.no_bytecode:
            import shutil

            import spydk
            cwd = os.path.join(tmp, "src")
            shutil.copytree(os.path.dirname(spydk.__file__), os.path.join(cwd, "spydk"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [cwd, env.get("PYTHONPATH")]))
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            one("0x1", env, tmp)   # writes the bytecode cache once
        with open("/proc/pressure/cpu") as f:
            pressure = f.readline().strip()
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
              f"cpu pressure: {pressure}, bytecode {'off' if a.no_bytecode else 'cached'}")
        for mask in a.masks.split(","):
            walls, cpus = [], []
            for _ in range(a.runs):
                w, c, _err = one(mask, env, tmp, cwd=cwd)
                walls.append(w)
                cpus.append(c)
            _, _, err = one(mask, env, tmp, ["-X", "importtime"], cwd=cwd)
            print(f"-m {mask}: wall to ready median {statistics.median(walls):.3f} s "
                  f"(min {min(walls):.3f}, max {max(walls):.3f}); CPU by then median "
                  f"{statistics.median(cpus):.3f} s (min {min(cpus):.3f}, max {max(cpus):.3f}); "
                  f"imports under -X importtime {import_total(err):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
