"""TLS between asyncio and an NVMe/TCP protocol: ciphertext from the socket goes through a
sans-IO :class:`~spydk.nvme.tls.TlsSession`, the plaintext into the wrapped protocol's own
``get_buffer``; what the protocol writes is protected and written. The wrapped protocol sees an
ordinary transport and learns of the connection only once the handshake succeeded."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from spydk.nvme.tls import TlsError, TlsSession

log = logging.getLogger("spydk.nvme.tls")

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer may take to finish the handshake
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class TlsTransport(asyncio.Transport):
    """What the wrapped protocol writes to: plaintext in, records to the socket."""

    def __init__(self, proto: TlsProtocol, raw: asyncio.Transport):
        super().__init__()
        self._p = proto
        self._raw = raw

    def write(self, data: Any) -> None:
        s = self._p.session
        try:
            s.send(data)
        except TlsError as e:
            self._p.fail(f"TLS send failed: {e}")
            return
        self._raw.write(s.take_output())

    def writelines(self, list_of_data: Any) -> None:
        bufs = list(list_of_data)
        # One record for the batch rather than one per buffer (a header of 24 bytes would
        # otherwise cost a 22-byte record overhead and an AEAD call of its own).
        self.write(bufs[0] if len(bufs) == 1 else b"".join(bufs))

    def close(self) -> None:
        if self._raw.is_closing():
            return
        self._p.session.close()
        out = self._p.session.take_output()
        if out:
            self._raw.write(out)
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tls_identity":
            return self._p.session.identity
        if name == "cipher":
            return self._p.session.cipher
        return self._raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)


class TlsProtocol(asyncio.BufferedProtocol):
    """Wraps ``inner`` (a BufferedProtocol) in TLS. ``on_done(error)`` is called once: None when
    the handshake succeeded (before ``inner.connection_made``), else the reason it failed."""

    def __init__(self, inner: asyncio.BufferedProtocol, session: TlsSession, *,
                 on_done: Callable[[str | None], None] | None = None, peer_name: str = "peer",
                 handshake_timeout: float = HANDSHAKE_TIMEOUT):
        self.inner = inner
        self.session = session
        self.on_done = on_done
        self.peer_name = peer_name
        self.raw: asyncio.Transport | None = None
        self.facade: TlsTransport | None = None
        self.started = False  # inner knows of the connection
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None
        self.error: str | None = None
        self._seen_bytes = False
        self._sock: Any = None  # the TCP socket (asyncio's TransportSocket), for TCP_QUICKACK

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if _QUICKACK is not None and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            self._sock = sock
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_name = f"{peer[0]}:{peer[1]}"
        try:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expired)
        except RuntimeError:
            pass
        if not self.session.server:
            try:
                self.session.start()
            except TlsError as e:
                self.fail(f"TLS handshake failed: {e}")
                return
            self._send_pending()

    def _expired(self) -> None:
        self._timer = None
        if not self.started:
            self.fail(f"no TLS handshake within {self._timeout:.0f} s")

    def _done(self, err: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        cb, self.on_done = self.on_done, None
        if cb is not None:
            cb(err)

    def fail(self, reason: str) -> None:
        """The TLS layer failed: log it, send the alert if any, close the socket."""
        if self.error is None:
            self.error = reason
            log.error("NVMe/TCP TLS connection with %s: %s; closing it", self.peer_name, reason)
        self._done(reason)
        raw = self.raw
        if raw is not None and not raw.is_closing():
            self._send_pending()
            raw.close()

    def _send_pending(self) -> None:
        out = self.session.take_output()
        if out and self.raw is not None and not self.raw.is_closing():
            self.raw.write(out)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.error is not None:
            return
        s = self.session
        if not self._seen_bytes and nbytes:
            self._seen_bytes = True
            if s.server and self._view[0] != 0x16:  # a TLS handshake record starts every ClientHello
                self.fail("the peer does not speak TLS (plain-text NVMe/TCP on a secure-channel listener?)")
                return
        try:
            s.receive(self._view[:nbytes])
        except TlsError as e:
            self.fail(f"TLS handshake failed: {e}" if not s.handshake_done else f"TLS error: {e}")
            return
        if not s.handshake_done:
            self._send_pending()
            return
        if not self.started:
            self._send_pending()  # the server's Finished / the client's last flight
            self.started = True
            assert self.raw is not None
            self.facade = TlsTransport(self, self.raw)
            self._done(None)
            self.inner.connection_made(self.facade)
        inner = self.inner
        read_into = s.read_into
        while True:
            # Fill the protocol's buffer from every record at hand before handing it over: a
            # host may send each command capsule in a record of its own (SPDK does), and one
            # buffer_updated per record would cost the NVMe/TCP layer its batching.
            mv = memoryview(inner.get_buffer(65536))
            size = len(mv)
            filled = 0
            try:
                while filled < size:
                    n = read_into(mv[filled:] if filled else mv)
                    if not n:
                        break
                    filled += n
            except TlsError as e:
                self.fail(f"TLS error: {e}")
                return
            if not filled:
                break
            inner.buffer_updated(filled)
            if filled < size:
                break  # no more plaintext for now
        if s.closed:
            inner.eof_received()
            return
        sock = self._sock
        if sock is not None:
            # Acknowledge at once. SPDK's TLS sockets have a 4 KiB send buffer: a peer writing
            # 128 KiB waits for our ACK after every few KiB, and a delayed ACK (40 ms) per wait
            # made TLS writes 50 times slower than plain ones. Linux drops quick-ACK mode by
            # itself, so it is set again after each read (one setsockopt per read).
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                self._sock = None

    def eof_received(self) -> bool:
        if self.started:
            self.inner.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.started:
            self._done(self.error or f"connection closed during the TLS handshake{': ' + str(exc) if exc else ''}")
        else:
            self.inner.connection_lost(exc)
        self.session.release()

    def pause_writing(self) -> None:
        if self.started:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.started:
            self.inner.resume_writing()
