"""In-memory host <-> controller exchanges over TcpQueuePair."""
from __future__ import annotations

import random

import pytest

from spydk.nvme import spec
from spydk.nvme.tcp import (
    C2HData,
    CapsuleCommand,
    CapsuleResponse,
    ConnectionClosed,
    DataDigestError,
    H2CData,
    LocalProtocolError,
    R2TReceived,
    Role,
    TcpQueuePair,
)

from .helpers import connected_pair, deliver, join, read_sqe, write_sqe

DIGESTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
def test_negotiation(hdgst: bool, ddgst: bool) -> None:
    host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, hpda=1, cpda=2, maxr2t=4)
    for qp in (host, ctrl):
        assert (qp.header_digest, qp.data_digest) == (hdgst, ddgst)
        assert (qp.hpda, qp.cpda, qp.maxr2t) == (1, 2, 4)


def test_controller_may_refuse_digests() -> None:
    host, ctrl = TcpQueuePair(Role.HOST), TcpQueuePair(Role.CONTROLLER)
    deliver(ctrl, host.send_icreq(header_digest=True, data_digest=True))
    deliver(host, ctrl.send_icresp(header_digest=False, data_digest=False))
    assert not (host.header_digest or host.data_digest or ctrl.header_digest or ctrl.data_digest)


@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
def test_incapsule_write(hdgst: bool, ddgst: bool) -> None:
    host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, cpda=3)
    data = random.Random(1).randbytes(4096)
    sqe = write_sqe(9, 4096, incapsule=True)
    (ev,) = deliver(ctrl, host.send_capsule_cmd(sqe, [data[:1000], data[1000:]]))
    assert isinstance(ev, CapsuleCommand) and bytes(ev.data) == data
    (resp,) = deliver(host, ctrl.send_response(9))
    assert isinstance(resp, CapsuleResponse) and resp.cid == 9 and host.outstanding_commands == 0


@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
def test_read_split_into_c2h_pdus_with_success(hdgst: bool, ddgst: bool) -> None:
    host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, hpda=7)
    data = random.Random(2).randbytes(10000)
    (cmd,) = deliver(ctrl, host.send_capsule_cmd(read_sqe(4, 10000)))
    assert isinstance(cmd, CapsuleCommand) and spec.sqe_opcode(cmd.sqe) == spec.NvmOpcode.READ
    evs = deliver(host, ctrl.send_c2h_data(4, 0, [data[:3000], data[3000:]], success=True,
                                           max_pdu_data=4096))
    assert [type(e) for e in evs] == [C2HData] * 3
    assert [(e.offset, len(e.data), e.last, e.success) for e in evs] == [  # type: ignore[union-attr]
        (0, 4096, False, False), (4096, 4096, False, False), (8192, 1808, True, True)]
    assert b"".join(bytes(e.data) for e in evs) == data  # type: ignore[union-attr]
    assert host.outstanding_commands == 0


def test_read_into_host_buffer_then_response() -> None:
    host, ctrl = connected_pair(ddgst=True)
    dest = bytearray(8192)
    deliver(ctrl, host.send_capsule_cmd(read_sqe(1, 8192), dest=memoryview(dest)))
    data = random.Random(3).randbytes(8192)
    evs = deliver(host, ctrl.send_c2h_data(1, 0, data, max_pdu_data=3000))
    assert all(isinstance(e, C2HData) for e in evs) and dest == data
    assert host.outstanding_commands == 1
    (resp,) = deliver(host, ctrl.send_response(1))
    assert isinstance(resp, CapsuleResponse) and host.outstanding_commands == 0


