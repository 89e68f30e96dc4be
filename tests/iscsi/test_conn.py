"""In-memory initiator <-> target tests of the connection/session state machines."""
from __future__ import annotations

import pytest

from spydk.iscsi import pdu, spec
from spydk.iscsi.chap import ChapCredentials
from spydk.iscsi.conn import (
    Connection,
    ConnectionFailed,
    ConnState,
    LoggedOut,
    LoginComplete,
    ScsiCommandReady,
    TargetConfig,
    TaskManagementRequest,
)
from spydk.iscsi.negotiation import Limits
from spydk.iscsi.session import AuthRequirement, SessionRegistry, StaticTargetPolicy, TargetInfo
from spydk.iscsi.spec import LoginStatus, Opcode, RejectReason
from spydk.scsi.task import TmfFunction, TmfResponse

from .initiator import INAME, TNAME, FakeScsi, Initiator

CREDS = ChapCredentials("alice", b"alice-secret-12", "target-user", b"target-secret-34")


def make_policy(auth: AuthRequirement = AuthRequirement.NONE, **kw: object) -> StaticTargetPolicy:
    p = StaticTargetPolicy()
    p.targets[TNAME] = TargetInfo(TNAME, "disk one", 7, auth, **kw)  # type: ignore[arg-type]
    p.targets["iqn.2016-06.io.spdk:disk2"] = TargetInfo("iqn.2016-06.io.spdk:disk2", portal_group_tag=7)
    p.addresses[TNAME] = ["10.0.0.1:3260,7"]
    p.addresses["iqn.2016-06.io.spdk:disk2"] = ["10.0.0.1:3260,7", "[fe80::1]:3260,7"]
    p.allowed["iqn.2016-06.io.spdk:disk2"] = {"iqn.2024-01.org.test:other"}
    p.credentials["alice"] = CREDS
    return p


def make(auth: AuthRequirement = AuthRequirement.NONE, config: TargetConfig | None = None,
         registry: SessionRegistry | None = None, policy: StaticTargetPolicy | None = None,
         **kw: object) -> tuple[Initiator, Connection, SessionRegistry]:
    reg = registry if registry is not None else SessionRegistry()
    cfg = config or TargetConfig()
    conn = Connection(cfg, policy or make_policy(auth), reg, initiator_address="10.0.0.2", now=0.0,
                      token_bytes=lambda n: bytes((i * 13 + 5) & 0xFF for i in range(n)))
    return Initiator(conn, **kw), conn, reg  # type: ignore[arg-type]


def logged_in(**kw: object) -> tuple[Initiator, Connection, SessionRegistry]:
    cfg = kw.pop("config", None)
    ini, conn, reg = make(config=cfg, **kw)  # type: ignore[arg-type]
    r = ini.login()
    assert r.f["status_class"] == 0 and conn.state is ConnState.FULL_FEATURE
    return ini, conn, reg


# -- login -------------------------------------------------------------------------------


def test_login_no_auth() -> None:
    ini, conn, reg = make()
    r = ini.login()
    assert r.f["status_class"] == 0 and r.f["tsih"] != 0
    assert r.keys["MaxRecvDataSegmentLength"] == "65536"
    assert conn.state is ConnState.FULL_FEATURE
    ev = [e for e in ini.events if isinstance(e, LoginComplete)]
    assert len(ev) == 1 and ev[0].leading and ev[0].session.tsih == r.f["tsih"]
    assert len(reg) == 1 and conn.session is not None and conn.session.target is not None
    assert conn.max_send_data == ini.mrdsl
    # first response carried the portal group tag and alias
    assert conn.session.exp_cmd_sn == ini.cmd_sn


def test_first_login_response_has_tpgt_and_statsn_sequence() -> None:
    ini, conn, _ = make()
    rx = ini.login_pdu([("InitiatorName", INAME), ("TargetName", TNAME), ("AuthMethod", "None")], 0, 1, True)
    r = rx[0]
    assert r.keys["TargetPortalGroupTag"] == "7" and r.keys["TargetAlias"] == "disk one"
    assert r.keys["AuthMethod"] == "None"
    assert r.f["statsn"] == 5000 and r.f["flags"] == 0x81 and r.f["expcmdsn"] == 100
    rx = ini.login_pdu([("MaxRecvDataSegmentLength", "8192")], 1, 3, True)
    assert rx[0].f["statsn"] == 5001 and rx[0].f["flags"] == 0x87


def test_login_skip_security_stage() -> None:
    ini, conn, _ = make()
    r = ini.login(skip_security=True)
    assert r.f["status_class"] == 0 and conn.state is ConnState.FULL_FEATURE


def test_login_skip_security_refused_when_chap_required() -> None:
    ini, conn, _ = make(AuthRequirement.CHAP)
    r = ini.login(skip_security=True)
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)
    assert isinstance(ini.failed, ConnectionFailed) and conn.state is ConnState.FAILED


