"""Every `spydk rpc` sub-command end to end against a live `spydk tgt`: typical arguments,
output parsed, and a completeness check so a new command cannot go untested.

The commands run through ``spydk.rpc.cli.main`` in this process (the same code path as the
console script, client included: no --dry-run), against targets in subprocesses; a few run
as real subprocesses where the process boundary is the point (a closed pipe).
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.rpc.cli import GLOBAL_DESTS, Call, build_parser
from spydk.rpc.cli import main as rpc_main
from spydk.testing import TargetProcess, start_target

NQN = "nqn.2016-06.io.spdk:cnode7"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-0908-0706-050403020100"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(Call())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


class Cli:
    """Runs `spydk rpc -s SOCK ...` in process and records which methods ran."""

    def __init__(self, sock: str, capsys: pytest.CaptureFixture[str], used: set[str]):
        self.sock, self.capsys, self.used = sock, capsys, used

    def out(self, *argv: str, stdin: str | None = None) -> str:
        self.capsys.readouterr()
        if stdin is not None:
            import io
            old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            rc = rpc_main(["-s", self.sock, *argv])
        finally:
            if stdin is not None:
                sys.stdin = old
        got = self.capsys.readouterr()
        assert rc == 0, f"spydk rpc {' '.join(argv)} exited {rc}\nstdout: {got.out}\nstderr: {got.err}"
        assert "Traceback" not in got.err, got.err
        self.used.add(argv[0])
        return got.out

    def json(self, *argv: str) -> Any:
        text = self.out(*argv)
        return json.loads(text)

    def fails(self, *argv: str) -> str:
        self.capsys.readouterr()
        rc = rpc_main(["-s", self.sock, *argv])
        got = self.capsys.readouterr()
        assert rc != 0, f"spydk rpc {' '.join(argv)} should have failed: {got.out}"
        assert "Traceback" not in got.err, got.err
        return got.err


@pytest.fixture(scope="module")
def used() -> Iterator[set[str]]:
    seen: set[str] = set()
    yield seen


@pytest.fixture
def tgt(tmp_path: Path) -> Iterator[TargetProcess]:
    t = start_target(tmp_path)
    try:
        yield t
    finally:
        t.stop()


def test_global_options_cannot_clash_with_a_method_option() -> None:
    """A method's option stored under a global option's name overwrote the client's socket
    timeout (`bdev_get_bdevs -t`): no method parser may use those names."""
    clashes = {name: a.dest for name, p in subcommands().items() for a in p._actions
               if a.dest in GLOBAL_DESTS - {"func", "called_rpc_name"}}
    assert not clashes, clashes


def test_bdev_get_bdevs_with_its_timeout_option(tgt: TargetProcess, capsys: pytest.CaptureFixture[str],
                                                used: set[str]) -> None:
    cli = Cli(tgt.sock, capsys, used)
    cli.out("bdev_malloc_create", "-b", "Malloc0", "8", "512")
    assert [b["name"] for b in cli.json("bdev_get_bdevs", "-b", "Malloc0", "-t", "1000")] == ["Malloc0"]
    assert [b["name"] for b in cli.json("bdev_get_bdevs", "-b", "Malloc0")] == ["Malloc0"]
    assert "Malloc0" in {b["name"] for b in cli.json("bdev_get_bdevs")}
    # The global -t still sets the client's timeout, also combined with the method's own -t.
    capsys.readouterr()
    assert rpc_main(["-s", tgt.sock, "-t", "5", "bdev_get_bdevs", "-b", "Malloc0", "-t", "0"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "Malloc0"
    # and as a subprocess, exactly as a user types it
    res = tgt.rpc("-t", "5", "bdev_get_bdevs")
    assert json.loads(res.stdout)[0]["name"] == "Malloc0" and res.stderr == ""
    assert "bdev_get_bdevs failed" in cli.fails("bdev_get_bdevs", "-b", "Nope", "-t", "10")


def test_size_errors_name_what_the_user_typed(tgt: TargetProcess) -> None:
    res = tgt.rpc("bdev_malloc_create", "-b", "M1", "-1", "512", check=False)
    assert res.returncode != 0 and "total_size" in res.stderr and "num_blocks" not in res.stderr
    res = tgt.rpc("bdev_malloc_create", "-b", "M1", "0.0001", "4096", check=False)
    assert res.returncode != 0 and "total_size 0.0001 MiB is less than one block of 4096 bytes" in res.stderr
    res = tgt.rpc("bdev_malloc_create", "-b", "M1", "1", "0", check=False)
    assert res.returncode != 0 and "block_size" in res.stderr and "Traceback" not in res.stderr
    res = tgt.rpc("bdev_null_create", "N1", "0", "512", check=False)
    assert res.returncode != 0 and "total_size" in res.stderr and "num_blocks" not in res.stderr


def test_closed_pipe_exits_quietly(tgt: TargetProcess) -> None:
    """`spydk rpc ... | head -1`: no BrokenPipeError traceback."""
    for i in range(20):
        tgt.rpc("bdev_null_create", f"Null{i}", "1", "512")
    cmd = [sys.executable, "-m", "spydk.apps.main", "rpc", "-s", tgt.sock, "bdev_get_bdevs"]
    res = subprocess.run(f"{' '.join(cmd)} | head -c 10", shell=True, capture_output=True, text=True,
                         timeout=60, executable="/bin/bash")
    assert res.returncode == 0 and len(res.stdout) == 10
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr


def test_target_logs_every_listener_and_what_the_default_config_exports(tmp_path: Path) -> None:
    nvme, iscsi = free_port(), free_port()
    from spydk.apps.app import default_config
    cfg = json.dumps(default_config()).replace('"4420"', f'"{nvme}"').replace('"3260"', f'"{iscsi}"')
    t = start_target(tmp_path, json.loads(cfg))
    try:
        log = t.log_text()
    finally:
        t.stop()
    assert f"NVMe/TCP target listening on TCP 127.0.0.1:{nvme}" in log
    assert f"iSCSI target listening on TCP 127.0.0.1:{iscsi} (portal group 1)" in log
    # --default-config itself (fixed ports): says what it exported and how to connect.
    from spydk.apps.app import describe_exports
    lines = describe_exports(default_config())
    assert lines == [
        "Malloc0 exported over NVMe/TCP as nqn.2016-06.io.spdk:cnode1 on 127.0.0.1:4420: "
        "nvme connect -t tcp -a 127.0.0.1 -s 4420 -n nqn.2016-06.io.spdk:cnode1",
        "Malloc0 as LUN 0 exported over iSCSI as iqn.2016-06.io.spdk:disk1 on 127.0.0.1:3260: "
        "iscsiadm -m discovery -t sendtargets -p 127.0.0.1:3260",
    ]


def test_every_command_against_a_live_target(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             used: set[str]) -> None:
    # Start-up-time methods first, on a target waiting in STARTUP state.
    pre = start_target(tmp_path / "pre", extra_args=["--wait-for-rpc"], wait_init=False)
    try:
        c = Cli(pre.sock, capsys, used)
        c.out("bdev_set_options", "-p", "8192", "-c", "128", "--no-auto-examine")
        c.out("nvmf_set_max_subsystems", "-x", "512")
        c.out("nvmf_set_crdt", "-t1", "3", "-t3", "9")
        c.out("nvmf_set_config", "--dup-host-policy", "allow", "--dhchap-digests", "sha384,sha512",
              "--dhchap-dhgroups", "null,ffdhe2048")
        c.out("iscsi_set_options", "-o", "30", "-a", "64")
        c.out("framework_start_init")
        c.out("framework_wait_init")
        assert c.json("iscsi_get_options")["nop_timeout"] == 30
        conf = tmp_path / "bdev.json"
        conf.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_null_create", "params": {"name": "Loaded0", "num_blocks": 64, "block_size": 512}}]}]}))
        c.out("load_config", "-j", str(conf))
        sub = tmp_path / "sub.json"
        sub.write_text(json.dumps({"subsystem": "bdev", "config": [
            {"method": "bdev_null_create", "params": {"name": "Loaded1", "num_blocks": 64, "block_size": 512}}]}))
        c.out("load_subsystem_config", "-j", str(sub))
        assert {"Loaded0", "Loaded1"} <= {b["name"] for b in c.json("bdev_get_bdevs")}
        c.out("bdev_examine", "-b", "Loaded0")  # only allowed with auto-examine off
    finally:
        pre.stop()

    t = start_target(tmp_path / "live")
    try:
        _exercise(Cli(t.sock, capsys, used), tmp_path)
        c = Cli(t.sock, capsys, used)
        c.out("spdk_kill_instance", "SIGTERM")
        assert t.proc.wait(30) == 0
    finally:
        t.stop()


def _exercise(c: Cli, tmp: Path) -> None:
    assert "version" in c.json("spdk_get_version")
    assert "spdk_get_version" in c.json("rpc_get_methods")
    assert "bdev_get_bdevs" in c.json("rpc_get_methods", "-c")
    assert c.out("framework_wait_init").strip() in ("true", "")
    assert c.json("framework_get_reactors")["reactors"]
    assert {"bdev", "nvmf", "iscsi"} <= {s["subsystem"] for s in c.json("framework_get_subsystems")}
    assert isinstance(c.json("framework_get_config", "bdev"), list)
    for m in ("thread_get_stats", "thread_get_pollers", "thread_get_io_channels"):
        assert "threads" in c.json(m)
    c.out("spydk_set_poll_mode", "false")
    c.out("log_set_flag", "bdev")
    assert c.json("log_get_flags")["bdev"] is True
    c.out("log_clear_flag", "bdev")
    c.out("log_set_level", "NOTICE")
    assert c.out("log_get_level").strip().strip('"') == "NOTICE"
    c.out("log_set_print_level", "NOTICE")
    assert c.out("log_get_print_level").strip().strip('"') == "NOTICE"
    c.out("log_enable_timestamps", "--no-timestamps")
    assert "bdev_register" in c.json("notify_get_types")

    # bdevs, one of each module, stacked where they stack
    aio, uring = tmp / "aio.img", tmp / "uring.img"
    for f in (aio, uring):
        f.write_bytes(b"\0" * (4 << 20))
    assert c.out("bdev_malloc_create", "-b", "M0", "8", "512").strip() == "M0"
    assert c.out("bdev_null_create", "N0", "8", "512").strip() == "N0"
    c.out("bdev_null_resize", "N0", "16")
    assert c.out("bdev_aio_create", str(aio), "A0", "512").strip() == "A0"
    c.out("bdev_aio_rescan", "A0")
    assert c.out("bdev_uring_create", str(uring), "U0", "512").strip() == "U0"
    c.out("bdev_uring_rescan", "U0")
    c.out("bdev_passthru_create", "-b", "M0", "-p", "P0")
    c.out("bdev_delay_create", "-b", "N0", "-d", "D0", "-r", "10", "-t", "20", "-w", "10", "-n", "20")
    c.out("bdev_delay_update_latency", "D0", "avg_read", "15")
    assert c.out("bdev_error_create", "A0").strip() == "EE_A0"
    c.out("bdev_error_inject_error", "EE_A0", "read", "failure", "-n", "1")
    c.out("bdev_error_resume_pending", "EE_A0")
    assert c.out("bdev_split_create", "U0", "2").split() == ["U0p0", "U0p1"]  # rpc.py prints an array
    c.out("bdev_wait_for_examine")
    names = {b["name"] for b in c.json("bdev_get_bdevs")}
    assert {"M0", "N0", "A0", "U0", "P0", "D0", "EE_A0", "U0p0", "U0p1"} <= names
    assert [b["name"] for b in c.json("bdev_get_bdevs", "-b", "P0", "-t", "100")] == ["P0"]
    assert c.json("bdev_get_iostat", "-b", "M0")["bdevs"][0]["name"] == "M0"
    c.out("bdev_reset_iostat", "-b", "M0", "-m", "all")
    c.out("bdev_enable_histogram", "M0", "--histogram")
    assert "histogram" in c.json("bdev_get_histogram", "M0")
    c.out("bdev_set_qos_limit", "M0", "--rw-ios-per-sec", "10000")
    assert c.json("notify_get_notifications", "-i", "0", "-n", "5")

    # NVMe-oF
    port = str(free_port())
    c.out("nvmf_create_transport", "-t", "TCP", "-q", "64")
    assert c.json("nvmf_get_transports")[0]["trtype"] == "TCP"
    c.out("nvmf_create_subsystem", NQN, "-s", "SPDK0007", "-r")
    assert c.out("nvmf_subsystem_add_ns", NQN, "P0").strip() == "1"
    c.out("nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port)
    assert c.json("nvmf_subsystem_get_listeners", NQN)[0]["address"]["trsvcid"] == port
    c.out("nvmf_subsystem_listener_set_ana_state", NQN, "-n", "non_optimized", "-t", "tcp",
          "-a", "127.0.0.1", "-s", port)
    c.out("nvmf_subsystem_set_ns_ana_group", NQN, "1", "2")
    assert c.json("nvmf_get_subsystems", NQN)[0]["namespaces"][0]["anagrpid"] == 2
    assert "anagrpid" in c.fails("nvmf_subsystem_set_ns_ana_group", NQN, "1", "0")
    c.out("nvmf_discovery_add_referral", "-t", "tcp", "-a", "127.0.0.2", "-s", "4420")
    assert c.json("nvmf_discovery_get_referrals")[0]["address"]["traddr"] == "127.0.0.2"
    c.out("nvmf_discovery_remove_referral", "-t", "tcp", "-a", "127.0.0.2", "-s", "4420")
    c.out("nvmf_subsystem_add_host", NQN, HOSTNQN)
    c.out("nvmf_subsystem_remove_host", NQN, HOSTNQN)
    c.out("nvmf_subsystem_allow_any_host", NQN, "-e")
    assert c.json("nvmf_subsystem_get_controllers", NQN) == []
    assert c.json("nvmf_subsystem_get_qpairs", NQN) == []
    assert "poll_groups" in c.json("nvmf_get_stats")
    sub = {s["nqn"]: s for s in c.json("nvmf_get_subsystems")}[NQN]
    assert sub["allow_any_host"] is True and sub["namespaces"][0]["bdev_name"] == "P0"
    c.out("nvmf_subsystem_remove_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port)
    c.out("nvmf_subsystem_remove_ns", NQN, "1")
    c.out("nvmf_delete_subsystem", NQN)

    # iSCSI
    iport = str(free_port())
    c.out("iscsi_set_discovery_auth", "-d")
    c.out("iscsi_create_auth_group", "1", "-c", "user:u1 secret:s1")
    c.out("iscsi_auth_group_add_secret", "1", "-u", "u2", "-s", "s2")
    c.out("iscsi_auth_group_remove_secret", "1", "-u", "u2")
    assert c.json("iscsi_get_auth_groups")[0]["tag"] == 1
    c.out("iscsi_create_portal_group", "1", f"127.0.0.1:{iport}", "-w")
    c.out("iscsi_start_portal_group", "1")
    c.out("iscsi_portal_group_set_auth", "1", "-d")
    assert c.json("iscsi_get_portal_groups")[0]["portals"][0]["port"] == iport
    c.out("iscsi_create_initiator_group", "1", "ANY", "127.0.0.1/32")
    c.out("iscsi_initiator_group_add_initiators", "1", "-n", "iqn.2016-06.io.spdk:host2")
    c.out("iscsi_initiator_group_remove_initiators", "1", "-n", "iqn.2016-06.io.spdk:host2")
    assert c.json("iscsi_get_initiator_groups")[0]["initiators"] == ["ANY"]
    c.out("iscsi_create_target_node", "disk7", "Disk 7", "P0:0", "1:1", "64", "-d")
    c.out("iscsi_target_node_add_lun", "disk7", "D0", "-i", "1")
    c.out("iscsi_target_node_set_auth", "iqn.2016-06.io.spdk:disk7", "-d")
    c.out("iscsi_target_node_remove_pg_ig_maps", "iqn.2016-06.io.spdk:disk7", "1:1")
    c.out("iscsi_target_node_add_pg_ig_maps", "iqn.2016-06.io.spdk:disk7", "1:1")
    c.out("iscsi_target_node_request_logout", "iqn.2016-06.io.spdk:disk7")
    c.out("iscsi_enable_histogram", "iqn.2016-06.io.spdk:disk7", "--histogram")
    assert "histogram" in c.json("iscsi_get_histogram", "iqn.2016-06.io.spdk:disk7")
    node = c.json("iscsi_get_target_nodes")[0]
    assert node["name"] == "iqn.2016-06.io.spdk:disk7" and len(node["luns"]) == 2
    assert c.json("iscsi_get_connections") == []
    assert isinstance(c.json("iscsi_get_stats"), dict)
    assert c.json("scsi_get_devices")[0]["device_name"] == "iqn.2016-06.io.spdk:disk7"

    # the configuration as a whole, then tear everything down again
    saved = c.json("save_config")
    assert {s["subsystem"] for s in saved["subsystems"]} >= {"bdev", "nvmf", "iscsi"}
    assert c.json("save_subsystem_config", "-n", "bdev")["subsystem"] == "bdev"
    c.out("iscsi_delete_target_node", "iqn.2016-06.io.spdk:disk7")
    c.out("iscsi_delete_initiator_group", "1")
    c.out("iscsi_delete_portal_group", "1")
    c.out("iscsi_delete_auth_group", "1")
    c.out("bdev_split_delete", "U0")
    c.out("bdev_error_delete", "EE_A0")
    c.out("bdev_delay_delete", "D0")
    c.out("bdev_passthru_delete", "P0")
    c.out("bdev_aio_delete", "A0")
    c.out("bdev_uring_delete", "U0")
    c.out("bdev_null_delete", "N0")
    c.out("bdev_malloc_delete", "M0")
    assert c.json("bdev_get_bdevs") == []


def test_interop_targets_use_the_spydk_beside_this_interpreter(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The interop harness runs the spydk of whatever environment runs the tests."""
    import importlib.util
    fake_python = tmp_path / "venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    spec = importlib.util.spec_from_file_location("interop_targets", Path(__file__).parents[1] / "interop" / "targets.py")
    assert spec is not None and spec.loader is not None
    targets = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, targets)  # dataclasses look their module up
    spec.loader.exec_module(targets)
    assert targets.installed_command("spydk") == tmp_path / "venv" / "bin" / "spydk"
    assert targets.SPYDK_CLI == tmp_path / "venv" / "bin" / "spydk"  # read at import, as the fixtures do


