"""spydk's vhost-user front end against its back end, both sans-IO, in memory: the setup
handshake, a request through the shared memfd ring, a stop that waits for in-flight work."""
from __future__ import annotations

import os

import pytest

from spydk.vhost.codec import ProtocolError, encode
from spydk.vhost.frontend import FrontendSession, SharedMemory
from spydk.vhost.session import BackendSession
from spydk.vhost.spec import BLK_CONFIG, U64, VRING_STATE, Req
from spydk.vhost.virtqueue import DriverQueue

from .helpers import FakeDevice


class Pair:
    def __init__(self, queues: int = 2) -> None:
        self.dev = FakeDevice(queues)
        self.to_fe: list[tuple[bytes, list[int]]] = []
        self.be = BackendSession(self.dev, lambda b, f: self.to_fe.append((b, f)))
        self.mem = SharedMemory(1 << 20)
        self.qs = []
        for _ in range(queues):
            base, view = self.mem.alloc(16384, 4096)
            self.qs.append(DriverQueue(view, base, 64))
        self.kicks = [os.eventfd(0) for _ in range(queues)]
        self.calls = [os.eventfd(0) for _ in range(queues)]
        self.fe = FrontendSession(self._to_be, self.mem, self.qs, self.kicks, self.calls,
                                  1 << 6, BLK_CONFIG.size)

    def _to_be(self, buf: bytes, fds: list[int]) -> None:
        # the kernel would duplicate the fds: the back end owns (and closes) its copies
        self.be.receive(buf, [os.dup(f) for f in fds])
        self.pump()

    def pump(self) -> None:
        while self.to_fe:
            b, f = self.to_fe.pop(0)
            self.fe.feed(b, f)

    def close(self) -> None:
        self.be.close()
        for fd in self.kicks + self.calls:
            os.close(fd)
        self.mem.close()


@pytest.fixture
def pair():  # type: ignore[no-untyped-def]
    p = Pair()
    yield p
    p.close()


def test_handshake_and_io(pair: Pair) -> None:
    pair.fe.start()
    assert pair.fe.error is None and pair.fe.ready
    assert pair.dev.started == [0, 1]
    assert BLK_CONFIG.unpack(pair.fe.info.config)[0] == 2048
    assert pair.be.features & (1 << 6) and pair.be.mem is not None
    q = pair.be.vrings[1].queue
    assert q is not None
    # a request through ring 1: the back end sees the driver's bytes in its own mapping
    addr, view = pair.mem.alloc(4096)
    view[:5] = b"hello"
    head = pair.qs[1].add([(addr, 5, False), (addr + 512, 3, True)])
    chain = q.pop()
    assert chain is not None and chain.head == head and bytes(chain.readable[0]) == b"hello"
    chain.writable[0][:] = b"ack"
    q.push(chain.head, 3)
    done: list[tuple[int, int]] = []
    pair.qs[1].poll_used(lambda h, n: done.append((h, n)))
    assert done == [(head, 3)] and bytes(view[512:515]) == b"ack"


def test_get_vring_base_waits_for_in_flight(pair: Pair) -> None:
    pair.fe.start()
    pair.dev.hold_stop = True
    pair.be.receive(encode(Req.GET_VRING_BASE, VRING_STATE.pack(0, 0)))
    # messages queue while the stop waits; nothing is answered yet
    pair.be.receive(encode(Req.GET_FEATURES))
    assert pair.to_fe == []
    pair.dev.pending_stop.pop()()
    assert len(pair.to_fe) == 2
    assert VRING_STATE.unpack(pair.to_fe[0][0][12:]) == (0, 0)
    assert pair.be.vrings[0].queue is None and pair.be.vrings[1].queue is not None


@pytest.mark.parametrize("msg, what", [
    (encode(Req.SET_VRING_NUM, VRING_STATE.pack(5, 64)), "ring 5 does not exist"),
    (encode(Req.SET_VRING_NUM, VRING_STATE.pack(0, 100)), "not a power of two"),
    (encode(Req.SET_VRING_KICK, U64.pack(0)), "without a file descriptor"),
    (encode(Req.SET_FEATURES, b"\x01"), "payload of 1 bytes"),
    (encode(Req.SET_MEM_TABLE, b"\x01\x00\x00\x00\x00\x00\x00\x00"), "SET_MEM_TABLE"),
])
def test_bad_requests_close_the_connection(msg: bytes, what: str) -> None:
    s = BackendSession(FakeDevice(1), lambda b, f: None)
    with pytest.raises(ProtocolError, match=what):
        s.receive(msg)
    s.close()


def test_ring_outside_memory_fails_the_session(pair: Pair) -> None:
    pair.fe.start()
    pair.be.receive(encode(Req.GET_VRING_BASE, VRING_STATE.pack(0, 0)))
    from spydk.vhost.spec import VRING_ADDR
    pair.be.receive(encode(Req.SET_VRING_ADDR, VRING_ADDR.pack(0, 0, 0xDEAD_0000, 0xDEAD_0000, 0xDEAD_0000, 0)))
    with pytest.raises(ProtocolError, match="outside guest memory"):
        pair.be.receive(encode(Req.SET_VRING_KICK, U64.pack(0)), [os.eventfd(0)])


def test_unknown_request_is_refused_with_ack(pair: Pair) -> None:
    pair.fe.start()
    pair.to_fe.clear()
    pair.be.receive(encode(Req.SEND_RARP, bytes(8), need_reply=True))
    (buf, _), = pair.to_fe
    assert U64.unpack(buf[12:])[0] == 1