def test_login_unknown_target() -> None:
    ini, conn, _ = make()
    r = ini.login("iqn.2016-06.io.spdk:nope")
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 3)
    assert ini.failed is not None and ini.failed.login_status is LoginStatus.NOT_FOUND


def test_login_not_authorized() -> None:
    ini, conn, _ = make()
    r = ini.login("iqn.2016-06.io.spdk:disk2")
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 2)


def test_login_missing_initiator_name() -> None:
    ini, conn, _ = make()
    r = ini.login_pdu([("TargetName", TNAME)], 0, 1, True)[-1]
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 7)


def test_login_missing_target_name() -> None:
    ini, conn, _ = make()
    r = ini.login(None)
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 7)


def test_login_unsupported_version() -> None:
    ini, conn, _ = make()
    r = ini.login_pdu([("InitiatorName", INAME), ("TargetName", TNAME)], 0, 1, True, version_min=1)[-1]
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 5)


def test_login_chap() -> None:
    ini, conn, _ = make(AuthRequirement.CHAP)
    r = ini.login(chap=("alice", CREDS.secret))
    assert r.f["status_class"] == 0 and conn.state is ConnState.FULL_FEATURE


def test_login_mutual_chap() -> None:
    ini, conn, _ = make(AuthRequirement.MUTUAL_CHAP)
    r = ini.login(chap=("alice", CREDS.secret), mutual=(CREDS.mutual_user, CREDS.mutual_secret))
    assert r.f["status_class"] == 0 and conn.state is ConnState.FULL_FEATURE


def test_login_mutual_required_but_one_way_offered() -> None:
    ini, conn, _ = make(AuthRequirement.MUTUAL_CHAP)
    r = ini.login(chap=("alice", CREDS.secret))
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)


def test_login_wrong_secret() -> None:
    ini, conn, _ = make(AuthRequirement.CHAP)
    r = ini.login(chap=("alice", b"wrong-secret-000"))
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)
    assert conn.state is ConnState.FAILED and ini.failed is not None


def test_login_unknown_chap_user() -> None:
    ini, conn, _ = make(AuthRequirement.CHAP)
    r = ini.login(chap=("mallory", CREDS.secret))
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)


def test_login_chap_required_but_none_offered() -> None:
    ini, conn, _ = make(AuthRequirement.CHAP)
    r = ini.login()
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)


def test_login_optional_auth_accepts_none_and_chap() -> None:
    ini, conn, _ = make(AuthRequirement.OPTIONAL)
    assert ini.login().f["status_class"] == 0
    ini, conn, _ = make(AuthRequirement.OPTIONAL)
    assert ini.login(chap=("alice", CREDS.secret)).f["status_class"] == 0


def test_login_chap_reflected_challenge_refused() -> None:
    ini, conn, _ = make(AuthRequirement.MUTUAL_CHAP)
    ini.login_pdu([("InitiatorName", INAME), ("TargetName", TNAME), ("AuthMethod", "CHAP")], 0, 1, False)
    r = ini.login_pdu([("CHAP_A", "5")], 0, 1, False)[-1]
    from spydk.iscsi.chap import chap_md5, decode_binary, encode_binary
    ident, challenge = int(r.keys["CHAP_I"]), decode_binary(r.keys["CHAP_C"])
    resp = [("CHAP_N", "alice"), ("CHAP_R", encode_binary(chap_md5(ident, CREDS.secret, challenge))),
            ("CHAP_I", "1"), ("CHAP_C", r.keys["CHAP_C"])]
    r = ini.login_pdu(resp, 0, 1, True)[-1]
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 1)


def test_login_text_continued_over_pdus() -> None:
    ini, conn, _ = make()
    text = [("InitiatorName", INAME), ("TargetName", TNAME), ("AuthMethod", "None")]
    from spydk.iscsi.negotiation import encode_text
    raw = encode_text(text)
    flags_c = 0x40  # C=1, CSG=0
    h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=flags_c, data_len=10, isid=ini.isid, itt=1,
                   cmdsn=100, expstatsn=0)
    rx = ini.send(h, raw[:10])
    assert rx[0].f["flags"] == 0 and rx[0].data == b""
    h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=0x81, data_len=len(raw) - 10, isid=ini.isid, itt=1,
                   cmdsn=100, expstatsn=0)
    rx = ini.send(h, raw[10:])
    assert rx[0].f["flags"] == 0x81 and rx[0].keys["AuthMethod"] == "None"


