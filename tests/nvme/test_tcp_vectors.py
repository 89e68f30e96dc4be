"""Byte vectors for every NVMe/TCP PDU type, encoded and decoded in both directions.

Expected bytes are written out by hand from the TP 8000 layouts; digests are cross-checked with
the table-driven reference CRC32C in helpers.py.
"""
from __future__ import annotations

from spydk.nvme import spec
from spydk.nvme.tcp import (
    C2HData,
    CapsuleCommand,
    CapsuleResponse,
    H2CData,
    ICReqReceived,
    ICRespReceived,
    R2TReceived,
    Role,
    TcpQueuePair,
    TermReqReceived,
)

from .helpers import connected_pair, deliver, join, le32, read_sqe, ref_crc32c, write_sqe


def test_icreq_vector_and_decode() -> None:
    host = TcpQueuePair(Role.HOST)
    raw = join(host.send_icreq(hpda=2, header_digest=True, data_digest=False, maxr2t=3))
    expected = bytes.fromhex("00 00 80 00 80000000" "0000" "02" "01" "03000000") + bytes(112)
    assert raw == expected
    ctrl = TcpQueuePair(Role.CONTROLLER)
    ctrl.receive_data(raw)
    assert ctrl.events() == [ICReqReceived(pfv=0, hpda=2, header_digest=True, data_digest=False,
                                           maxr2t=3)]


def test_icresp_vector_and_negotiation() -> None:
    host, ctrl = TcpQueuePair(Role.HOST), TcpQueuePair(Role.CONTROLLER)
    deliver(ctrl, host.send_icreq(header_digest=True, data_digest=True))
    # The controller refuses the data digest.
    raw = join(ctrl.send_icresp(cpda=1, maxh2cdata=0x8000, data_digest=False))
    expected = bytes.fromhex("01 00 80 00 80000000" "0000" "01" "01" "00800000") + bytes(112)
    assert raw == expected
    host.receive_data(raw)
    assert host.events() == [ICRespReceived(pfv=0, cpda=1, header_digest=True, data_digest=False,
                                            maxh2cdata=0x8000)]
    assert (ctrl.header_digest, ctrl.data_digest) == (True, False)
    assert (host.header_digest, host.data_digest, host.cpda) == (True, False, 1)


def test_capsule_cmd_no_data_vector() -> None:
    host, ctrl = connected_pair()
    sqe = read_sqe(0x1234, 4096)
    raw = join(host.send_capsule_cmd(sqe))
    assert raw == bytes.fromhex("04 00 48 00 48000000") + sqe
    ctrl.receive_data(raw)
    (ev,) = ctrl.events()
    assert isinstance(ev, CapsuleCommand) and bytes(ev.sqe) == sqe and ev.data is None


def test_capsule_cmd_with_digests_and_padding_vector() -> None:
    # cpda 7 -> data aligned to 32 bytes: header 72 + hdgst 4 = 76, padded to PDO 96.
    host, ctrl = connected_pair(hdgst=True, ddgst=True, cpda=7)
    data = bytes(range(40))
    sqe = write_sqe(7, len(data), incapsule=True)
    raw = join(host.send_capsule_cmd(sqe, data))
    ch = bytes.fromhex("04 03 48 60") + le32(96 + 40 + 4)
    hdr = ch + sqe
    expected = hdr + le32(ref_crc32c(hdr)) + bytes(20) + data + le32(ref_crc32c(data))
    assert raw == expected
    ctrl.receive_data(raw)
    (ev,) = ctrl.events()
    assert isinstance(ev, CapsuleCommand) and bytes(ev.sqe) == sqe and bytes(ev.data) == data


