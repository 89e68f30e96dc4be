"""NVMe/TCP with security against plain: 4 KiB random reads at QD128 through one spydk
nvmf_tgt (one core), as three hosts of one subsystem: a plain one, one that authenticates with
DH-HMAC-CHAP (bidirectional, ffdhe2048) on every queue, and one over a TLS 1.3 secure channel.

    .venv/bin/python bench/nvmf_secure.py [--seconds 5] [--runs 3]
    .venv/bin/python bench/nvmf_secure.py --spdk-dir /path/to/spdk [--tls-preload /path/shim.so]

The table gives IOPS, average latency and the target's CPU time per I/O (utime+stime of the
target process over the run, divided by the I/Os: it does not depend on the generator).
Generators: `spydk perf` (-S ssl --psk-path, --dhchap-key) always; with --spdk-dir also SPDK's
C spdk_nvme_perf (plain, and TLS when --tls-preload names the library that SPDK v24.01 needs
for its HKDF salt with Debian 12's OpenSSL, see docs/nvmf.md; v24.01 has no DH-HMAC-CHAP host).
DH-HMAC-CHAP costs only at Connect (a few ms per queue); the I/O path is the plain one.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.nvmf_tcp import CLK, PERF_MEM_MB, cpu_ticks, free_port, parse_perf  # noqa: E402
from spydk.nvme.auth.dhchap import generate_secret  # noqa: E402
from spydk.nvme.tls_psk import format_interchange  # noqa: E402

NQN = "nqn.2016-06.io.spdk:cnode1"
HOSTS = {"plain": "nqn.2016-06.io.spdk:plain", "dhchap": "nqn.2016-06.io.spdk:auth",
         "tls": "nqn.2016-06.io.spdk:tls"}


def write_secret(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)  # no newline: SPDK v24.01 reads the PSK file as it is
    p.chmod(0o600)
    return p


def target_config(d: Path, plain_port: int, tls_port: int) -> dict[str, Any]:
    def listen(port: int, secure: bool) -> dict[str, Any]:
        return {"method": "nvmf_subsystem_add_listener", "params": {
            "nqn": NQN, "secure_channel": secure, "listen_address": {
                "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}}}
    return {"subsystems": [
        {"subsystem": "keyring", "config": [
            {"method": "keyring_file_add_key", "params": {"name": n, "path": str(d / n)}}
            for n in ("psk", "hk", "ck")]},
        {"subsystem": "bdev", "config": [{"method": "bdev_malloc_create", "params": {
            "name": "Malloc0", "num_blocks": 262144, "block_size": 512}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_set_config", "params": {"dhchap_digests": ["sha256"], "dhchap_dhgroups": ["ffdhe2048"]}},
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": False}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}},
            listen(plain_port, False), listen(tls_port, True),
            {"method": "nvmf_subsystem_add_host", "params": {"nqn": NQN, "host": HOSTS["plain"]}},
            {"method": "nvmf_subsystem_add_host", "params": {"nqn": NQN, "host": HOSTS["dhchap"],
                                                             "dhchap_key": "hk", "dhchap_ctrlr_key": "ck"}},
            {"method": "nvmf_subsystem_add_host", "params": {"nqn": NQN, "host": HOSTS["tls"], "psk": "psk"}},
        ]}]}


def start_target(d: Path, cfg: dict[str, Any], core: int) -> subprocess.Popen[bytes]:
    (d / "cfg.json").write_text(json.dumps(cfg))
    log = open(d / "tgt.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "spydk.apps.main", "nvmf_tgt", "-r", str(d / "rpc.sock"),
                             "--json", str(d / "cfg.json")], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    for _ in range(300):
        if b"nvmf_tgt started" in (d / "tgt.log").read_bytes():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("target did not start: " + (d / "tgt.log").read_text())


def one_run(cmd: list[str], pid: int, seconds: float, env: dict[str, str] | None, core: int) -> dict[str, float]:
    c0 = cpu_ticks(pid)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90, env=env, cwd=REPO,
                       preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    c1 = cpu_ticks(pid)
    r = parse_perf(p.stdout)
    if p.returncode or r is None:
        raise RuntimeError(f"{Path(cmd[0]).name} exit {p.returncode}: {(p.stderr + p.stdout).strip()[-400:]}")
    iops, _, lat = r
    ios = iops * seconds
    return {"iops": iops, "lat_us": lat, "tgt_us_io": (c1 - c0) / CLK / ios * 1e6 if ios else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="runs per row; the median is shown")
    ap.add_argument("--qd", type=int, default=128)
    ap.add_argument("--spdk-dir", default=os.environ.get("SPDK_DIR"))
    ap.add_argument("--tls-preload", help="LD_PRELOAD for spdk_nvme_perf -S ssl (see docs/nvmf.md)")
    ap.add_argument("--target-core", type=int, default=0)
    ap.add_argument("--gen-core", type=int, default=1)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="spydk-secure-"))
    psk = write_secret(d, "psk", format_interchange(os.urandom(32), 1))
    hk = write_secret(d, "hk", generate_secret(32, 1))
    ck = write_secret(d, "ck", generate_secret(32, 0))
    plain_port, tls_port = free_port(), free_port()
    proc = start_target(d, target_config(d, plain_port, tls_port), a.target_core)

    def trid(port: int) -> str:
        return f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{port} subnqn:{NQN}"
    load = ["-q", str(a.qd), "-o", "4096", "-w", "randread", "-t", str(a.seconds)]
    spydk = [sys.executable, "-m", "spydk.apps.main", "perf", *load]
    rows: list[tuple[str, str, list[str], dict[str, str] | None]] = [
        ("plain", "spydk perf", [*spydk, "-r", trid(plain_port), "--hostnqn", HOSTS["plain"]], None),
        ("DH-HMAC-CHAP", "spydk perf", [*spydk, "-r", trid(plain_port), "--hostnqn", HOSTS["dhchap"],
                                        "--dhchap-key", str(hk), "--dhchap-ctrlr-key", str(ck)], None),
        ("TLS 1.3 PSK", "spydk perf", [*spydk, "-r", trid(tls_port), "--hostnqn", HOSTS["tls"],
                                       "-S", "ssl", "--psk-path", str(psk)], None)]
    if a.spdk_dir:
        perf = str(Path(a.spdk_dir) / "build" / "bin" / "spdk_nvme_perf")
        c = [perf, "--no-huge", "-s", str(PERF_MEM_MB), "-c", hex(1 << a.gen_core), *load]
        rows.append(("plain", "spdk_nvme_perf", [*c, "-r", f"{trid(plain_port)} hostnqn:{HOSTS['plain']}"], None))
        if a.tls_preload:
            env = dict(os.environ, LD_PRELOAD=a.tls_preload)
            rows.append(("TLS 1.3 PSK", "spdk_nvme_perf", [*c, "-r", f"{trid(tls_port)} hostnqn:{HOSTS['tls']}",
                                                           "-S", "ssl", "--psk-path", str(psk)], env))
    results: list[tuple[str, str, dict[str, float] | str]] = []
    try:
        for mode, gen, cmd, env in rows:
            try:
                runs = [one_run(cmd, proc.pid, a.seconds, env, a.gen_core) for _ in range(a.runs)]
            except RuntimeError as e:
                results.append((mode, gen, str(e)))
                continue
            med = sorted(runs, key=lambda r: r["iops"])[len(runs) // 2]
            med["spread"] = (max(r["iops"] for r in runs) - min(r["iops"] for r in runs)) / statistics.mean(
                [r["iops"] for r in runs]) * 100
            results.append((mode, gen, med))
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    print(f"4 KiB randread QD{a.qd}, spydk nvmf_tgt on CPU {a.target_core}, generator on CPU {a.gen_core}, "
          f"{a.seconds} s x {a.runs} runs (median; spread = (max-min)/mean of IOPS)")
    print("| mode | generator | IOPS | avg latency (us) | target CPU per I/O (us) | spread |")
    print("|---|---|---|---|---|---|")
    for mode, gen, r in results:
        if isinstance(r, str):
            print(f"| {mode} | {gen} | failed: {r} | | | |")
        else:
            print(f"| {mode} | {gen} | {r['iops']:,.0f} | {r['lat_us']:.0f} | {r['tgt_us_io']:.1f} | {r['spread']:.0f} % |")


if __name__ == "__main__":
    main()