def test_login_timeout() -> None:
    ini, conn, _ = make(config=TargetConfig(login_timeout=5.0))
    ini.login_pdu([("InitiatorName", INAME), ("TargetName", TNAME), ("AuthMethod", "None")], 0, 1, False)
    assert conn.get_timer() == 5.0
    assert conn.handle_timer(4.0) == []
    evs = conn.handle_timer(5.0)
    assert len(evs) == 1 and isinstance(evs[0], ConnectionFailed) and evs[0].reason == "login timeout"
    assert conn.receive_data(b"\0" * 48) == [] and conn.state is ConnState.FAILED


def test_non_login_pdu_during_login() -> None:
    ini, conn, _ = make()
    rx = ini.nop()
    assert rx[0].op == Opcode.LOGIN_RSP and (rx[0].f["status_class"], rx[0].f["status_detail"]) == (2, 0x0B)
    assert conn.state is ConnState.FAILED


def test_digests_negotiated_and_used() -> None:
    ini, conn, _ = make()
    r = ini.login(op_keys=[("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C,None")])
    assert r.keys["HeaderDigest"] == "CRC32C" and ini.hd and ini.dd
    itt, rx = ini.read(4096)
    assert rx[-1].f["flags"] & spec.DATAIN_STATUS and len(rx[-1].data) == 4096
    itt, rx = ini.write(bytes(range(256)) * 32, immediate_len=4096)
    assert rx[-1].op == Opcode.SCSI_RSP and ini.scsi.disk[itt] == bytes(range(256)) * 32


def test_header_digest_error_is_fatal() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("HeaderDigest", "CRC32C"), ("DataDigest", "None")])
    h = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=5, ttt=spec.RESERVED_TAG)
    rx = ini.raw(bytes(h) + b"\0\0\0\0")
    assert rx == [] and isinstance(ini.failed, ConnectionFailed) and "digest" in ini.failed.reason


def test_data_digest_error_rejected() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("HeaderDigest", "None"), ("DataDigest", "CRC32C")])
    h = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=5, ttt=spec.RESERVED_TAG, data_len=4)
    rx = ini.raw(bytes(h) + b"ping" + b"\0\0\0\0")
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.DATA_DIGEST_ERROR
    assert rx[0].data == bytes(h) and conn.state is ConnState.FULL_FEATURE


def test_digest_required_by_target() -> None:
    pol = make_policy(header_digest_required=True)
    ini, conn, _ = make(policy=pol)
    r = ini.login()
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 0)
    ini, conn, _ = make(policy=pol)
    r = ini.login(op_keys=[("HeaderDigest", "None,CRC32C")])
    assert r.f["status_class"] == 0 and ini.hd


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_send_targets_all() -> None:
    ini, conn, _ = make()
    r = ini.login(discovery=True)
    assert r.f["status_class"] == 0 and conn.session is not None and conn.session.discovery
    rx = ini.text([("SendTargets", "All")])
    assert len(rx) == 1 and rx[0].f["flags"] & 0x80
    from spydk.iscsi.negotiation import parse_text
    assert parse_text(rx[0].data) == [("TargetName", TNAME), ("TargetAddress", "10.0.0.1:3260,7")]


def test_discovery_rejects_scsi_commands() -> None:
    ini, conn, _ = make()
    ini.login(discovery=True)
    _, rx = ini.read(512)
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.PROTOCOL_ERROR


def test_discovery_chap() -> None:
    pol = make_policy()
    pol.discovery = AuthRequirement.CHAP
    ini, conn, _ = make(policy=pol)
    assert ini.login(discovery=True).f["status_class"] == 2
    ini, conn, _ = make(policy=pol)
    assert ini.login(discovery=True, chap=("alice", CREDS.secret)).f["status_class"] == 0


def test_send_targets_long_response_continues() -> None:
    pol = make_policy()
    for i in range(300):
        name = f"iqn.2016-06.io.spdk:target-with-a-long-name-{i:04d}"
        pol.targets[name] = TargetInfo(name)
        pol.addresses[name] = ["192.168.100.100:3260,1"]
    ini, conn, _ = make(policy=pol)
    ini.mrdsl = 4096
    ini.login(discovery=True)
    rx = ini.text([("SendTargets", "All")])
    assert len(rx) > 4 and all(len(r.data) <= 4096 for r in rx)
    assert all(r.f["flags"] == 0x40 for r in rx[:-1]) and rx[-1].f["flags"] == 0x80
    from spydk.iscsi.negotiation import parse_text
    pairs = parse_text(b"".join(r.data for r in rx))
    assert sum(1 for k, _ in pairs if k == "TargetName") == 301  # disk2 is not allowed for us


def test_send_targets_in_normal_session() -> None:
    ini, conn, _ = logged_in()
    rx = ini.text([("SendTargets", "")])
    assert rx[0].keys == {"TargetName": TNAME, "TargetAddress": "10.0.0.1:3260,7"}
    rx = ini.text([("SendTargets", "All")])
    assert rx[0].keys == {"SendTargets": "Reject"}