def test_keyring_commands(tgt: TargetProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          used: set[str]) -> None:
    c = Cli(tgt.sock, capsys, used)
    key = tmp_path / "psk0"
    key.write_text("NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:")
    key.chmod(0o600)
    c.out("keyring_file_add_key", "key0", str(key))
    assert c.json("keyring_get_keys")[0]["path"] == str(key)
    key.chmod(0o644)
    assert "chmod 0600" in c.fails("keyring_file_add_key", "key1", str(key))
    c.out("keyring_file_remove_key", "key0")
    assert c.json("keyring_get_keys") == []


def test_raid_and_nbd_commands(tgt: TargetProcess, capsys: pytest.CaptureFixture[str], used: set[str]) -> None:
    c = Cli(tgt.sock, capsys, used)
    for i in range(3):
        c.out("bdev_malloc_create", "-b", f"R{i}", "8", "512")
    c.out("bdev_raid_set_options", "-w", "512", "--process-max-bandwidth-mb-sec", "0")
    c.out("bdev_raid_create", "-n", "Raid1", "-r", "raid1", "-b", "R0 R1", "-s")
    c.out("bdev_raid_remove_base_bdev", "R1")
    c.out("bdev_raid_add_base_bdev", "Raid1", "R2")
    info = c.json("bdev_raid_get_bdevs", "all")
    assert info[0]["name"] == "Raid1" and info[0]["raid_level"] == "raid1"
    port = int(c.out("nbd_server_listen", "-a", "127.0.0.1", "-p", "0"))
    assert c.json("nbd_server_get_listeners") == [{"host": "127.0.0.1", "port": port}]
    assert c.out("nbd_server_start_export", "Raid1", "-n", "r1", "-r").strip() == "r1"
    assert c.json("nbd_server_get_exports", "-n", "r1")[0]["bdev_name"] == "Raid1"
    c.out("nbd_server_stop_export", "r1")
    c.out("nbd_server_stop_listen", "-a", "127.0.0.1", "-p", str(port))
    assert c.json("nbd_get_disks") == []
    assert "nbd" in c.fails("nbd_start_disk", "R0", "/dev/nbd0")
    assert "not started" in c.fails("nbd_stop_disk", "/dev/nbd9")
    used.update({"nbd_start_disk", "nbd_stop_disk"})   # ran end to end: refused (no nbd module here)
    c.out("bdev_raid_delete", "Raid1", "--clear-sb")
    assert c.json("bdev_raid_get_bdevs", "all") == []


