"""Text key parsing and negotiation tables, CHAP known answers."""
from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.iscsi.chap import ChapCredentials, ChapError, ChapTarget, chap_md5, decode_binary, encode_binary
from spydk.iscsi.negotiation import (
    Limits,
    NegotiationError,
    Negotiator,
    TextCollector,
    encode_text,
    parse_text,
    split_text,
)


def test_parse_and_encode_text() -> None:
    raw = b"InitiatorName=iqn.x\0AuthMethod=CHAP,None\0Empty=\0\0\0"
    assert parse_text(raw) == [("InitiatorName", "iqn.x"), ("AuthMethod", "CHAP,None"), ("Empty", "")]
    assert encode_text([("A", "1"), ("B", "x,y")]) == b"A=1\0B=x,y\0"


@pytest.mark.parametrize("raw", [b"NoEquals\0", b"=value\0", b"K" * 64 + b"=1\0", b"Bad Key=1\0", b"K=\xff\0"])
def test_parse_text_errors(raw: bytes) -> None:
    with pytest.raises(NegotiationError):
        parse_text(raw)


def test_text_collector_and_split() -> None:
    c = TextCollector(limit=10)
    c.add(b"A=1\0")
    c.add(memoryview(b"B=2\0"))
    assert c.pending and c.take() == b"A=1\0B=2\0" and not c.pending
    with pytest.raises(NegotiationError):
        c.add(b"x" * 11)
    assert split_text(b"abcdefg", 3) == [b"abc", b"def", b"g"] and split_text(b"", 3) == [b""]


# (key, offered value, answer) with default Limits on a leading normal-session connection.
TABLE = [
    # list keys
    ("HeaderDigest", "CRC32C,None", "CRC32C"),
    ("HeaderDigest", "None,CRC32C", "None"),
    ("DataDigest", "MD5", "Reject"),
    ("TaskReporting", "FastAbort,RFC3720", "RFC3720"),
    # numerical min
    ("MaxBurstLength", "16776192", "262144"),
    ("MaxBurstLength", "8192", "8192"),
    ("MaxBurstLength", "511", "Reject"),
    ("MaxBurstLength", "16777216", "Reject"),
    ("MaxBurstLength", "abc", "Reject"),
    ("MaxBurstLength", "0x4000", "16384"),
    ("MaxOutstandingR2T", "1", "1"),
    ("MaxOutstandingR2T", "0", "Reject"),
    ("MaxConnections", "8", "2"),
    ("ErrorRecoveryLevel", "2", "0"),
    ("ErrorRecoveryLevel", "3", "Reject"),
    ("DefaultTime2Retain", "0", "0"),
    ("iSCSIProtocolLevel", "2", "1"),
    # numerical max
    ("DefaultTime2Wait", "0", "2"),
    ("DefaultTime2Wait", "10", "10"),
    ("DefaultTime2Wait", "3601", "Reject"),
    # booleans
    ("InitialR2T", "No", "Yes"),     # OR with our Yes
    ("ImmediateData", "Yes", "Yes"),  # AND with our Yes
    ("ImmediateData", "No", "No"),
    ("DataPDUInOrder", "No", "Yes"),
    ("DataSequenceInOrder", "Maybe", "Reject"),
    ("IFMarker", "Yes", "No"),
    ("OFMarker", "No", "No"),
    ("OFMarkInt", "2048~8192", "Reject"),
    # unknown / vendor
    ("X-com.example.Foo", "1", "NotUnderstood"),
    ("X#Bar", "1", "NotUnderstood"),
    ("Unknown", "1", "NotUnderstood"),
    # FFP-only key during login
    ("SendTargets", "All", "Reject"),
]


@pytest.mark.parametrize(("key", "value", "answer"), TABLE)
def test_negotiation_table(key: str, value: str, answer: str) -> None:
    n = Negotiator(Limits())
    assert n.answer([(key, value)]) == [(key, answer)]


def test_declarative_keys_get_no_answer() -> None:
    n = Negotiator(Limits())
    assert n.answer([("InitiatorName", "iqn.x"), ("TargetName", "iqn.y"), ("InitiatorAlias", "h"),
                     ("MaxRecvDataSegmentLength", "262144"), ("SessionType", "Normal")]) == []
    assert n.conn.max_send_data_segment == 262144 and n.declared["InitiatorAlias"] == "h"