# -- reads and writes --------------------------------------------------------------------------


def test_read_phase_collapsed() -> None:
    ini, conn, _ = logged_in()
    itt, rx = ini.read(4096)
    assert len(rx) == 1
    f = rx[0].f
    assert f["opcode"] == Opcode.DATA_IN and f["flags"] == 0x81 and f["status"] == 0 and f["itt"] == itt
    assert f["statsn"] == ini.exp_stat_sn and f["datasn"] == 0 and f["buffer_offset"] == 0
    assert rx[0].data == bytes((i * 7 + itt) & 0xFF for i in range(4096))


def test_read_split_by_mrdsl_and_burst() -> None:
    ini, conn, _ = make()
    ini.mrdsl = 8192
    ini.login(op_keys=[("MaxRecvDataSegmentLength", "8192"), ("MaxBurstLength", "16384")])
    itt, rx = ini.read(40960)
    assert [len(r.data) for r in rx] == [8192] * 5
    assert [r.f["datasn"] for r in rx] == [0, 1, 2, 3, 4]
    assert [r.f["buffer_offset"] for r in rx] == [0, 8192, 16384, 24576, 32768]
    assert [r.f["flags"] for r in rx] == [0x00, 0x80, 0x00, 0x80, 0x81]
    assert b"".join(r.data for r in rx) == bytes((i * 7 + itt) & 0xFF for i in range(40960))


def test_read_multiple_data_in_buffers_and_underflow() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    itt, rx = ini.scsi_cmd(b"\x12\0\0\0\xff\0", read=255)
    task = ini.scsi.pending.pop()
    task.data_in = [memoryview(b"abc"), memoryview(b""), memoryview(b"defgh")]
    task.data_in_length = 8
    rx = ini.collect(conn.complete_task(task))
    assert len(rx) == 1 and rx[0].data == b"abcdefgh"
    assert rx[0].f["flags"] == 0x81 | spec.RSP_UNDERFLOW and rx[0].f["residual"] == 247


def test_read_overflow() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    ini.scsi_cmd(b"\x12", read=4)
    task = ini.scsi.pending.pop()
    task.data_in = [memoryview(b"abcdefgh")]
    task.data_in_length = 8
    rx = ini.collect(conn.complete_task(task))
    assert rx[0].data == b"abcd" and rx[0].f["flags"] & spec.RSP_OVERFLOW and rx[0].f["residual"] == 4


def test_read_with_sense_sends_scsi_response() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.sense = b"\x70\0\x05\0\0\0\0\x0a" + b"\0" * 10
    itt, rx = ini.read(1024)
    assert [r.op for r in rx] == [Opcode.DATA_IN, Opcode.SCSI_RSP]
    assert not rx[0].f["flags"] & spec.DATAIN_STATUS
    rsp = rx[1]
    assert rsp.f["status"] == 2 and rsp.f["expdatasn"] == 1
    assert rsp.data[:2] == (18).to_bytes(2, "big") and rsp.data[2:] == ini.scsi.sense


def test_write_immediate_data() -> None:
    ini, conn, _ = logged_in()
    data = bytes(range(256)) * 16
    itt, rx = ini.write(data, immediate_len=4096)
    assert [r.op for r in rx] == [Opcode.SCSI_RSP] and rx[0].f["status"] == 0
    assert ini.scsi.disk[itt] == data


def test_write_r2t() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("MaxBurstLength", "16384"), ("MaxOutstandingR2T", "2"), ("InitialR2T", "Yes")])
    data = bytes((i * 3) & 0xFF for i in range(65536))
    itt, rx = ini.write(data, immediate_len=0)
    r2ts = [r for r in rx if r.op == Opcode.R2T]
    assert [r.f["r2tsn"] for r in r2ts] == [0, 1, 2, 3]
    assert [r.f["buffer_offset"] for r in r2ts] == [0, 16384, 32768, 49152]
    assert all(r.f["desired_length"] == 16384 for r in r2ts)
    assert rx[-1].op == Opcode.SCSI_RSP and rx[-1].f["expdatasn"] == 4
    assert ini.scsi.disk[itt] == data


def test_write_r2t_respects_max_outstanding() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("MaxBurstLength", "8192"), ("MaxOutstandingR2T", "1")])
    ini.scsi.auto = True
    cdb = b"\x2a" + b"\0" * 9
    itt, rx = ini.scsi_cmd(cdb, write=b"\1" * 32768, immediate_len=8192)
    assert [r.op for r in rx] == [Opcode.R2T] and rx[0].f["buffer_offset"] == 8192


