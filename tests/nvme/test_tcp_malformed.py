"""Peer protocol violations: each yields one ProtocolError with the right FES/FEI and TermReq."""
from __future__ import annotations

import pytest

from spydk.nvme.spec.tcp import Fes
from spydk.nvme.tcp import ProtocolError, Role, TcpQueuePair

from .helpers import connected_pair, deliver, join, le32, read_sqe, ref_crc32c, write_sqe


def ch(ptype: int, flags: int, hlen: int, pdo: int, plen: int) -> bytes:
    return bytes([ptype, flags, hlen, pdo]) + le32(plen)


def icreq(pfv: int = 0, hpda: int = 0, dgst: int = 0, plen: int = 128) -> bytes:
    return ch(0, 0, 128, 0, plen) + pfv.to_bytes(2, "little") + bytes([hpda, dgst]) + bytes(116)


def data_psh(cccid: int, ttag: int, datao: int, datal: int) -> bytes:
    return cccid.to_bytes(2, "little") + ttag.to_bytes(2, "little") + le32(datao) + le32(datal) \
        + bytes(4)


def expect_error(qp: TcpQueuePair, raw: bytes, fes: int, fei: int) -> ProtocolError:
    qp.receive_data(raw)
    evs = qp.events()
    assert len(evs) == 1 and isinstance(evs[0], ProtocolError), evs
    err = evs[0]
    assert (err.fes, err.fei) == (fes, fei), err.reason
    assert qp.closed
    # The TermReq goes the right way and carries the offending header (at most 128 bytes).
    term = join(err.term_req)
    ttype = 0x03 if qp.role is Role.CONTROLLER else 0x02
    assert term[:4] == bytes([ttype, 0, 24, 0]) and int.from_bytes(term[4:8], "little") == len(term)
    assert term[8:10] == fes.to_bytes(2, "little") and term[10:14] == le32(fei)
    assert term[14:24] == bytes(10) and len(term) <= 152
    assert term[24:] == raw[:len(term) - 24]
    # Further input is refused without raising.
    qp.receive_data(raw)
    buf = qp.get_buffer(-1)
    buf[:4] = b"\xff\xff\xff\xff"
    qp.buffer_updated(4)
    assert qp.events() == []
    return err


# --- connection initialization --------------------------------------------------------------

def test_capsule_before_icreq_is_sequence_error() -> None:
    host, _ = connected_pair()
    raw = join(host.send_capsule_cmd(read_sqe(1, 512)))
    expect_error(TcpQueuePair(Role.CONTROLLER), raw, Fes.PDU_SEQUENCE_ERROR, 0)


def test_pdu_between_icreq_and_icresp_is_sequence_error() -> None:
    ctrl = TcpQueuePair(Role.CONTROLLER)
    ctrl.receive_data(icreq())
    ctrl.events()
    host, _ = connected_pair()
    expect_error(ctrl, join(host.send_capsule_cmd(read_sqe(1, 512))), Fes.PDU_SEQUENCE_ERROR, 0)


def test_second_icreq_is_sequence_error() -> None:
    _, ctrl = connected_pair()
    expect_error(ctrl, icreq(), Fes.PDU_SEQUENCE_ERROR, 0)


def test_data_before_host_sent_icreq() -> None:
    expect_error(TcpQueuePair(Role.HOST), ch(1, 0, 128, 0, 128) + bytes(120),
                 Fes.PDU_SEQUENCE_ERROR, 0)


@pytest.mark.parametrize("raw,fes,fei", [
    (icreq(pfv=1), Fes.UNSUPPORTED_PARAMETER, 8),
    (icreq(hpda=32), Fes.INVALID_HEADER_FIELD, 10),
    (icreq(plen=200), Fes.INVALID_HEADER_FIELD, 4),
    (ch(0, 0, 100, 0, 128) + bytes(120), Fes.INVALID_HEADER_FIELD, 2),
    (ch(0x08, 0, 24, 0, 24) + bytes(16), Fes.INVALID_HEADER_FIELD, 0),  # unknown type
    (ch(0x07, 0, 24, 0, 24) + bytes(16), Fes.INVALID_HEADER_FIELD, 0),  # C2H type to controller
])
def test_bad_icreq(raw: bytes, fes: int, fei: int) -> None:
    expect_error(TcpQueuePair(Role.CONTROLLER), raw, fes, fei)


