"""The target's object model: initiator groups, names, access checks, SendTargets, config."""
from __future__ import annotations

import pytest

from spydk.iscsi.auth import AuthError, ChapSettings, make_secret
from spydk.iscsi.initiator_group import InitGrpError, InitiatorGroup, parse_netmask
from spydk.iscsi.iscsi_tgt import IscsiConfigError, IscsiTarget
from spydk.iscsi.portal_group import PortalError, make_portal
from spydk.iscsi.target_node import NodeError, full_name

INI = "iqn.1994-05.com.redhat:host1"


def test_initiator_names_any_and_negation() -> None:
    ig = InitiatorGroup(1, ["ANY", "!iqn.2000-01.bad:x"], ["ANY"])
    assert ig.name_verdict(INI) is True
    assert ig.name_verdict("iqn.2000-01.bad:x") is False
    ig2 = InitiatorGroup(2, [INI], ["ANY"])
    assert ig2.name_verdict("iqn.other") is None
    assert InitiatorGroup(3, ["!ANY", INI], ["ANY"]).name_verdict(INI) is False


def test_netmasks() -> None:
    ig = InitiatorGroup(1, ["ANY"], ["10.0.0.0/8", "[fe80::]/10"])
    assert ig.allows_address("10.1.2.3")
    assert not ig.allows_address("192.168.0.1")
    assert ig.allows_address("fe80::1")
    assert ig.allows_address("::ffff:10.0.0.7")  # IPv4-mapped
    assert not ig.allows_address("not an address")
    assert parse_netmask("any") is None
    for bad in ("10.0.0.0/33", "fe80::/10", "[fe80::", "hello"):
        with pytest.raises(InitGrpError):
            parse_netmask(bad)


def test_group_add_remove_all_or_nothing() -> None:
    ig = InitiatorGroup(1, [], [])
    ig.add([INI], ["ANY"])
    with pytest.raises(InitGrpError):
        ig.add(["iqn.new", INI], [])  # duplicate: nothing added
    assert ig.initiators == [INI]
    with pytest.raises(InitGrpError):
        ig.remove(["iqn.absent"], [])
    ig.remove([], [])
    assert ig.initiators == [] and ig.netmasks == []


def test_node_names() -> None:
    assert full_name("disk1", "iqn.2016-06.io.spdk") == "iqn.2016-06.io.spdk:disk1"
    assert full_name("iqn.2020-01.org.example:t", "x") == "iqn.2020-01.org.example:t"
    assert full_name("eui.0123456789ABCDEF", "x") == "eui.0123456789ABCDEF"
    for bad in ("Disk", "iqn.20-1.x", "naa.123", "a b", "x" * 230):
        with pytest.raises(NodeError):
            full_name(bad, "iqn.2016-06.io.spdk")


def test_portals_and_secrets() -> None:
    assert make_portal("[::1]", "3260").bind_host == "::1"
    for host, port in (("::1", "3260"), ("1.2.3.4", "0"), ("1.2.3.4", "http"), ("", "1")):
        with pytest.raises(PortalError):
            make_portal(host, port)
    with pytest.raises(AuthError):
        make_secret("u", "s", muser="m")
    with pytest.raises(AuthError):
        ChapSettings.make(disable=True, require=True)
    with pytest.raises(AuthError):
        ChapSettings.make(mutual=True)


def _target() -> IscsiTarget:
    t = IscsiTarget()
    t.add_portal_group(1, [make_portal("0.0.0.0", "3260")])
    t.add_portal_group(2, [make_portal("127.0.0.1", "3261")], private=True)
    t.add_initiator_group(1, ["ANY"], ["ANY"])
    t.add_initiator_group(2, [INI], ["127.0.0.0/8"])
    t.add_node("disk1", "Disk 1", [(0, "Malloc0")], [(1, 1)], 32, ChapSettings())
    t.add_node("disk2", "", [(0, "Malloc1")], [(1, 2), (2, 2)], 32, ChapSettings())
    return t


