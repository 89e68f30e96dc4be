"""The host driver's codec adapter (HostCodec): its read encoder and receive fast path give
the same bytes and the same events as the codec's general paths."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme import spec
from spydk.nvme.host.codec import new_host_codec
from spydk.nvme.tcp import C2HData, CapsuleResponse, ProtocolError, Role, TcpQueuePair


def _pair(host: TcpQueuePair) -> TcpQueuePair:
    ctrl = TcpQueuePair(Role.CONTROLLER)
    ctrl.receive_data(b"".join(bytes(b) for b in host.send_icreq()))
    ctrl.events()
    host.receive_data(b"".join(bytes(b) for b in ctrl.send_icresp()))
    host.events()
    return ctrl


def _read_sqe(cid: int, n: int) -> bytearray:
    return bytearray(spec.build_sqe(spec.NvmOpcode.READ, cid, 1, psdt=1, cdw12=n // 512 - 1,
                                    dptr=spec.build_sgl(0, n, 5, 0xA)))


def _summary(evs: list) -> list:  # type: ignore[type-arg]
    out = []
    for e in evs:
        if isinstance(e, C2HData):
            out.append(("c2h", e.cccid, e.offset, bytes(e.data), e.last, e.success))
        elif isinstance(e, CapsuleResponse):
            out.append(("resp", e.cid, bytes(e.cqe)))
        elif isinstance(e, ProtocolError):
            out.append(("error", e.reason))
        else:
            out.append((type(e).__name__,))
    return out


@given(st.lists(st.tuples(st.integers(1, 8), st.booleans(), st.booleans()), min_size=1, max_size=12),
       st.integers(0, 2**32 - 1), st.integers(1, 5000))
@settings(max_examples=150, deadline=None)
def test_fast_paths_match_the_general_codec(cmds: list[tuple[int, bool, bool]], seed: int,
                                             chunk: int) -> None:
    fast = new_host_codec(4096)
    plain = TcpQueuePair(Role.HOST, max_incapsule_data=4096)
    ctrl_f, ctrl_p = _pair(fast), _pair(plain)
    rng = random.Random(seed)
    wire_f, wire_p = [], []
    for cid, (blocks, success, bad_cid) in enumerate(cmds):
        n = blocks * 512
        sqe = _read_sqe(cid, n)
        raw_f = fast.send_read_cmd(sqe, cid, n, None)
        raw_p = b"".join(bytes(b) for b in plain.send_capsule_cmd(sqe))
        assert raw_f == raw_p
        ctrl_f.receive_data(raw_f)
        ctrl_p.receive_data(raw_p)
        data = rng.randbytes(n)
        for ctrl, wire in ((ctrl_f, wire_f), (ctrl_p, wire_p)):
            ctrl.events()
            out = ctrl.send_c2h_data(cid, 0, data, success=success)
            if not success:
                out += ctrl.send_response(1000 + cid if bad_cid else cid)
            wire.append(b"".join(bytes(b) for b in out))
    stream = b"".join(wire_f)
    assert stream == b"".join(wire_p)
    for host in (fast, plain):
        for i in range(0, len(stream), chunk):
            host.receive_data(stream[i:i + chunk])
    assert _summary(fast.events()) == _summary(plain.events())
    assert fast.outstanding_commands == plain.outstanding_commands