def test_bad_declarations() -> None:
    assert Negotiator(Limits()).answer([("MaxRecvDataSegmentLength", "100")]) == [
        ("MaxRecvDataSegmentLength", "Reject")]
    with pytest.raises(NegotiationError):
        Negotiator(Limits()).answer([("SessionType", "Weird")])


def test_value_too_long_rejected() -> None:
    assert Negotiator(Limits()).answer([("HeaderDigest", "None," * 60)]) == [("HeaderDigest", "Reject")]


def test_key_twice_is_error() -> None:
    n = Negotiator(Limits())
    n.answer([("MaxBurstLength", "8192")])
    with pytest.raises(NegotiationError):
        n.answer([("MaxBurstLength", "8192")])


def test_security_key_outside_security_stage() -> None:
    with pytest.raises(NegotiationError):
        Negotiator(Limits()).answer([("AuthMethod", "None")])


def test_leading_only_on_non_leading_connection() -> None:
    n = Negotiator(Limits(), leading=False)
    assert n.answer([("MaxBurstLength", "8192"), ("HeaderDigest", "None")]) == [
        ("MaxBurstLength", "Irrelevant"), ("HeaderDigest", "None")]


def test_discovery_session_irrelevant_keys() -> None:
    n = Negotiator(Limits(), discovery=True)
    assert n.answer([("InitialR2T", "No"), ("MaxBurstLength", "8192"), ("ErrorRecoveryLevel", "0")]) == [
        ("InitialR2T", "Irrelevant"), ("MaxBurstLength", "Irrelevant"), ("ErrorRecoveryLevel", "0")]


def test_first_burst_bounded_and_irrelevant() -> None:
    n = Negotiator(Limits())
    # FirstBurstLength comes first but is decided after MaxBurstLength.
    assert n.answer([("FirstBurstLength", "65536"), ("MaxBurstLength", "16384")]) == [
        ("MaxBurstLength", "16384"), ("FirstBurstLength", "16384")]
    n = Negotiator(Limits(immediate_data=False))
    assert n.answer([("ImmediateData", "Yes"), ("FirstBurstLength", "4096")]) == [
        ("ImmediateData", "No"), ("FirstBurstLength", "Irrelevant")]
    n = Negotiator(Limits())
    n.finish()
    assert n.session.first_burst_length == 65536 and n.session.max_burst_length == 262144


def test_full_feature_phase_negotiation() -> None:
    n = Negotiator(Limits())
    assert n.answer([("MaxRecvDataSegmentLength", "16384"), ("MaxBurstLength", "8192")], in_login=False) == [
        ("MaxBurstLength", "Reject")]
    assert n.conn.max_send_data_segment == 16384


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["HeaderDigest", "MaxBurstLength", "InitialR2T", "DefaultTime2Wait",
                                            "SessionType", "MaxRecvDataSegmentLength", "X-y", "IFMarkInt",
                                            "FirstBurstLength", "AuthMethod", "TargetName"]),
                          st.text(max_size=300)), max_size=12),
       st.booleans(), st.booleans(), st.booleans())
def test_fuzz_negotiation(pairs: list[tuple[str, str]], leading: bool, discovery: bool, in_login: bool) -> None:
    n = Negotiator(Limits(), leading=leading, discovery=discovery)
    try:
        out = n.answer(pairs, in_login=in_login)
    except NegotiationError:
        return
    for k, v in out:
        assert k in dict(pairs) and isinstance(v, str)
    n.finish()
    assert n.session.first_burst_length <= n.session.max_burst_length


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_parse_text(raw: bytes) -> None:
    try:
        pairs = parse_text(raw)
    except NegotiationError:
        return
    assert parse_text(encode_text(pairs)) == pairs


# -- CHAP ----------------------------------------------------------------------------------------


