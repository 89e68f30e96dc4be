# Not a test (CI has no SPDK): run by hand; results are recorded in docs/nvme-host.md.
"""spydk's NVMe host driver against SPDK's C nvmf_tgt, the acceptance run of issue 12 over TCP:
identify, perf, hello_world, `spydk bdevperf -w verify` on an attached bdev, the target killed
(SIGKILL) and restarted mid-run under verify, failover between two listeners and back under
verify, fast_io_fail_timeout_sec while the target is down.

    .venv/bin/python tests/nvme_host/vs_spdk_nvmf_tgt.py [SPDK_DIR]   # default /work/spdk-build/spdk

SPDK's nvmf_tgt runs with `--no-huge -s 1024 -m 0x1 --no-pci --disable-cpumask-locks` on a free
port, its namespace an aio bdev on a file (data survives the kill). Every step prints PASS or
raises; the SPDK commands are printed as they are run.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from spydk.bdev import BdevError  # noqa: E402
from spydk.rpc.client import Client, ClientError, NoServerError  # noqa: E402
from spydk.testing import AppHarness, short_socket_path  # noqa: E402
from tests.nvme_host.test_bdev_nvme import _rw, attach, ctrlr_state, wait_until  # noqa: E402
from tests.nvme_host.test_bdev_nvme_midrun import BLOCKS, VerifyJob  # noqa: E402
from tests.nvme_host.test_tools import NQN, free_port  # noqa: E402

SPDK = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/spdk-build/spdk")
SPYDK = [sys.executable, "-m", "spydk.apps.main"]
TMP = Path(tempfile.mkdtemp(prefix="s12-vs-spdk-"))
DISK = TMP / "ns.img"


def addr(port: int) -> dict[str, str]:
    return {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}


class SpdkTgt:
    def __init__(self, *ports: int) -> None:
        self.sock = short_socket_path("s12-spdk-")
        cfg = TMP / "spdk.json"
        cfg.write_text(json.dumps({"subsystems": [
            {"subsystem": "bdev", "config": [{"method": "bdev_aio_create", "params": {
                "name": "Aio0", "filename": str(DISK), "block_size": 512}}]},
            {"subsystem": "nvmf", "config": [
                {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
                {"method": "nvmf_create_subsystem", "params": {
                    "nqn": NQN, "allow_any_host": True, "serial_number": "SPDK00000000000001"}},
                {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Aio0"}}},
                *({"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": addr(p)}}
                  for p in ports)]}]}))
        argv = [str(SPDK / "build/bin/nvmf_tgt"), "--no-huge", "-s", "1024", "-m", "0x1", "--no-pci",
                "--disable-cpumask-locks", "-r", self.sock, "--json", str(cfg)]
        print("$", " ".join(argv), flush=True)
        self.log = open(TMP / "nvmf_tgt.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(self.sock, timeout=5) as c:
                    c.call("framework_wait_init")
                    if c.call("nvmf_get_subsystems")[-1]["listen_addresses"]:
                        break
            except (NoServerError, ClientError, OSError, IndexError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nvmf_tgt did not start; see {TMP / 'nvmf_tgt.log'}")
            time.sleep(0.2)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        with Client(self.sock, timeout=30) as c:
            return c.call(method, params)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


def tool(*args: str) -> str:
    print("$ spydk", " ".join(args), flush=True)
    r = subprocess.run([*SPYDK, *args], capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise AssertionError(f"spydk {args[0]} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def main() -> None:
    with open(DISK, "wb") as f:
        f.truncate(BLOCKS * 512)
    p1, p2 = free_port(), free_port()
    tr = f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{p1} subnqn:{NQN}"
    t = SpdkTgt(p1, p2)
    try:
        out = tool("identify", "-r", tr)
        assert "Serial Number:                         SPDK00000000000001" in out, out
        print("PASS identify", flush=True)
        out = tool("perf", "-q", "32", "-o", "4096", "-w", "randrw", "-M", "50", "-t", "3", "--verify",
                   "-H", "-I", "-r", tr)
        print("\n".join(line for line in out.splitlines() if "from core" in line or "Total" in line))
        print("PASS perf --verify -H -I", flush=True)
        out = tool("hello_world", "-r", tr)
        assert "Hello world!" in out.splitlines(), out
        print("PASS hello_world", flush=True)
        cfg = TMP / "bdevperf.json"
        cfg.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_nvme_attach_controller", "params": {
                "name": "Nvme0", "trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
                "trsvcid": str(p1), "subnqn": NQN}}]}]}))
        out = tool("bdevperf", "-c", str(cfg), "-q", "32", "-o", "4096", "-w", "verify", "-t", "3")
        print("\n".join(line for line in out.splitlines() if "Nvme0n1" in line or "Total" in line))
        print("PASS bdevperf -w verify", flush=True)

        h = AppHarness(subsystems=("bdev",)).start()
        try:
            # failover and back, with verify I/O going on
            attach(h, p1, ctrlr_loss_timeout_sec=120, reconnect_delay_sec=1)
            attach(h, p2, multipath="failover")

            def active_port() -> str:
                c = h.client.call("bdev_nvme_get_controllers")[0]["ctrlrs"][0]
                return str(c["trid"]["trsvcid"]) if c["state"] == "enabled" else ""
            job = VerifyJob(h, "Nvme0n1", qd=16)
            job.progress(500, "verify I/O on the first path")
            t.call("nvmf_subsystem_remove_listener", {"nqn": NQN, "listen_address": addr(p1)})
            t0 = time.monotonic()
            wait_until(lambda: active_port() == str(p2), 60, "failover to the second listener")
            print(f"failover to {p2} after {time.monotonic() - t0:.1f} s", flush=True)
            job.progress(500, "verify I/O on the second path")
            t.call("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": addr(p1)})
            t.call("nvmf_subsystem_remove_listener", {"nqn": NQN, "listen_address": addr(p2)})
            t0 = time.monotonic()
            wait_until(lambda: active_port() == str(p1), 60, "failback to the first listener")
            print(f"failback to {p1} after {time.monotonic() - t0:.1f} s", flush=True)
            job.progress(500, "verify I/O back on the first path")
            res = job.stop()
            assert res["io_failed"] == 0 and res["miscompares"] == 0, res
            print(f"PASS failover and back under verify: {res['done']} I/Os, 0 failed, 0 miscompares",
                  flush=True)
            t.call("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": addr(p2)})

            # SIGKILL and restart mid-run under verify
            job = VerifyJob(h, "Nvme0n1", qd=16)
            job.progress(500, "verify I/O before the kill")
            t.stop(signal.SIGKILL)
            t0 = time.monotonic()
            wait_until(lambda: ctrlr_state(h) == "resetting", 30, "the controller to notice the loss")
            print(f"controller resetting {time.monotonic() - t0:.2f} s after SIGKILL", flush=True)
            t = SpdkTgt(p1, p2)
            print(f"nvmf_tgt back {time.monotonic() - t0:.1f} s after the kill", flush=True)
            wait_until(lambda: ctrlr_state(h) == "enabled", 60, "the reconnect")
            print(f"controller enabled {time.monotonic() - t0:.1f} s after the kill", flush=True)
            job.progress(500, "verify I/O after the restart")
            res = job.stop()
            assert res["io_failed"] == 0 and res["miscompares"] == 0, res
            print(f"PASS kill -9 + restart under verify: {res['done']} I/Os, 0 failed, 0 miscompares",
                  flush=True)
            h.client.call("bdev_nvme_detach_controller", {"name": "Nvme0"})

            # fast_io_fail_timeout_sec: held I/O fails while the controller keeps reconnecting
            attach(h, p1, ctrlr_loss_timeout_sec=120, reconnect_delay_sec=1, fast_io_fail_timeout_sec=2)
            t.stop(signal.SIGKILL)
            wait_until(lambda: ctrlr_state(h) == "resetting", 30, "the controller to notice the loss")
            t0 = time.monotonic()
            try:
                h.run(_rw("Nvme0n1", 0, bytes(4096)), timeout=60)
                raise AssertionError("I/O succeeded with the target down")
            except BdevError as e:
                print(f"held I/O failed after {time.monotonic() - t0:.1f} s: {e}", flush=True)
            assert ctrlr_state(h) == "resetting"
            t = SpdkTgt(p1, p2)
            wait_until(lambda: ctrlr_state(h) == "enabled", 60, "the reconnect")
            assert h.run(_rw("Nvme0n1", 0, bytes(4096))) == bytes(4096)
            print("PASS fast_io_fail_timeout_sec 2: held I/O failed, controller reconnected, I/O works",
                  flush=True)
        finally:
            h.stop()
    finally:
        t.stop()
    print("ALL PASSED", flush=True)


if __name__ == "__main__":
    main()