@pytest.mark.parametrize("hdgst,ddgst", DIGESTS)
@pytest.mark.parametrize("use_dest", [False, True])
def test_write_via_r2t_and_h2c(hdgst: bool, ddgst: bool, use_dest: bool) -> None:
    host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, cpda=1, maxr2t=1,
                                maxh2cdata=4096)
    data = random.Random(4).randbytes(12288)
    (cmd,) = deliver(ctrl, host.send_capsule_cmd(write_sqe(2, 12288)))
    assert isinstance(cmd, CapsuleCommand) and cmd.data is None
    dest = bytearray(12288)
    r2ts = [(0, 8192), (8192, 4096)]
    got = bytearray(12288)
    for ttag, (off, length) in enumerate(r2ts):
        view = memoryview(dest)[off:off + length] if use_dest else None
        (r2t,) = deliver(host, ctrl.send_r2t(2, ttag, off, length, dest=view))
        assert r2t == R2TReceived(2, ttag, off, length)
    for ttag, (off, length) in enumerate(r2ts):
        evs = deliver(ctrl, host.send_h2c_data(2, ttag, off, data[off:off + length]))
        assert all(isinstance(e, H2CData) for e in evs)
        assert len(evs) == length // 4096  # split at MAXH2CDATA
        assert [e.last for e in evs] == [False] * (len(evs) - 1) + [True]  # type: ignore[union-attr]
        for e in evs:
            got[e.offset:e.offset + len(e.data)] = e.data  # type: ignore[union-attr]
    assert got == data
    if use_dest:
        assert dest == data
    assert ctrl.outstanding_r2ts == 0
    deliver(host, ctrl.send_response(2))
    assert host.outstanding_commands == 0


def test_large_h2c_pdu_bigger_than_ring_uses_own_buffer() -> None:
    host, ctrl = connected_pair(maxh2cdata=64 * 1024, ring_size=8192)
    data = random.Random(5).randbytes(65536)
    deliver(ctrl, host.send_capsule_cmd(write_sqe(3, 65536)))
    deliver(host, ctrl.send_r2t(3, 0, 0, 65536))
    raw = join(host.send_h2c_data(3, 0, 0, data))
    # Deliver through get_buffer/buffer_updated with odd chunk sizes, like recv_into would.
    rng = random.Random(6)
    pos = 0
    while pos < len(raw):
        buf = ctrl.get_buffer(-1)
        n = min(len(buf), rng.randint(1, 5000), len(raw) - pos)
        buf[:n] = raw[pos:pos + n]
        ctrl.buffer_updated(n)
        pos += n
    (ev,) = ctrl.events()
    assert isinstance(ev, H2CData) and bytes(ev.data) == data and ev.last
    assert len(ctrl._ring) == 8192  # the ring did not grow


def test_byte_at_a_time_delivery() -> None:
    host, ctrl = connected_pair(hdgst=True, ddgst=True)
    data = b"x" * 600
    raw = join(host.send_capsule_cmd(write_sqe(1, 600, incapsule=True), data))
    raw += join(host.send_capsule_cmd(read_sqe(2, 512)))
    for i in range(len(raw)):
        ctrl.receive_data(raw[i:i + 1])
    evs = ctrl.events()
    assert len(evs) == 2 and all(isinstance(e, CapsuleCommand) for e in evs)
    assert bytes(evs[0].data) == data  # type: ignore[union-attr, arg-type]


def test_held_views_survive_ring_reuse() -> None:
    """A target may keep in-capsule write data while the ring wraps many times."""
    host, ctrl = connected_pair(ring_size=4096)
    kept = []
    for i in range(50):
        payload = bytes([i]) * 1000
        (ev,) = deliver(ctrl, host.send_capsule_cmd(write_sqe(i, 1000, incapsule=True), payload))
        assert isinstance(ev, CapsuleCommand)
        kept.append((ev.sqe, ev.data))
        deliver(host, ctrl.send_response(i))
    for i, (sqe, data) in enumerate(kept):
        assert spec.sqe_cid(sqe) == i and bytes(data) == bytes([i]) * 1000  # type: ignore[arg-type]


def test_ring_is_reused_in_place_when_no_views_are_held() -> None:
    host, ctrl = connected_pair(ring_size=4096)
    ring = ctrl._ring
    for i in range(200):
        (ev,) = deliver(ctrl, host.send_capsule_cmd(read_sqe(i, 512)))
        del ev
        deliver(host, ctrl.send_response(i))
    assert ctrl._ring is ring


