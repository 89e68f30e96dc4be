"""SPDK's JSON-RPC framing, sans-IO: a byte stream of concatenated JSON values.

There is no delimiter: a value ends where its closing bracket is. The decoder keeps a
small scanner state (nesting depth, inside a string, after a backslash) and advances it
over newly received bytes only, jumping between interesting bytes with a compiled regex,
so finding the end of a request costs O(request size) however it is split. Only a
complete value is handed to ``json.loads``, once.

A peer error is recorded as ``decoder.error`` (a ``FramingError``); after one the stream
has no resync point, so the connection must be closed (as SPDK does).
"""
from __future__ import annotations

import json
import re
from typing import Any

# Largest single request (or batch) accepted. SPDK caps its receive buffer too; 8 MiB holds
# a load_config batch of tens of thousands of entries, while 256 connections can't make the
# server hold more than 2 GiB even when every one of them sends a maximal request.
MAX_REQUEST = 8 * 1024 * 1024

_WS = b" \t\r\n"
_STRUCT = re.compile(rb'[\[\]{}"]')
_IN_STRING = re.compile(rb'["\\]')


class FramingError(Exception):
    """The peer sent bytes that are not a JSON value, or a value over the size limit."""

    def __init__(self, message: str, too_large: bool = False, invalid_request: bool = False):
        super().__init__(message)
        self.message = message
        self.too_large = too_large
        self.invalid_request = invalid_request


class JsonStreamDecoder:
    """Feed bytes, get complete JSON values back in order."""

    def __init__(self, max_size: int = MAX_REQUEST):
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0          # scan position in _buf
        self._depth = 0        # open brackets of the value being scanned
        self._in_string = False
        self._escape = False   # a backslash ended the previous chunk inside a string
        self._started = False  # first byte of the current value seen
        self.error: FramingError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """Values completed by ``data``, in order. After a peer error, ``self.error`` is set,
        the values before it are still returned, and the decoder takes no more input."""
        if self.error is not None:
            raise RuntimeError("JsonStreamDecoder.feed() called after a framing error")
        self._buf += data
        out: list[Any] = []
        try:
            while True:
                value = self._next()
                if value is _NEED_DATA:
                    break
                out.append(value)
            if len(self._buf) > self.max_size:
                raise FramingError(f"request is larger than the {self.max_size // (1024 * 1024)} MiB limit",
                                   too_large=True)
        except FramingError as e:
            self.error = e
            self._buf.clear()
        return out

    def _next(self) -> Any:
        buf = self._buf
        n = len(buf)
        if not self._started:
            i = 0
            while i < n and buf[i] in _WS:
                i += 1
            if i:
                del buf[:i]
                n -= i
            if not n:
                return _NEED_DATA
            first = buf[0]
            if first not in b"[{":
                return self._scalar()
            self._started = True
            self._pos = 0
            self._depth = 0
        pos = self._pos
        while pos < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    pos += 1
                    continue
                m = _IN_STRING.search(buf, pos)
                if m is None:
                    pos = n
                    break
                pos = m.start()
                if buf[pos] == 0x5C:  # backslash: skip the escaped byte
                    self._escape = True
                    pos += 1
                    continue
                self._in_string = False
                pos += 1
                continue
            m = _STRUCT.search(buf, pos)
            if m is None:
                pos = n
                break
            pos = m.start()
            c = buf[pos]
            pos += 1
            if c == 0x22:
                self._in_string = True
            elif c in b"[{":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return self._take(pos)
                if self._depth < 0:
                    raise FramingError("unbalanced brackets in request")
        self._pos = pos
        return _NEED_DATA

    def _take(self, end: int) -> Any:
        raw = bytes(self._buf[:end])
        del self._buf[:end]
        self._started = False
        self._pos = 0
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise FramingError(f"invalid JSON: {e}") from None

    def _scalar(self) -> Any:
        """A top-level value that is not an object or array: always an invalid request.

        Numbers and literals are short, so they are decoded (the caller answers -32600 and
        goes on); a number at the very end of the buffer may still grow, so it waits for a
        byte that ends it. Anything longer (a top-level string) is refused outright.
        """
        buf = self._buf
        if buf[0] == 0x22 or len(buf) > 64 and not _SCALAR_END.search(buf, 0, 64):
            raise FramingError("a request must be a JSON object or an array of them", invalid_request=True)
        m = _SCALAR_END.search(buf)
        end = m.start() if m else len(buf)
        try:
            value = json.loads(bytes(buf[:end]))
        except (ValueError, UnicodeDecodeError):
            if m is None and len(buf) < 16 and _could_be_prefix(buf):
                return _NEED_DATA
            raise FramingError("invalid JSON at the start of a request") from None
        if m is None and not isinstance(value, bool) and value is not None:
            return _NEED_DATA  # a number that may go on in the next chunk
        del buf[:end]
        return value


_SCALAR_END = re.compile(rb'[ \t\r\n\[\]{}",]')


def _could_be_prefix(b: bytearray) -> bool:
    t = bytes(b)
    return any(lit.startswith(t) for lit in (b"true", b"false", b"null")) or t == b"-"


class _NeedData:
    __slots__ = ()


_NEED_DATA: Any = _NeedData()
