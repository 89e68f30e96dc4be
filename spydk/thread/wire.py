"""Framing between the reactors of one application (sans-IO).

Reactors of one app run in separate processes joined by a Unix socketpair. Every message
is a frame: a 12-byte header (payload length, call id, kind, number of descriptors passed
with it) and the payload (a pickle: both ends are the same program, and the socketpair is
private to the app, never reachable from outside). Descriptors travel beside the bytes
(SCM_RIGHTS); the header says how many belong to each frame, so the receiver hands each
frame exactly its own.

    enc = FrameEncoder()
    bufs, fds = enc.frame(KIND_CALL, 7, payload, fds=[sock_fd])   # buffers to send
    dec = FrameDecoder()
    dec.add_fds(received_fds)                # from the ancillary data of recvmsg
    for f in dec.feed(data):                 # bytes in, frames out
        ...

No sockets, no clocks: the glue (``link.py``) owns the socket and batches frames into one
sendmsg per loop turn.
"""
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

HEADER = struct.Struct("<IIBB2x")   # payload length, call id, kind, descriptor count
assert HEADER.size == 12

KIND_CALL = 1      # a request; the peer answers with the same id
KIND_REPLY = 2     # a successful answer
KIND_ERROR = 3     # a failed answer (payload: the error message)
KIND_NOTIFY = 4    # no answer expected
KINDS = (KIND_CALL, KIND_REPLY, KIND_ERROR, KIND_NOTIFY)

MAX_PAYLOAD = 64 << 20   # one frame; a peer announcing more is broken
MAX_FDS = 16             # per frame


class WireError(Exception):
    """The byte stream from the other reactor is corrupt: the link must be closed."""


@dataclass(slots=True)
class Frame:
    kind: int
    call_id: int
    payload: bytes
    fds: list[int] = field(default_factory=list)


class FrameEncoder:
    """Builds the buffers of a frame (header + payload)."""

    def frame(self, kind: int, call_id: int, payload: bytes,
              fds: list[int] | tuple[int, ...] = ()) -> tuple[list[bytes], list[int]]:
        if kind not in KINDS:
            raise ValueError(f"frame kind {kind} is not one of {KINDS}")
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"frame payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        if len(fds) > MAX_FDS:
            raise ValueError(f"{len(fds)} descriptors in one frame; at most {MAX_FDS}")
        return [HEADER.pack(len(payload), call_id, kind, len(fds)), payload], list(fds)


class FrameDecoder:
    """Bytes in, frames out; descriptors received beside the bytes are given to frames in order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fds: deque[int] = deque()

    def add_fds(self, fds: list[int]) -> None:
        self._fds.extend(fds)

    def pending_fds(self) -> list[int]:
        """Descriptors received but not yet claimed by a frame (the glue closes them at EOF)."""
        out = list(self._fds)
        self._fds.clear()
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        view = memoryview(buf)   # payloads are copied once, out of the view (no bytearray slice)
        try:
            pos = self._frames(view, n, out)
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out

    def _frames(self, buf: memoryview, n: int, out: list[Frame]) -> int:
        pos = 0
        unpack = HEADER.unpack_from
        while n - pos >= HEADER.size:
            length, call_id, kind, nfds = unpack(buf, pos)
            if kind not in KINDS:
                raise WireError(f"frame kind {kind} at offset {pos} is unknown (stream corrupt)")
            if length > MAX_PAYLOAD or nfds > MAX_FDS:
                raise WireError(f"frame of {length} bytes with {nfds} descriptors exceeds the limits "
                                f"({MAX_PAYLOAD} bytes, {MAX_FDS} descriptors)")
            end = pos + HEADER.size + length
            if end > n:
                break
            if nfds > len(self._fds):
                # SCM_RIGHTS data arrives with the first byte of its frame, so this is corruption.
                raise WireError(f"frame {call_id} announces {nfds} descriptors, {len(self._fds)} arrived")
            fds = [self._fds.popleft() for _ in range(nfds)]
            out.append(Frame(kind, call_id, bytes(buf[pos + HEADER.size:end]), fds))
            pos = end
        return pos
