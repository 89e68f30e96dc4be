"""Byte vectors for every PDU type, and the PDU reader (padding, digests, AHS, limits)."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.iscsi import pdu, spec
from spydk.iscsi.spec import Opcode


def w(*words: str) -> bytes:
    """Hex words -> bytes; the BHS written out by hand, 4 bytes per word."""
    out = bytes.fromhex("".join(words))
    assert len(out) == 48, len(out)
    return out


Z = "00000000"
FF = "ffffffff"

# (opcode, fields given to encode(), expected bytes)
VECTORS = [
    (Opcode.NOP_OUT, dict(immediate=True, data_len=4, lun=1 << 48, itt=0x11223344, ttt=0xFFFFFFFF, cmdsn=10,
                          expstatsn=11),
     w("40800000", "00000004", "00010000", Z, "11223344", FF, "0000000a", "0000000b", Z, Z, Z, Z)),
    (Opcode.NOP_IN, dict(data_len=0, lun=0, itt=0xFFFFFFFF, ttt=7, statsn=1, expcmdsn=2, maxcmdsn=3),
     w("20800000", Z, Z, Z, FF, "00000007", "00000001", "00000002", "00000003", Z, Z, Z)),
    (Opcode.SCSI_CMD, dict(flags=0xC1, data_len=512, lun=2 << 48, itt=5, edtl=4096, cmdsn=0x100, expstatsn=0x200,
                           cdb=bytes.fromhex("2a000000001000000800") + bytes(6)),
     w("01c10000", "00000200", "00020000", Z, "00000005", "00001000", "00000100", "00000200",
       "2a000000", "00100000", "08000000", Z)),
    (Opcode.SCSI_RSP, dict(flags=0x82, response=0, status=2, data_len=20, itt=5, snack_tag=0, statsn=9,
                           expcmdsn=10, maxcmdsn=73, expdatasn=1, bidi_residual=0, residual=512),
     w("21820002", "00000014", Z, Z, "00000005", Z, "00000009", "0000000a", "00000049", "00000001", Z,
       "00000200")),
    (Opcode.TASK_MGMT_REQ, dict(immediate=True, flags=0x81, lun=0, itt=6, rtt=5, cmdsn=12, expstatsn=13,
                                refcmdsn=11, expdatasn=0),
     w("42810000", Z, Z, Z, "00000006", "00000005", "0000000c", "0000000d", "0000000b", Z, Z, Z)),
    (Opcode.TASK_MGMT_RSP, dict(response=1, itt=6, statsn=14, expcmdsn=13, maxcmdsn=76),
     w("22800100", Z, Z, Z, "00000006", Z, "0000000e", "0000000d", "0000004c", Z, Z, Z)),
    (Opcode.LOGIN_REQ, dict(immediate=True, flags=0x87, version_max=0, version_min=0, data_len=0x31,
                            isid=bytes.fromhex("80123456789a"), tsih=0, itt=1, cid=0x0102, cmdsn=100,
                            expstatsn=0),
     w("43870000", "00000031", "80123456", "789a0000", "00000001", "01020000", "00000064", Z, Z, Z, Z, Z)),
    (Opcode.LOGIN_RSP, dict(flags=0x87, data_len=0x20, isid=bytes.fromhex("80123456789a"), tsih=0x0003, itt=1,
                            statsn=0x5000, expcmdsn=100, maxcmdsn=163, status_class=2, status_detail=1),
     w("23870000", "00000020", "80123456", "789a0003", "00000001", Z, "00005000", "00000064", "000000a3",
       "02010000", Z, Z)),
    (Opcode.TEXT_REQ, dict(flags=0xC0, data_len=16, itt=8, ttt=0xFFFFFFFF, cmdsn=20, expstatsn=21),
     w("04c00000", "00000010", Z, Z, "00000008", FF, "00000014", "00000015", Z, Z, Z, Z)),
    (Opcode.TEXT_RSP, dict(flags=0x40, data_len=4096, itt=8, ttt=0x99, statsn=22, expcmdsn=21, maxcmdsn=84),
     w("24400000", "00001000", Z, Z, "00000008", "00000099", "00000016", "00000015", "00000054", Z, Z, Z)),
    (Opcode.DATA_OUT, dict(flags=0x80, data_len=8192, lun=0, itt=5, ttt=0x42, expstatsn=30, datasn=3,
                           buffer_offset=0x6000),
     w("05800000", "00002000", Z, Z, "00000005", "00000042", Z, "0000001e", Z, "00000003", "00006000", Z)),
    (Opcode.DATA_IN, dict(flags=0x83, status=0, data_len=4096, lun=0, itt=5, ttt=0xFFFFFFFF, statsn=31,
                          expcmdsn=22, maxcmdsn=85, datasn=0, buffer_offset=0, residual=512),
     w("25830000", "00001000", Z, Z, "00000005", FF, "0000001f", "00000016", "00000055", Z, Z, "00000200")),
    (Opcode.LOGOUT_REQ, dict(immediate=True, flags=0x81, itt=9, cid=1, cmdsn=40, expstatsn=41),
     w("46810000", Z, Z, Z, "00000009", "00010000", "00000028", "00000029", Z, Z, Z, Z)),
    (Opcode.LOGOUT_RSP, dict(response=0, itt=9, statsn=41, expcmdsn=40, maxcmdsn=103, time2wait=2,
                             time2retain=20),
     w("26800000", Z, Z, Z, "00000009", Z, "00000029", "00000028", "00000067", Z, "00020014", Z)),
    (Opcode.R2T, dict(lun=0, itt=5, ttt=0x43, statsn=32, expcmdsn=23, maxcmdsn=86, r2tsn=1,
                      buffer_offset=0x40000, desired_length=0x40000),
     w("31800000", Z, Z, Z, "00000005", "00000043", "00000020", "00000017", "00000056", "00000001",
       "00040000", "00040000")),
    (Opcode.ASYNC_MSG, dict(lun=0, itt=0xFFFFFFFF, statsn=33, expcmdsn=24, maxcmdsn=87, event=1, vcode=0,
                            param1=0, param2=0, param3=10),
     w("32800000", Z, Z, Z, FF, Z, "00000021", "00000018", "00000057", "01000000", "0000000a", Z)),
    (Opcode.REJECT, dict(reason=4, data_len=48, itt=0xFFFFFFFF, statsn=34, expcmdsn=25, maxcmdsn=88, datasn=0),
     w("3f800400", "00000030", Z, Z, FF, Z, "00000022", "00000019", "00000058",
       Z, Z, Z)),
    (Opcode.SNACK, dict(flags=0x81, lun=0, itt=5, ttt=0, expstatsn=35, begrun=2, runlength=3),
     w("10810000", Z, Z, Z, "00000005", Z, Z, "00000023", Z, "00000002", "00000003", Z)),
]


def test_every_opcode_has_a_vector() -> None:
    assert {v[0] for v in VECTORS} == set(Opcode)


@pytest.mark.parametrize(("op", "fields", "wire"), VECTORS, ids=[v[0].name for v in VECTORS])
def test_encode(op: Opcode, fields: dict, wire: bytes) -> None:
    assert bytes(pdu.encode(op, **fields)) == wire


@pytest.mark.parametrize(("op", "fields", "wire"), VECTORS, ids=[v[0].name for v in VECTORS])
def test_decode(op: Opcode, fields: dict, wire: bytes) -> None:
    got = pdu.decode(wire)
    assert got["opcode"] == op
    assert got["immediate"] == fields.get("immediate", False)
    assert got["data_len"] == fields.get("data_len", 0) and got["ahs_len"] == 0
    for k, v in fields.items():
        if k in ("immediate", "data_len"):
            continue
        assert got[k] == v, k
    if "flags" not in fields:
        assert got["flags"] == 0x80


def test_decode_unknown_opcode() -> None:
    with pytest.raises(pdu.PduError):
        pdu.decode(b"\x1c" + bytes(47))


def test_encode_unknown_field() -> None:
    with pytest.raises(TypeError):
        pdu.encode(Opcode.NOP_OUT, statsn=1)


def test_lun_encoding() -> None:
    assert spec.encode_lun(5) == 0x0005 << 48 and spec.decode_lun(0x0005 << 48) == 5
    assert spec.encode_lun(300) == 0x412C << 48 and spec.decode_lun(0x412C << 48) == 300


def test_rfc_crc32c_vectors() -> None:
    # RFC 7143 appendix B.4 (bytes as they appear on the wire).
    assert pdu.digest([bytes(32)]) == bytes.fromhex("aa36918a")
    assert pdu.digest([b"\xff" * 32]) == bytes.fromhex("43aba862")
    assert pdu.digest([bytes(range(32))]) == bytes.fromhex("4e79dd46")
    # Incremental over pieces equals one shot.
    assert pdu.digest([bytes(range(10)), memoryview(bytes(range(10, 32)))]) == bytes.fromhex("4e79dd46")


def test_frame_pad_and_digests() -> None:
    h = pdu.encode(Opcode.NOP_IN, data_len=5, itt=1, ttt=spec.RESERVED_TAG)
    bufs = pdu.frame(h, [b"ab", memoryview(b"cde")], 5, True, True)
    assert bufs[0] is h and bufs[1] == pdu.digest([h]) and bufs[4] == b"\0\0\0"
    assert bufs[5] == pdu.digest([b"abcde\0\0\0"])
    assert len(b"".join(bytes(b) for b in bufs)) == 48 + 4 + 8 + 4


def _wire(op: Opcode, data: bytes = b"", ahs: bytes = b"", hd: bool = False, dd: bool = False, **f: object) -> bytes:
    h = bytearray(pdu.encode(op, data_len=len(data), ahs_len=len(ahs), **f))
    head = bytes(h) + ahs
    out = head + (pdu.digest([head]) if hd else b"")
    if data:
        padded = data + bytes(-len(data) & 3)
        out += padded + (pdu.digest([padded]) if dd else b"")
    return out


@pytest.mark.parametrize("hd", [False, True])
@pytest.mark.parametrize("dd", [False, True])
def test_reader_padding_digests_byte_by_byte(hd: bool, dd: bool) -> None:
    ahs = bytes.fromhex("0005010000112233445566") + b"\0"
    wire = (_wire(Opcode.NOP_OUT, b"hello", hd=hd, dd=dd, itt=1)
            + _wire(Opcode.SCSI_CMD, b"", ahs, hd=hd, dd=dd, itt=2, cdb=b"\x2a")
            + _wire(Opcode.DATA_OUT, b"x" * 4, hd=hd, dd=dd, itt=3))
    r = pdu.PduReader(8192, header_digest=hd, data_digest=dd)
    got = []
    for b in wire:
        r.receive_data(bytes([b]))
        while (p := r.next_pdu()) is not None:
            got.append((p.opcode, p.itt, bytes(p.ahs), bytes(p.data), p.data_digest_ok))
    assert got == [(0, 1, b"", b"hello", True), (1, 2, ahs, b"", True), (5, 3, b"", b"xxxx", True)]
    assert r.buffered == 0


def test_reader_bad_header_digest() -> None:
    wire = bytearray(_wire(Opcode.NOP_OUT, hd=True, itt=1))
    wire[-1] ^= 1
    r = pdu.PduReader(header_digest=True)
    r.receive_data(wire)
    with pytest.raises(pdu.PduError, match="header digest"):
        r.next_pdu()


def test_reader_bad_data_digest_is_skippable() -> None:
    wire = bytearray(_wire(Opcode.NOP_OUT, b"ping", dd=True, itt=1)) + _wire(Opcode.NOP_OUT, b"pong", dd=True, itt=2)
    wire[52] ^= 1  # inside the first data digest
    r = pdu.PduReader(data_digest=True)
    r.receive_data(wire)
    first, second = r.next_pdu(), r.next_pdu()
    assert first is not None and not first.data_digest_ok
    assert second is not None and second.data_digest_ok and bytes(second.data) == b"pong"


def test_reader_data_segment_limit() -> None:
    r = pdu.PduReader(1024)
    r.receive_data(_wire(Opcode.NOP_OUT, b"a" * 1025, itt=1)[:48])
    with pytest.raises(pdu.PduError) as e:
        r.next_pdu()
    assert e.value.reject == spec.RejectReason.PROTOCOL_ERROR and len(e.value.header) == 48


def test_reader_placement_small_and_direct() -> None:
    dest = bytearray(100000)
    calls = []

    def place(h: memoryview) -> memoryview:
        n = int.from_bytes(h[5:8], "big")
        calls.append(n)
        return memoryview(dest)[:n]

    data = hashlib.sha256(b"x").digest() * 2000  # 64000 bytes
    r = pdu.PduReader(65536, place=place, direct_threshold=1024, data_digest=True)
    wire = _wire(Opcode.DATA_OUT, data, dd=True, itt=1)
    r.receive_data(wire[:1000])
    assert r.next_pdu() is None and r._direct is not None
    buf = r.get_buffer()
    assert buf.obj is dest  # the socket would write straight into the task buffer
    r.receive_data(wire[1000:])
    p = r.next_pdu()
    assert p is not None and p.placed and p.data_digest_ok and bytes(dest[:64000]) == data
    # small PDU: copied once into the destination
    r.receive_data(_wire(Opcode.DATA_OUT, b"abcd", dd=True, itt=2))
    p = r.next_pdu()
    assert p is not None and p.placed and bytes(p.data) == b"abcd" and calls == [64000, 4]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.booleans(), st.booleans(), st.integers(1, 64))
def test_fuzz_reader_never_raises_other_errors(data: bytes, hd: bool, dd: bool, chunk: int) -> None:
    r = pdu.PduReader(256, header_digest=hd, data_digest=dd)
    try:
        for i in range(0, len(data), chunk):
            r.receive_data(data[i:i + chunk])
            while r.next_pdu() is not None:
                pass
    except pdu.PduError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Opcode)), st.binary(min_size=48, max_size=48))
def test_fuzz_decode(op: Opcode, raw: bytes) -> None:
    h = bytes([op]) + raw[1:]
    f = pdu.decode(h)
    assert f["opcode"] == op