def test_rings_left_with_views_are_reused_once_the_views_are_gone() -> None:
    """Views held across a wrap (a write in flight) move the qpair to another ring; once they
    are dropped that ring is taken again instead of allocating a new one each wrap."""
    host, ctrl = connected_pair(ring_size=4096)
    rings: list[bytearray] = []
    window: list[object] = []
    for i in range(300):
        payload = bytes([i & 0xFF]) * 1000
        (ev,) = deliver(ctrl, host.send_capsule_cmd(write_sqe(i & 0xFFFF, 1000, incapsule=True), payload))
        assert isinstance(ev, CapsuleCommand) and bytes(ev.data) == payload  # type: ignore[arg-type]
        window.append(ev.data)
        del window[:-3]  # the last three writes are "in flight"
        del ev
        if not any(r is ctrl._ring for r in rings):
            rings.append(ctrl._ring)
        deliver(host, ctrl.send_response(i & 0xFFFF))
    assert 2 <= len(rings) <= 4


def test_data_digest_error_is_not_fatal() -> None:
    host, ctrl = connected_pair(ddgst=True)
    raw = bytearray(join(host.send_capsule_cmd(write_sqe(6, 64, incapsule=True), b"a" * 64)))
    raw[-1] ^= 0xFF
    evs = deliver(ctrl, [raw])
    assert evs == [DataDigestError(4, 6)]
    # The connection goes on.
    (ev,) = deliver(ctrl, host.send_capsule_cmd(read_sqe(7, 512)))
    assert isinstance(ev, CapsuleCommand)

    deliver(host, ctrl.send_response(6))
    deliver(host, ctrl.send_response(7))
    deliver(ctrl, host.send_capsule_cmd(write_sqe(8, 8192)))
    deliver(host, ctrl.send_r2t(8, 1, 0, 8192))
    raw = bytearray(join(host.send_h2c_data(8, 1, 0, b"b" * 8192)))
    raw[100] ^= 1
    (ev,) = deliver(ctrl, [raw])
    assert ev == DataDigestError(6, 8, 1, 0, 8192, True)
    assert ctrl.outstanding_r2ts == 0 and not ctrl.closed


def test_eof_clean_and_mid_pdu() -> None:
    host, ctrl = connected_pair()
    ctrl.receive_data(b"")
    assert ctrl.events() == [ConnectionClosed(clean=True)]
    host, ctrl = connected_pair()
    ctrl.receive_data(join(host.send_capsule_cmd(read_sqe(1, 512)))[:30])
    ctrl.eof_received()
    assert ctrl.events() == [ConnectionClosed(clean=False)]


def test_local_misuse_raises() -> None:
    host, ctrl = TcpQueuePair(Role.HOST), TcpQueuePair(Role.CONTROLLER)
    with pytest.raises(LocalProtocolError):
        ctrl.send_icresp()  # no ICReq yet
    with pytest.raises(LocalProtocolError):
        host.send_capsule_cmd(read_sqe(1, 512))  # not connected
    host, ctrl = connected_pair(maxr2t=0)
    with pytest.raises(LocalProtocolError):
        ctrl.send_c2h_data(1, 0, b"x", last=False, success=True)
    deliver(ctrl, host.send_capsule_cmd(write_sqe(1, 8192)))
    ctrl.send_r2t(1, 0, 0, 4096)
    with pytest.raises(LocalProtocolError):
        ctrl.send_r2t(1, 0, 4096, 4096)  # ttag in use
    with pytest.raises(LocalProtocolError):
        ctrl.send_r2t(1, 1, 4096, 4096)  # MAXR2T is 0's based: one outstanding
    with pytest.raises(LocalProtocolError):
        host.send_capsule_cmd(write_sqe(1, 8192))  # cid outstanding
    with pytest.raises(LocalProtocolError):
        host.send_capsule_cmd(write_sqe(2, 512, incapsule=True), b"short")
