"""SPDK's own command line client (spdk-rpc from PyPI) against a `spydk tgt` process.

Every command is written as SPDK's documentation writes it (positional arguments, short
flags), so these tests show that scripts written for SPDK drive spydk unchanged.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.testing import TargetProcess, start_target

SPDK_RPC = os.path.join(os.path.dirname(sys.executable), "spdk-rpc")
NQN = "nqn.2016-06.io.spdk:cnode1"
IQN = "iqn.2016-06.io.spdk:disk1"

pytestmark = pytest.mark.skipif(not os.path.exists(SPDK_RPC), reason="spdk-rpc (PyPI spdk) not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(sock: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SPDK_RPC, "-s", sock, *args], input=input, capture_output=True,
                          text=True, timeout=60)


def rpc(sock: str, *args: str, input: str | None = None) -> Any:
    """Run spdk-rpc; return its output parsed as JSON (None when it prints nothing)."""
    res = run(sock, *args, input=input)
    assert res.returncode == 0, f"spdk-rpc {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    out = res.stdout.strip()
    if not out:
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return out  # spdk-rpc prints a string result (a bdev name) without quotes


def rpc_fails(sock: str, *args: str) -> str:
    res = run(sock, *args)
    assert res.returncode != 0, f"spdk-rpc {' '.join(args)} should have failed:\n{res.stdout}"
    return res.stdout + res.stderr


@pytest.fixture
def tgt(tmp_path: Path) -> Iterator[TargetProcess]:
    t = start_target(tmp_path)
    try:
        yield t
    finally:
        t.stop()


def _bdev(sock: str, name: str) -> dict[str, Any]:
    got = rpc(sock, "bdev_get_bdevs", "-b", name)
    assert isinstance(got, list) and len(got) == 1
    b: dict[str, Any] = got[0]
    return b


def test_bdev_commands(tgt: TargetProcess) -> None:
    s = tgt.sock
    u = str(uuid.uuid4())
    assert rpc(s, "bdev_malloc_create", "-b", "Malloc1", "8", "512") == "Malloc1"
    assert rpc(s, "bdev_malloc_create", "-b", "Malloc2", "-u", u, "-o", "8", "4", "4096") == "Malloc2"
    anon = rpc(s, "bdev_malloc_create", "1", "512")
    assert isinstance(anon, str) and anon.startswith("Malloc")
    assert rpc(s, "bdev_null_create", "Null0", "16", "512") == "Null0"
    assert rpc(s, "bdev_null_create", "-u", str(uuid.uuid4()), "Null1", "4", "4096") == "Null1"

    m1 = _bdev(s, "Malloc1")
    assert (m1["block_size"], m1["num_blocks"], m1["product_name"]) == (512, 8 * 2048, "Malloc disk")
    m2 = _bdev(s, "Malloc2")
    assert (m2["uuid"], m2["block_size"], m2["optimal_io_boundary"]) == (u, 4096, 8)
    n0 = _bdev(s, "Null0")
    assert (n0["num_blocks"], n0["product_name"]) == (16 * 2048, "Null disk")
    names = {b["name"] for b in rpc(s, "bdev_get_bdevs")}
    assert {"Malloc1", "Malloc2", anon, "Null0", "Null1"} <= names

    st = rpc(s, "bdev_get_iostat")
    assert {"tick_rate", "ticks", "bdevs"} <= set(st)
    assert {b["name"] for b in st["bdevs"]} >= {"Malloc1", "Null0"}
    st = rpc(s, "bdev_get_iostat", "--names", "Malloc1,Null0")
    assert [b["name"] for b in st["bdevs"]] == ["Malloc1", "Null0"]
    assert {"bytes_read", "num_read_ops", "bytes_written", "num_write_ops"} <= set(st["bdevs"][0])
    st = rpc(s, "bdev_get_iostat", "-c", "--names", "Malloc1")
    assert st["bdevs"][0]["name"] == "Malloc1" and "channels" in st["bdevs"][0]
    rpc(s, "bdev_get_iostat", "--reset-mode", "all")
    rpc(s, "bdev_reset_iostat", "-b", "Malloc1", "-m", "maxmin")

    rpc(s, "bdev_null_resize", "Null0", "32")
    assert _bdev(s, "Null0")["num_blocks"] == 32 * 2048
    rpc(s, "bdev_malloc_delete", "Malloc2")
    rpc(s, "bdev_null_delete", "Null1")
    assert '"code": -19' in rpc_fails(s, "bdev_get_bdevs", "-b", "Malloc2")  # -ENODEV, as SPDK
    names = {b["name"] for b in rpc(s, "bdev_get_bdevs")}
    assert "Malloc2" not in names and "Null1" not in names


def test_bad_parameters_are_refused_as_spdk_does(tgt: TargetProcess) -> None:
    s = tgt.sock
    out = rpc_fails(s, "bdev_malloc_create", "-b", "Bad", "1", "1000")
    assert "-32602" in out or "Invalid" in out
    rpc(s, "bdev_malloc_create", "-b", "Dup", "1", "512")
    rpc_fails(s, "bdev_malloc_create", "-b", "Dup", "1", "512")
    rpc_fails(s, "bdev_null_delete", "NoSuchBdev")


def test_nvmf_commands(tgt: TargetProcess) -> None:
    s = tgt.sock
    port = str(free_port())
    rpc(s, "bdev_malloc_create", "-b", "Malloc0", "16", "512")
    rpc(s, "nvmf_create_transport", "-t", "TCP", "-q", "128", "-c", "4096", "-i", "131072")
    tr = rpc(s, "nvmf_get_transports")
    assert tr[0]["trtype"] == "TCP" and tr[0]["max_queue_depth"] == 128
    assert tr[0]["in_capsule_data_size"] == 4096 and tr[0]["c2h_success"] is True
    rpc(s, "nvmf_create_subsystem", NQN, "-a", "-s", "SPDK00000000000001", "-d", "spydk controller",
        "-m", "8")
    rpc(s, "nvmf_subsystem_add_ns", NQN, "Malloc0", "-n", "1")
    rpc(s, "nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port, "-f", "ipv4")
    rpc(s, "nvmf_subsystem_add_listener", "discovery", "-t", "tcp", "-a", "127.0.0.1", "-s", port)
    subs = {x["nqn"]: x for x in rpc(s, "nvmf_get_subsystems")}
    sub = subs[NQN]
    assert sub["serial_number"] == "SPDK00000000000001" and sub["model_number"] == "spydk controller"
    assert sub["allow_any_host"] is True and sub["max_namespaces"] == 8
    assert [(n["nsid"], n["bdev_name"]) for n in sub["namespaces"]] == [(1, "Malloc0")]
    la = sub["listen_addresses"][0]
    assert (la["trtype"].upper(), la["adrfam"].lower(), la["traddr"], la["trsvcid"]) == \
        ("TCP", "ipv4", "127.0.0.1", port)
    assert [x["nqn"] for x in rpc(s, "nvmf_get_subsystems", NQN)] == [NQN]
    listeners = rpc(s, "nvmf_subsystem_get_listeners", NQN)
    assert listeners[0]["address"]["trsvcid"] == port
    rpc(s, "nvmf_subsystem_add_host", NQN, f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid4()}")
    rpc(s, "nvmf_subsystem_allow_any_host", "--no-allow-any-host", NQN)
    assert rpc(s, "nvmf_get_subsystems", NQN)[0]["allow_any_host"] is False
    assert "poll_groups" in rpc(s, "nvmf_get_stats")
    rpc(s, "nvmf_subsystem_remove_ns", NQN, "1")
    rpc(s, "nvmf_subsystem_remove_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port, "-f", "ipv4")
    rpc(s, "nvmf_delete_subsystem", NQN)
    assert NQN not in {x["nqn"] for x in rpc(s, "nvmf_get_subsystems")}


def test_iscsi_commands(tgt: TargetProcess) -> None:
    s = tgt.sock
    port = str(free_port())
    rpc(s, "bdev_malloc_create", "-b", "Malloc0", "16", "512")
    rpc(s, "bdev_malloc_create", "-b", "Malloc1", "16", "512")
    rpc(s, "iscsi_create_portal_group", "1", f"127.0.0.1:{port}")
    rpc(s, "iscsi_create_initiator_group", "2", "ANY", "127.0.0.1/32")
    rpc(s, "iscsi_create_target_node", IQN, "Data Disk1", "Malloc0:0", "1:2", "64", "-d")
    pgs = rpc(s, "iscsi_get_portal_groups")
    assert pgs[0]["tag"] == 1 and pgs[0]["portals"] == [{"host": "127.0.0.1", "port": port}]
    igs = rpc(s, "iscsi_get_initiator_groups")
    assert igs[0]["tag"] == 2 and igs[0]["initiators"] == ["ANY"] and igs[0]["netmasks"] == ["127.0.0.1/32"]
    nodes = rpc(s, "iscsi_get_target_nodes")
    node = nodes[0]
    assert (node["name"], node["alias_name"], node["queue_depth"]) == (IQN, "Data Disk1", 64)
    assert node["luns"] == [{"bdev_name": "Malloc0", "lun_id": 0}]
    assert node["pg_ig_maps"] == [{"pg_tag": 1, "ig_tag": 2}]
    assert node["disable_chap"] is True
    rpc(s, "iscsi_target_node_add_lun", IQN, "Malloc1", "-i", "1")
    luns = rpc(s, "iscsi_get_target_nodes")[0]["luns"]
    assert {"bdev_name": "Malloc1", "lun_id": 1} in luns
    rpc(s, "iscsi_delete_target_node", IQN)
    assert rpc(s, "iscsi_get_target_nodes") == []
    rpc(s, "iscsi_delete_initiator_group", "2")
    rpc(s, "iscsi_delete_portal_group", "1")


def test_framework_commands(tgt: TargetProcess) -> None:
    s = tgt.sock
    reactors = rpc(s, "framework_get_reactors")
    assert {"tick_rate", "reactors"} <= set(reactors)
    assert reactors["reactors"] and "lw_threads" in reactors["reactors"][0]
    stats = rpc(s, "thread_get_stats")
    assert {"tick_rate", "threads"} <= set(stats)
    assert {"name", "id", "busy", "idle"} <= set(stats["threads"][0])


def test_save_config_load_config_round_trip(tmp_path: Path) -> None:
    """A configuration built with spdk-rpc, saved by spdk-rpc and loaded by spdk-rpc into a
    fresh target (started with --wait-for-rpc, as SPDK's own tests do) saves the same."""
    port_n, port_i = str(free_port()), str(free_port())
    with start_target(tmp_path / "a") as a:
        s = a.sock
        rpc(s, "bdev_malloc_create", "-b", "Malloc0", "8", "512")
        rpc(s, "bdev_null_create", "Null0", "8", "4096")
        rpc(s, "nvmf_create_transport", "-t", "TCP")
        rpc(s, "nvmf_create_subsystem", NQN, "-a", "-s", "SPDK01")
        rpc(s, "nvmf_subsystem_add_ns", NQN, "Malloc0")
        rpc(s, "nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", port_n)
        rpc(s, "iscsi_create_portal_group", "1", f"127.0.0.1:{port_i}")
        rpc(s, "iscsi_create_initiator_group", "2", "ANY", "127.0.0.1/32")
        rpc(s, "iscsi_create_target_node", IQN, "disk", "Null0:0", "1:2", "32", "-d")
        saved = run(s, "save_config")
        assert saved.returncode == 0, saved.stderr
    first = json.loads(saved.stdout)
    by_name = {x["subsystem"]: x["config"] for x in first["subsystems"]}
    methods = {c["method"] for cfg in by_name.values() for c in cfg or []}
    assert {"bdev_malloc_create", "bdev_null_create", "nvmf_create_transport", "nvmf_create_subsystem",
            "nvmf_subsystem_add_ns", "nvmf_subsystem_add_listener", "iscsi_create_portal_group",
            "iscsi_create_initiator_group", "iscsi_create_target_node"} <= methods

    with start_target(tmp_path / "b", extra_args=["--wait-for-rpc"], wait_init=False) as b:
        rpc(b.sock, "load_config", input=saved.stdout)
        again = rpc(b.sock, "save_config")
        assert again == first
        assert _bdev(b.sock, "Malloc0")["num_blocks"] == 8 * 2048


# The rest of the commands spdk-rpc has for our methods, run as one spdk-rpc script (its
# stdin mode: one command per line, stops at the first error and prints it), so each test
# pays for one client process.

def script(sock: str, lines: str) -> str:
    res = run(sock, input=lines)
    assert res.returncode == 0, f"spdk-rpc script failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[TargetProcess]:
    """A target waiting in the startup state (--wait-for-rpc) for startup-only options."""
    t = start_target(tmp_path, extra_args=["--wait-for-rpc"], wait_init=False)
    try:
        yield t
    finally:
        t.stop()


def test_bdev_module_script(fresh: TargetProcess, tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(4 << 20))
    s = fresh.sock
    script(s, f"""
bdev_set_options -p 4096 -c 64 --no-auto-examine
framework_start_init
framework_wait_init
bdev_malloc_create -b Malloc0 16 512
bdev_malloc_create -b Malloc1 16 4096
bdev_null_create Null0 16 512
bdev_aio_create {img} Aio0 512
bdev_aio_rescan Aio0
bdev_uring_create {img} Ur0 512
bdev_uring_delete Ur0
bdev_passthru_create -b Malloc1 -p Pass0
bdev_delay_create -b Null0 -d Delay0 -r 10 -t 20 -w 30 -n 40
bdev_delay_update_latency Delay0 avg_read 15
bdev_error_create Malloc0
bdev_error_inject_error EE_Malloc0 read failure -n 1
bdev_error_inject_error EE_Malloc0 clear failure
bdev_split_create Aio0 2
bdev_split_create -s 1 Delay0 2
bdev_examine -b Malloc0
bdev_wait_for_examine
bdev_enable_histogram Pass0 --histogram
bdev_get_histogram Pass0
bdev_enable_histogram Pass0 --no-histogram
bdev_set_qos_limit Pass0 --rw-ios-per-sec 10000 --rw-mbytes-per-sec 100 --r-mbytes-per-sec 50 --w-mbytes-per-sec 50
bdev_get_bdevs -b Pass0 -t 100
bdev_get_iostat --names Pass0
bdev_reset_iostat
""")
    names = {b["name"] for b in rpc(s, "bdev_get_bdevs")}
    assert {"Malloc0", "Malloc1", "Null0", "Aio0", "Pass0", "Delay0", "EE_Malloc0", "Aio0p0", "Aio0p1",
            "Delay0p0", "Delay0p1"} <= names and "Ur0" not in names
    assert _bdev(s, "Aio0p0")["num_blocks"] == 4096
    assert _bdev(s, "Delay0p1")["num_blocks"] == 2048  # -s 1: 1 MiB splits
    qos = _bdev(s, "Pass0")["assigned_rate_limits"]
    assert qos["rw_ios_per_sec"] == 10000 and qos["r_mbytes_per_sec"] == 50
    delay = {c["method"]: c["params"] for c in rpc(s, "framework_get_config", "bdev")
             if c["method"] == "bdev_delay_create"}
    assert delay["bdev_delay_create"]["avg_read_latency"] == 15
    script(s, """
bdev_split_delete Aio0
bdev_split_delete Delay0
bdev_error_delete EE_Malloc0
bdev_delay_delete Delay0
bdev_passthru_delete Pass0
bdev_aio_delete Aio0
bdev_null_delete Null0
""")
    assert {b["name"] for b in rpc(s, "bdev_get_bdevs")} == {"Malloc0", "Malloc1"}


def test_framework_and_log_script(tgt: TargetProcess) -> None:
    out = script(tgt.sock, """
framework_get_subsystems
log_set_flag bdev
log_get_flags
log_clear_flag bdev
log_set_level NOTICE
log_get_level
log_set_print_level WARNING
log_get_print_level
notify_get_types
notify_get_notifications -i 0 -n 5
thread_get_pollers
thread_get_io_channels
save_config -s bdev -i 4
""")
    assert '"NOTICE"' in out and '"WARNING"' in out and "bdev_register" in out
    assert rpc(tgt.sock, "log_get_level") == "NOTICE"
    assert rpc(tgt.sock, "log_get_flags")["bdev"] is False


def test_nvmf_script(fresh: TargetProcess) -> None:
    s, port = fresh.sock, str(free_port())
    c1, c2 = NQN, "nqn.2016-06.io.spdk:cnode2"
    host = f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid4()}"
    script(s, f"""
nvmf_set_max_subsystems -x 64
nvmf_set_config -m 0x1 --discovery-filters transport,address --dup-host-policy allow
framework_start_init
framework_wait_init
bdev_malloc_create -b Malloc0 16 512
bdev_malloc_create -b Malloc1 16 512
nvmf_create_transport -t TCP -q 64 -m 4 -c 8192 -i 131072 -a 32 -x 5 -y 0 -o
nvmf_get_transports --trtype TCP
nvmf_create_subsystem {c1} -s SPDK01 -d Model1 -m 4 -r -i 1 -I 100
nvmf_create_subsystem {c2} -a
nvmf_subsystem_add_ns {c1} Malloc0 -n 1 -g 0123456789abcdef0123456789abcdef -e 0123456789abcdef -u 6b6fbdc4-56c8-44bd-a4b6-8c1b1fc39c2f -a 1
nvmf_subsystem_add_ns {c2} Malloc1
nvmf_subsystem_add_listener {c1} -t tcp -a 127.0.0.1 -s {port} -f ipv4
nvmf_subsystem_add_listener discovery -t tcp -a 127.0.0.1 -s {port}
nvmf_subsystem_listener_set_ana_state {c1} -t tcp -a 127.0.0.1 -s {port} -f ipv4 -n non_optimized -g 1
nvmf_subsystem_get_listeners {c1}
nvmf_subsystem_add_host {c1} {host}
nvmf_subsystem_remove_host {c1} {host}
nvmf_subsystem_add_host {c1} {host}
nvmf_discovery_add_referral -t tcp -a 127.0.0.2 -s 4420 -f ipv4
nvmf_discovery_add_referral -t tcp -a 127.0.0.3 -s 4420 -n nqn.2016-06.io.spdk:cnode9
nvmf_discovery_remove_referral -t tcp -a 127.0.0.2 -s 4420 -f ipv4
nvmf_subsystem_get_controllers {c1}
nvmf_subsystem_get_qpairs {c1}
nvmf_get_stats
nvmf_subsystem_remove_ns {c2} 1
nvmf_delete_subsystem {c2}
""")
    tr = rpc(s, "nvmf_get_transports")[0]
    assert (tr["max_queue_depth"], tr["max_io_qpairs_per_ctrlr"], tr["max_aq_depth"], tr["c2h_success"]) == \
        (64, 4, 32, False)
    sub = rpc(s, "nvmf_get_subsystems", c1)[0]
    assert (sub["serial_number"], sub["model_number"], sub["max_namespaces"]) == ("SPDK01", "Model1", 4)
    assert (sub["min_cntlid"], sub["max_cntlid"], sub["allow_any_host"]) == (1, 100, False)
    assert sub["hosts"] == [{"nqn": host}]
    ns = sub["namespaces"][0]
    assert ns["nguid"].lower() == "0123456789abcdef0123456789abcdef" and ns["eui64"].lower() == "0123456789abcdef"
    assert ns["uuid"] == "6b6fbdc4-56c8-44bd-a4b6-8c1b1fc39c2f" and ns["anagrpid"] == 1
    ana = rpc(s, "nvmf_subsystem_get_listeners", c1)[0]["ana_states"]
    assert {"ana_group": 1, "ana_state": "non_optimized"} in ana
    refs = rpc(s, "nvmf_discovery_get_referrals")
    assert [(r["address"]["traddr"], r["subnqn"]) for r in refs] == [("127.0.0.3", "nqn.2016-06.io.spdk:cnode9")]
    assert c2 not in {x["nqn"] for x in rpc(s, "nvmf_get_subsystems")}
    cfg = {c["method"]: c["params"] for c in rpc(s, "framework_get_config", "nvmf")}
    assert cfg["nvmf_set_max_subsystems"]["max_subsystems"] == 64


