"""spydk top: the tables it computes from two samples, its keys, and a real terminal run
under tmux against a running target (tabs, sort keys, changing figures, the target going
away)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from spydk.apps.top import TABS, Snapshot, View, build, sort_rows
from spydk.testing import start_target


def _snap(t: float, busy: int, idle: int, runs: int, reads: int) -> Snapshot:
    return Snapshot(
        t=t,
        reactors=[{"lcore": 0, "busy": busy, "idle": idle, "in_interrupt": True,
                   "lw_threads": [{"name": "app_thread", "id": 1, "cpumask": "1", "elapsed": busy + idle},
                                  {"name": "worker", "id": 2, "cpumask": "1", "elapsed": 5}]}],
        threads=[{"name": "app_thread", "id": 1, "cpumask": "1", "busy": busy, "idle": idle,
                  "active_pollers_count": 1, "timed_pollers_count": 2, "paused_pollers_count": 0},
                 {"name": "worker", "id": 2, "cpumask": "1", "busy": 7, "idle": 3,
                  "active_pollers_count": 0, "timed_pollers_count": 0, "paused_pollers_count": 1}],
        pollers=[{"name": "app_thread", "id": 1,
                  "active_pollers": [{"name": "nvmf_poll", "id": 4, "state": "waiting", "run_count": runs,
                                      "busy_count": runs // 2}],
                  "timed_pollers": [{"name": "keep_alive", "id": 5, "state": "waiting", "run_count": 3,
                                     "busy_count": 0, "period_ticks": 100_000_000}],
                  "paused_pollers": []}],
        bdevs=[{"name": "Malloc0", "num_read_ops": reads, "bytes_read": reads * 4096, "read_latency_ticks":
                reads * 20_000, "num_write_ops": 0, "bytes_written": 0, "write_latency_ticks": 0,
                "io_error": {}}],
    )


def test_tables_from_two_samples() -> None:
    a = _snap(10.0, busy=1_000_000, idle=9_000_000, runs=100, reads=1000)
    b = _snap(12.0, busy=2_000_000, idle=10_000_000, runs=300, reads=5000)
    th = build("threads", a, b)
    assert th.columns[:3] == ["Thread name", "ID", "Core"]
    row = th.rows[0]
    assert row[0] == "app_thread" and row[2] == 0 and row[-1] == pytest.approx(50.0)
    po = build("pollers", a, b)
    nvmf = next(r for r in po.rows if r[0] == "nvmf_poll")
    assert nvmf[1] == "active" and nvmf[4] == pytest.approx(100.0)   # 200 runs in 2 s
    ka = next(r for r in po.rows if r[0] == "keep_alive")
    assert ka[6] == 100_000                                            # period in us
    co = build("cores", a, b)
    assert co.rows == [[0, 2, 4, 10_000, 2_000, pytest.approx(50.0), "interrupt"]]
    bd = build("bdevs", a, b)
    assert bd.rows[0][0] == "Malloc0" and bd.rows[0][1] == pytest.approx(2000.0)
    assert bd.rows[0][5] == pytest.approx(20.0)                        # us per read
    first = build("threads", None, b)
    assert first.rows[0][-1] == 0.0                                    # no rate without a previous sample
    by_busy = sort_rows(th, th.columns.index("Busy [us]"), True)
    assert [r[0] for r in by_busy] == ["app_thread", "worker"]
    by_name = sort_rows(th, 0, True)
    assert [r[0] for r in by_name] == ["worker", "app_thread"]


def test_keys() -> None:
    v = View()
    assert v.key("2", 8) and v.tab == "pollers"
    assert v.key("\t", 8) and v.tab == "cores"
    assert v.key("s", 7) and v.sort_col["cores"] == 1
    assert v.key("S", 7) and v.key("S", 7) and v.sort_col["cores"] == 6
    assert v.key("i", 7) and v.reverse["cores"] is True
    assert v.key("r", 7) and v.interval == 2.0
    assert not v.key("q", 7)
    for i, t in enumerate(TABS, 1):
        v.key(str(i), 5)
        assert v.tab == t


class Tmux:
    """A private tmux server (its own -L socket) with one window."""

    def __init__(self, cmd: str, env: dict[str, str]):
        tmux = shutil.which("tmux")
        assert tmux, "tmux is not installed; run scripts/setup.sh (scripts/debian-packages.txt lists it)"
        self.base = [tmux, "-L", f"spydk-top-{uuid.uuid4().hex[:8]}"]
        subprocess.run(self.base + ["new-session", "-d", "-x", "180", "-y", "40", cmd], check=True,
                       env=env, timeout=30)

    def screen(self) -> str:
        return subprocess.run(self.base + ["capture-pane", "-p"], capture_output=True, text=True,
                              check=True, timeout=30).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(self.base + ["send-keys", *keys], check=True, timeout=30)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> str:  # generous: CI machines are loaded
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if re.search(pattern, s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} did not appear on the screen:\n{s}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(self.base + ["kill-server"], capture_output=True, timeout=30)


def _idle_of(screen: str, thread: str) -> str:
    for line in screen.splitlines():
        if thread in line:
            cells = [c.strip() for c in line.split("│") if c.strip()]
            return cells[6]
    raise AssertionError(f"no row for {thread}:\n{screen}")


def test_top_in_a_terminal(tmp_path: Path) -> None:
    t = start_target(tmp_path, None, extra_args=["--default-config"])
    done = tmp_path / "top.done"
    cmd = (f"{sys.executable} -m spydk.apps.main top -r {t.sock} -d 0.5 2> {tmp_path}/top.err; "
           f"echo exit=$? > {done}; sleep 60")
    env = {**os.environ, "TERM": "xterm-256color"}
    tm = Tmux(cmd, env)
    try:
        s1 = tm.wait_for(r"app_thread")
        assert "[1] Threads" in s1 and "Busy %" in s1
        first = _idle_of(s1, "app_thread")
        deadline = time.monotonic() + 120
        while _idle_of(tm.screen(), "app_thread") == first:   # the figures change as time passes
            assert time.monotonic() < deadline, "the Idle figure never changed"
            time.sleep(0.1)
        tm.keys("2")
        s = tm.wait_for(r"Poller name")
        assert "nvmf_keep_alive" in s or "timed" in s
        tm.keys("3")
        s = tm.wait_for(r"Core \^")
        assert "interrupt" in s
        tm.keys("4")
        s = tm.wait_for(r"Bdev name")
        assert "Malloc0" in s
        tm.keys("1")
        tm.wait_for(r"Thread name \^")
        tm.keys("s")
        tm.wait_for(r"sort: ID asc")
        tm.keys("s")
        tm.wait_for(r"sort: Core asc")
        tm.keys("i")
        tm.wait_for(r"sort: Core desc")
        tm.keys("r")
        tm.wait_for(r"refresh 1s")
        t.stop()                                               # the target goes away
        deadline = time.monotonic() + 120
        while not done.exists():
            assert time.monotonic() < deadline, f"spydk top did not exit:\n{tm.screen()}"
            time.sleep(0.1)
        err = (tmp_path / "top.err").read_text()
        assert done.read_text().strip() == "exit=1"
        assert "spydk top: lost the target at" in err and "Is it still running?" in err
        assert "Traceback" not in err
    finally:
        tm.kill()
        t.stop()


def test_top_without_target(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "spydk.apps.main", "top", "-r", str(tmp_path / "none.sock"),
                          "--once"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "no SPDK application is listening at" in res.stderr and "Traceback" not in res.stderr


def test_stats_have_exactly_the_members_spdk_top_decodes() -> None:
    """SPDK v24.01's spdk_top decodes these replies strictly: one member more and it quits."""
    from spydk.testing import AppHarness
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        c = h.client
        r = c.call("framework_get_reactors")
        assert set(r["reactors"][0]) == {"lcore", "busy", "idle", "in_interrupt", "lw_threads"}
        assert set(r["reactors"][0]["lw_threads"][0]) == {"name", "id", "cpumask", "elapsed"}
        t = c.call("thread_get_stats")["threads"][0]
        assert set(t) == {"name", "id", "cpumask", "busy", "idle", "active_pollers_count",
                          "timed_pollers_count", "paused_pollers_count"}
        for th in c.call("thread_get_pollers")["threads"]:
            for kind in ("active_pollers", "timed_pollers", "paused_pollers"):
                for p in th[kind]:
                    assert set(p) <= {"name", "id", "state", "run_count", "busy_count", "period_ticks"}
        s = c.call("framework_get_scheduler")
        assert s["scheduler_name"] == "static" and isinstance(s["scheduler_period"], int)
    finally:
        h.stop()
