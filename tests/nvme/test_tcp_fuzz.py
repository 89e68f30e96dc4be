"""Property tests: random input never raises and memory stays bounded; splitting a valid
stream at arbitrary points never changes the events."""
from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme.tcp import Event, ProtocolError, Role, TcpQueuePair

from .helpers import connected_pair, deliver, join, read_sqe, write_sqe

RING = 8192


def _feed(qp: TcpQueuePair, data: bytes, cuts: list[int], via_buffer: bool) -> list[Event]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    evs: list[Event] = []
    for a, b in zip(points, points[1:], strict=False):
        chunk = data[a:b]
        if via_buffer:
            while chunk:
                buf = qp.get_buffer(-1)
                assert len(buf) > 0
                n = min(len(buf), len(chunk))
                buf[:n] = chunk[:n]
                qp.buffer_updated(n)
                chunk = chunk[n:]
        else:
            qp.receive_data(chunk)
        evs += qp.events()
        # Bounded memory: the ring never grows; payload buffers are bounded by negotiated limits.
        assert len(qp._ring) == RING
        if qp._pending is not None:
            assert qp._pending.length <= max(qp.maxh2cdata, qp.max_incapsule_data, 65536)
    return evs


def _targets(kind: int, hdgst: bool, ddgst: bool) -> TcpQueuePair:
    if kind == 0:
        return TcpQueuePair(Role.CONTROLLER, ring_size=RING)
    if kind == 1:
        host = TcpQueuePair(Role.HOST, ring_size=RING)
        host.send_icreq(header_digest=hdgst, data_digest=ddgst)
        return host
    host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, ring_size=RING, maxh2cdata=16384)
    if kind == 2:
        deliver(ctrl, host.send_capsule_cmd(write_sqe(1, 65536)))
        ctrl.send_r2t(1, 1, 0, 32768)
        return ctrl
    host.send_capsule_cmd(read_sqe(1, 65536))
    host.send_capsule_cmd(write_sqe(2, 65536))
    return host


# A few valid-looking headers to steer random input past the first checks.
_PREFIXES = [b"", bytes([4, 0, 72, 0, 72, 0, 0, 0]), bytes([6, 4, 24, 24]), bytes([7, 12, 24, 24]),
             bytes([0, 0, 128, 0, 128, 0, 0, 0]), bytes([1, 0, 128, 0, 128, 0, 0, 0]),
             bytes([9, 0, 24, 0, 24, 0, 0, 0, 1, 0]), bytes([5, 0, 24, 0, 24, 0, 0, 0])]


@settings(max_examples=300, deadline=None)
@given(kind=st.integers(0, 3), hdgst=st.booleans(), ddgst=st.booleans(),
       prefix=st.sampled_from(_PREFIXES), data=st.binary(max_size=3000),
       cuts=st.lists(st.integers(0, 4000), max_size=8), via_buffer=st.booleans())
def test_random_input_never_raises(kind: int, hdgst: bool, ddgst: bool, prefix: bytes, data: bytes,
                                   cuts: list[int], via_buffer: bool) -> None:
    qp = _targets(kind, hdgst, ddgst)
    evs = _feed(qp, prefix + data, cuts, via_buffer)
    errors = [e for e in evs if isinstance(e, ProtocolError)]
    assert len(errors) <= 1
    if errors:
        assert evs[-1] is errors[0] and qp.closed
        assert len(join(errors[0].term_req)) <= 152


def _norm(evs: list[Event]) -> list[tuple[Any, ...]]:
    out = []
    for e in evs:
        fields = tuple(bytes(v) if isinstance(v, memoryview) else v
                       for v in (getattr(e, f) for f in e.__slots__))  # type: ignore[union-attr]
        out.append((type(e).__name__, *fields))
    return out


@settings(max_examples=60, deadline=None)
@given(hdgst=st.booleans(), ddgst=st.booleans(), cpda=st.sampled_from([0, 1, 7, 31]),
       sizes=st.lists(st.integers(0, 6000), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 60000), max_size=20), via_buffer=st.booleans())
def test_split_points_do_not_change_events(hdgst: bool, ddgst: bool, cpda: int, sizes: list[int],
                                           cuts: list[int], via_buffer: bool) -> None:
    def build() -> tuple[TcpQueuePair, bytes]:
        host, ctrl = connected_pair(hdgst=hdgst, ddgst=ddgst, cpda=cpda, ring_size=RING,
                                    maxh2cdata=4096)
        stream = b""
        for cid, size in enumerate(sizes):
            if size == 0:
                stream += join(host.send_capsule_cmd(read_sqe(cid, 4096)))
            elif size <= 4096:
                stream += join(host.send_capsule_cmd(write_sqe(cid, size, incapsule=True),
                                                     bytes([cid]) * size))
            else:
                deliver(ctrl, host.send_capsule_cmd(write_sqe(cid, size)))
                deliver(host, ctrl.send_r2t(cid, cid, 0, size))
                stream += join(host.send_h2c_data(cid, cid, 0, bytes([cid + 1]) * size))
        return ctrl, stream

    ctrl1, stream = build()
    ctrl1.max_incapsule_data = 4096
    whole = _norm(_feed(ctrl1, stream, [], via_buffer=False))
    ctrl2, _ = build()
    ctrl2.max_incapsule_data = 4096
    split = _norm(_feed(ctrl2, stream, cuts, via_buffer))
    assert whole == split
    assert not any(e[0] == "ProtocolError" for e in whole)
