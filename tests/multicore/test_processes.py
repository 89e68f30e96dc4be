"""Reactors as processes: -m 0x3 starts a pinned worker; shutdown, worker death and main death
leave no process behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from spydk.testing import start_target

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="needs two usable cores")  # CI runners have at least two


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return True  # a zombie of a dead parent: nothing runs
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def _cores(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def test_two_reactors_pinned_reported_and_stopped_in_order(tmp_path):
    t = start_target(tmp_path, extra_args=["-m", "0x3"])
    try:
        (worker,) = _children(t.pid)
        assert _cores(t.pid) == {0} and _cores(worker) == {1}
        r = t.client.call("framework_get_reactors")
        assert [x["lcore"] for x in r["reactors"]] == [0, 1]
        assert [th["name"] for x in r["reactors"] for th in x["lw_threads"]] == ["app_thread", "reactor_1"]
        names = [th["name"] for th in t.client.call("thread_get_stats")["threads"]]
        assert names == ["app_thread", "reactor_1"]
        ids = [th["id"] for th in t.client.call("thread_get_pollers")["threads"]]
        assert len(set(ids)) == 2
        assert len(t.client.call("thread_get_io_channels")["threads"]) == 2
        wid = next(th["id"] for th in t.client.call("thread_get_stats")["threads"] if th["name"] == "reactor_1")
        assert t.client.call("thread_set_cpumask", {"id": wid, "cpumask": "0x3"}) is True
        moved = t.rpc("thread_set_cpumask", "-i", str(wid), "-m", "0x1", check=False)
        assert moved.returncode != 0 and "lives on core 1" in moved.stderr + moved.stdout
        bad = t.rpc("framework_set_scheduler", "dynamic", check=False)
        assert bad.returncode != 0 and "static" in bad.stderr + bad.stdout
        assert t.client.call("spdk_kill_instance", {"sig_name": "SIGTERM"}) is True
        assert t.wait(30) == 0
        assert _gone(worker)
    finally:
        t.stop()


def test_single_core_is_pinned_too(tmp_path):
    with start_target(tmp_path, extra_args=["-m", "0x2"]) as t:
        assert _cores(t.pid) == {1}
        assert _children(t.pid) == []


def test_a_core_out_of_reach_is_refused():
    res = subprocess.run([sys.executable, "-m", "spydk.apps.main", "tgt", "-m", "[0,1023]", "-r", "/tmp/x"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "core 1023 of the cpumask is not available" in res.stderr


def test_worker_killed_takes_the_app_down_cleanly(tmp_path):
    t = start_target(tmp_path, extra_args=["-m", "0x3"])
    try:
        (worker,) = _children(t.pid)
        os.kill(worker, signal.SIGKILL)
        assert t.wait(30) == 1
        assert "worker reactor on core 1" in t.log_text() and "exited" in t.log_text()
    finally:
        t.stop()


def test_main_killed_takes_the_workers_with_it(tmp_path):
    t = start_target(tmp_path, extra_args=["-m", "0x3"])
    try:
        (worker,) = _children(t.pid)
        os.kill(t.pid, signal.SIGKILL)
        t.wait(30)
        assert _gone(worker)
    finally:
        t.stop()


def test_rpc_during_shutdown_is_refused_not_hung(tmp_path):
    t = start_target(tmp_path, extra_args=["-m", "0x3"])
    try:
        (worker,) = _children(t.pid)
        c = t.client
        c.call("spdk_kill_instance", {"sig_name": "SIGTERM"})
        try:
            c.call("framework_get_reactors")
        except Exception as e:   # refused (wrong state) or the connection closed: either is clean
            assert "shut" in str(e).lower() or "closed" in str(e).lower() or "connection" in str(e).lower()
        assert t.wait(30) == 0
        assert _gone(worker)
    finally:
        t.stop()
