"""Fuzz: the message parser and session never fail with anything but ProtocolError, and
descriptor chains never yield a view outside guest memory (the device fails alone)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spydk.vhost.codec import MessageDecoder, ProtocolError, encode
from spydk.vhost.session import BackendSession
from spydk.vhost.spec import DESC, U16, Req
from spydk.vhost.virtqueue import DeviceQueue, VirtqError

from .helpers import FakeDevice, ram

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_decoder_any_bytes(chunks: list[bytes]) -> None:
    d = MessageDecoder()
    try:
        for c in chunks:
            for m in d.feed(c):
                assert len(m.payload) <= d.max_payload
    except ProtocolError:
        pass


_reqs = st.sampled_from([int(r) for r in Req] + [0, 99, 2**32 - 1])


@FUZZ
@given(st.lists(st.tuples(_reqs, st.binary(max_size=300), st.booleans(), st.integers(0, 2)), max_size=12))
def test_session_any_messages(msgs: list[tuple[int, bytes, bool, int]]) -> None:
    sent: list[bytes] = []
    s = BackendSession(FakeDevice(2), lambda b, f: sent.append(b))
    try:
        for req, payload, need_reply, nfds in msgs:
            fds = [os.eventfd(0) for _ in range(nfds)]
            s.receive(encode(req, payload, need_reply=need_reply), fds)
    except ProtocolError:
        pass
    finally:
        s.close()


GPA = 0x1000
SIZE = 0x4000
_addr = st.one_of(st.integers(0, GPA + SIZE + 64), st.integers(0, 2**64 - 1))
_desc = st.tuples(_addr, st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
                  st.integers(0, 7), st.integers(0, 20))


@FUZZ
@given(st.lists(_desc, min_size=16, max_size=16), st.lists(st.integers(0, 20), min_size=1, max_size=4),
       st.lists(_desc, max_size=8))
def test_chains_stay_inside_guest_memory(table: list[tuple[int, int, int, int]], heads: list[int],
                                         indirect: list[tuple[int, int, int, int]]) -> None:
    buf, mem = ram(SIZE, gpa=GPA)
    for i, d in enumerate(table):
        DESC.pack_into(buf, 16 * i, *d)
    for i, d in enumerate(indirect):       # an indirect table the fuzzed descriptors may point at
        DESC.pack_into(buf, 0x2000 + 16 * i, *d)
    avail = 0x1000
    for i, h in enumerate(heads):
        U16.pack_into(buf, avail + 4 + 2 * i, h)
    U16.pack_into(buf, avail + 2, len(heads))
    q = DeviceQueue(mem, 16, GPA, GPA + avail, GPA + 0x1800)
    base = memoryview(buf)
    try:
        while True:
            c = q.pop()
            if c is None:
                break
            for v in c.readable + c.writable:
                # every view is a slice of the guest buffer: same underlying object, in bounds
                assert v.obj is base.obj and len(v) <= SIZE
    except VirtqError:
        pass