def test_write_unsolicited_data_out() -> None:
    ini, conn, _ = make()
    r = ini.login(op_keys=[("InitialR2T", "No"), ("ImmediateData", "Yes"), ("FirstBurstLength", "32768")])
    assert r.keys["InitialR2T"] == "Yes"  # our default is Yes (OR)
    cfg = TargetConfig(limits=Limits(initial_r2t=False))
    ini, conn, _ = make(config=cfg)
    r = ini.login(op_keys=[("InitialR2T", "No"), ("FirstBurstLength", "32768")])
    assert r.keys["InitialR2T"] == "No" and r.keys["FirstBurstLength"] == "32768"
    data = bytes((i * 5) & 0xFF for i in range(65536))
    itt, rx = ini.write(data, immediate_len=8192, unsolicited=32768 - 8192)
    r2ts = [x for x in rx if x.op == Opcode.R2T]
    assert r2ts[0].f["buffer_offset"] == 32768
    assert rx[-1].op == Opcode.SCSI_RSP and ini.scsi.disk[itt] == data


def test_write_large_direct_placement() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("MaxBurstLength", "262144"), ("MaxRecvDataSegmentLength", "65536")])
    data = bytes((i * 11) & 0xFF for i in range(131072))
    itt, rx = ini.scsi_cmd(b"\x2a", write=data, immediate_len=0)
    r2t = rx[0]
    # Feed a 64 KiB Data-Out in small pieces so the reader switches to direct placement.
    h = pdu.encode(Opcode.DATA_OUT, flags=0, data_len=65536, itt=itt, ttt=r2t.f["ttt"], buffer_offset=0, datasn=0)
    wire = bytes(h) + data[:65536]
    for i in range(0, len(wire), 1000):
        assert ini.raw(wire[i:i + 1000]) == []
    assert conn.reader._direct is None
    h = pdu.encode(Opcode.DATA_OUT, data_len=65536, itt=itt, ttt=r2t.f["ttt"], buffer_offset=65536, datasn=1)
    rx = ini.raw(bytes(h) + data[65536:])
    assert rx[-1].op == Opcode.SCSI_RSP and ini.scsi.disk[itt] == data


def test_immediate_data_beyond_first_burst_rejected() -> None:
    ini, conn, _ = make()
    ini.login(op_keys=[("FirstBurstLength", "4096")])
    itt, rx = ini.scsi_cmd(b"\x2a", write=b"x" * 8192, immediate_len=8192)
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.PROTOCOL_ERROR
    # The CmdSN was used up and the window still moves.
    _, rx = ini.read(512)
    assert rx[-1].f["flags"] & spec.DATAIN_STATUS


def test_data_out_unknown_itt_rejected() -> None:
    ini, conn, _ = logged_in()
    rx = ini.data_out(0x999, 0x1234, 0, b"abcd", 0, True)
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.INVALID_PDU_FIELD
    assert conn.state is ConnState.FULL_FEATURE


def test_data_out_wrong_offset_is_fatal() -> None:
    ini, conn, _ = logged_in()
    itt, rx = ini.scsi_cmd(b"\x2a", write=b"x" * 8192)
    r2t = rx[0]
    rx = ini.data_out(itt, r2t.f["ttt"], 4096, b"y" * 4096, 0, True)
    assert rx[0].op == Opcode.REJECT and ini.failed is not None


def test_oversized_data_segment_is_fatal() -> None:
    ini, conn, _ = logged_in()
    h = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=5, ttt=spec.RESERVED_TAG, data_len=65537)
    rx = ini.raw(bytes(h))
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.PROTOCOL_ERROR
    assert isinstance(ini.failed, ConnectionFailed)


def test_unknown_opcode_rejected() -> None:
    ini, conn, _ = logged_in()
    h = bytearray(48)
    h[0] = 0x1C
    rx = ini.raw(bytes(h))
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.COMMAND_NOT_SUPPORTED
    assert rx[0].data == bytes(h) and conn.state is ConnState.FULL_FEATURE
    h[0] = 0x10  # SNACK at ERL 0
    rx = ini.raw(bytes(h))
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.PROTOCOL_ERROR


def test_duplicate_itt_rejected() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    itt, _ = ini.read(512)
    _, rx = ini.scsi_cmd(b"\x28", read=512, itt=itt)
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.INVALID_PDU_FIELD


# -- command numbering -----------------------------------------------------------------------


def test_cmdsn_window() -> None:
    ini, conn, _ = logged_in(config=TargetConfig(queue_depth=4))
    ini.scsi.auto = False
    start = ini.cmd_sn
    for _ in range(4):
        ini.read(512)
    assert len(ini.scsi.pending) == 4
    # Outside the window: silently ignored.
    _, rx = ini.scsi_cmd(b"\x28", read=512, cmd_sn=start + 4)
    assert rx == [] and len(ini.scsi.pending) == 4
    task = ini.scsi.pending.pop(0)
    ini.scsi.execute(task)
    rx = ini.collect(conn.complete_task(task))
    assert rx[0].f["expcmdsn"] == start + 4 and rx[0].f["maxcmdsn"] == start + 4
    _, rx = ini.scsi_cmd(b"\x28", read=512, cmd_sn=start + 4)
    assert len(ini.scsi.pending) == 4


