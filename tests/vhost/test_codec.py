"""The vhost-user message codec, with byte vectors."""
from __future__ import annotations

import pytest

from spydk.vhost.codec import MessageDecoder, ProtocolError, encode
from spydk.vhost.spec import HDR, U64, Req

GET_FEATURES = bytes.fromhex("01000000" "01000000" "00000000")
FEATURES_REPLY = bytes.fromhex("01000000" "05000000" "08000000" "0000004001000000")
SET_KICK_Q1 = bytes.fromhex("0c000000" "09000000" "08000000" "0100000000000000")


def test_encode_vectors() -> None:
    assert encode(Req.GET_FEATURES) == GET_FEATURES
    assert encode(Req.GET_FEATURES, U64.pack(0x1_4000_0000), reply=True) == FEATURES_REPLY
    assert encode(Req.SET_VRING_KICK, U64.pack(1), need_reply=True) == SET_KICK_Q1


def test_decode_split_and_fds() -> None:
    d = MessageDecoder()
    data = GET_FEATURES + SET_KICK_Q1
    assert d.wanted() == HDR.size
    assert d.feed(data[:5]) == []
    assert d.wanted() == HDR.size - 5
    msgs = d.feed(data[5:12])
    assert [m.request for m in msgs] == [Req.GET_FEATURES] and msgs[0].payload == b""
    assert d.feed(data[12:24], fds=[77]) == []
    assert d.wanted() == 8
    (m,) = d.feed(data[24:])
    assert m.request == Req.SET_VRING_KICK and m.need_reply and m.fds == [77]
    assert U64.unpack(m.payload)[0] == 1


@pytest.mark.parametrize("raw, what", [
    (bytes.fromhex("01000000" "02000000" "00000000"), "version 2"),
    (bytes.fromhex("01000000" "05000000" "00000000"), "reply flag set"),
    (bytes.fromhex("05000000" "01000000" "00100100"), "exceeds"),
])
def test_decode_rejects(raw: bytes, what: str) -> None:
    with pytest.raises(ProtocolError, match=what):
        MessageDecoder().feed(raw)


def test_reply_decoder_wants_replies() -> None:
    (m,) = MessageDecoder(expect_reply=True).feed(FEATURES_REPLY)
    assert U64.unpack(m.payload)[0] == 0x1_4000_0000
    with pytest.raises(ProtocolError, match="reply flag clear"):
        MessageDecoder(expect_reply=True).feed(GET_FEATURES)