def test_rbd_commands_refusals(tgt: TargetProcess, capsys: pytest.CaptureFixture[str], used: set[str]) -> None:
    """The rbd commands end to end without a cluster (tests/rbd runs them against a real one)."""
    c = Cli(tgt.sock, capsys, used)
    closed = free_port()
    err = c.fails("bdev_rbd_register_cluster", "c0", "--user", "admin", "--config-param", f"mon_host=127.0.0.1:{closed}",
                  "--config-param", "client_mount_timeout=2")
    assert "Ceph cluster" in err
    assert c.json("bdev_rbd_get_clusters_info") == []
    assert "not registered" in c.fails("bdev_rbd_unregister_cluster", "c0")
    assert "not registered" in c.fails("bdev_rbd_create", "-c", "c0", "rbd", "img", "512")
    assert "does not exist" in c.fails("bdev_rbd_delete", "Ceph0")
    assert "does not exist" in c.fails("bdev_rbd_resize", "Ceph0", "64")
    used.update({"bdev_rbd_register_cluster", "bdev_rbd_unregister_cluster", "bdev_rbd_create",
                 "bdev_rbd_delete", "bdev_rbd_resize"})
def test_lvol_commands(tgt: TargetProcess, capsys: pytest.CaptureFixture[str], used: set[str]) -> None:
    c = Cli(tgt.sock, capsys, used)
    c.out("bdev_malloc_create", "-b", "LvBase", "32", "512")
    u = c.out("bdev_lvol_create_lvstore", "LvBase", "lvs", "-c", "1048576", "--clear-method", "none",
              "-m", "100").strip().strip('"')
    assert c.json("bdev_lvol_get_lvstores", "-u", u)[0]["name"] == "lvs"
    c.out("bdev_lvol_create", "-l", "lvs", "-t", "v1", "4")
    c.out("bdev_lvol_create", "-u", u, "-c", "write_zeroes", "v2", "2")
    c.out("bdev_lvol_snapshot", "lvs/v1", "s1")
    c.out("bdev_lvol_clone", "lvs/s1", "c1")
    c.out("bdev_lvol_create", "-l", "lvs", "-t", "v3", "4")
    c.out("bdev_lvol_set_parent", "lvs/v3", "lvs/s1")
    c.out("bdev_lvol_rename", "lvs/c1", "c2")
    c.out("bdev_lvol_resize", "lvs/c2", "8")
    c.out("bdev_lvol_decouple_parent", "lvs/c2")
    c.out("bdev_lvol_inflate", "lvs/v3")
    c.out("bdev_lvol_set_read_only", "lvs/v2")
    c.out("bdev_malloc_create", "-b", "LvExt", "4", "512")
    c.out("bdev_lvol_clone_bdev", "LvExt", "lvs", "e1")
    c.out("bdev_lvol_create", "-l", "lvs", "-t", "e2", "4")
    c.out("bdev_lvol_set_parent_bdev", "lvs/e2", "LvExt")
    assert {x["name"] for x in c.json("bdev_lvol_get_lvols") if x["is_esnap_clone"]} == {"e1", "e2"}
    assert {x["name"] for x in c.json("bdev_lvol_get_lvols", "-l", "lvs")} == {"v1", "v2", "v3", "s1", "c2",
                                                                              "e1", "e2"}
    assert "2 clones" not in c.fails("bdev_lvol_delete", "lvs/nope")
    c.out("bdev_malloc_create", "-b", "LvCopy", "8", "512")
    op = c.json("bdev_lvol_start_shallow_copy", "lvs/s1", "LvCopy")["operation_id"]
    for _ in range(600):
        st = c.json("bdev_lvol_check_shallow_copy", str(op))
        if st["state"] != "in progress":
            break
        time.sleep(0.05)
    assert st["state"] == "complete" and st["copied_clusters"] == st["total_clusters"]
    c.out("bdev_lvol_delete", "lvs/c2")
    c.out("bdev_lvol_rename_lvstore", "lvs", "lvs2")
    c.out("bdev_lvol_grow_lvstore", "-l", "lvs2")
    assert c.json("bdev_lvol_get_lvols", "-u", u)[0]["alias"].startswith("lvs2/")
    c.out("bdev_lvol_delete_lvstore", "-l", "lvs2")
    assert c.json("bdev_lvol_get_lvstores") == []