def test_cmdsn_out_of_order_deferred() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    sn = ini.cmd_sn
    ini.scsi_cmd(b"\x28", read=512, cmd_sn=sn + 1)
    assert ini.scsi.pending == []
    ini.scsi_cmd(b"\x28", read=512, cmd_sn=sn)
    assert [t.tag for t in ini.scsi.pending] == [ini.itt, ini.itt - 1]


def test_immediate_command_does_not_consume_cmdsn() -> None:
    ini, conn, _ = logged_in()
    sn = ini.cmd_sn
    ini.scsi_cmd(b"\x28", read=512, immediate=True)
    assert conn.session is not None and conn.session.exp_cmd_sn == sn


# -- NOP -------------------------------------------------------------------------------------------


def test_nop_ping_echo() -> None:
    ini, conn, _ = logged_in()
    rx = ini.nop(b"hello", immediate=False)
    assert rx[0].op == Opcode.NOP_IN and rx[0].data == b"hello" and rx[0].f["ttt"] == spec.RESERVED_TAG
    assert rx[0].f["itt"] == ini.itt


def test_target_nop_ping_and_timeout() -> None:
    ini, conn, _ = make(config=TargetConfig(nop_interval=10, nop_timeout=5))
    ini.login()
    assert conn.get_timer() == 10
    assert conn.handle_timer(9) == []
    assert conn.handle_timer(10) == []
    rx = ini.collect(conn.data_to_send())
    assert rx[0].op == Opcode.NOP_IN and rx[0].f["itt"] == spec.RESERVED_TAG and rx[0].f["ttt"] != spec.RESERVED_TAG
    assert conn.get_timer() == 15
    # The initiator answers: no failure.
    h = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=spec.RESERVED_TAG, ttt=rx[0].f["ttt"], cmdsn=ini.cmd_sn)
    assert ini.conn.buffer_updated(0, now=12) == []
    assert ini.conn.receive_data(bytes(h), now=12) == [] and conn.data_to_send() == []
    assert conn.get_timer() == 22
    conn.handle_timer(22)
    ini.collect(conn.data_to_send())
    evs = conn.handle_timer(27)
    assert isinstance(evs[0], ConnectionFailed) and "NOP" in evs[0].reason
    assert conn.get_timer() is None


# -- task management ------------------------------------------------------------------------------


def test_abort_task_delivered() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    itt, _ = ini.read(4096)
    task = ini.scsi.pending.pop()
    rx = ini.tmf(TmfFunction.ABORT_TASK, itt)
    assert rx == []
    req = ini.events[-1]
    assert isinstance(req, TaskManagementRequest) and req.task is task and req.function is TmfFunction.ABORT_TASK
    task.aborted = True
    assert ini.collect(conn.complete_task(task)) == []
    rx = ini.collect(conn.task_management_done(req, TmfResponse.COMPLETE))
    assert rx[0].op == Opcode.TASK_MGMT_RSP and rx[0].f["response"] == 0 and rx[0].f["itt"] == req.itt


def test_abort_task_waiting_for_data_drops_r2t_state() -> None:
    ini, conn, _ = logged_in()
    itt, rx = ini.scsi_cmd(b"\x2a", write=b"z" * 16384)
    assert rx[0].op == Opcode.R2T
    rx = ini.tmf(TmfFunction.ABORT_TASK, itt)
    assert rx[0].op == Opcode.TASK_MGMT_RSP and rx[0].f["response"] == TmfResponse.COMPLETE
    assert not conn._cmds
    rx = ini.data_out(itt, 1, 0, b"z" * 4096, 0, False)
    assert rx[0].op == Opcode.REJECT


def test_abort_unknown_task() -> None:
    ini, conn, _ = logged_in()
    rx = ini.tmf(TmfFunction.ABORT_TASK, 0x4242)
    assert rx[0].f["response"] == TmfResponse.TASK_DOES_NOT_EXIST


def test_lun_reset_event() -> None:
    ini, conn, _ = logged_in()
    ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=3)
    req = ini.events[-1]
    assert isinstance(req, TaskManagementRequest) and req.lun == 3 and req.task is None
    rx = ini.collect(conn.task_management_done(req, TmfResponse.COMPLETE))
    assert rx[0].op == Opcode.TASK_MGMT_RSP


def test_task_reassign_not_supported() -> None:
    ini, conn, _ = logged_in()
    rx = ini.tmf(TmfFunction.TASK_REASSIGN, 1)
    assert rx[0].f["response"] == TmfResponse.REASSIGNMENT_NOT_SUPPORTED


