"""bdev_nvme under a running bdevperf verify job against spydk target subprocesses: the `spydk
bdevperf` command on an attached controller; the target killed (SIGKILL) and restarted
mid-run (in-flight and new I/O are held and retried: nothing fails, nothing miscompares);
fast_io_fail_timeout_sec failing held I/O while the controller keeps reconnecting; failover
between two listeners and back with verify I/O going on."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.apps.bdevperf import Job
from spydk.bdev import BdevError
from spydk.testing import AppHarness, TargetProcess, start_target
from spydk.thread import get_thread

from .test_bdev_nvme import _rw, attach, ctrlr_state, wait_until
from .test_tools import NQN, free_port, target_config

BLOCKS = 8192  # 4 MiB: verify reads back blocks it wrote in the same run


def file_target_config(port: int, disk: Path, *extra: int) -> dict[str, Any]:
    """target_config with the namespace on a file (an aio bdev), so that its data outlives a
    killed target process and verify still reads what was written before the kill."""
    cfg = target_config(port, extra_ports=extra)
    bdev = cfg["subsystems"][0]
    bdev["config"] = [{"method": "bdev_aio_create",
                       "params": {"name": "Malloc0", "filename": str(disk), "block_size": 512}}]
    return cfg


@pytest.fixture
def initiator() -> Iterator[AppHarness]:
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    p = tmp_path / "ns.img"
    with open(p, "wb") as f:
        f.truncate(BLOCKS * 512)
    return p


@pytest.fixture
def targets(tmp_path: Path, disk: Path) -> Iterator[Callable[..., TargetProcess]]:
    started: list[TargetProcess] = []

    def start(port: int, *extra: int) -> TargetProcess:
        t = start_target(tmp_path / f"tgt{len(started)}", file_target_config(port, disk, *extra),
                         app="nvmf_tgt")
        started.append(t)
        return t
    yield start
    for t in started:
        if t.proc.poll() is None:
            t.stop()


class VerifyJob:
    """A bdevperf verify job (spydk.apps.bdevperf.Job) on the initiator's app thread."""

    def __init__(self, h: AppHarness, bdev: str, qd: int = 8) -> None:
        self.h = h
        args = argparse.Namespace(workload="verify", queue_depth=qd, io_size=4096, rwmixread=50)
        self.job = h.call_on_app_thread(lambda: Job(bdev, get_thread(), 0, args, 7))
        self.finished: list[bool] = []
        self.job.on_finished = lambda _j: self.finished.append(True)
        h.call_on_app_thread(self.job.setup)
        h.call_on_app_thread(self.job.start)

    def done(self) -> int:
        return int(self.h.call_on_app_thread(lambda: self.job.done))

    def progress(self, more: int, what: str, timeout: float = 60.0) -> None:
        """Wait until the job completes ``more`` further I/Os."""
        goal = self.done() + more
        wait_until(lambda: self.done() >= goal, timeout, what)

    def stop(self) -> dict[str, Any]:
        self.h.call_on_app_thread(self.job.stop)
        wait_until(lambda: bool(self.finished), 30, "the verify job to drain")
        self.h.call_on_app_thread(self.job.teardown)
        result: dict[str, Any] = self.job.result()
        assert self.job.error is None, self.job.error
        return result


