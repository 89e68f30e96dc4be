"""The iSCSI RPCs through the JSON-RPC server: results, errors naming the bad parameter,
save_config round trip, and the rpc.py-style command line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness

from .conftest import IQN, free_port


def _rpc_error(fn, *args, **kw) -> RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(RpcError) as ei:
        fn(*args, **kw)
    return ei.value


def test_objects_and_getters(iscsi_app) -> None:
    h, port = iscsi_app(chap=("u1", "s1-secret-123"))
    c = h.client
    assert c.iscsi_get_portal_groups() == [
        {"portals": [{"host": "127.0.0.1", "port": str(port)}], "tag": 1, "private": False}]
    assert c.iscsi_get_initiator_groups() == [{"initiators": ["ANY"], "tag": 1, "netmasks": ["127.0.0.1/32"]}]
    nodes = c.iscsi_get_target_nodes()
    assert nodes[0]["name"] == IQN and nodes[0]["luns"] == [{"bdev_name": "Malloc0", "lun_id": 0}]
    assert nodes[0]["require_chap"] is True and nodes[0]["chap_group"] == 1
    assert c.iscsi_get_auth_groups() == [{"tag": 1, "secrets": [{"user": "u1", "secret": "s1-secret-123"}]}]
    opts = c.iscsi_get_options()
    assert opts["node_base"] == "iqn.2016-06.io.spdk" and opts["max_queue_depth"] == 64
    assert opts["first_burst_length"] == 8192 and opts["nop_in_interval"] == 30
    assert c.scsi_get_devices() == [{"id": 0, "device_name": IQN}]

    c.iscsi_auth_group_add_secret(tag=1, user="u2", secret="s2", muser="m2", msecret="ms2")
    c.iscsi_auth_group_remove_secret(tag=1, user="u1")
    assert c.iscsi_get_auth_groups()[0]["secrets"] == [
        {"user": "u2", "secret": "s2", "muser": "m2", "msecret": "ms2"}]
    c.iscsi_initiator_group_add_initiators(tag=1, initiators=["iqn.x:y"], netmasks=["10.0.0.0/8"])
    c.iscsi_initiator_group_remove_initiators(tag=1, initiators=["iqn.x:y"])
    assert c.iscsi_get_initiator_groups()[0]["netmasks"] == ["127.0.0.1/32", "10.0.0.0/8"]
    c.iscsi_create_portal_group(tag=2, portals=[{"host": "127.0.0.1", "port": str(free_port())}], wait=True)
    c.iscsi_start_portal_group(tag=2)
    c.iscsi_target_node_add_pg_ig_maps(name="disk1", pg_ig_maps=[{"pg_tag": 2, "ig_tag": 1}])
    c.iscsi_target_node_remove_pg_ig_maps(name="disk1", pg_ig_maps=[{"pg_tag": 2, "ig_tag": 1}])
    c.iscsi_delete_portal_group(tag=2)
    c.iscsi_target_node_add_lun(name=IQN, bdev_name="Malloc5")
    assert c.iscsi_get_target_nodes()[0]["luns"][1] == {"bdev_name": "Malloc5", "lun_id": 1}
    c.iscsi_target_node_set_auth(name="disk1", disable_chap=True)
    c.iscsi_set_discovery_auth(require_chap=True, chap_group=1)
    assert c.iscsi_get_options()["require_chap"] is True
    c.iscsi_delete_target_node(name=IQN)
    c.iscsi_delete_initiator_group(tag=1)
    c.iscsi_delete_auth_group(tag=1)
    assert c.iscsi_get_target_nodes() == [] and c.iscsi_get_auth_groups() == []


def test_errors_name_the_parameter(iscsi_app) -> None:
    h, port = iscsi_app()
    c = h.client
    e = _rpc_error(c.iscsi_create_portal_group, tag=3, portals=[{"host": "127.0.0.1"}])
    assert e.code == -32602 and "portals[0].port" in e.message
    e = _rpc_error(c.iscsi_create_initiator_group, tag=3, initiators=["ANY"], netmasks=["300.1.1.1"])
    assert "netmasks[0]" in e.message
    e = _rpc_error(c.iscsi_create_target_node, name="d", alias_name="", luns=[{"lun_id": 0}],
                   pg_ig_maps=[{"pg_tag": 1, "ig_tag": 1}], queue_depth=4)
    assert "luns[0].bdev_name" in e.message
    e = _rpc_error(c.iscsi_create_target_node, name="d", alias_name="", luns=[{"bdev_name": "Malloc0"}],
                   pg_ig_maps=[{"pg_tag": 1, "ig_tag": 1}], queue_depth=4, disable_chap=True,
                   require_chap=True)
    assert "disable_chap" in e.message
    e = _rpc_error(c.iscsi_create_target_node, name="d", alias_name="", luns=[{"bdev_name": "Nope"}],
                   pg_ig_maps=[{"pg_tag": 1, "ig_tag": 1}], queue_depth=4)
    assert "Nope" in e.message and e.code == -19  # -ENODEV
    e = _rpc_error(c.iscsi_create_target_node, name="d", alias_name="", luns=[{"bdev_name": "Malloc0"}],
                   pg_ig_maps=[{"pg_tag": 1, "ig_tag": 1}], queue_depth=4096)
    assert "queue_depth" in e.message
    e = _rpc_error(c.iscsi_create_portal_group, tag=1, portals=[{"host": "127.0.0.1", "port": "1"}])
    assert e.code == -17  # -EEXIST
    e = _rpc_error(c.iscsi_delete_target_node, name="nope")
    assert e.code == -19
    e = _rpc_error(c.iscsi_delete_portal_group, tag=99)
    assert e.code == -19  # -ENODEV
    e = _rpc_error(c.iscsi_set_options, max_sessions=4)
    assert e.code == -1  # STARTUP-only method at runtime
    e = _rpc_error(c.iscsi_auth_group_add_secret, tag=9, user="u", secret="s")
    assert e.code == -19
    e = _rpc_error(c.iscsi_create_auth_group, tag=2, secrets=[{"user": "u", "secret": "s", "muser": "m"}])
    assert "msecret" in e.message
    e = _rpc_error(c.iscsi_create_target_node, name="d", alias_name="", luns=[{"bdev_name": "Malloc0"}],
                   pg_ig_maps=[{"pg_tag": 1, "ig_tag": 1}], queue_depth="4")
    assert "queue_depth" in e.message


def test_save_config_round_trip(iscsi_app) -> None:
    h, port = iscsi_app(chap=("u1", "secret-1"), options={"max_queue_depth": 128, "nop_timeout": 30})
    c = h.client
    c.iscsi_portal_group_set_auth(tag=1, require_chap=True, chap_group=1)
    iscsi = c.framework_get_config(name="iscsi")
    methods = [e["method"] for e in iscsi]
    assert methods[0] == "iscsi_set_options"
    assert methods.index("iscsi_create_portal_group") < methods.index("iscsi_create_target_node")
    # the saved config starts an identical target
    bdev = [e for e in h.client.framework_get_config(name="bdev") if e["method"] == "bdev_malloc_create"]
    h.stop()  # bdevs are per process: the first app goes before the second starts
    h2 = AppHarness({"subsystems": [{"subsystem": "bdev", "config": bdev},
                                    {"subsystem": "iscsi", "config": iscsi}]}, subsystems=("iscsi",)).start()
    try:
        assert h2.client.framework_get_config(name="iscsi") == iscsi
        assert h2.client.iscsi_get_options()["max_queue_depth"] == 128
    finally:
        h2.stop()


def test_cli_dry_run() -> None:
    def dry(*argv: str) -> str:
        out = subprocess.run([sys.executable, "-m", "spydk.rpc.cli", "--dry-run", *argv],
                             capture_output=True, text=True, check=True)
        return out.stdout
    out = dry("iscsi_create_target_node", "disk1", "Data Disk1", "Malloc0:0 Malloc1:1", "1:1 2:1", "64", "-d")
    assert '"bdev_name": "Malloc1"' in out and '"lun_id": 1' in out and '"pg_tag": 2' in out
    assert '"disable_chap": true' in out and "require_chap" not in out
    out = dry("iscsi_create_portal_group", "1", "127.0.0.1:3260 [::1]:3261")
    assert '"host": "[::1]"' in out and '"port": "3261"' in out
    out = dry("iscsi_create_auth_group", "1", "-c", "user:a secret:b muser:c msecret:d,user:e secret:f")
    assert '"msecret": "d"' in out and '"user": "e"' in out
    out = dry("iscsi_create_initiator_group", "2", "ANY !iqn.bad:x", "10.0.0.0/8")
    assert '"!iqn.bad:x"' in out
