"""`spydk tgt` as a process: signals, exit codes, config round-trip, SPDK's own client."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spydk.testing import short_socket_path, start_target

SPDK_RPC = os.path.join(os.path.dirname(sys.executable), "spdk-rpc")

KV_CONFIG = {"subsystems": [
    {"subsystem": "test_opts", "config": [{"method": "test_opts_set", "params": {"depth": 4}}]},
    {"subsystem": "test_kv", "config": [
        {"method": "test_kv_set", "params": {"key": "one", "value": 1}},
        {"method": "test_kv_set", "params": {"key": "two", "value": -2}},
    ]},
]}


def spdk_rpc(sock: str, *args: str, input: str | None = None) -> str:
    res = subprocess.run([SPDK_RPC, "-s", sock, *args], input=input, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"spdk-rpc {' '.join(args)}: {res.stdout}\n{res.stderr}"
    return res.stdout


def test_sigterm_finalizes_in_reverse_and_exits_0(tmp_path: Path, plugin_env: dict[str, Any]) -> None:
    t = start_target(tmp_path, KV_CONFIG, env=plugin_env)
    assert t.stop(signal.SIGTERM) == 0
    marks = Path(plugin_env["SPYDK_TEST_MARKER"]).read_text().splitlines()
    assert marks == ["init test_opts", "init test_kv", "set one depth=4", "set two depth=4",
                     "fini test_kv", "fini test_opts"]
    assert not os.path.exists(t.sock)


def test_kill_instance_sigint_exits_0(tmp_path: Path, plugin_env: dict[str, Any]) -> None:
    t = start_target(tmp_path, None, env=plugin_env)
    assert t.client.spdk_kill_instance(sig_name="SIGINT") is True
    assert t.wait(30) == 0
    assert "fini test_opts" in Path(plugin_env["SPYDK_TEST_MARKER"]).read_text()
    t.stop()


def test_golden_save_config_round_trip(tmp_path: Path, plugin_env: dict[str, Any]) -> None:
    a = start_target(tmp_path / "a", KV_CONFIG, env=plugin_env)
    try:
        a.client.test_kv_set(key="three", value=3)
        saved = a.rpc("save_config").stdout
    finally:
        assert a.stop() == 0
    doc = json.loads(saved)
    names = [s["subsystem"] for s in doc["subsystems"]]
    assert names.index("test_opts") < names.index("test_kv")  # init order
    kv = doc["subsystems"][names.index("test_kv")]["config"]
    assert [e["params"]["key"] for e in kv] == ["one", "two", "three"]
    assert list(kv[0]) == ["method", "params"]
    b = start_target(tmp_path / "b", doc, env=plugin_env)
    try:
        assert b.rpc("save_config").stdout == saved
        # SPDK's own client sees the same config, byte for byte.
        assert spdk_rpc(b.sock, "save_config") == saved
    finally:
        assert b.stop() == 0


def test_spdk_rpc_client_talks_to_spydk(tmp_path: Path, plugin_env: dict[str, Any]) -> None:
    t = start_target(tmp_path, None, env=plugin_env, extra_args=["--wait-for-rpc"], wait_init=False)
    try:
        version = json.loads(spdk_rpc(t.sock, "spdk_get_version"))
        assert version["version"].startswith("spydk") and version["fields"]["major"] >= 24
        methods = json.loads(spdk_rpc(t.sock, "rpc_get_methods"))
        assert {"spdk_get_version", "framework_start_init", "test_kv_set"} <= set(methods)
        # load_config at STARTUP: startup methods, framework_start_init, then the rest.
        spdk_rpc(t.sock, "load_config", input=json.dumps(KV_CONFIG))
        subs = json.loads(spdk_rpc(t.sock, "framework_get_subsystems"))
        assert {"subsystem": "test_kv", "depends_on": ["test_opts"]} in subs
        saved = json.loads(spdk_rpc(t.sock, "save_config"))
        assert [s for s in saved["subsystems"] if s["subsystem"].startswith("test_")] == KV_CONFIG["subsystems"]
        for cmd in (["thread_get_stats"], ["thread_get_pollers"], ["framework_get_reactors"],
                    ["log_get_flags"], ["notify_get_types"], ["notify_get_notifications", "-i", "0"],
                    ["log_set_print_level", "INFO"], ["log_enable_timestamps", "--timestamps"]):
            spdk_rpc(t.sock, *cmd)
        spdk_rpc(t.sock, "spdk_kill_instance", "SIGTERM")
        assert t.wait(30) == 0
    finally:
        t.stop()
    marks = Path(plugin_env["SPYDK_TEST_MARKER"]).read_text().splitlines()
    assert marks.index("set one depth=4") > marks.index("init test_kv")


def run_spydk(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spydk.apps.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_bad_config_exits_1_naming_the_problem(tmp_path: Path, plugin_env: dict[str, Any]) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"subsystems": [{"subsystem": "test_kv", "config": [
        {"method": "test_kv_set", "params": {"key": "a", "value": "one"}}]}]}))
    res = run_spydk("tgt", "-r", short_socket_path(), "--json", str(cfg), env=plugin_env)
    assert res.returncode == 1
    for w in (str(cfg), "test_kv", "test_kv_set", "'value'"):
        assert w in res.stderr


def test_second_target_on_same_socket_refused(tmp_path: Path) -> None:
    t = start_target(tmp_path, None)
    try:
        res = run_spydk("tgt", "-r", t.sock)
        assert res.returncode == 1 and "in use" in res.stderr and t.sock in res.stderr
        assert t.client.spdk_get_version()
    finally:
        assert t.stop() == 0


def test_cli_without_server_prints_one_line() -> None:
    res = run_spydk("rpc", "-s", "/tmp/nothing-here.sock", "spdk_get_version")
    assert res.returncode == 1
    assert res.stderr == ("spydk rpc: no SPDK application is listening at /tmp/nothing-here.sock; "
                          "start one with `spydk tgt` or pass -s PATH\n")


def test_cli_error_and_script_mode(tmp_path: Path) -> None:
    t = start_target(tmp_path, None)
    try:
        res = t.rpc("log_set_flag", "nonexistent", check=False)
        assert res.returncode == 1 and "nonexistent" in res.stderr
        res = t.rpc(input="# comment\nlog_set_level DEBUG\nlog_get_level\n")
        assert res.stdout.strip() == '"DEBUG"'
        assert json.loads(t.rpc("rpc_get_methods", "-c").stdout)
        assert t.rpc("--dry-run", "log_get_flags").stdout.startswith("Request:")
    finally:
        t.stop()


@pytest.mark.parametrize("flags", [["--no-huge", "-s", "1024", "-i", "0", "-e", "0xffff", "-m", "0x3", "-L", "rpc"]])
def test_spdk_flags_accepted(tmp_path: Path, flags: list[str]) -> None:
    t = start_target(tmp_path, None, extra_args=flags)
    try:
        assert t.client.log_get_flags()["rpc"] is True
        assert t.client.framework_get_reactors()["reactors"][0]["lcore"] == 0
    finally:
        assert t.stop(signal.SIGINT) == 0
    assert "rpc request" in t.log_text()  # -L rpc traces requests at debug level
