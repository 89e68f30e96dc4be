"""The controller's CapsuleCmd fast paths give the same events as the general parser, however
the bytes are cut, and leave limit violations to the general parser."""
from __future__ import annotations

import os

import pytest

from spydk.nvme import spec, tcp
from spydk.nvme.spec.tcp import Fes
from tests.nvmf.helpers import sgl_incapsule, sgl_transport


def _pair(fast: bool, max_icd: int = 8192) -> tuple[tcp.TcpQueuePair, tcp.TcpQueuePair]:
    h = tcp.TcpQueuePair(tcp.Role.HOST)
    c = tcp.TcpQueuePair(tcp.Role.CONTROLLER, max_incapsule_data=max_icd)
    c.receive_data(b"".join(bytes(x) for x in h.send_icreq()))
    assert isinstance(c.next_event(), tcp.ICReqReceived)
    h.receive_data(b"".join(bytes(x) for x in c.send_icresp()))
    assert isinstance(h.next_event(), tcp.ICRespReceived)
    if not fast:
        c._cmd_fast_plen = -1
        c._cmd_data_pdo = -1
    return h, c


def _stream(h: tcp.TcpQueuePair) -> bytes:
    out = b""
    for cid in range(12):
        if cid % 3 == 0:
            sqe = spec.build_sqe(spec.NvmOpcode.READ, cid, 1, psdt=1, dptr=sgl_transport(4096), cdw12=7)
            out += b"".join(bytes(x) for x in h.send_capsule_cmd(sqe))
        else:
            n = 512 * cid
            sqe = spec.build_sqe(spec.NvmOpcode.WRITE, cid, 1, psdt=1, dptr=sgl_incapsule(n),
                                 cdw10=cid, cdw12=cid - 1)
            out += b"".join(bytes(x) for x in h.send_capsule_cmd(sqe, os.urandom(n)))
    return out


def _events(c: tcp.TcpQueuePair, data: bytes, chunk: int) -> list[tuple[bytes, bytes | None]]:
    got = []
    for i in range(0, len(data), chunk):
        c.receive_data(data[i:i + chunk])
        while (ev := c.next_event()) is not None:
            assert isinstance(ev, tcp.CapsuleCommand)
            got.append((bytes(ev.sqe), None if ev.data is None else bytes(ev.data)))
    return got


@pytest.mark.parametrize("chunk", [1, 7, 72, 1000, 1 << 20])
def test_fast_and_general_parsers_agree(chunk: int) -> None:
    h, fast = _pair(True)
    data = _stream(h)
    _, general = _pair(False)
    want = _events(general, data, 1 << 20)
    assert len(want) == 12 and sum(d is not None for _, d in want) == 8
    assert _events(fast, data, chunk) == want


def test_oversized_in_capsule_data_still_refused() -> None:
    h, c = _pair(True, max_icd=8192)
    h.max_incapsule_data = 16384
    sqe = spec.build_sqe(spec.NvmOpcode.WRITE, 1, 1, psdt=1, dptr=sgl_incapsule(12288), cdw12=23)
    c.receive_data(b"".join(bytes(x) for x in h.send_capsule_cmd(sqe, bytes(12288))))
    ev = c.next_event()
    assert isinstance(ev, tcp.ProtocolError) and ev.fes == Fes.DATA_TRANSFER_LIMIT_EXCEEDED
