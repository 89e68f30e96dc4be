"""The target over loopback TCP with the test initiator: login, discovery, I/O, CHAP,
several sessions, malformed input, and the connection RPCs."""
from __future__ import annotations

import os
import socket
import struct

import pytest

from .conftest import IQN
from .initiator import Initiator, IscsiTestError, lun_field


def test_discovery_login_io_logout(iscsi_app) -> None:
    h, port = iscsi_app()
    d = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x10")
    d.login(None)
    assert d.send_targets() == [("TargetName", IQN), ("TargetAddress", f"127.0.0.1:{port},1")]
    d.logout()

    i = Initiator("127.0.0.1", port)
    params = i.login(IQN)
    assert params["HeaderDigest"] == "None"
    data = os.urandom(512 * 40)  # larger than FirstBurstLength (8192): immediate data + R2Ts
    assert i.write10(0, 100, data).status == 0
    r = i.read10(0, 100, 40)
    assert r.status == 0 and r.data == data
    # reading past the end: CHECK CONDITION, ILLEGAL REQUEST / LBA OUT OF RANGE
    r = i.read10(0, 131071, 2)
    assert r.status == 2 and r.sense[2] & 0x0F == 0x05 and r.sense[12] == 0x21
    conns = h.client.iscsi_get_connections()
    assert len(conns) == 1 and conns[0]["target_node_name"] == "disk1"
    assert h.client.iscsi_get_stats()["running"] == 1
    i.nop()
    i.logout()


def test_chap_good_bad_and_mutual(iscsi_app) -> None:
    h, port = iscsi_app(chap=("user1", "secret-one-12"), mutual=("tgt", "tgt-secret-34"))
    bad = Initiator("127.0.0.1", port)
    with pytest.raises((IscsiTestError, ConnectionError), match="0x0201|closed"):
        bad.login(IQN, chap=("user1", "wrong-secret"), mutual=("tgt", "tgt-secret-34"))
    bad.close()
    nochap = Initiator("127.0.0.1", port)
    with pytest.raises((IscsiTestError, ConnectionError)):
        nochap.login(IQN)
    nochap.close()
    good = Initiator("127.0.0.1", port)
    good.login(IQN, chap=("user1", "secret-one-12"), mutual=("tgt", "tgt-secret-34"))
    assert good.read10(0, 0, 1).status == 0
    good.logout()


def test_several_sessions_and_nodes(iscsi_app) -> None:
    h, port = iscsi_app(extra_nodes=2)
    sessions = []
    for n in range(3):
        for k in range(2):
            ini = Initiator("127.0.0.1", port, name=f"iqn.2024-01.org.test:i{k}",
                            isid=bytes((0x80, 0, 0, 0, n, k)))
            ini.login(f"iqn.2016-06.io.spdk:disk{n + 1}")
            sessions.append((n, ini))
    for n, ini in sessions:
        payload = bytes([n + 1]) * 512
        assert ini.write10(0, n, payload).status == 0
    for n, ini in sessions:
        assert ini.read10(0, n, 1).data == bytes([n + 1]) * 512
    assert len(h.client.iscsi_get_connections()) == 6
    for _, ini in sessions:
        ini.logout()


@pytest.mark.parametrize("garbage", [
    b"\xff" * 48,                                           # unknown opcode before login
    struct.pack(">BBxxI", 0x43, 0x87, 0xFFFFFF) + bytes(40),  # login with a 16 MiB data segment
    b"\x01" + bytes(47),                                    # SCSI command before login
])
def test_malformed_input_ends_only_that_connection(iscsi_app, garbage: bytes) -> None:
    h, port = iscsi_app()
    good = Initiator("127.0.0.1", port)
    good.login(IQN)
    bad = socket.create_connection(("127.0.0.1", port), timeout=10)
    bad.sendall(garbage)
    bad.settimeout(10)
    try:
        while bad.recv(4096):
            pass  # a login reject may come first; then the target closes
    except (ConnectionResetError, TimeoutError):
        pass
    bad.close()
    # the good session and the target carry on
    assert good.read10(0, 0, 1).status == 0
    other = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x42")
    other.login(IQN)
    other.logout()
    good.logout()


def test_unknown_target_and_data_out_for_unknown_task(iscsi_app) -> None:
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    with pytest.raises(IscsiTestError, match="0x0203"):
        i.login("iqn.2016-06.io.spdk:nope")
    i.close()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    # Data-Out with an ITT nobody knows: rejected or connection dropped, target lives on
    hdr = struct.pack(">BBxxI8sII4xI4xII4x", 0x05, 0x80, 512, bytes(8), 0x1234, 0x99,
                      i.exp_stat_sn, 0, 0)
    i.send_pdu(hdr, bytes(512))
    try:
        i.read10(0, 0, 1)
    except (IscsiTestError, ConnectionError):
        pass
    i.close()
    j = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x43")
    j.login(IQN)
    assert j.read10(0, 0, 1).status == 0
    j.logout()


