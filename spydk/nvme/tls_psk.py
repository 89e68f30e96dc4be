"""NVMe/TCP TLS pre-shared keys (TP 8011, NVMe/TCP transport 1.0c section 3.6.1).

A *configured PSK* travels in the interchange format ``NVMeTLSkey-1:HH:<base64>:`` where the
base64 text holds the key (32 or 48 bytes) followed by its CRC-32 (little endian) and ``HH``
says how the *retained PSK* is made from it: 00 = the configured PSK itself, 01 = HKDF with
SHA-256, 02 = HKDF with SHA-384 (label "HostNQN", context the host NQN). The key's length picks
the TLS 1.3 cipher suite (32: TLS_AES_128_GCM_SHA256, 48: TLS_AES_256_GCM_SHA384), and with it
the PSK identity ``NVMe0R<suite> <hostnqn> <subnqn>`` and the TLS PSK, derived from the retained
PSK with HKDF-Expand-Label (label "nvme-tls-psk", context the identity) on the suite's hash.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import zlib
from dataclasses import dataclass, field

PREFIX = "NVMeTLSkey-1:"
MAX_INTERCHANGE = 200  # a 48-byte key is 87 characters; anything far longer is not a key


class PskError(ValueError):
    """A PSK that cannot be used; the message says what is wrong with it."""


class CipherSuite(enum.IntEnum):
    """The two suites TP 8011 allows, numbered as in the PSK identity."""

    TLS_AES_128_GCM_SHA256 = 1
    TLS_AES_256_GCM_SHA384 = 2

    @property
    def hash_name(self) -> str:
        return "sha256" if self is CipherSuite.TLS_AES_128_GCM_SHA256 else "sha384"

    @property
    def key_len(self) -> int:
        return 32 if self is CipherSuite.TLS_AES_128_GCM_SHA256 else 48


_HASH_BY_ID = {1: "sha256", 2: "sha384"}
_SUITE_BY_LEN = {32: CipherSuite.TLS_AES_128_GCM_SHA256, 48: CipherSuite.TLS_AES_256_GCM_SHA384}


@dataclass(frozen=True)
class ConfiguredPsk:
    hash_id: int  # 0: retained = configured; 1: SHA-256; 2: SHA-384
    key: bytes = field(repr=False)  # never in logs or tracebacks

    @property
    def suite(self) -> CipherSuite:
        return _SUITE_BY_LEN[len(self.key)]

    def __repr__(self) -> str:
        return f"ConfiguredPsk(hash_id={self.hash_id}, {len(self.key)} bytes)"


def parse_interchange(text: str | bytes) -> ConfiguredPsk:
    """Parse ``NVMeTLSkey-1:HH:<base64>:`` (one trailing newline tolerated) and check its CRC."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise PskError("the PSK is not ASCII text; expected NVMeTLSkey-1:HH:<base64>:") from None
    if text.endswith("\n"):
        text = text[:-1]
    if len(text) > MAX_INTERCHANGE or not text.startswith(PREFIX) or not text.endswith(":"):
        raise PskError("the PSK is not in the interchange format NVMeTLSkey-1:HH:<base64>: "
                       "(make one with `nvme gen-tls-key` or spydk.nvme.tls_psk.format_interchange)")
    parts = text[len(PREFIX):-1].split(":")
    if len(parts) != 2 or len(parts[0]) != 2:
        raise PskError("the PSK interchange text must be NVMeTLSkey-1:HH:<base64>: with HH 00, 01 or 02")
    try:
        hash_id = int(parts[0], 16)
    except ValueError:
        hash_id = -1
    if hash_id not in (0, 1, 2):
        raise PskError(f"the PSK hash field is {parts[0]!r}; it must be 00 (none), 01 (SHA-256) or 02 (SHA-384)")
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise PskError("the PSK's base64 text does not decode") from None
    key, crc = raw[:-4], raw[-4:]
    if len(key) not in _SUITE_BY_LEN:
        raise PskError(f"the PSK is {max(len(key), 0)} bytes; it must be 32 or 48 bytes (plus the CRC-32)")
    if hash_id and len(key) != (32 if hash_id == 1 else 48):
        raise PskError(f"a PSK with hash {parts[0]} must be {32 if hash_id == 1 else 48} bytes, not {len(key)}")
    if zlib.crc32(key).to_bytes(4, "little") != crc:
        raise PskError("the PSK's CRC-32 does not match its key (a typo in the key text?)")
    return ConfiguredPsk(hash_id, key)