def test_bdevperf_verify_on_an_attached_controller(tmp_path: Path,
                                                   targets: Callable[..., TargetProcess]) -> None:
    port = free_port()
    targets(port)
    cfg = tmp_path / "bdevperf.json"
    cfg.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_nvme_attach_controller", "params": {
            "name": "Nvme0", "trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
            "trsvcid": str(port), "subnqn": NQN, "hdgst": True, "ddgst": True}}]}]}))
    r = subprocess.run([sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", str(cfg), "-q", "16",
                        "-o", "4096", "-w", "verify", "-t", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr  # 1 on any failed or miscompared I/O
    assert "workload: verify" in r.stdout and "Verification failed" not in r.stdout, r.stdout
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("Nvme0n1"))
    _runtime, iops, _mib, fails = (float(x) for x in row.split(":", 1)[1].split()[:4])
    assert iops > 0 and fails == 0, r.stdout

def test_target_killed_and_restarted_under_verify(initiator: AppHarness,
                                                  targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    t = targets(port)
    attach(h, port, ctrlr_loss_timeout_sec=60, reconnect_delay_sec=1)
    job = VerifyJob(h, "Nvme0n1")
    job.progress(200, "verify I/O before the kill")
    t.stop(signal.SIGKILL)  # no shutdown: in-flight commands are cut off
    wait_until(lambda: ctrlr_state(h) == "resetting", what="the controller to notice the loss")
    before = job.done()
    targets(port)
    wait_until(lambda: ctrlr_state(h) == "enabled", 60, "the reconnect")
    job.progress(200, "verify I/O after the restart")
    res = job.stop()
    assert res["io_failed"] == 0 and res["miscompares"] == 0, res
    assert res["done"] > before, res


def test_fast_io_fail_fails_held_io_while_reconnecting(initiator: AppHarness,
                                                       targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    t = targets(port)
    attach(h, port, ctrlr_loss_timeout_sec=60, reconnect_delay_sec=1, fast_io_fail_timeout_sec=1)
    data = bytes(range(256)) * 16
    assert h.run(_rw("Nvme0n1", 0, data)) == data
    t.stop(signal.SIGKILL)
    wait_until(lambda: ctrlr_state(h) == "resetting", what="the controller to notice the loss")
    # held, then failed at fast_io_fail_timeout_sec; the controller is still there, reconnecting
    with pytest.raises(BdevError, match=r"Nvme0n1: I/O failed \(FAILED\)"):
        h.run(_rw("Nvme0n1", 4096, data), timeout=30)
    assert ctrlr_state(h) == "resetting"
    # once fast-failed, new I/O fails at once instead of waiting for the reconnect
    with pytest.raises(BdevError, match="I/O failed"):
        h.run(_rw("Nvme0n1", 4096, data), timeout=5)
    targets(port)
    wait_until(lambda: ctrlr_state(h) == "enabled", 60, "the reconnect")
    assert h.run(_rw("Nvme0n1", 0, bytes(4096))) == bytes(4096)
    assert h.client.call("bdev_get_bdevs", {"name": "Nvme0n1"})[0]["num_blocks"] == BLOCKS


def test_failover_and_back_under_verify(initiator: AppHarness,
                                        targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    p1, p2 = free_port(), free_port()
    t = targets(p1, p2)
    attach(h, p1, ctrlr_loss_timeout_sec=20, reconnect_delay_sec=1)
    attach(h, p2, multipath="failover")

    def listener(port: int, add: bool) -> None:
        addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
        t.client.call("nvmf_subsystem_add_listener" if add else "nvmf_subsystem_remove_listener",
                      {"nqn": NQN, "listen_address": addr})

    def active_port() -> str:
        c = h.client.call("bdev_nvme_get_controllers")[0]["ctrlrs"][0]
        return str(c["trid"]["trsvcid"]) if c["state"] == "enabled" else ""

    job = VerifyJob(h, "Nvme0n1")
    job.progress(100, "verify I/O on the first path")
    listener(p1, False)
    wait_until(lambda: active_port() == str(p2), what="failover to the second listener")
    job.progress(100, "verify I/O on the second path")
    listener(p1, True)
    listener(p2, False)
    wait_until(lambda: active_port() == str(p1), what="failback to the first listener")
    job.progress(100, "verify I/O back on the first path")
    res = job.stop()
    assert res["io_failed"] == 0 and res["miscompares"] == 0, res


def test_active_active_path_lost_and_back_under_verify(initiator: AppHarness,
                                                       targets: Callable[..., TargetProcess]) -> None:
    """multipath: two controllers to one subsystem; one path's listener goes away mid-run: its
    I/O moves to the other path without a failure, and the path is used again once it is back."""
    h = initiator
    p1, p2 = free_port(), free_port()
    t = targets(p1, p2)
    for p in (p1, p2):
        attach(h, p, multipath="multipath", ctrlr_loss_timeout_sec=30, reconnect_delay_sec=1)
    assert h.client.call("bdev_nvme_set_multipath_policy",
                         {"name": "Nvme0n1", "policy": "active_active", "selector": "round_robin"})

    def submitted() -> dict[str, int]:
        from spydk.modules.bdev.nvme import bdev_nvme as bn
        b = bn.module.ctrlrs["Nvme0"].bdevs[1]
        return {c.trid.trsvcid: c.ctrlr.io_qpairs[0].submitted for c in b.paths}

    def connected() -> dict[str, bool]:
        ps = h.client.call("bdev_nvme_get_io_paths")["poll_groups"][0]["io_paths"]
        return {p["transport"]["trsvcid"]: p["connected"] for p in ps}

    def listener(port: int, add: bool) -> None:
        addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
        t.client.call("nvmf_subsystem_add_listener" if add else "nvmf_subsystem_remove_listener",
                      {"nqn": NQN, "listen_address": addr})

    job = VerifyJob(h, "Nvme0n1")
    job.progress(100, "verify I/O on both paths")
    listener(p1, False)
    wait_until(lambda: connected() == {str(p1): False, str(p2): True}, what="the first path to drop")
    on_p2 = h.call_on_app_thread(submitted)[str(p2)]
    job.progress(200, "verify I/O on the second path alone")
    assert h.call_on_app_thread(submitted)[str(p2)] >= on_p2 + 200
    listener(p1, True)
    wait_until(lambda: all(connected().values()), 30, "the first path to reconnect")
    on_p1 = h.call_on_app_thread(submitted)[str(p1)]
    job.progress(100, "verify I/O on both paths again")
    assert h.call_on_app_thread(submitted)[str(p1)] > on_p1
    res = job.stop()
    assert res["io_failed"] == 0 and res["miscompares"] == 0, res
