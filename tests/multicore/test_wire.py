"""The frame codec between reactors: byte vectors, split input, descriptors, corrupt streams."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spydk.thread.wire import (
    HEADER,
    KIND_CALL,
    KIND_NOTIFY,
    KIND_REPLY,
    MAX_FDS,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameEncoder,
    WireError,
)


def test_header_bytes():
    bufs, fds = FrameEncoder().frame(KIND_CALL, 7, b"abc", [5])
    assert bufs == [bytes.fromhex("03000000" "07000000" "01" "01" "0000"), b"abc"]
    assert fds == [5]


def test_frames_split_anywhere_come_out_whole_and_in_order():
    enc = FrameEncoder()
    stream = b"".join(b"".join(enc.frame(KIND_NOTIFY, i, bytes([i]) * i)[0]) for i in range(1, 6))
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i:i + 1])
    assert [(f.call_id, f.payload) for f in got] == [(i, bytes([i]) * i) for i in range(1, 6)]


def test_descriptors_go_to_their_frames():
    enc = FrameEncoder()
    a = b"".join(enc.frame(KIND_CALL, 1, b"x", [10, 11])[0])
    b = b"".join(enc.frame(KIND_REPLY, 2, b"y")[0])
    c = b"".join(enc.frame(KIND_CALL, 3, b"z", [12])[0])
    dec = FrameDecoder()
    dec.add_fds([10, 11, 12])
    frames = dec.feed(a + b + c)
    assert [f.fds for f in frames] == [[10, 11], [], [12]]


def test_unknown_kind_is_corruption():
    with pytest.raises(WireError, match="kind 9"):
        FrameDecoder().feed(HEADER.pack(0, 1, 9, 0))


def test_oversized_frame_is_refused_before_buffering_it():
    with pytest.raises(WireError, match="exceeds the limits"):
        FrameDecoder().feed(HEADER.pack(MAX_PAYLOAD + 1, 1, KIND_CALL, 0))


def test_missing_descriptors_are_corruption():
    with pytest.raises(WireError, match="announces 1 descriptors, 0 arrived"):
        FrameDecoder().feed(HEADER.pack(0, 1, KIND_CALL, 1))


def test_encoder_limits():
    with pytest.raises(ValueError, match="descriptors"):
        FrameEncoder().frame(KIND_CALL, 1, b"", list(range(MAX_FDS + 1)))
    with pytest.raises(ValueError, match="kind"):
        FrameEncoder().frame(0, 1, b"")


@given(st.binary(max_size=200))
def test_fuzz_never_crashes_otherwise(data):
    dec = FrameDecoder()
    try:
        for f in dec.feed(data):
            assert len(f.payload) <= MAX_PAYLOAD
    except WireError:
        pass


@given(st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 3)), max_size=8), st.integers(1, 17))
def test_roundtrip(frames, chunk):
    enc = FrameEncoder()
    stream = b""
    fds: list[int] = []
    for i, (payload, n) in enumerate(frames):
        bufs, f = enc.frame(KIND_NOTIFY, i, payload, list(range(100 + 10 * i, 100 + 10 * i + n)))
        stream += b"".join(bufs)
        fds += f
    dec = FrameDecoder()
    dec.add_fds(fds)
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i:i + chunk])
    assert [(f.payload, len(f.fds)) for f in got] == [(p, n) for p, n in frames]