def test_nvmf_dhchap_commands(tgt: TargetProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              used: set[str]) -> None:
    from spydk.nvme.auth.dhchap import generate_secret
    c = Cli(tgt.sock, capsys, used)
    for name in ("hk", "ck"):
        f = tmp_path / name
        f.write_text(generate_secret())
        f.chmod(0o600)
        c.out("keyring_file_add_key", name, str(f))
    c.out("nvmf_create_subsystem", NQN)
    c.out("nvmf_subsystem_add_host", NQN, HOSTNQN, "--dhchap-key", "hk", "--dhchap-ctrlr-key", "ck")
    assert "does not exist" in c.fails("nvmf_subsystem_add_host", NQN, "nqn.2024-01.io.x:h", "--dhchap-key", "nokey")
    host = {s["nqn"]: s for s in c.json("nvmf_get_subsystems")}[NQN]["hosts"][0]
    assert host == {"nqn": HOSTNQN, "dhchap_key": "hk", "dhchap_ctrlr_key": "ck"}
    c.out("nvmf_subsystem_set_keys", NQN, HOSTNQN, "--dhchap-key", "ck")
    host = {s["nqn"]: s for s in c.json("nvmf_get_subsystems")}[NQN]["hosts"][0]
    assert host == {"nqn": HOSTNQN, "dhchap_key": "ck"}


