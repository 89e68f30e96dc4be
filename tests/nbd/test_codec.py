"""The sans-IO NBD codec: byte vectors of the handshake, options and transmission, refusals,
and a hypothesis fuzz of everything a client can send."""
from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from spydk.nbd import spec
from spydk.nbd.codec import (
    Disconnect,
    Export,
    NbdServerConnection,
    ProtocolError,
    Request,
    State,
    TransmissionStarted,
)

from .client import Parser, go, hello, option, request

EXP = Export("disk", 1 << 20, 512, max_payload=65536)


def _conn() -> tuple[NbdServerConnection, Parser]:
    c = NbdServerConnection(lambda n: EXP if n == "disk" else None, lambda: ["disk"])
    p = Parser()
    p.feed(b"".join(c.data_to_send()))
    return c, p


def _out(c: NbdServerConnection, p: Parser) -> None:
    p.feed(b"".join(bytes(b) for b in c.data_to_send()))


def test_greeting_bytes() -> None:
    c, p = _conn()
    assert bytes(p.buf) == b"NBDMAGIC" + b"IHAVEOPT" + b"\x00\x03"


def test_export_name_with_and_without_zeroes() -> None:
    for flags, tail in ((spec.FLAG_FIXED_NEWSTYLE, 124), (spec.FLAG_FIXED_NEWSTYLE | spec.FLAG_NO_ZEROES, 0)):
        c, p = _conn()
        p.buf.clear()
        ev = c.receive_data(hello(flags) + option(spec.OPT_EXPORT_NAME, b"disk"))
        assert isinstance(ev[0], TransmissionStarted) and ev[0].export is EXP
        _out(c, p)
        size, tflags = spec.EXPORT_NAME_REPLY.unpack_from(p.buf)
        assert size == 1 << 20 and len(p.buf) == 10 + tail
        assert tflags == (spec.TFLAG_HAS_FLAGS | spec.TFLAG_CAN_MULTI_CONN | spec.TFLAG_SEND_FLUSH
                          | spec.TFLAG_SEND_TRIM | spec.TFLAG_SEND_WRITE_ZEROES) == 0x165


def test_export_name_unknown_closes() -> None:
    c, _p = _conn()
    ev = c.receive_data(hello() + option(spec.OPT_EXPORT_NAME, b"nope"))
    assert isinstance(ev[0], ProtocolError) and "nope" in ev[0].message and c.state is State.CLOSED


def test_list_info_go_structured_and_exact_reply_bytes() -> None:
    c, p = _conn()
    p.buf.clear()
    ev = c.receive_data(hello() + option(spec.OPT_LIST) + option(spec.OPT_STRUCTURED_REPLY)
                        + go("nope") + go("disk", (spec.INFO_BLOCK_SIZE, spec.INFO_NAME)))
    _out(c, p)
    assert p.option_reply() == (spec.OPT_LIST, spec.REP_SERVER, b"\x00\x00\x00\x04disk")
    assert p.option_reply() == (spec.OPT_LIST, spec.REP_ACK, b"")
    assert p.option_reply() == (spec.OPT_STRUCTURED_REPLY, spec.REP_ACK, b"")
    o, rt, _ = p.option_reply()  # type: ignore[misc]
    assert (o, rt) == (spec.OPT_GO, spec.REP_ERR_UNKNOWN)
    assert p.option_reply() == (spec.OPT_GO, spec.REP_INFO, bytes.fromhex("0000" "0000000000100000" "0165"))
    assert p.option_reply() == (spec.OPT_GO, spec.REP_INFO, b"\x00\x01disk")
    assert p.option_reply() == (spec.OPT_GO, spec.REP_INFO, bytes.fromhex("0003" "00000200" "00001000" "00010000"))
    assert p.option_reply() == (spec.OPT_GO, spec.REP_ACK, b"")
    assert len(ev) == 1 and isinstance(ev[0], TransmissionStarted) and ev[0].structured