def test_iscsi_script(fresh: TargetProcess) -> None:
    s, p1, p2 = fresh.sock, str(free_port()), str(free_port())
    script(s, f"""
iscsi_set_options -b iqn.2016-06.io.spdk -o 30 -n 10 -d -a 16 -q 64 -c 2 -w 2 -v 20 -s 8192 -i -l 0 -p -x 64 -k 4 -j 128 -z 1024
framework_start_init
framework_wait_init
bdev_malloc_create -b Malloc0 16 512
bdev_malloc_create -b Malloc1 16 512
iscsi_create_auth_group 1 -c 'user:u1 secret:s1 muser:mu1 msecret:ms1,user:u2 secret:s2'
iscsi_auth_group_add_secret 1 -u u3 -s s3
iscsi_auth_group_remove_secret 1 -u u2
iscsi_set_discovery_auth -r -m -g 1
iscsi_create_portal_group 1 127.0.0.1:{p1}
iscsi_create_portal_group 2 127.0.0.1:{p2} -p
iscsi_create_initiator_group 2 'ANY iqn.1994-05.com.redhat:x' '127.0.0.1/32 ANY'
iscsi_initiator_group_add_initiators 2 -n iqn.2000-01.x:y -m 10.0.0.0/8
iscsi_initiator_group_remove_initiators 2 -n iqn.2000-01.x:y -m 10.0.0.0/8
iscsi_create_target_node {IQN} 'Data Disk1' 'Malloc0:0' '1:2' 64 -d -H -D
iscsi_create_target_node disk2 'Disk 2' 'Malloc1:0' '2:2' 32 -r -m -g 1
iscsi_target_node_add_pg_ig_maps {IQN} '2:2'
iscsi_target_node_remove_pg_ig_maps {IQN} '2:2'
iscsi_target_node_set_auth {IQN} -g 1 -r
iscsi_get_connections
iscsi_get_stats
""")
    opts = rpc(s, "iscsi_get_options")
    assert (opts["node_base"], opts["nop_timeout"], opts["max_sessions"], opts["immediate_data"]) == \
        ("iqn.2016-06.io.spdk", 30, 16, True)
    assert opts["chap_group"] == 1 and opts["require_chap"] is True and opts["mutual_chap"] is True
    groups = rpc(s, "iscsi_get_auth_groups")
    assert [x["user"] for x in groups[0]["secrets"]] == ["u1", "u3"]
    igs = rpc(s, "iscsi_get_initiator_groups")
    assert igs[0]["initiators"] == ["ANY", "iqn.1994-05.com.redhat:x"]
    assert rpc(s, "iscsi_get_portal_groups")[1]["private"] is True
    nodes = {n["name"]: n for n in rpc(s, "iscsi_get_target_nodes")}
    d1 = nodes[IQN]
    assert d1["pg_ig_maps"] == [{"pg_tag": 1, "ig_tag": 2}]
    assert (d1["header_digest"], d1["data_digest"], d1["require_chap"], d1["chap_group"]) == (True, True, True, 1)
    d2 = nodes["iqn.2016-06.io.spdk:disk2"]  # the short name gets node_base
    assert (d2["mutual_chap"], d2["queue_depth"]) == (True, 32)
    script(s, f"""
iscsi_delete_target_node iqn.2016-06.io.spdk:disk2
iscsi_delete_target_node {IQN}
iscsi_delete_initiator_group 2
iscsi_delete_portal_group 2
iscsi_delete_auth_group 1
""")
    assert rpc(s, "iscsi_get_target_nodes") == [] and rpc(s, "iscsi_get_initiator_groups") == []
    assert [pg["tag"] for pg in rpc(s, "iscsi_get_portal_groups")] == [1]