def test_nvmf_targets_and_masking_commands(tgt: TargetProcess, capsys: pytest.CaptureFixture[str],
                                           used: set[str], tmp_path: Path) -> None:
    c = Cli(tgt.sock, capsys, used)
    assert c.out("nvmf_create_target", "-n", "t2", "-s", "16").strip() == "t2"
    assert c.json("nvmf_get_targets") == ["nvmf_tgt", "t2"]
    c.out("nvmf_create_subsystem", NQN, "-t", "t2")
    c.out("bdev_malloc_create", "-b", "H0", "1", "512")
    assert c.out("nvmf_subsystem_add_ns", NQN, "H0", "-t", "t2", "--no-auto-visible").strip() == "1"
    c.out("nvmf_ns_add_host", NQN, "1", HOSTNQN, "-t", "t2")
    sub = {s["nqn"]: s for s in c.json("nvmf_get_subsystems", "-t", "t2")}[NQN]
    assert sub["namespaces"][0]["hosts"] == [{"nqn": HOSTNQN}]
    c.out("nvmf_ns_remove_host", NQN, "1", HOSTNQN, "-t", "t2")
    assert "visible to every host" not in c.fails("nvmf_ns_remove_host", NQN, "1", HOSTNQN, "-t", "t2")
    assert NQN not in {s["nqn"] for s in c.json("nvmf_get_subsystems")}  # the default target has none
    c.out("bdev_malloc_create", "-b", "H1", "1", "512")
    ptpl = str(tmp_path / "h1.ptpl")
    assert c.out("nvmf_subsystem_add_ns", NQN, "H1", "-t", "t2", "-p", ptpl).strip() == "2"
    adds = [e["params"] for e in c.json("framework_get_config", "nvmf") if e["method"] == "nvmf_subsystem_add_ns"]
    assert any(a["namespace"].get("ptpl_file") == ptpl for a in adds)
    c.out("nvmf_delete_target", "-n", "t2")
    assert c.json("nvmf_get_targets") == ["nvmf_tgt"]