def test_capsule_resp_vector() -> None:
    host, ctrl = connected_pair(hdgst=True)
    host.send_capsule_cmd(read_sqe(5, 512))
    status = spec.make_status(spec.GenericStatus.LBA_OUT_OF_RANGE, dnr=True)
    raw = join(ctrl.send_response(5, status, dw0=0xAABBCCDD, sqhd=9, sqid=1))
    cqe = bytes.fromhex("DDCCBBAA 00000000 0900 0100 0500") + le32(status)[:2]
    hdr = bytes.fromhex("05 01 18 00 1C000000") + cqe
    assert raw == hdr + le32(ref_crc32c(hdr))
    # The generic builder gives the same bytes.
    assert join(ctrl.send_capsule_resp(spec.build_cqe(5, status, dw0=0xAABBCCDD, sqhd=9,
                                                      sqid=1))) == raw
    host.receive_data(raw)
    (ev,) = host.events()
    assert isinstance(ev, CapsuleResponse) and ev.cid == 5 and bytes(ev.cqe) == cqe
    assert spec.status_sc(spec.cqe_status(ev.cqe)) == 0x80 and spec.status_dnr(status)


def test_c2h_data_vector_plain_and_digested() -> None:
    host, ctrl = connected_pair()
    host.send_capsule_cmd(read_sqe(3, 8))
    raw = join(ctrl.send_c2h_data(3, 0, b"ABCDEFGH", last=True, success=True))
    assert raw == bytes.fromhex("07 0C 18 18 20000000 0300 0000 00000000 08000000 00000000") \
        + b"ABCDEFGH"
    host.receive_data(raw)
    (ev,) = host.events()
    assert ev == C2HData(3, 0, ev.data, True, True) and bytes(ev.data) == b"ABCDEFGH"
    assert host.outstanding_commands == 0  # SUCCESS completed the command

    # hpda 3 -> 16-byte alignment: 24 + 4 = 28 -> PDO 32.
    host, ctrl = connected_pair(hdgst=True, ddgst=True, hpda=3)
    host.send_capsule_cmd(read_sqe(3, 16))
    raw = join(ctrl.send_c2h_data(3, 8, [b"ABCD", b"EFGH"], last=False))
    hdr = bytes.fromhex("07 03 18 20 2C000000 0300 0000 08000000 08000000 00000000")
    assert raw == hdr + le32(ref_crc32c(hdr)) + bytes(4) + b"ABCDEFGH" + le32(ref_crc32c(b"ABCDEFGH"))


def test_r2t_and_h2c_data_vectors() -> None:
    host, ctrl = connected_pair(hdgst=True, ddgst=True)
    deliver(ctrl, host.send_capsule_cmd(write_sqe(0x21, 16)))
    raw = join(ctrl.send_r2t(0x21, 0x0105, 0, 16))
    hdr = bytes.fromhex("09 01 18 00 1C000000 2100 0501 00000000 10000000 00000000")
    assert raw == hdr + le32(ref_crc32c(hdr))
    host.receive_data(raw)
    assert host.events() == [R2TReceived(0x21, 0x0105, 0, 16)]

    payload = bytes(range(16))
    raw = join(host.send_h2c_data(0x21, 0x0105, 0, payload, last=True))
    hdr = bytes.fromhex("06 07 18 1C 30000000 2100 0501 00000000 10000000 00000000")
    assert raw == hdr + le32(ref_crc32c(hdr)) + payload + le32(ref_crc32c(payload))
    ctrl.receive_data(raw)
    (ev,) = ctrl.events()
    assert isinstance(ev, H2CData) and (ev.cccid, ev.ttag, ev.offset, ev.last) == (0x21, 0x105, 0, True)
    assert bytes(ev.data) == payload


def test_term_req_vectors_both_directions() -> None:
    host, ctrl = connected_pair()
    raw = join(ctrl.send_term_req(0x02, 0, b"\x09\x00\x18\x00\x18\x00\x00\x00"))
    assert raw == bytes.fromhex("03 00 18 00 20000000 0200 00000000") + bytes(10) \
        + bytes.fromhex("09 00 18 00 18000000")
    host.receive_data(raw)
    assert host.events() == [TermReqReceived(2, 0, bytes.fromhex("09 00 18 00 18000000"))]
    assert host.closed and ctrl.closed

    host, ctrl = connected_pair()
    raw = join(host.send_term_req(0x01, 0x0102_0304))
    assert raw == bytes.fromhex("02 00 18 00 18000000 0100 04030201") + bytes(10)
    ctrl.receive_data(raw)
    assert ctrl.events() == [TermReqReceived(1, 0x01020304, b"")]