def test_iscsi_group_delete_drops_maps_as_spdk(tgt: TargetProcess) -> None:
    s, port = tgt.sock, str(free_port())
    script(s, f"""
bdev_malloc_create -b Malloc0 16 512
iscsi_create_portal_group 1 127.0.0.1:{port}
iscsi_create_initiator_group 2 ANY ANY
iscsi_create_target_node {IQN} disk Malloc0:0 1:2 8 -d
iscsi_delete_initiator_group 2
iscsi_delete_portal_group 1
""")
    assert rpc(s, "iscsi_get_target_nodes")[0]["pg_ig_maps"] == []


def test_nvmf_security_script(fresh: TargetProcess, tmp_path: Path) -> None:
    """Issue 15's methods as SPDK's client sends them: keyring, DH-HMAC-CHAP digests, groups and
    keys, TLS listener and PSK, CRDT, ptpl_file, namespace masking, ANA group of a namespace."""
    from spydk.nvme.auth.dhchap import generate_secret
    from spydk.nvme.tls_psk import format_interchange
    s, port, tport = fresh.sock, str(free_port()), str(free_port())
    keys = {"hk": generate_secret(32, 1), "ck": generate_secret(48, 0),
            "psk0": format_interchange(bytes(range(32)), 1)}
    for name, text in keys.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    ptpl = tmp_path / "ptpl.json"
    host, h2 = "nqn.2016-06.io.spdk:host1", "nqn.2016-06.io.spdk:host2"
    script(s, f"""
nvmf_set_config --dhchap-digests sha384,sha512 --dhchap-dhgroups null,ffdhe3072
nvmf_set_crdt -t1 10 -t2 20 -t3 30
framework_start_init
framework_wait_init
keyring_file_add_key hk {tmp_path / 'hk'}
keyring_file_add_key ck {tmp_path / 'ck'}
keyring_file_add_key psk0 {tmp_path / 'psk0'}
keyring_file_add_key gone {tmp_path / 'ck'}
keyring_file_remove_key gone
bdev_malloc_create -b Malloc0 16 512
bdev_malloc_create -b Malloc1 16 512
nvmf_create_transport -t TCP
nvmf_create_subsystem {NQN} -s SPDK15 -r
nvmf_subsystem_add_ns {NQN} Malloc0 -p {ptpl}
nvmf_subsystem_add_ns {NQN} Malloc1 -n 2 -i
nvmf_ns_add_host {NQN} 2 {host}
nvmf_ns_add_host {NQN} 2 {h2}
nvmf_ns_remove_host {NQN} 2 {h2}
nvmf_subsystem_set_ns_ana_group {NQN} 2 1
nvmf_subsystem_add_listener {NQN} -t tcp -a 127.0.0.1 -s {port} -f ipv4
nvmf_subsystem_add_listener {NQN} -t tcp -a 127.0.0.1 -s {tport} -f ipv4 -k
nvmf_subsystem_add_host {NQN} {host} --dhchap-key hk --dhchap-ctrlr-key ck
nvmf_subsystem_add_host {NQN} {h2} --psk psk0
nvmf_subsystem_set_keys {NQN} {host} --dhchap-key ck
""")
    assert sorted(k["name"] for k in rpc(s, "keyring_get_keys")) == ["ck", "hk", "psk0"]
    assert not any(t.split(":")[2] in json.dumps(rpc(s, "keyring_get_keys")) for t in keys.values())
    sub = rpc(s, "nvmf_get_subsystems", NQN)[0]
    hosts = {h["nqn"]: h for h in sub["hosts"]}
    assert hosts[host] == {"nqn": host, "dhchap_key": "ck"} and hosts[h2]["psk"] == "psk0"
    ns = {n["nsid"]: n for n in sub["namespaces"]}
    assert ns[2]["anagrpid"] == 1 and ns[2]["no_auto_visible"] and ns[2]["hosts"] == [{"nqn": host}]
    dump = rpc(s, "framework_get_config", "nvmf")
    lst = {c["params"]["listen_address"]["trsvcid"]: c["params"] for c in dump
           if c["method"] == "nvmf_subsystem_add_listener"}
    assert lst[tport]["secure_channel"] is True and lst[port]["secure_channel"] is False
    cfg = {c["method"]: c["params"] for c in dump}
    assert cfg["nvmf_set_config"]["dhchap_digests"] == ["sha384", "sha512"]
    assert cfg["nvmf_set_config"]["dhchap_dhgroups"] == ["null", "ffdhe3072"]
    assert (cfg["nvmf_set_crdt"]["crdt1"], cfg["nvmf_set_crdt"]["crdt3"]) == (10, 30)
    adds = [c["params"] for c in dump if c["method"] == "nvmf_subsystem_add_ns"]
    assert any(a["namespace"].get("ptpl_file") == str(ptpl) for a in adds)
    # bad parameters get messages that name them
    assert "anagrpid" in rpc_fails(s, "nvmf_subsystem_set_ns_ana_group", NQN, "2", "99")
    assert "dhchap" in rpc_fails(s, "nvmf_subsystem_add_host", NQN, "nqn.2016-06.io.spdk:h3", "--dhchap-key", "nokey")
    assert "psk" in rpc_fails(s, "nvmf_subsystem_add_host", NQN, "nqn.2016-06.io.spdk:h4", "--psk", "nokey")