def test_session_limits_and_queue_depth(iscsi_app) -> None:
    h, port = iscsi_app(options={"max_sessions": 1})
    a = Initiator("127.0.0.1", port)
    a.login(IQN)
    exp, mx = a.window
    assert (mx - exp + 1) & 0xFFFFFFFF == 32  # the node's queue_depth, not max_queue_depth (64)
    b = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x44")
    with pytest.raises(IscsiTestError, match="0x0302"):
        b.login(IQN)
    b.close()
    a.logout()


def test_nop_in_ping_and_dead_connection(iscsi_app) -> None:
    h, port = iscsi_app(options={"nop_in_interval": 1, "nop_timeout": 1})
    dead = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x45")
    dead.login(IQN)
    # the target pings the idle connection; an initiator that never answers is dropped
    ping = dead.recv_pdu()
    assert ping.opcode == 0x20 and ping.u32(20) != 0xFFFFFFFF
    with pytest.raises(ConnectionError):
        while True:
            dead.recv_pdu()
    dead.close()
    # an initiator that answers pings (expect() does) keeps its session
    alive = Initiator("127.0.0.1", port)
    alive.login(IQN)
    ping = alive.recv_pdu()
    assert ping.opcode == 0x20
    alive.send_pdu(struct.pack(">BBxxI8sIIII16x", 0x40, 0x80, 0, ping.header[8:16], 0xFFFFFFFF,
                               ping.u32(20), alive.cmd_sn, alive.exp_stat_sn))
    assert alive.read10(0, 0, 1).status == 0
    assert len(h.client.iscsi_get_connections()) == 1
    alive.logout()


def test_compare_and_write_length_limits(iscsi_app) -> None:
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    assert i.write10(0, 0, b"A" * 1024).status == 0

    def caw(n: int, data: bytes):  # type: ignore[no-untyped-def]
        return i.scsi(0, struct.pack(">BBQxxxBxB", 0x89, 0, 0, n & 0xFF, 0), data_out=data)
    assert caw(2, b"A" * 1024 + b"B" * 1024).status == 0
    assert i.read10(0, 0, 2).data == b"B" * 1024
    # 256 blocks wrap to 0 in the one-byte field while 256 blocks of data arrive: refused
    r = caw(256, b"B" * (2 * 256 * 512))
    assert r.status == 2 and r.sense[2] & 0x0F == 0x05 and r.sense[12] == 0x24
    i.logout()