def test_options_refused_properly() -> None:
    c, p = _conn()
    p.buf.clear()
    c.receive_data(hello() + option(spec.OPT_STARTTLS) + option(99, b"xyz") + option(spec.OPT_SET_META_CONTEXT, b"\0" * 8)
                   + option(spec.OPT_LIST, b"junk") + option(spec.OPT_GO, b"\0\0\0\x09ab"))
    _out(c, p)
    got = [p.option_reply() for _ in range(5)]
    assert [(g[0], g[1]) for g in got if g] == [
        (spec.OPT_STARTTLS, spec.REP_ERR_UNSUP), (99, spec.REP_ERR_UNSUP),
        (spec.OPT_SET_META_CONTEXT, spec.REP_ERR_INVALID), (spec.OPT_LIST, spec.REP_ERR_INVALID),
        (spec.OPT_GO, spec.REP_ERR_INVALID)]
    assert c.state is State.OPTIONS
    ev = c.receive_data(option(spec.OPT_ABORT))
    assert isinstance(ev[0], Disconnect)


def test_oversized_option_and_bad_magic_close() -> None:
    c, _ = _conn()
    ev = c.receive_data(hello() + spec.OPTION.pack(spec.IHAVEOPT, spec.OPT_GO, 1 << 30))
    assert isinstance(ev[0], ProtocolError) and "length" in ev[0].message
    c, _ = _conn()
    ev = c.receive_data(hello() + spec.OPTION.pack(0x1234, spec.OPT_GO, 0))
    assert isinstance(ev[0], ProtocolError)
    c, _ = _conn()
    ev = c.receive_data(hello(0x80))
    assert isinstance(ev[0], ProtocolError) and "client flags" in ev[0].message


def _transmitting(structured: bool = False) -> tuple[NbdServerConnection, Parser]:
    c, p = _conn()
    c.receive_data(hello() + (option(spec.OPT_STRUCTURED_REPLY) if structured else b"") + go("disk"))
    c.data_to_send()
    p.buf.clear()
    return c, p


def test_requests_become_events_write_payload_split_anywhere() -> None:
    c, p = _transmitting()
    data = bytes(range(256)) * 8
    wire = request(spec.CMD_WRITE, 7, 4096, 2048, data) + request(spec.CMD_READ, 8, 0, 512) \
        + request(spec.CMD_FLUSH, 9, 0, 0) + request(spec.CMD_TRIM, 10, 512, 1024) \
        + request(spec.CMD_WRITE_ZEROES, 11, 0, 512)
    events = []
    for i in range(0, len(wire), 13):       # in 13-byte pieces
        events += c.receive_data(wire[i:i + 13])
    assert [type(e) for e in events] == [Request] * 5
    w = events[0]
    assert (w.type, w.cookie, w.offset, w.length, bytes(w.data)) == (spec.CMD_WRITE, 7, 4096, 2048, data)
    assert [(e.type, e.cookie) for e in events[1:]] == [(0, 8), (3, 9), (4, 10), (6, 11)]
    c.reply(7)
    c.reply_read(8, 0, b"\xab" * 512)
    _out(c, p)
    assert p.simple_reply() == (0, 7, b"")
    assert p.simple_reply(512) == (0, 8, b"\xab" * 512)


def test_structured_replies() -> None:
    c, p = _transmitting(structured=True)
    c.reply_read(5, 1024, b"x" * 512)
    c.reply(6)
    c.reply_error(7, spec.EIO, "boom")
    _out(c, p)
    assert p.chunk() == (1, spec.REPLY_TYPE_OFFSET_DATA, 5, struct.pack(">Q", 1024) + b"x" * 512)
    assert p.chunk() == (1, spec.REPLY_TYPE_NONE, 6, b"")
    assert p.chunk() == (1, spec.REPLY_TYPE_ERROR, 7, struct.pack(">IH", spec.EIO, 4) + b"boom")


