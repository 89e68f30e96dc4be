"""Sans-IO vhost-user message codec.

    dec = MessageDecoder()
    for msg in dec.feed(data, fds):     # bytes and the fds received with them (SCM_RIGHTS)
        ...                             # msg.request, msg.flags, msg.payload, msg.fds
    buf = encode(Req.GET_FEATURES, U64.pack(features), reply=True)

The decoder owns fds until a message takes them: fds that arrive with a message's bytes
belong to that message (the socket glue passes them in with the first bytes of the
message, which is how the kernel delivers them). Anything malformed raises
``ProtocolError``: the connection it came from is closed, nothing else is affected.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from spydk.vhost.spec import FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION_MASK, HDR, MAX_PAYLOAD, VERSION

MAX_FDS_PER_MSG = 8


class ProtocolError(Exception):
    """The peer broke the vhost-user protocol; its connection must be closed."""


@dataclass
class Message:
    request: int
    flags: int
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    def take_fd(self) -> int | None:
        return self.fds.pop(0) if self.fds else None

    def close_fds(self) -> None:
        for fd in self.fds:
            close_quietly(fd)
        self.fds.clear()


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class MessageDecoder:
    """Splits a byte stream into vhost-user messages (header + payload)."""

    def __init__(self, max_payload: int = MAX_PAYLOAD, expect_reply: bool = False) -> None:
        self.max_payload = max_payload
        self.expect_reply = expect_reply    # front end decoding the back end's replies
        self._buf = bytearray()
        self._fds: list[int] = []

    def feed(self, data: bytes | memoryview, fds: Sequence[int] = ()) -> list[Message]:
        self._fds.extend(fds)
        if len(self._fds) > MAX_FDS_PER_MSG * 2:
            raise ProtocolError(f"{len(self._fds)} file descriptors received without their messages")
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HDR.size:
            request, flags, size = HDR.unpack_from(self._buf, 0)
            if flags & FLAG_VERSION_MASK != VERSION:
                raise ProtocolError(f"message {request}: version {flags & FLAG_VERSION_MASK}, "
                                    f"expected {VERSION}")
            if bool(flags & FLAG_REPLY) != self.expect_reply:
                raise ProtocolError(f"message {request}: reply flag {'set' if flags & FLAG_REPLY else 'clear'}"
                                    f" on a {'reply' if self.expect_reply else 'request'}")
            if size > self.max_payload:
                raise ProtocolError(f"message {request}: payload of {size} bytes exceeds "
                                    f"the {self.max_payload}-byte limit")
            end = HDR.size + size
            if len(self._buf) < end:
                break
            payload = bytes(self._buf[HDR.size:end])
            del self._buf[:end]
            fds, self._fds = self._fds, []
            out.append(Message(request, flags, payload, fds))
        return out

    def wanted(self) -> int:
        """Bytes that complete the current header or payload: the socket glue reads exactly
        this much, so each read starts at a message boundary and the fds it returns are
        that message's (the kernel attaches fds to the start of the sender's write)."""
        if len(self._buf) < HDR.size:
            return HDR.size - len(self._buf)
        size = HDR.unpack_from(self._buf, 0)[2]
        return max(1, min(size, self.max_payload) + HDR.size - len(self._buf))

    def close(self) -> None:
        for fd in self._fds:
            close_quietly(fd)
        self._fds.clear()
        self._buf.clear()


def encode(request: int, payload: bytes = b"", *, reply: bool = False,
           need_reply: bool = False) -> bytes:
    flags = VERSION | (FLAG_REPLY if reply else 0) | (FLAG_NEED_REPLY if need_reply else 0)
    return HDR.pack(request, flags, len(payload)) + payload