# -- logout / sessions ----------------------------------------------------------------------------


def test_logout_session() -> None:
    ini, conn, reg = logged_in()
    rx = ini.logout(0)
    assert rx[0].op == Opcode.LOGOUT_RSP and rx[0].f["response"] == 0
    assert isinstance(ini.events[-1], LoggedOut) and ini.events[-1].close_session
    assert conn.state is ConnState.LOGGED_OUT and len(reg) == 0
    assert ini.raw(bytes(48)) == []


def test_logout_recovery_not_supported() -> None:
    ini, conn, _ = logged_in()
    rx = ini.logout(2)
    assert rx[0].f["response"] == spec.LogoutResponse.RECOVERY_NOT_SUPPORTED


def test_second_connection_joins_session() -> None:
    reg = SessionRegistry()
    ini, conn, _ = make(registry=reg)
    ini.login(op_keys=[("MaxConnections", "2")])
    s = conn.session
    assert s is not None and s.params.max_connections == 2
    ini2, conn2, _ = make(registry=reg, tsih=ini.tsih, cid=1, cmd_sn=ini.cmd_sn)
    r = ini2.login()
    assert r.f["status_class"] == 0 and conn2.session is s and set(s.connections) == {0, 1}
    assert isinstance(ini2.events[-1], LoginComplete) and not ini2.events[-1].leading
    # Commands on both connections share one CmdSN space.
    ini.read(512)
    ini2.cmd_sn = ini.cmd_sn
    _, rx = ini2.read(512)
    assert rx[-1].f["expcmdsn"] == ini.cmd_sn + 1
    # A third connection is over MaxConnections.
    ini3, conn3, _ = make(registry=reg, tsih=ini.tsih, cid=2)
    r = ini3.login()
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 6)
    # Logout of connection 1 from connection 0.
    rx = ini.logout(1, cid=1)
    assert rx[0].f["response"] == 0 and conn2.state is ConnState.FAILED and set(s.connections) == {0}


def test_join_unknown_session() -> None:
    ini, conn, _ = make(tsih=0x77)
    r = ini.login()
    assert (r.f["status_class"], r.f["status_detail"]) == (2, 0x0A)


def test_session_reinstatement() -> None:
    reg = SessionRegistry()
    woken: list[Connection] = []
    reg.on_wake = woken.append
    ini, conn, _ = make(registry=reg)
    ini.login()
    old = conn.session
    ini2, conn2, _ = make(registry=reg)
    assert ini2.login().f["status_class"] == 0
    assert conn.state is ConnState.FAILED and woken == [conn]
    assert isinstance(conn.pending_events()[0], ConnectionFailed)
    assert len(reg) == 1 and conn2.session is not old


def test_complete_task_misuse() -> None:
    from spydk.iscsi.conn import LocalProtocolError
    from spydk.scsi.task import ScsiTask
    ini, conn, _ = logged_in()
    with pytest.raises(LocalProtocolError):
        conn.complete_task(ScsiTask())
    ini.scsi.auto = False
    ini.read(512)
    task = ini.scsi.pending.pop()
    ini.scsi.execute(task)
    conn.complete_task(task)
    with pytest.raises(LocalProtocolError):
        conn.complete_task(task)


def test_completion_after_connection_lost_is_silent() -> None:
    ini, conn, reg = logged_in()
    ini.scsi.auto = False
    ini.read(512)
    task = ini.scsi.pending.pop()
    assert conn.outstanding_tasks() == [task]
    conn.connection_lost()
    assert len(reg) == 0
    ini.scsi.execute(task)
    assert conn.complete_task(task) == []


def test_buffered_protocol_interface() -> None:
    ini, conn, _ = logged_in()
    h = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=9, ttt=spec.RESERVED_TAG, data_len=3)
    wire = bytes(h) + b"abc\0"
    for b in wire:
        buf = conn.get_buffer(1)
        buf[0] = b
        evs = conn.buffer_updated(1, now=1.0)
        assert evs == []
    rx = ini.collect(conn.data_to_send())
    assert rx[0].op == Opcode.NOP_IN and rx[0].data == b"abc"


def test_events_are_scsi_command_ready() -> None:
    ini, conn, _ = logged_in()
    ini.scsi.auto = False
    ini.read(512)
    ev = ini.events[-1]
    assert isinstance(ev, ScsiCommandReady) and ev.task.transfer_length == 512 and ev.task.lun == 0
    # the SCSI initiator port: name + ",i,0x" + ISID (two sessions are two I_T nexuses)
    assert ev.task.initiator_port == f"{INAME},i,0x{conn.isid.hex()}"