def test_access_and_send_targets() -> None:
    t = _target()
    d1 = t.node("disk1")
    d2 = t.node("iqn.2016-06.io.spdk:disk2")
    assert d1.access_allowed("iqn.anyone", "192.0.2.1", 1, t.initiator_groups)
    assert not d1.access_allowed("iqn.anyone", "192.0.2.1", 2, t.initiator_groups)  # not mapped
    assert d2.access_allowed(INI, "127.0.0.1", 1, t.initiator_groups)
    assert not d2.access_allowed(INI, "192.0.2.1", 1, t.initiator_groups)
    assert not d2.access_allowed("iqn.other", "127.0.0.1", 1, t.initiator_groups)
    # the wildcard portal is advertised with the address the connection arrived on;
    # the private group is never advertised
    got = t.send_targets(INI, "127.0.0.1", "All", "10.0.2.15", "3260", 1)
    assert got == [("iqn.2016-06.io.spdk:disk1", ["10.0.2.15:3260,1"]),
                   ("iqn.2016-06.io.spdk:disk2", ["10.0.2.15:3260,1"])]
    got = t.send_targets("iqn.other", "127.0.0.1", "All", "::1", "3260", 1)
    assert got == [("iqn.2016-06.io.spdk:disk1", ["[::1]:3260,1"])]
    assert t.send_targets(INI, "127.0.0.1", "iqn.2016-06.io.spdk:disk2", "h", "1", 1)[0][0].endswith("disk2")


def test_references_and_errors() -> None:
    t = _target()
    with pytest.raises(IscsiConfigError, match="already exists"):
        t.add_node("disk1", "", [(0, "Malloc0")], [(1, 1)], 1, ChapSettings())
    with pytest.raises(IscsiConfigError, match="queue_depth"):
        t.add_node("disk3", "", [(0, "Malloc0")], [(1, 1)], 1000, ChapSettings())
    with pytest.raises(IscsiConfigError, match="portal group 9"):
        t.add_node("disk3", "", [(0, "Malloc0")], [(9, 1)], 1, ChapSettings())
    with pytest.raises(IscsiConfigError, match="already in use"):
        t.add_portal_group(3, [make_portal("127.0.0.1", "3261")])
    assert t.add_lun("disk1", "Malloc2", None) == 1
    with pytest.raises(IscsiConfigError, match="already exists"):
        t.add_lun("disk1", "Malloc3", 1)
    t.remove_node("disk2")
    t.remove_initiator_group(2)


def test_deleting_a_group_drops_the_nodes_maps_as_spdk() -> None:
    t = _target()
    before = {n.name: list(n.pg_ig_maps) for n in t.nodes.values()}
    assert any(1 in (pg for pg, _ in m) for m in before.values())
    t.remove_portal_group(1)
    assert all(pg != 1 for n in t.nodes.values() for pg, _ in n.pg_ig_maps)
    t.remove_initiator_group(2)
    assert all(ig != 2 for n in t.nodes.values() for _, ig in n.pg_ig_maps)
    with pytest.raises(IscsiConfigError):
        t.remove_portal_group(1)


def test_options_validation() -> None:
    t = IscsiTarget()
    t.set_options({"max_queue_depth": 128, "first_burst_length": 65536})
    assert t.options.max_queue_depth == 128
    for bad in ({"max_queue_depth": 0}, {"error_recovery_level": 3}, {"nop_timeout": 0},
                {"disable_chap": True, "require_chap": True}, {"mutual_chap": True}):
        with pytest.raises(IscsiConfigError):
            t.set_options(bad)
    assert t.options.max_queue_depth == 128  # unchanged by the failures


def test_config_order() -> None:
    t = _target()
    t.add_auth_group(1, [make_secret("u", "s")])
    methods = [c["method"] for c in t.config()]
    assert methods == ["iscsi_set_options", "iscsi_create_portal_group", "iscsi_create_portal_group",
                       "iscsi_create_initiator_group", "iscsi_create_initiator_group",
                       "iscsi_create_target_node", "iscsi_create_target_node", "iscsi_create_auth_group"]
    opts = t.config()[0]["params"]
    assert opts["node_base"] == "iqn.2016-06.io.spdk" and "auth_file" not in opts