@pytest.mark.parametrize("cpda,dgst,maxh2c,fes,fei", [
    (40, 0, 4096, Fes.INVALID_HEADER_FIELD, 10),
    (0, 2, 4096, Fes.INVALID_HEADER_FIELD, 11),  # data digest never requested
    (0, 0, 1024, Fes.INVALID_HEADER_FIELD, 12),
])
def test_bad_icresp(cpda: int, dgst: int, maxh2c: int, fes: int, fei: int) -> None:
    host = TcpQueuePair(Role.HOST)
    host.send_icreq()
    raw = ch(1, 0, 128, 0, 128) + bytes([0, 0, cpda, dgst]) + le32(maxh2c) + bytes(112)
    expect_error(host, raw, fes, fei)


# --- header checks on a connected controller --------------------------------------------------

def test_plen_shorter_than_header() -> None:
    _, ctrl = connected_pair()
    expect_error(ctrl, ch(4, 0, 72, 0, 40) + bytes(64), Fes.INVALID_HEADER_FIELD, 4)


def test_wrong_hlen_for_capsule() -> None:
    _, ctrl = connected_pair()
    expect_error(ctrl, ch(4, 0, 24, 0, 24) + bytes(16), Fes.INVALID_HEADER_FIELD, 2)


def test_absurd_incapsule_length_rejected_before_buffering() -> None:
    _, ctrl = connected_pair()
    raw = ch(4, 0, 72, 72, 1 << 30) + read_sqe(1, 512)
    expect_error(ctrl, raw, Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 4)
    assert len(ctrl._ring) == 256 * 1024 and ctrl._pending is None


def test_header_digest_mismatch() -> None:
    host, ctrl = connected_pair(hdgst=True)
    raw = bytearray(join(host.send_capsule_cmd(read_sqe(1, 512))))
    raw[-1] ^= 1
    expect_error(ctrl, bytes(raw), Fes.HEADER_DIGEST_ERROR, 0)


def test_header_digest_flag_missing() -> None:
    _, ctrl = connected_pair(hdgst=True)
    expect_error(ctrl, ch(4, 0, 72, 0, 72) + read_sqe(1, 512), Fes.INVALID_HEADER_FIELD, 1)


def test_data_digest_flag_not_negotiated() -> None:
    _, ctrl = connected_pair()
    raw = ch(4, 2, 72, 72, 72 + 8 + 4) + write_sqe(1, 8, incapsule=True) + bytes(8) + bytes(4)
    expect_error(ctrl, raw, Fes.INVALID_HEADER_FIELD, 1)


def test_misaligned_pdo() -> None:
    _, ctrl = connected_pair(cpda=3)  # 16-byte alignment
    raw = ch(4, 0, 72, 76, 76 + 8) + write_sqe(1, 8, incapsule=True) + bytes(4) + bytes(8)
    expect_error(ctrl, raw, Fes.INVALID_HEADER_FIELD, 3)


def test_pdo_inside_header() -> None:
    _, ctrl = connected_pair()
    raw = ch(4, 0, 72, 40, 72 + 8) + write_sqe(1, 8, incapsule=True) + bytes(8)
    expect_error(ctrl, raw, Fes.INVALID_HEADER_FIELD, 3)


# --- H2CData checks -----------------------------------------------------------------------------

def _controller_with_r2t(maxh2cdata: int = 8192) -> TcpQueuePair:
    host, ctrl = connected_pair(maxh2cdata=maxh2cdata)
    deliver(ctrl, host.send_capsule_cmd(write_sqe(5, 16384)))
    ctrl.send_r2t(5, 3, 4096, 8192)
    return ctrl


def h2c(cccid: int, ttag: int, datao: int, datal: int, *, plen: int | None = None) -> bytes:
    return ch(6, 4, 24, 24, 24 + datal if plen is None else plen) + data_psh(cccid, ttag, datao, datal) \
        + bytes(datal)


@pytest.mark.parametrize("raw,fes,fei", [
    (h2c(5, 9, 4096, 512), Fes.INVALID_HEADER_FIELD, 10),  # unknown ttag
    (h2c(6, 3, 4096, 512), Fes.INVALID_HEADER_FIELD, 8),  # cccid differs from the R2T
    (h2c(5, 3, 0, 512), Fes.DATA_TRANSFER_OUT_OF_RANGE, 12),  # before the R2T's offset
    (h2c(5, 3, 8192, 512), Fes.DATA_TRANSFER_OUT_OF_RANGE, 12),  # skips ahead
    (h2c(5, 3, 4096, 8704), Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 16),  # over MAXH2CDATA
    (h2c(5, 3, 4096, 512, plen=24 + 600), Fes.INVALID_HEADER_FIELD, 16),  # DATAL vs PLEN
    (ch(6, 4, 24, 24, 1 << 30) + data_psh(5, 3, 4096, (1 << 30) - 24), Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 16),
    (ch(6, 4, 24, 0, 24) + data_psh(5, 3, 4096, 0), Fes.INVALID_HEADER_FIELD, 4),  # no data
])
def test_bad_h2c_data(raw: bytes, fes: int, fei: int) -> None:
    ctrl = _controller_with_r2t()
    expect_error(ctrl, raw, fes, fei)


