"""A small NBD client codec for the tests: builds requests, parses server bytes."""
from __future__ import annotations

import struct

from spydk.nbd import spec


def hello(flags: int = spec.FLAG_FIXED_NEWSTYLE | spec.FLAG_NO_ZEROES) -> bytes:
    return spec.CLIENT_FLAGS.pack(flags)


def option(opt: int, data: bytes = b"") -> bytes:
    return spec.OPTION.pack(spec.IHAVEOPT, opt, len(data)) + data


def go(name: str, infos: tuple[int, ...] = (spec.INFO_BLOCK_SIZE,), opt: int = spec.OPT_GO) -> bytes:
    n = name.encode()
    return option(opt, struct.pack(">I", len(n)) + n + struct.pack(f">H{len(infos)}H", len(infos), *infos))


def request(typ: int, cookie: int, offset: int, length: int, data: bytes = b"", flags: int = 0,
            magic: int = spec.REQUEST_MAGIC) -> bytes:
    return spec.REQUEST.pack(magic, flags, typ, cookie, offset, length) + data


class Parser:
    """Accumulates server bytes and pops whole messages."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def take(self, n: int) -> bytes | None:
        if len(self.buf) < n:
            return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def greeting(self) -> tuple[int, int, int] | None:
        b = self.take(18)
        return None if b is None else spec.GREETING.unpack(b)

    def option_reply(self) -> tuple[int, int, bytes] | None:
        if len(self.buf) < 20:
            return None
        magic, opt, rtype, length = spec.OPTION_REPLY.unpack_from(self.buf)
        assert magic == spec.OPT_REPLY_MAGIC
        if len(self.buf) < 20 + length:
            return None
        self.take(20)
        return opt, rtype, self.take(length) or b""

    def simple_reply(self, data_len: int = 0) -> tuple[int, int, bytes] | None:
        if len(self.buf) < 16 + data_len:
            return None
        magic, err, cookie = spec.SIMPLE_REPLY.unpack(self.take(16) or b"")
        assert magic == spec.SIMPLE_REPLY_MAGIC, hex(magic)
        data = self.take(data_len) if not err and data_len else b""
        return err, cookie, data or b""

    def chunk(self) -> tuple[int, int, int, bytes] | None:
        """(flags, type, cookie, payload) of one structured reply chunk."""
        if len(self.buf) < 20:
            return None
        magic, flags, typ, cookie, length = spec.STRUCTURED_REPLY.unpack_from(self.buf)
        assert magic == spec.STRUCTURED_REPLY_MAGIC, hex(magic)
        if len(self.buf) < 20 + length:
            return None
        self.take(20)
        return flags, typ, cookie, self.take(length) or b""
