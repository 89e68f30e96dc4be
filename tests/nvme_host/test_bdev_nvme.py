"""bdev_nvme in an app (AppHarness) against spydk target subprocesses: attach, I/O through
the bdev layer, get_controllers/get_io_paths, reset, detach; reconnect after the target is
killed and restarted; controller loss after ctrlr_loss_timeout_sec; failover between two
listeners and back; active-active multipath; discovery."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.bdev import BdevError
from spydk.bdev.awaitable import AsyncDesc
from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness, TargetProcess, start_target

from .test_tools import DISC, NQN, free_port, target_config


@pytest.fixture
def initiator() -> Iterator[AppHarness]:
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Callable[..., TargetProcess]]:
    started: list[TargetProcess] = []

    def start(port: int, *extra: int, name: str = "tgt", ana: bool = False) -> TargetProcess:
        t = start_target(tmp_path / f"{name}{len(started)}",
                         target_config(port, extra_ports=extra, ana_reporting=ana), app="nvmf_tgt")
        started.append(t)
        return t
    yield start
    for t in started:
        if t.proc.poll() is None:
            t.stop()


def attach(h: AppHarness, port: int, name: str = "Nvme0", **kw: Any) -> list[str]:
    params = {"name": name, "trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1",
              "trsvcid": str(port), "subnqn": NQN, **kw}
    result: list[str] = h.client.call("bdev_nvme_attach_controller", params)
    return result


async def _rw(name: str, offset: int, data: bytes) -> bytes:
    d = await AsyncDesc.open(name, write=True)
    try:
        await d.write(offset, data)
        return await d.read(offset, len(data))
    finally:
        await d.close()


def wait_until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ctrlr_state(h: AppHarness, name: str = "Nvme0") -> str | None:
    try:
        c = h.client.call("bdev_nvme_get_controllers", {"name": name})
    except RpcError:
        return None
    return str(c[0]["ctrlrs"][0]["state"])


def test_attach_io_paths_reset_detach(initiator: AppHarness,
                                      targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    targets(port)
    assert attach(h, port, hdgst=True, ddgst=True) == ["Nvme0n1"]
    b = h.client.call("bdev_get_bdevs", {"name": "Nvme0n1"})[0]
    assert b["product_name"] == "NVMe disk" and b["num_blocks"] == 32768 and b["block_size"] == 512
    assert b["uuid"] == "6a1b0e3c-7c55-4a64-9d59-5d3c1c0de001"
    nv = b["driver_specific"]["nvme"][0]
    assert nv["trid"]["trsvcid"] == str(port) and nv["ctrlr_data"]["serial_number"] == "SPDYK42"
    data = os.urandom(128 * 1024 + 4096)
    assert h.run(_rw("Nvme0n1", 8192, data)) == data
    c = h.client.call("bdev_nvme_get_controllers")
    assert c[0]["name"] == "Nvme0" and c[0]["ctrlrs"][0]["state"] == "enabled"
    assert c[0]["ctrlrs"][0]["trid"] == {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
                                         "trsvcid": str(port), "subnqn": NQN}
    paths = h.client.call("bdev_nvme_get_io_paths")["poll_groups"][0]["io_paths"]
    assert [(p["bdev_name"], p["current"], p["connected"], p["accessible"]) for p in paths] == [
        ("Nvme0n1", True, True, True)]
    assert h.client.call("bdev_nvme_reset_controller", {"name": "Nvme0"}) is True
    assert h.run(_rw("Nvme0n1", 0, data[:4096])) == data[:4096]
    with pytest.raises(RpcError, match="already has path"):
        attach(h, port)
    cfg = h.client.call("framework_get_config", {"name": "bdev"})
    entry = next(e for e in cfg if e["method"] == "bdev_nvme_attach_controller")
    assert entry["params"]["trsvcid"] == str(port) and entry["params"]["hdgst"] is True
    assert h.client.call("bdev_nvme_detach_controller", {"name": "Nvme0"}) is True
    assert h.client.call("bdev_get_bdevs") == [] and h.client.call("bdev_nvme_get_controllers") == []


def test_bad_attach_parameters(initiator: AppHarness) -> None:
    h = initiator
    port = free_port()
    with pytest.raises(RpcError, match="cannot attach controller 'Nvme0'"):
        attach(h, port)
    with pytest.raises(RpcError, match="reconnect_delay_sec must be nonzero"):
        attach(h, port, ctrlr_loss_timeout_sec=5)
    with pytest.raises(RpcError, match="not supported"):
        attach(h, port, trtype="rdma")
    assert h.client.call("bdev_nvme_get_controllers") == []


def test_target_killed_and_restarted_reconnects(initiator: AppHarness,
                                                targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    t = targets(port)
    attach(h, port, ctrlr_loss_timeout_sec=30, reconnect_delay_sec=1, fast_io_fail_timeout_sec=20)
    data = os.urandom(4096)
    assert h.run(_rw("Nvme0n1", 0, data)) == data
    t.stop()
    wait_until(lambda: ctrlr_state(h) == "resetting", what="the controller to notice the loss")
    # I/O submitted while the target is down is held, then completes once it is back.
    fut = asyncio.run_coroutine_threadsafe(_rw("Nvme0n1", 4096, data), h.loop)
    time.sleep(0.5)
    assert not fut.done()
    targets(port)
    assert fut.result(30) == data
    wait_until(lambda: ctrlr_state(h) == "enabled", what="reconnection")


def test_controller_lost_after_ctrlr_loss_timeout(initiator: AppHarness,
                                                  targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    t = targets(port)
    attach(h, port, ctrlr_loss_timeout_sec=2, reconnect_delay_sec=1)
    t.stop()
    fut = asyncio.run_coroutine_threadsafe(_rw("Nvme0n1", 0, bytes(512)), h.loop)
    with pytest.raises(BdevError, match=r"Nvme0n1: I/O failed \(FAILED\)"):
        fut.result(30)
    wait_until(lambda: ctrlr_state(h) is None, what="the controller to be deleted")
    assert h.client.call("bdev_get_bdevs") == []


def test_failover_between_two_listeners_and_back(initiator: AppHarness,
                                                 targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    p1, p2 = free_port(), free_port()
    t = targets(p1, p2)
    attach(h, p1, ctrlr_loss_timeout_sec=20, reconnect_delay_sec=1)
    assert attach(h, p2, multipath="failover") == ["Nvme0n1"]
    c = h.client.call("bdev_nvme_get_controllers")[0]["ctrlrs"][0]
    assert c["trid"]["trsvcid"] == str(p1) and c["alternate_trids"][0]["trsvcid"] == str(p2)

    def listener(port: int, add: bool) -> None:
        addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
        t.client.call("nvmf_subsystem_add_listener" if add else "nvmf_subsystem_remove_listener",
                      {"nqn": NQN, "listen_address": addr})

    def active_port() -> str:
        c = h.client.call("bdev_nvme_get_controllers")[0]["ctrlrs"][0]
        return str(c["trid"]["trsvcid"]) if c["state"] == "enabled" else ""

    listener(p1, False)
    wait_until(lambda: active_port() == str(p2), what="failover to the second listener")
    data = os.urandom(8192)
    assert h.run(_rw("Nvme0n1", 0, data)) == data
    listener(p1, True)
    listener(p2, False)
    wait_until(lambda: active_port() == str(p1), what="failback to the first listener")
    assert h.run(_rw("Nvme0n1", 0, data)) == data


def test_active_active_multipath_uses_both_paths(initiator: AppHarness,
                                                 targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    p1, p2 = free_port(), free_port()
    targets(p1, p2)
    attach(h, p1, multipath="multipath")
    assert attach(h, p2, multipath="multipath") == ["Nvme0n1"]
    paths = h.client.call("bdev_nvme_get_io_paths", {"name": "Nvme0n1"})["poll_groups"][0]["io_paths"]
    assert len(paths) == 2 and sum(p["current"] for p in paths) == 1
    assert h.client.call("bdev_nvme_set_multipath_policy",
                         {"name": "Nvme0n1", "policy": "active_active", "selector": "round_robin"})
    for i in range(8):
        h.run(_rw("Nvme0n1", 512 * i, bytes([i]) * 512))

    def submitted() -> list[int]:
        from spydk.modules.bdev.nvme import bdev_nvme as bn
        b = bn.module.ctrlrs["Nvme0"].bdevs[1]
        return [c.ctrlr.io_qpairs[0].submitted for c in b.paths]
    counts = h.call_on_app_thread(submitted)
    assert len(counts) == 2 and min(counts) >= 6, counts
    with pytest.raises(RpcError, match="selector and rr_min_io"):
        h.client.call("bdev_nvme_set_multipath_policy",
                      {"name": "Nvme0n1", "policy": "active_passive", "selector": "queue_depth"})


def test_discovery_attaches_subsystems(initiator: AppHarness,
                                       targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    port = free_port()
    targets(port)
    assert h.client.call("bdev_nvme_start_discovery", {"name": "nvme", "trtype": "tcp",
                                                       "traddr": "127.0.0.1", "trsvcid": str(port)})
    assert [b["name"] for b in h.client.call("bdev_get_bdevs")] == ["nvme0n1"]
    info = h.client.call("bdev_nvme_get_discovery_info")
    assert info[0]["name"] == "nvme" and info[0]["trid"]["subnqn"] == DISC
    assert h.client.call("bdev_nvme_stop_discovery", {"name": "nvme"}) is True
    assert h.client.call("bdev_get_bdevs") == []


def test_ana_states_are_honoured(initiator: AppHarness, targets: Callable[..., TargetProcess]) -> None:
    h = initiator
    p1, p2 = free_port(), free_port()
    t = targets(p1, p2, ana=True)
    attach(h, p1, multipath="multipath")
    attach(h, p2, multipath="multipath")

    def set_ana(port: int, state: str) -> None:
        addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
        t.client.call("nvmf_subsystem_listener_set_ana_state",
                      {"nqn": NQN, "listen_address": addr, "ana_state": state})

    def paths() -> dict[str, tuple[str, bool, bool]]:
        ps = h.client.call("bdev_nvme_get_io_paths")["poll_groups"][0]["io_paths"]
        return {p["transport"]["trsvcid"]: (p["ana_state"], p["accessible"], p["current"]) for p in ps}

    assert paths()[str(p1)] == ("optimized", True, True)
    set_ana(p1, "inaccessible")
    wait_until(lambda: paths()[str(p1)][0] == "inaccessible", what="the ANA change notice")
    assert paths() == {str(p1): ("inaccessible", False, False), str(p2): ("optimized", True, True)}
    data = os.urandom(4096)
    assert h.run(_rw("Nvme0n1", 0, data)) == data
    set_ana(p2, "inaccessible")
    wait_until(lambda: paths()[str(p2)][0] == "inaccessible", what="the second ANA change")
    with pytest.raises(BdevError, match="I/O failed"):
        h.run(_rw("Nvme0n1", 0, data))
    set_ana(p1, "non_optimized")
    wait_until(lambda: paths()[str(p1)][1], what="the first path to come back")
    assert h.run(_rw("Nvme0n1", 0, data)) == data