def test_h2c_data_past_end_of_r2t() -> None:
    ctrl = _controller_with_r2t(maxh2cdata=16384)
    expect_error(ctrl, h2c(5, 3, 4096, 8704), Fes.DATA_TRANSFER_OUT_OF_RANGE, 16)


# --- host side ----------------------------------------------------------------------------------

def _host_with(sqes: list[bytes], maxr2t: int = 0) -> TcpQueuePair:
    host, ctrl = connected_pair(maxr2t=maxr2t)
    for sqe in sqes:
        host.send_capsule_cmd(sqe)
    return host


def c2h(cccid: int, datao: int, datal: int, flags: int = 0) -> bytes:
    return ch(7, flags, 24, 24, 24 + datal) + cccid.to_bytes(2, "little") + bytes(2) + le32(datao) \
        + le32(datal) + bytes(4) + bytes(datal)


def r2t(cccid: int, ttag: int, off: int, length: int) -> bytes:
    return ch(9, 0, 24, 0, 24) + data_psh(cccid, ttag, off, length)


@pytest.mark.parametrize("raw,fes,fei", [
    (c2h(9, 0, 512), Fes.INVALID_HEADER_FIELD, 8),  # no such command
    (c2h(2, 0, 512), Fes.INVALID_HEADER_FIELD, 8),  # C2H data for a write
    (c2h(1, 512, 512), Fes.DATA_TRANSFER_OUT_OF_RANGE, 12),
    (c2h(1, 0, 4608), Fes.DATA_TRANSFER_OUT_OF_RANGE, 16),  # past the command's 4 KiB
    (c2h(1, 0, 512, flags=0x08), Fes.INVALID_HEADER_FIELD, 1),  # SUCCESS without LAST_PDU
    (r2t(1, 0, 0, 512), Fes.INVALID_HEADER_FIELD, 8),  # R2T for a read
    (r2t(2, 0, 4096, 512), Fes.DATA_TRANSFER_OUT_OF_RANGE, 12),
    (r2t(2, 0, 0, 0), Fes.INVALID_HEADER_FIELD, 16),
    (ch(5, 0, 24, 0, 24) + bytes(12) + (77).to_bytes(2, "little") + bytes(2),
     Fes.INVALID_HEADER_FIELD, 20),  # response for no command
    (ch(5, 0, 24, 0, 40) + bytes(32), Fes.INVALID_HEADER_FIELD, 4),  # CapsuleResp with data
    (icreq(), Fes.INVALID_HEADER_FIELD, 0),  # ICReq sent to a host
])
def test_bad_pdus_at_host(raw: bytes, fes: int, fei: int) -> None:
    host = _host_with([read_sqe(1, 4096), write_sqe(2, 4096)])
    expect_error(host, raw, fes, fei)


def test_r2t_limit_exceeded() -> None:
    host = _host_with([write_sqe(2, 8192)], maxr2t=0)
    host.receive_data(r2t(2, 0, 0, 4096))
    assert len(host.events()) == 1
    expect_error(host, r2t(2, 1, 4096, 4096), Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 0)


def test_malformed_term_req_closes_without_reply() -> None:
    _, ctrl = connected_pair()
    ctrl.receive_data(ch(2, 0, 24, 0, 4000) + bytes(16))
    (err,) = ctrl.events()
    assert isinstance(err, ProtocolError) and err.term_req == [] and ctrl.closed


def test_digest_values_in_term_req_header_match_reference() -> None:
    # The offending header (HLEN bytes) is echoed verbatim.
    host, ctrl = connected_pair(hdgst=True)
    raw = bytearray(join(host.send_capsule_cmd(read_sqe(1, 512))))
    assert raw[72:76] == le32(ref_crc32c(bytes(raw[:72])))
    raw[10] ^= 0x40
    ctrl.receive_data(bytes(raw))
    (err,) = ctrl.events()
    assert isinstance(err, ProtocolError) and join(err.term_req)[24:] == raw[:72]