def format_interchange(key: bytes, hash_id: int = 1) -> str:
    """The interchange text of a configured PSK (what `nvme gen-tls-key` prints)."""
    if len(key) not in _SUITE_BY_LEN or hash_id not in (0, 1, 2):
        raise PskError("a configured PSK is 32 or 48 bytes with hash 0, 1 or 2")
    b64 = base64.b64encode(key + zlib.crc32(key).to_bytes(4, "little")).decode()
    return f"{PREFIX}{hash_id:02d}:{b64}:"


def _hkdf_extract(hash_name: str, ikm: bytes) -> bytes:
    # RFC 5869: no salt means HashLen zero bytes, which HMAC pads to the same key as an empty one.
    return hmac.digest(b"", ikm, hash_name)


def _hkdf_expand_label(hash_name: str, prk: bytes, label: str, context: bytes, length: int) -> bytes:
    """TLS 1.3's HKDF-Expand-Label (RFC 8446 section 7.1)."""
    full = b"tls13 " + label.encode()
    if len(full) > 255 or len(context) > 255:
        raise PskError("HKDF label or context longer than 255 bytes")
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([i]), hash_name)
        out += block
        i += 1
    return out[:length]


def psk_identity(hostnqn: str, subnqn: str, suite: CipherSuite) -> str:
    """The TLS PSK identity of a retained PSK (version 0, as TP 8011 and SPDK v24.01)."""
    return f"NVMe0R{int(suite):02d} {hostnqn} {subnqn}"


def retained_psk(psk: ConfiguredPsk, hostnqn: str) -> bytes:
    if psk.hash_id == 0:
        return psk.key
    h = _HASH_BY_ID[psk.hash_id]
    return _hkdf_expand_label(h, _hkdf_extract(h, psk.key), "HostNQN", hostnqn.encode(), len(psk.key))


def tls_psk(retained: bytes, identity: str, suite: CipherSuite) -> bytes:
    """The key TLS 1.3 uses as its external PSK."""
    h = suite.hash_name
    ident = identity.encode()
    if len(ident) > 255:
        raise PskError(f"the PSK identity is {len(ident)} bytes; host and subsystem NQNs are too long for TLS")
    return _hkdf_expand_label(h, _hkdf_extract(h, retained), "nvme-tls-psk", ident, suite.key_len)


@dataclass(frozen=True)
class TlsKey:
    """What a TLS connection needs: the identity, the derived key and the suite."""

    identity: str
    key: bytes = field(repr=False)
    suite: CipherSuite = CipherSuite.TLS_AES_128_GCM_SHA256


def derive(psk: ConfiguredPsk, hostnqn: str, subnqn: str) -> TlsKey:
    suite = psk.suite
    ident = psk_identity(hostnqn, subnqn, suite)
    return TlsKey(ident, tls_psk(retained_psk(psk, hostnqn), ident, suite), suite)


def parse_identity(identity: bytes) -> tuple[CipherSuite, str, str] | None:
    """(suite, hostnqn, subnqn) of a version-0 retained-PSK identity, or None."""
    try:
        text = identity.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 3 or len(parts[0]) != 8 or not parts[0].startswith("NVMe0R"):
        return None
    if parts[0][6:] not in ("01", "02"):
        return None
    return CipherSuite(int(parts[0][6:])), parts[1], parts[2]
