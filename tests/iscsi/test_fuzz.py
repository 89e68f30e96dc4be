"""Random input never raises out of the connection state machine."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spydk.iscsi import pdu
from spydk.iscsi.conn import ConnState
from spydk.iscsi.negotiation import encode_text
from spydk.iscsi.session import AuthRequirement
from spydk.iscsi.spec import Opcode

from .initiator import INAME, TNAME
from .test_conn import logged_in, make

KEYS = ["InitiatorName", "TargetName", "SessionType", "AuthMethod", "CHAP_A", "CHAP_N", "CHAP_R", "CHAP_I",
        "CHAP_C", "HeaderDigest", "MaxRecvDataSegmentLength", "MaxBurstLength", "FirstBurstLength",
        "InitialR2T", "X-foo", "MaxConnections", "SendTargets"]
VALUES = st.one_of(st.sampled_from(["None", "CHAP", "5", "Normal", "Discovery", INAME, TNAME, "Yes", "No",
                                    "0x00", "CRC32C,None", "512", "All", "Reject"]), st.text(max_size=20))
login_pdu = st.tuples(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=6),
                      st.integers(0, 255), st.integers(0, 3), st.binary(max_size=8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(login_pdu, min_size=1, max_size=5), st.sampled_from(list(AuthRequirement)))
def test_fuzz_login(pdus: list, auth: AuthRequirement) -> None:
    ini, conn, _ = make(auth)
    for keys, flags, version, junk in pdus:
        text = encode_text(keys) + junk
        h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=flags, version_min=version, data_len=len(text),
                       isid=ini.isid, itt=1, cmdsn=1)
        ini.send(h, text)
        if conn.state in (ConnState.FAILED, ConnState.FULL_FEATURE):
            break
    conn.handle_timer(1e9)
    assert conn.state in (ConnState.FAILED, ConnState.FULL_FEATURE, ConnState.LOGGED_OUT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from([0, 1, 2, 4, 5, 6, 0x10, 0x1C, 0x41]), st.binary(min_size=47,
                                                                                             max_size=47),
                          st.binary(max_size=64)), max_size=6))
def test_fuzz_full_feature(pdus: list) -> None:
    ini, conn, _ = logged_in()
    for op, rest, data in pdus:
        h = bytearray(bytes([op]) + rest)
        h[4] = 0  # keep AHS small so the test exercises handlers, not just framing errors
        h[5:8] = len(data).to_bytes(3, "big")
        ini.send(bytes(h), data)
        if conn.state is not ConnState.FULL_FEATURE:
            break
    for task in list(ini.scsi.pending):
        conn.complete_task(task)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_raw_bytes_after_login(raw: bytes) -> None:
    ini, conn, _ = logged_in()
    ini.raw(raw)
    conn.handle_timer(1e9)
