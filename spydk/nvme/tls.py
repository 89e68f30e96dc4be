"""Sans-IO TLS 1.3 with external PSKs, for NVMe/TCP secure channels (TP 8011).

Python's ``ssl`` module cannot use an external PSK, and pyOpenSSL (checked: 26.4) has no PSK
API either. ``cryptography`` (already a dependency, for DH-HMAC-CHAP) ships OpenSSL 3 and keeps
the TLS 1.3 PSK entry points in its cffi binding (``SSL_CTX_set_psk_find_session_callback``,
``SSL_CTX_set_psk_use_session_callback``, ``SSL_SESSION_set1_master_key``): we drive that
OpenSSL through memory BIOs. Ciphertext goes in with :meth:`TlsSession.receive`, plaintext comes
out with :meth:`TlsSession.read_into`, plaintext to send goes in with :meth:`TlsSession.send`
and ciphertext to put on the wire comes out of :meth:`TlsSession.take_output`. No sockets,
clocks or threads: the transports move bytes. The old TLS 1.2 PSK callbacks are not used: in
TLS 1.3 they only work with SHA-256 suites, and TP 8011 needs TLS_AES_256_GCM_SHA384 too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.bindings.openssl.binding import Binding

from spydk.nvme.tls_psk import CipherSuite, TlsKey

_binding = Binding()
_lib: Any = _binding.lib
_ffi: Any = _binding.ffi

_SUITE_ID = {CipherSuite.TLS_AES_128_GCM_SHA256: b"\x13\x01", CipherSuite.TLS_AES_256_GCM_SHA384: b"\x13\x02"}
_ALL_SUITES = b"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
_WANT_READ, _WANT_WRITE, _ZERO_RETURN = 2, 3, 6
_CHUNK = 65536


class TlsError(Exception):
    """The TLS handshake or a record failed; the connection cannot go on."""


# Sessions by SSL pointer: OpenSSL's callbacks receive the SSL*, not our object. Weak: a
# session lives as long as its connection holds it.
_sessions: weakref.WeakValueDictionary[int, TlsSession] = weakref.WeakValueDictionary()


def _errors() -> str:
    parts = []
    while True:
        code = _lib.ERR_get_error()
        if not code:
            break
        r = _lib.ERR_reason_error_string(code)
        parts.append(_ffi.string(r).decode() if r != _ffi.NULL else hex(code))
    return "; ".join(parts) or "TLS error"


def _new_session(ssl: Any, key: TlsKey) -> Any:
    cipher = _lib.SSL_CIPHER_find(ssl, _SUITE_ID[key.suite])
    sess = _lib.Cryptography_SSL_SESSION_new()
    if cipher == _ffi.NULL or sess == _ffi.NULL:
        return _ffi.NULL
    if (_lib.SSL_SESSION_set1_master_key(sess, key.key, len(key.key)) != 1
            or _lib.SSL_SESSION_set_cipher(sess, cipher) != 1
            or _lib.SSL_SESSION_set_protocol_version(sess, _lib.TLS1_3_VERSION) != 1):
        _lib.SSL_SESSION_free(sess)
        return _ffi.NULL
    return sess


@_ffi.callback("int(SSL *, unsigned char *, size_t, SSL_SESSION **)")
def _find_session(ssl: Any, ident: Any, ident_len: int, out: Any) -> int:
    s = _sessions.get(int(_ffi.cast("uintptr_t", ssl)))
    out[0] = _ffi.NULL
    if s is None or s.lookup is None:
        return 0
    identity = bytes(_ffi.buffer(ident, ident_len))
    try:
        key = s.lookup(identity)
    except Exception as e:  # a bug of ours must not unwind through OpenSSL
        s.refusal = f"PSK lookup failed: {e}"
        return 0
    if key is None:
        s.refusal = f"no PSK for identity {identity[:300]!r}"
        return 0
    s.identity = identity.decode("utf-8", "replace")
    s.key = key
    sess = _new_session(ssl, key)
    if sess == _ffi.NULL:
        return 0
    out[0] = sess
    return 1


@_ffi.callback("int(SSL *, EVP_MD *, unsigned char **, size_t *, SSL_SESSION **)")
def _use_session(ssl: Any, md: Any, ident: Any, ident_len: Any, out: Any) -> int:
    s = _sessions.get(int(_ffi.cast("uintptr_t", ssl)))
    out[0] = _ffi.NULL
    if s is None or s.key is None:
        return 0
    sess = _new_session(ssl, s.key)
    if sess == _ffi.NULL:
        return 0
    ident[0] = s._ident_buf
    ident_len[0] = s._ident_len
    out[0] = sess
    return 1


def _context(server: bool, suite: CipherSuite | None) -> Any:
    ctx = _lib.SSL_CTX_new(_lib.TLS_method())
    if ctx == _ffi.NULL:
        raise TlsError(_errors())
    ctx = _ffi.gc(ctx, _lib.SSL_CTX_free)
    _lib.SSL_CTX_set_min_proto_version(ctx, _lib.TLS1_3_VERSION)
    _lib.SSL_CTX_set_max_proto_version(ctx, _lib.TLS1_3_VERSION)
    suites = _ALL_SUITES if suite is None else suite.name.encode()
    if _lib.SSL_CTX_set_ciphersuites(ctx, suites) != 1:
        raise TlsError(_errors())
    _lib.SSL_CTX_set_options(ctx, _lib.SSL_OP_NO_TICKET)
    if server:
        _lib.SSL_CTX_set_psk_find_session_callback(ctx, _find_session)
    else:
        _lib.SSL_CTX_set_psk_use_session_callback(ctx, _use_session)
    return ctx


_server_ctx: Any = None
_client_ctx: dict[CipherSuite, Any] = {}


class TlsSession:
    """One TLS 1.3 connection with an external PSK, over memory buffers.

    A server gets ``lookup(identity) -> TlsKey | None`` (None refuses the identity); a client
    gets the ``key`` to offer (identity, TLS PSK, suite).
    """

    def __init__(self, *, server: bool, lookup: Callable[[bytes], TlsKey | None] | None = None,
                 key: TlsKey | None = None):
        global _server_ctx
        if server:
            if lookup is None:
                raise ValueError("a TLS server needs a PSK lookup")
            if _server_ctx is None:
                _server_ctx = _context(True, None)
            ctx = _server_ctx
        else:
            if key is None:
                raise ValueError("a TLS client needs a PSK")
            ctx = _client_ctx.get(key.suite)
            if ctx is None:
                ctx = _client_ctx[key.suite] = _context(False, key.suite)
        self.server = server
        self.lookup = lookup
        self.key = key
        self.identity: str | None = key.identity if key is not None else None
        self.refusal: str | None = None  # why the server refused the PSK, for the log
        ident = key.identity.encode() if key is not None else b""
        self._ident_buf = _ffi.new("unsigned char[]", ident)  # alive as long as the session
        self._ident_len = len(ident)
        ssl = _lib.SSL_new(ctx)
        if ssl == _ffi.NULL:
            raise TlsError(_errors())
        self._ssl = _ffi.gc(ssl, _lib.SSL_free)
        self._addr = int(_ffi.cast("uintptr_t", ssl))
        self._rbio = _lib.BIO_new(_lib.BIO_s_mem())
        self._wbio = _lib.BIO_new(_lib.BIO_s_mem())
        _lib.SSL_set_bio(ssl, self._rbio, self._wbio)  # the SSL owns both BIOs now
        if server:
            _lib.SSL_set_accept_state(ssl)
        else:
            _lib.SSL_set_connect_state(ssl)
        self.handshake_done = False
        self.closed = False  # the peer sent close_notify
        self._out = _ffi.new("char[]", _CHUNK)
        self._outbuf = _ffi.buffer(self._out)
        _sessions[self._addr] = self

    def release(self) -> None:
        """Forget the connection (the OpenSSL objects go with the last reference)."""
        _sessions.pop(self._addr, None)

    # -- bytes in ------------------------------------------------------------------------------

    def start(self) -> None:
        """A client's first flight (ClientHello): call once, then take_output()."""
        self._handshake()

    def receive(self, data: bytes | memoryview) -> None:
        """Ciphertext from the peer. Raises TlsError when the handshake or a record fails."""
        if len(data):
            n = _lib.BIO_write(self._rbio, _ffi.from_buffer(data), len(data))
            if n != len(data):
                raise TlsError("TLS receive buffer refused the data")
        if not self.handshake_done:
            self._handshake()

    def _handshake(self) -> None:
        _lib.ERR_clear_error()
        r = _lib.SSL_do_handshake(self._ssl)
        if r == 1:
            self.handshake_done = True
            return
        err = _lib.SSL_get_error(self._ssl, r)
        if err in (_WANT_READ, _WANT_WRITE):
            return
        msg = _errors()
        if self.refusal:
            msg = f"{self.refusal} ({msg})"
        raise TlsError(msg)

    def read_into(self, buf: memoryview) -> int:
        """Decrypted bytes into buf; 0 when nothing is ready. Raises TlsError on a bad record."""
        if not self.handshake_done:
            return 0
        _lib.ERR_clear_error()
        r = _lib.SSL_read(self._ssl, _ffi.from_buffer(buf), len(buf))
        if r > 0:
            return int(r)
        err = _lib.SSL_get_error(self._ssl, r)
        if err in (_WANT_READ, _WANT_WRITE):
            return 0
        if err == _ZERO_RETURN:
            self.closed = True
            return 0
        raise TlsError(_errors())

    # -- bytes out -----------------------------------------------------------------------------

    def send(self, data: bytes | memoryview) -> None:
        """Plaintext to protect; the records are then in take_output()."""
        if not len(data):
            return
        _lib.ERR_clear_error()
        r = _lib.SSL_write(self._ssl, _ffi.from_buffer(data), len(data))
        if r != len(data):
            raise TlsError(_errors())

    def take_output(self) -> bytes:
        """Ciphertext to put on the wire (b"" when none)."""
        chunks = []
        while True:
            n = _lib.BIO_read(self._wbio, self._out, _CHUNK)
            if n <= 0:
                break
            chunks.append(self._outbuf[:n])
            if n < _CHUNK:
                break
        return b"".join(chunks)

    def close(self) -> None:
        """Queue a close_notify (then take_output())."""
        if self.handshake_done:
            _lib.SSL_shutdown(self._ssl)

    @property
    def cipher(self) -> str | None:
        c = _lib.SSL_get_current_cipher(self._ssl)
        return None if c == _ffi.NULL else _ffi.string(_lib.SSL_CIPHER_get_name(c)).decode()