def test_bad_requests_get_errors_and_the_stream_continues() -> None:
    c, p = _transmitting()
    bad = [
        (request(spec.CMD_READ, 1, (1 << 20) - 512, 1024), spec.EINVAL),           # beyond the end
        (request(spec.CMD_READ, 2, 100, 512), spec.EINVAL),                        # unaligned
        (request(spec.CMD_READ, 3, 0, 1 << 20), spec.EINVAL),                      # > max_payload
        (request(spec.CMD_WRITE, 4, 0, 131072, bytes(131072)), spec.EINVAL),       # > max_payload, skipped
        (request(spec.CMD_WRITE, 5, 1 << 20, 512, bytes(512)), spec.ENOSPC),
        (request(spec.CMD_CACHE, 6, 0, 512), spec.EINVAL),
        (request(77, 7, 0, 0), spec.EINVAL),
    ]
    ev = c.receive_data(b"".join(w for w, _ in bad) + request(spec.CMD_READ, 8, 0, 512))
    assert len(ev) == 1 and isinstance(ev[0], Request) and ev[0].cookie == 8
    _out(c, p)
    assert [p.simple_reply() for _ in bad] == [(e, i + 1, b"") for i, (_, e) in enumerate(bad)]
    # the skipped write payload was never kept: the receive buffer stayed small
    assert len(c.rx.buf) <= 65536 + 4096


def test_read_only_export_refuses_writes() -> None:
    ro = Export("ro", 1 << 20, 512, read_only=True)
    c = NbdServerConnection(lambda n: ro, None)
    c.receive_data(hello() + option(spec.OPT_EXPORT_NAME, b"ro"))
    c.data_to_send()
    c.receive_data(request(spec.CMD_WRITE, 1, 0, 512, bytes(512)) + request(spec.CMD_TRIM, 2, 0, 512))
    p = Parser()
    _out(c, p)
    assert [p.simple_reply(), p.simple_reply()] == [(spec.EPERM, 1, b""), (spec.EPERM, 2, b"")]
    assert ro.tflags & spec.TFLAG_READ_ONLY and not ro.tflags & spec.TFLAG_SEND_TRIM


def test_bad_request_magic_and_disconnect() -> None:
    c, _ = _transmitting()
    ev = c.receive_data(request(spec.CMD_READ, 1, 0, 512, magic=0xDEADBEEF))
    assert isinstance(ev[0], ProtocolError) and c.state is State.CLOSED
    c, _ = _transmitting()
    ev = c.receive_data(request(spec.CMD_DISC, 1, 0, 0))
    assert isinstance(ev[0], Disconnect)


def test_kernel_mode_starts_in_transmission() -> None:
    c = NbdServerConnection(lambda n: None, kernel_export=EXP)
    assert c.data_to_send() == [] and c.state is State.TRANSMISSION
    ev = c.receive_data(request(spec.CMD_READ, 1, 0, 512))
    assert isinstance(ev[0], Request)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans())
def test_fuzz_any_bytes_never_crash_or_overallocate(chunks: list[bytes], skip_handshake: bool) -> None:
    c, _ = _transmitting() if skip_handshake else _conn()
    for ch in chunks:
        for ev in c.receive_data(ch):
            assert isinstance(ev, (Request, TransmissionStarted, Disconnect, ProtocolError))
            if isinstance(ev, Request):
                assert ev.length <= EXP.max_payload and ev.offset + ev.length <= EXP.size
        if c.state is State.CLOSED:
            break
    assert len(c.rx.buf) <= max(65536, spec.MAX_OPTION_LENGTH + 16)


@example([(1, 1, 0)])     # a refused zero-length write still gets its reply
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 3, 4, 5, 6, 9]), st.integers(0, (1 << 20) + 4096),
                          st.integers(0, 140000)), max_size=6))
def test_fuzz_request_headers(reqs: list[tuple[int, int, int]]) -> None:
    c, p = _transmitting()
    expect_replies = 0
    wire = b""
    for i, (typ, off, length) in enumerate(reqs):
        wire += request(typ, i, off, length, bytes(length) if typ == spec.CMD_WRITE else b"")
    events = c.receive_data(wire)
    assert c.state is State.TRANSMISSION
    expect_replies = len(reqs) - len(events)
    _out(c, p)
    got = [p.simple_reply() for _ in range(expect_replies)]
    assert all(g is not None and g[0] != 0 for g in got)
    assert not p.buf