def test_large_write(iscsi_app) -> None:
    """A 20 MiB write (many R2Ts; above the codec's default 16 MiB bound, within the 32 MiB
    MAXIMUM TRANSFER LENGTH the LU advertises) is accepted and lands."""
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    data = os.urandom(20 << 20)
    cdb = struct.pack(">BBQIBB", 0x8A, 0, 0, len(data) // 512, 0, 0)
    assert i.scsi(0, cdb, data_out=data).status == 0
    assert i.read10(0, 40000, 8).data == data[40000 * 512:40008 * 512]
    i.logout()


@pytest.mark.parametrize("datasn", [0xFFFFFFFF, 27, 1])
def test_bad_datasn_rejected(iscsi_app, datasn: int) -> None:
    """A solicited Data-Out with the wrong DataSN gets a Reject (protocol error) and the
    connection closes (ErrorRecoveryLevel 0); the target carries on."""
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    cdb = struct.pack(">BBIBHB", 0x2A, 0, 100, 0, 1, 0)
    itt = i.next_itt()
    i.send_pdu(struct.pack(">BBxxI8sIIII16s", 0x01, 0xA1, 0, lun_field(0), itt, 512,
                           i._take_cmd_sn(False), i.exp_stat_sn, cdb.ljust(16, b"\0")))
    r2t = i.recv_pdu()
    assert r2t.opcode == 0x31
    i.send_pdu(struct.pack(">BBxxI8sII4xI4xII4x", 0x05, 0x80, 512, lun_field(0), itt, r2t.u32(20),
                           i.exp_stat_sn, datasn, 0), bytes(512))
    rej = i.recv_pdu()
    assert rej.opcode == 0x3F and rej.header[2] == 0x04
    with pytest.raises(ConnectionError):
        i.recv_pdu()
    i.close()
    j = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x46")
    j.login(IQN)
    assert j.read10(0, 0, 1).status == 0
    j.logout()


def test_bdev_hot_remove_drops_the_lun(iscsi_app) -> None:
    h, port = iscsi_app()
    c = h.client
    c.iscsi_target_node_add_lun(name=IQN, bdev_name="Malloc1", lun_id=3)
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    report_luns = struct.pack(">BBB3xIxB", 0xA0, 0, 0, 4096, 0)
    r = i.scsi(0, report_luns, read_len=4096)
    assert r.status == 0 and r.data[8:24] == bytes(8) + b"\x00\x03" + bytes(6)
    assert i.read10(3, 0, 1).status == 0
    c.bdev_malloc_delete(name="Malloc1")
    # LUN 3 is gone: commands to it get CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED (25h)
    r = i.read10(3, 0, 1)
    assert r.status == 2 and r.sense[12] == 0x25
    assert c.iscsi_get_target_nodes()[0]["luns"] == [{"bdev_name": "Malloc0", "lun_id": 0}]
    assert i.read10(0, 0, 1).status == 0
    i.logout()


def test_required_digest_refuses_none(iscsi_app) -> None:
    h, port = iscsi_app(node={"header_digest": True})
    i = Initiator("127.0.0.1", port)
    with pytest.raises(IscsiTestError, match="0x0200"):
        i.login(IQN, digests="None")
    i.close()


def test_access_control_at_login(iscsi_app) -> None:
    h, port = iscsi_app()
    c = h.client
    c.iscsi_create_initiator_group(tag=2, initiators=["!iqn.2024-01.org.test:banned", "ANY"],
                                   netmasks=["127.0.0.0/8"])
    c.iscsi_create_initiator_group(tag=3, initiators=["ANY"], netmasks=["10.0.0.0/8"])
    c.iscsi_create_target_node(name="guarded", alias_name="", luns=[{"bdev_name": "Malloc2"}],
                               pg_ig_maps=[{"pg_tag": 1, "ig_tag": 2}], queue_depth=4)
    c.iscsi_create_target_node(name="faraway", alias_name="", luns=[{"bdev_name": "Malloc3"}],
                               pg_ig_maps=[{"pg_tag": 1, "ig_tag": 3}], queue_depth=4)
    banned = Initiator("127.0.0.1", port, name="iqn.2024-01.org.test:banned")
    with pytest.raises(IscsiTestError, match="0x0202"):
        banned.login("iqn.2016-06.io.spdk:guarded")
    banned.close()
    other = Initiator("127.0.0.1", port, name="iqn.2024-01.org.test:other")
    with pytest.raises(IscsiTestError, match="0x0202"):  # 127.0.0.1 is not in 10.0.0.0/8
        other.login("iqn.2016-06.io.spdk:faraway")
    other.close()
    other = Initiator("127.0.0.1", port, name="iqn.2024-01.org.test:other")
    other.login("iqn.2016-06.io.spdk:guarded")
    other.logout()
    # discovery lists what the name may see: the banned initiator does not see "guarded"
    d = Initiator("127.0.0.1", port, name="iqn.2024-01.org.test:banned")
    d.login(None)
    names = [v for k, v in d.send_targets() if k == "TargetName"]
    assert "iqn.2016-06.io.spdk:guarded" not in names and IQN in names
    d.logout()


def test_discovery_chap(iscsi_app) -> None:
    h, port = iscsi_app(chap=("disc", "discovery-secret"))
    h.client.iscsi_set_discovery_auth(require_chap=True, chap_group=1)
    anon = Initiator("127.0.0.1", port)
    with pytest.raises((IscsiTestError, ConnectionError)):
        anon.login(None)
    anon.close()
    d = Initiator("127.0.0.1", port)
    d.login(None, chap=("disc", "discovery-secret"))
    assert ("TargetName", IQN) in d.send_targets()
    d.logout()


def test_ipv6_portal(iscsi_app) -> None:
    h, port = iscsi_app()
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    from .conftest import free_port
    p6 = free_port()
    h.client.iscsi_create_portal_group(tag=6, portals=[{"host": "[::1]", "port": str(p6)}])
    h.client.iscsi_create_initiator_group(tag=6, initiators=["ANY"], netmasks=["[::1]/128"])
    h.client.iscsi_target_node_add_pg_ig_maps(name=IQN, pg_ig_maps=[{"pg_tag": 6, "ig_tag": 6}])
    i = Initiator("::1", p6)
    i.login(IQN)
    assert i.read10(0, 0, 1).status == 0
    i.logout()


def test_login_that_never_finishes_is_dropped(iscsi_app, monkeypatch: pytest.MonkeyPatch) -> None:
    from spydk.iscsi import socket_io as portal
    make = portal.target_config

    def short_login(t):  # type: ignore[no-untyped-def]
        cfg = make(t)
        cfg.login_timeout = 1.0
        return cfg
    monkeypatch.setattr(portal, "target_config", short_login)
    h, port = iscsi_app()
    good = Initiator("127.0.0.1", port)
    good.login(IQN)
    stuck = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x47").connect()
    # a first login request that stays in the security stage, then silence
    data = b"InitiatorName=iqn.2024-01.org.test:slow\0TargetName=" + IQN.encode() + b"\0AuthMethod=None\0"
    stuck.send_pdu(struct.pack(">BBBBI6sHIHHII16x", 0x43, 0x00, 0, 0, len(data), stuck.isid, 0, 1, 0, 0, 1, 0),
                   data)
    assert stuck.recv_pdu().opcode == 0x23
    with pytest.raises(ConnectionError):
        stuck.recv_pdu()  # closed by the target once the login deadline passes
    stuck.close()
    assert good.read10(0, 0, 1).status == 0
    good.logout()


def test_request_logout(iscsi_app) -> None:
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    h.client.iscsi_target_node_request_logout(name="disk1", pg_tag=1)
    msg = i.recv_pdu()
    assert msg.opcode == 0x32 and msg.header[36] == 1  # Async Message: logout requested
    i.exp_stat_sn = (msg.u32(24) + 1) & 0xFFFFFFFF
    i.logout()
    e = _rpc_error_code(h.client.iscsi_target_node_request_logout, name="disk1", pg_tag=9)
    assert e == -19


def _rpc_error_code(fn, **kw) -> int:  # type: ignore[no-untyped-def]
    from spydk.rpc.errors import RpcError
    with pytest.raises(RpcError) as ei:
        fn(**kw)
    return ei.value.code


def test_latency_histogram(iscsi_app) -> None:
    from spydk.bdev.histogram import Histogram
    h, port = iscsi_app()
    c = h.client
    assert _rpc_error_code(c.iscsi_get_histogram, name="disk1") == -14  # not enabled
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    c.iscsi_enable_histogram(name="disk1", enable=True)
    for lba in range(5):
        assert i.read10(0, lba, 1).status == 0
    got = c.iscsi_get_histogram(name="disk1")
    hist = Histogram.decode(got["histogram"], got["bucket_shift"])
    assert hist.total() == 5 and got["tsc_rate"] == 1_000_000_000
    c.iscsi_enable_histogram(name="disk1", enable=False)
    assert i.read10(0, 0, 1).status == 0
    i.logout()


def test_write_residuals(iscsi_app) -> None:
    """EDTL differing from the CDB's length: the CDB's length (or EDTL's whole blocks) is
    written, GOOD, with the residual reported (RFC 7143 11.4.5.1)."""
    h, port = iscsi_app()
    i = Initiator("127.0.0.1", port)
    i.login(IQN)
    assert i.write10(0, 10, b"a" * 1024).status == 0
    one_block = struct.pack(">BBIBHB", 0x2A, 0, 10, 0, 1, 0)
    r = i.scsi(0, one_block, data_out=b"b" * 1024)  # EDTL two blocks, CDB one
    assert (r.status, r.flags, r.residual) == (0, 0x02, 512)
    assert i.read10(0, 10, 2).data == b"b" * 512 + b"a" * 512
    two_blocks = struct.pack(">BBIBHB", 0x2A, 0, 10, 0, 2, 0)
    r = i.scsi(0, two_blocks, data_out=b"c" * 512)  # EDTL one block, CDB two
    assert (r.status, r.flags, r.residual) == (0, 0x04, 512)
    assert i.read10(0, 10, 2).data == b"c" * 512 + b"a" * 512
    i.logout()


def test_two_sessions_of_one_initiator_are_two_nexuses(iscsi_app) -> None:
    """A LUN RESET through one session leaves a UNIT ATTENTION for the other session of the
    same initiator name (different ISID): they are distinct I_T nexuses."""
    h, port = iscsi_app()
    a = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x51")
    b = Initiator("127.0.0.1", port, isid=b"\x80\0\0\0\0\x52")
    a.login(IQN)
    b.login(IQN)
    tur = bytes(6)
    assert a.scsi(0, tur).status == 0 and b.scsi(0, tur).status == 0
    assert a.tmf(5, lun=0) == 0  # LOGICAL UNIT RESET: function complete
    r = b.scsi(0, tur)
    assert r.status == 2 and r.sense[2] & 0x0F == 0x06  # UNIT ATTENTION
    assert b.scsi(0, tur).status == 0
    a.logout()
    b.logout()
