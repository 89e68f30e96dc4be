"""The stream decoder: requests split anywhere, pipelined, batched, hostile."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.rpc.framing import JsonStreamDecoder

REQS = [
    {"jsonrpc": "2.0", "method": "a", "id": 1},
    {"jsonrpc": "2.0", "method": "b", "params": {"s": "x}]\\\"{[y", "n": [1, {"k": []}]}, "id": "two"},
    [{"jsonrpc": "2.0", "method": "c", "id": 3}, {"jsonrpc": "2.0", "method": "d"}],
    {"jsonrpc": "2.0", "method": "é€", "params": {"u": "\u2603\\"}, "id": None},
]


def stream() -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + ws for r, ws in zip(REQS, [b"", b"\n", b" \r\n\t", b""], strict=True))


def test_whole_stream_gives_every_request_in_order() -> None:
    d = JsonStreamDecoder()
    assert d.feed(stream()) == REQS
    assert d.error is None
    assert d.buffered == 0


def test_split_at_every_byte() -> None:
    data = stream()
    for cut in range(1, len(data)):
        d = JsonStreamDecoder()
        out = d.feed(data[:cut]) + d.feed(data[cut:])
        assert out == REQS, cut
        assert d.error is None


def test_one_byte_at_a_time() -> None:
    d = JsonStreamDecoder()
    out = []
    for b in stream():
        out += d.feed(bytes([b]))
    assert out == REQS


def test_invalid_json_is_an_error_after_the_good_requests() -> None:
    d = JsonStreamDecoder()
    out = d.feed(b'{"method": "a", "id": 1}{"method": bad}')
    assert out == [{"method": "a", "id": 1}]
    assert d.error is not None and not d.error.too_large


def test_unbalanced_close_bracket() -> None:
    d = JsonStreamDecoder()
    assert d.feed(b'{"a": 1}}') == [{"a": 1}]
    # The stray "}" starts no value: a scalar that is not JSON.
    assert d.error is not None


def test_oversized_request_is_refused() -> None:
    d = JsonStreamDecoder(max_size=1000)
    d.feed(b'{"method": "x", "params": {"s": "' + b"a" * 600)
    assert d.error is None
    d.feed(b"a" * 600)
    assert d.error is not None and d.error.too_large


def test_scalars_are_returned_for_an_invalid_request_answer() -> None:
    d = JsonStreamDecoder()
    assert d.feed(b"12") == []          # may go on
    assert d.feed(b"3 true null") == [123, True, None]
    d = JsonStreamDecoder()
    d.feed(b'"a string"')
    assert d.error is not None and d.error.invalid_request


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=5), json_values, max_size=4) | st.lists(json_values, max_size=3),
                min_size=1, max_size=4),
       st.data())
def test_random_containers_roundtrip_with_random_splits(values: list, data: st.DataObject) -> None:
    raw = b" ".join(json.dumps(v).encode() for v in values)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=5)))
    d = JsonStreamDecoder()
    out = []
    prev = 0
    for c in cuts + [len(raw)]:
        out += d.feed(raw[prev:c])
        prev = c
    assert d.error is None
    assert out == values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    d = JsonStreamDecoder(max_size=100)
    d.feed(data)  # values or d.error, never an exception