def test_fake_scsi_is_used() -> None:
    assert FakeScsi().auto


def test_write_longer_than_limit_rejected() -> None:
    ini, conn, _ = logged_in(config=TargetConfig(max_write_length=65536))
    _, rx = ini.scsi_cmd(b"\x2a", write=b"q" * 65540, immediate_len=0)
    assert rx[0].op == Opcode.REJECT and rx[0].f["reason"] == RejectReason.INVALID_PDU_FIELD
    _, rx = ini.read(512)
    assert rx[-1].f["flags"] & spec.DATAIN_STATUS


def test_login_long_request_and_response_both_continued() -> None:
    from spydk.iscsi.negotiation import encode_text
    ini, conn, _ = make()
    keys = [("InitiatorName", INAME), ("TargetName", TNAME), ("AuthMethod", "None")]
    keys += [(f"X-org.test.key{i:04d}", "1") for i in range(700)]
    raw = encode_text(keys)
    chunks = [raw[i:i + 8000] for i in range(0, len(raw), 8000)]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=(0x81 if last else 0x40), data_len=len(chunk),
                       isid=ini.isid, itt=1, cmdsn=100)
        rx = ini.send(h, chunk)
    answers = bytes(rx[0].data)
    assert rx[0].f["flags"] == 0x40 and len(answers) == 8192  # C=1, no transit yet
    while True:
        h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=0x81, isid=ini.isid, itt=1, cmdsn=100)
        rx = ini.send(h)
        answers += rx[0].data
        if not rx[0].f["flags"] & 0x40:
            break
    assert rx[0].f["flags"] == 0x81
    from spydk.iscsi.negotiation import parse_text
    got = dict(parse_text(answers))
    assert got["X-org.test.key0699"] == "NotUnderstood" and got["AuthMethod"] == "None"
    assert ini.login_pdu([], 1, 3, True)[-1].f["status_class"] == 0
    assert conn.state is ConnState.FULL_FEATURE


def test_login_pdu_over_8k_refused_with_login_response() -> None:
    ini, conn, _ = make()
    rx = ini.login_pdu([("InitiatorName", "x" * 9000)], 0, 1, True)
    assert rx[0].op == Opcode.LOGIN_RSP and rx[0].f["status_class"] == 2 and conn.state is ConnState.FAILED


def test_unsolicited_burst_ending_early_is_solicited() -> None:
    cfg = TargetConfig(limits=Limits(initial_r2t=False))
    ini, conn, _ = make(config=cfg)
    ini.login(op_keys=[("InitialR2T", "No"), ("FirstBurstLength", "16384"), ("MaxBurstLength", "65536")])
    data = bytes((i * 3) & 0xFF for i in range(32768))
    itt, rx = ini.scsi_cmd(b"\x2a", write=data, immediate_len=4096, final=False)
    assert [r.f["buffer_offset"] for r in rx if r.op == Opcode.R2T] == [16384]
    # Only 4 KiB of the 12 KiB unsolicited allowance, then F.
    rx = ini.data_out(itt, spec.RESERVED_TAG, 4096, data[4096:8192], 0, True)
    assert [(r.f["buffer_offset"], r.f["desired_length"]) for r in rx if r.op == Opcode.R2T] == []
    # Answer the outstanding R2T (16384..32768); the gap R2T (8192..16384) follows.
    ttt = next(iter(conn._cmds[itt].r2ts))
    rx = ini.data_out(itt, ttt, 16384, data[16384:], 0, True)
    gap = [r for r in rx if r.op == Opcode.R2T]
    assert [(g.f["buffer_offset"], g.f["desired_length"]) for g in gap] == [(8192, 8192)]
    rx = ini.data_out(itt, gap[0].f["ttt"], 8192, data[8192:16384], 0, True)
    assert rx[-1].op == Opcode.SCSI_RSP and ini.scsi.disk[itt] == data


def test_deferred_command_on_other_connection_wakes_it() -> None:
    reg = SessionRegistry()
    woken: list[Connection] = []
    reg.on_wake = woken.append
    ini, conn, _ = make(registry=reg)
    ini.login(op_keys=[("MaxConnections", "2")])
    ini2, conn2, _ = make(registry=reg, tsih=ini.tsih, cid=1, cmd_sn=ini.cmd_sn)
    ini2.login()
    ini.scsi.auto = ini2.scsi.auto = False
    sn = ini.cmd_sn
    ini2.scsi_cmd(b"\x28", read=512, cmd_sn=sn + 1)   # arrives first, must wait
    assert conn2.pending_events() == [] and not ini2.scsi.pending
    ini.scsi_cmd(b"\x28", read=512, cmd_sn=sn)
    assert woken == [conn2]
    evs = conn2.pending_events()
    assert len(evs) == 1 and isinstance(evs[0], ScsiCommandReady)