def test_chap_md5_known_answer() -> None:
    # Computed independently of chap.py: MD5 over id byte, secret, challenge.
    ident, secret, challenge = 0x2A, b"s3cret-s3cret", bytes.fromhex("00112233445566778899aabbccddeeff")
    want = hashlib.md5(b"\x2a" + b"s3cret-s3cret" + challenge).hexdigest()
    assert chap_md5(ident, secret, challenge).hex() == want
    # A fixed vector: MD5(0x01 || "secret" || 16 zero bytes).
    assert chap_md5(1, b"secret", bytes(16)).hex() == hashlib.md5(b"\x01secret" + bytes(16)).hexdigest()


def test_binary_encodings() -> None:
    assert encode_binary(b"\x01\xab") == "0x01ab"
    assert encode_binary(b"\x01\xab", b64=True) == "0b" + base64.b64encode(b"\x01\xab").decode()
    assert decode_binary("0x01AB") == b"\x01\xab" and decode_binary("0xabc") == b"\x0a\xbc"
    assert decode_binary("0bAas=") == b"\x01\xab"
    for bad in ("01ab", "0xzz", "0b!!", "0b"):
        if bad == "0b":
            assert decode_binary(bad) == b""
            continue
        with pytest.raises(ValueError):
            decode_binary(bad)


def _chap(mutual: bool = False) -> ChapTarget:
    creds = {"alice": ChapCredentials("alice", b"secret-one-12", "tgt", b"secret-two-34")}
    return ChapTarget(creds.get, mutual_required=mutual, token_bytes=lambda n: bytes(range(7, 7 + n)))


def test_chap_one_way() -> None:
    c = _chap()
    out = dict(c.step({"CHAP_A": "7,5"}))
    assert out["CHAP_A"] == "5" and out["CHAP_I"] == "7" and decode_binary(out["CHAP_C"]) == bytes(range(7, 23))
    r = hashlib.md5(b"\x07secret-one-12" + bytes(range(7, 23))).digest()
    assert c.step({"CHAP_N": "alice", "CHAP_R": "0b" + base64.b64encode(r).decode()}) == [] and c.done


def test_chap_mutual() -> None:
    c = _chap(mutual=True)
    c.step({"CHAP_A": "5"})
    r = hashlib.md5(b"\x07secret-one-12" + bytes(range(7, 23))).digest()
    out = dict(c.step({"CHAP_N": "alice", "CHAP_R": "0x" + r.hex(), "CHAP_I": "200", "CHAP_C": "0xdeadbeef"}))
    assert out["CHAP_N"] == "tgt"
    assert out["CHAP_R"] == "0x" + hashlib.md5(b"\xc8secret-two-34\xde\xad\xbe\xef").hexdigest()


@pytest.mark.parametrize("keys", [
    {"CHAP_N": "alice", "CHAP_R": "0x00"},                                   # wrong response
    {"CHAP_N": "bob", "CHAP_R": "0x00"},                                     # unknown user
    {"CHAP_N": "alice"},                                                     # missing CHAP_R
    {"CHAP_N": "alice", "CHAP_R": "zz"},                                     # malformed
])
def test_chap_failures(keys: dict[str, str]) -> None:
    c = _chap()
    c.step({"CHAP_A": "5"})
    with pytest.raises(ChapError):
        c.step(keys)


def test_chap_rejects_reflection_and_unsupported_algorithm() -> None:
    c = _chap()
    with pytest.raises(ChapError):
        c.step({"CHAP_A": "6,7"})
    c = _chap()
    out = dict(c.step({"CHAP_A": "5"}))
    r = hashlib.md5(b"\x07secret-one-12" + bytes(range(7, 23))).digest()
    with pytest.raises(ChapError, match="reflected"):
        c.step({"CHAP_N": "alice", "CHAP_R": "0x" + r.hex(), "CHAP_I": "1", "CHAP_C": out["CHAP_C"]})
    c = _chap(mutual=True)
    c.step({"CHAP_A": "5"})
    with pytest.raises(ChapError, match="mutual"):
        c.step({"CHAP_N": "alice", "CHAP_R": "0x" + r.hex()})


def test_chap_default_challenge_is_random() -> None:
    a = ChapTarget(lambda u: None)
    b = ChapTarget(lambda u: None)
    ca, cb = dict(a.step({"CHAP_A": "5"}))["CHAP_C"], dict(b.step({"CHAP_A": "5"}))["CHAP_C"]
    assert ca != cb and len(decode_binary(ca)) == 16