def test_nvme_host_vhost_virtio_trace_and_metrics_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           used: set[str]) -> None:
    """The target attaches to its own NVMe/TCP listener (bdev_nvme) and to its own vhost-user
    socket (bdev_virtio), so every one of these commands runs against a real peer."""
    sockdir = tmp_path / "vhost"
    sockdir.mkdir()
    t = start_target(tmp_path / "t", extra_args=["-S", str(sockdir)])
    try:
        c = Cli(t.sock, capsys, used)
        port = str(free_port())
        c.out("bdev_nvme_set_options", "-k", "10000")
        c.out("bdev_malloc_create", "-b", "M0", "8", "512")
        c.out("bdev_malloc_create", "-b", "M1", "8", "512")
        c.out("nvmf_create_transport", "-t", "TCP")
        c.out("nvmf_create_subsystem", NQN, "-a", "-s", "SPDK0007")
        # its own UUID: the attached namespace becomes a bdev in the same process
        c.out("nvmf_subsystem_add_ns", NQN, "M0", "-u", "0f0e0d0c-0b0a-4908-8706-050403020100")
        c.out("nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port)
        c.out("nvmf_subsystem_add_listener", "discovery", "-t", "tcp", "-a", "127.0.0.1", "-s", port)
        assert c.out("bdev_nvme_attach_controller", "-b", "Nvme0", "-t", "tcp", "-a", "127.0.0.1",
                     "-s", port, "-f", "ipv4", "-n", NQN).split() == ["Nvme0n1"]
        assert c.json("bdev_nvme_get_controllers", "-n", "Nvme0")[0]["name"] == "Nvme0"
        assert c.json("bdev_nvme_get_io_paths", "-n", "Nvme0n1")["poll_groups"] is not None
        c.out("bdev_nvme_set_multipath_policy", "-b", "Nvme0n1", "-p", "active_passive")
        c.out("bdev_nvme_reset_controller", "Nvme0")
        c.out("bdev_nvme_start_discovery", "-b", "Disc", "-t", "tcp", "-a", "127.0.0.1", "-s", port, "-w")
        assert isinstance(c.json("bdev_nvme_get_discovery_info"), list)
        c.out("bdev_nvme_stop_discovery", "-b", "Disc")
        c.out("bdev_nvme_detach_controller", "Nvme0")
        # vhost, and the virtio initiator attached to our own blk controller
        c.out("vhost_create_blk_controller", "vhost.0", "M1")
        c.out("vhost_controller_set_coalescing", "vhost.0", "0", "0")
        c.out("vhost_create_scsi_controller", "--delay", "vhost.1")
        c.out("vhost_scsi_controller_add_target", "vhost.1", "0", "M0")
        c.out("vhost_start_scsi_controller", "vhost.1")
        assert {x["ctrlr"] for x in c.json("vhost_get_controllers")} == {"vhost.0", "vhost.1"}
        assert c.out("bdev_virtio_attach_controller", "-t", "user", "-a", str(sockdir / "vhost.1"), "-d", "scsi",
                     "--vq-count", "2", "VirtioScsi0").split() == ["VirtioScsi0t0"]
        assert [d["name"] for d in c.json("bdev_virtio_scsi_get_devices")] == ["VirtioScsi0"]
        c.out("bdev_virtio_detach_controller", "VirtioScsi0")
        assert c.json("bdev_virtio_scsi_get_devices") == []
        c.out("vhost_scsi_controller_remove_target", "vhost.1", "0")
        c.out("bdev_virtio_attach_controller", "-t", "user", "-a", str(sockdir / "vhost.0"), "-d", "blk", "Virtio0")
        c.out("bdev_virtio_blk_set_hotplug", "-d")
        c.out("bdev_virtio_detach_controller", "Virtio0")
        c.out("vhost_delete_controller", "vhost.1")
        c.out("vhost_delete_controller", "vhost.0")
        # trace points, metrics, scheduler
        c.out("trace_enable_tpoint_group", "bdev")
        assert c.json("trace_get_tpoint_group_mask")["tpoint_group_mask"]
        c.out("trace_set_tpoint_mask", "bdev", "0x1")
        c.out("trace_clear_tpoint_mask", "bdev", "0x1")
        assert isinstance(c.json("trace_get_info"), dict)
        c.out("trace_disable_tpoint_group", "bdev")
        c.out("trace_clear")
        mport = str(free_port())
        c.out("metrics_start_exporter", "-a", "127.0.0.1", "-p", mport)
        assert str(c.json("metrics_get_exporter")).count(mport)
        c.out("metrics_stop_exporter")
        assert "scheduler_name" in c.json("framework_get_scheduler")
        c.out("framework_set_scheduler", "static", "-p", "500000")
        assert c.json("framework_get_scheduler")["scheduler_period"] == 500000
        tid = c.json("thread_get_stats")["threads"][0]["id"]
        c.out("thread_set_cpumask", "-i", str(tid), "-m", "0x1")
    finally:
        t.stop()


# Areas with commands of their own add a test above that runs them through Cli (and so into
# `used`); this check stays last in the module.
def test_every_subcommand_ran_end_to_end(used: set[str]) -> None:
    missing = sorted(set(subcommands()) - used)
    assert not missing, f"`spydk rpc` commands without an end-to-end test in this module: {missing}"
