"""DH-HMAC-CHAP (NVMe Base 2.0 section 8.13.5): secrets, key transformation, responses, FFDHE,
and the host side of the exchange as a sans-IO state machine.

Hashes and HMAC come from the standard library (OpenSSL underneath); finite-field
Diffie-Hellman from the ``cryptography`` package (OpenSSL as well). Both sides of the
exchange use the functions here: the target (spydk.nvmf.auth) and hosts (the tests'
in-memory host, a future spydk host driver).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spydk.nvme.auth import ffdhe
from spydk.nvme.spec import auth as sa
from spydk.nvme.spec.auth import DhGroupId, FailureReason, HashId

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import dh

SECRET_PREFIX = "DHHC-1"
SECRET_KEY_LENGTHS = (32, 48, 64)


class SecretError(ValueError):
    """A DH-HMAC-CHAP secret that is not in the DHHC-1 format."""


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """A parsed DHHC-1 secret: the key and the hash of its transformation (0 = none)."""

    key: bytes
    hmac_id: int

    def __repr__(self) -> str:  # never the key: secrets end up in logs and tracebacks
        return f"Secret(<{len(self.key)} bytes>, hmac_id={self.hmac_id})"


def parse_secret(text: str | bytes) -> Secret:
    """``DHHC-1:<hh>:<base64 of key and CRC-32>:`` as nvme-cli's gen-dhchap-key writes it."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    parts = text.split(":")
    if len(parts) < 3 or parts[0] != SECRET_PREFIX or (len(parts) == 4 and parts[3]) or len(parts) > 4:
        raise SecretError("a DH-HMAC-CHAP secret looks like DHHC-1:00:<base64>: (make one with "
                          "'nvme gen-dhchap-key')")
    try:
        hmac_id = int(parts[1], 16)
    except ValueError:
        raise SecretError(f"DHHC-1 secret: hash field {parts[1]!r} is not 00..03") from None
    if hmac_id not in (0, 1, 2, 3):
        raise SecretError(f"DHHC-1 secret: hash field {parts[1]!r} is not 00..03")
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("DHHC-1 secret: the key field is not base64") from None
    key, crc = raw[:-4], raw[-4:]
    if len(key) not in SECRET_KEY_LENGTHS:
        raise SecretError(f"DHHC-1 secret: key of {len(key)} bytes (32, 48 or 64 expected)")
    if zlib.crc32(key).to_bytes(4, "little") != crc:
        raise SecretError("DHHC-1 secret: CRC-32 mismatch (the secret was mistyped or truncated)")
    return Secret(key, hmac_id)


def format_secret(key: bytes, hmac_id: int = 0) -> str:
    if len(key) not in SECRET_KEY_LENGTHS or hmac_id not in (0, 1, 2, 3):
        raise SecretError("a secret key is 32, 48 or 64 bytes; its hash 0..3")
    raw = key + zlib.crc32(key).to_bytes(4, "little")
    return f"{SECRET_PREFIX}:{hmac_id:02x}:{base64.b64encode(raw).decode()}:"


def generate_secret(key_len: int = 32, hmac_id: int = 0) -> str:
    return format_secret(os.urandom(key_len), hmac_id)


def hash_name(hash_id: int) -> str:
    return sa.HASH_NAMES[HashId(hash_id)]


def transform_key(secret: Secret, nqn: str) -> bytes:
    """The key used in the responses: the secret itself, or HMAC(secret, NQN || "NVMe-over-Fabrics")
    with the secret's own hash (host keys with the host NQN, controller keys with the subsystem's)."""
    if secret.hmac_id == 0:
        return secret.key
    return hmac.digest(secret.key, nqn.encode() + b"NVMe-over-Fabrics", hash_name(secret.hmac_id))


def augment_challenge(hash_id: int, challenge: bytes, session_key: bytes) -> bytes:
    """With a DH group, the challenge is first keyed with the hash of the DH shared secret."""
    name = hash_name(hash_id)
    return hmac.digest(hashlib.new(name, session_key).digest(), challenge, name)


def host_response(hash_id: int, key: bytes, challenge: bytes, seqnum: int, t_id: int, hostnqn: str,
                  subnqn: str, sc_c: int = 0) -> bytes:
    """R1: what the host proves it holds the host key with (key already transformed)."""
    msg = b"".join((challenge, seqnum.to_bytes(4, "little"), t_id.to_bytes(2, "little"), bytes((sc_c,)),
                    b"HostHost", hostnqn.encode(), b"\0", subnqn.encode()))
    return hmac.digest(key, msg, hash_name(hash_id))


def ctrlr_response(hash_id: int, key: bytes, challenge: bytes, seqnum: int, t_id: int, hostnqn: str,
                   subnqn: str, sc_c: int = 0) -> bytes:
    """R2: what the controller proves it holds the controller key with (bidirectional mode)."""
    msg = b"".join((challenge, seqnum.to_bytes(4, "little"), t_id.to_bytes(2, "little"), bytes((sc_c,)),
                    b"Controller", subnqn.encode(), b"\0", hostnqn.encode()))
    return hmac.digest(key, msg, hash_name(hash_id))


# -- finite-field Diffie-Hellman ------------------------------------------------------------------

_params: dict[int, dh.DHParameters] = {}


def _dh() -> Any:
    """cryptography's DH, imported at the first exchange (not by every target that registers
    the NVMe RPCs). It marks finite-field DH as deprecated (it still works, in C): the NVMe
    spec requires exactly these groups, so the warning is silenced for this use only."""
    from cryptography.hazmat.primitives.asymmetric import dh
    try:
        from cryptography.utils import CryptographyDeprecationWarning
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                                message=".*Diffie-Hellman.*")
    except ImportError:  # pragma: no cover - older cryptography without the class
        pass
    return dh


def _parameters(group: int) -> dh.DHParameters:
    p = _params.get(group)
    if p is None:
        dh = _dh()
        bits = sa.DHGROUP_BITS[DhGroupId(group)]
        prime = ffdhe.PRIMES[bits]
        p = _params[group] = dh.DHParameterNumbers(prime, ffdhe.GENERATOR, (prime - 1) // 2).parameters()
    return p


def dh_value_length(group: int) -> int:
    return sa.DHGROUP_BITS[DhGroupId(group)] // 8


class DhExchange:
    """One side's ephemeral key pair of an FFDHE group."""

    def __init__(self, group: int):
        self.group = group
        self.length = dh_value_length(group)
        self._priv = _parameters(group).generate_private_key()
        self.public = self._priv.public_key().public_numbers().y.to_bytes(self.length, "big")

    def shared_secret(self, peer_public: bytes) -> bytes:
        """Z, as many bytes as the prime; ValueError for a value outside 2..p-2."""
        if len(peer_public) != self.length:
            raise ValueError(f"DH value of {len(peer_public)} bytes, the group needs {self.length}")
        y = int.from_bytes(peer_public, "big")
        prime = ffdhe.PRIMES[self.length * 8]
        if not 1 < y < prime - 1:
            raise ValueError("DH value outside 2..p-2")
        peer = _dh().DHPublicNumbers(y, _parameters(self.group).parameter_numbers()).public_key()
        return self._priv.exchange(peer).rjust(self.length, b"\0")


def random_seqnum(rand: Callable[[int], bytes]) -> int:
    """A nonzero 32-bit sequence number."""
    while True:
        s = int.from_bytes(rand(4), "little")
        if s:
            return s


# -- the host side --------------------------------------------------------------------------------

class HostAuthError(Exception):
    """The exchange failed on the host; ``reason`` says why (a FailureReason)."""

    def __init__(self, message: str, reason: int):
        super().__init__(message)
        self.reason = reason


class HostAuth:
    """The host half of one DH-HMAC-CHAP transaction (sans-IO: messages in, messages out).

    Use: ``negotiate()`` -> send it with AUTH_Send; give the AUTH_Receive data to
    ``challenge(...)`` -> send the reply; give the next AUTH_Receive data to ``success1(...)``
    -> send what it returns (Success2 or Failure2) when it is not None. ``done`` tells success.
    """

    def __init__(self, hostnqn: str, subnqn: str, host_secret: Secret, ctrlr_secret: Secret | None = None,
                 *, t_id: int = 0, hash_ids: list[int] | None = None, dhgroup_ids: list[int] | None = None,
                 rand: Callable[[int], bytes] = os.urandom):
        self.hostnqn = hostnqn
        self.subnqn = subnqn
        self.host_secret = host_secret
        self.ctrlr_secret = ctrlr_secret
        self.t_id = t_id
        self.hash_ids = hash_ids if hash_ids is not None else [1, 2, 3]
        self.dhgroup_ids = dhgroup_ids if dhgroup_ids is not None else [0, 1, 2, 3, 4, 5]
        self.rand = rand
        self.done = False
        self.hash_id = 0
        self.dhgroup_id = 0
        self._c2 = b""
        self._s2 = 0
        self._session_key = b""

    def negotiate(self) -> bytes:
        return sa.build_negotiate(self.t_id, self.hash_ids, self.dhgroup_ids)

    def failure2(self, reason: int) -> bytes:
        return sa.build_failure(self.t_id, reason, sa.AuthId.FAILURE2)

    def challenge(self, msg: bytes) -> bytes:
        """Take the controller's challenge (or Failure1: raises) and return the reply."""
        auth_type, auth_id, _ = sa.message_head(msg)
        if auth_id == sa.AuthId.FAILURE1:
            _, _, exp = sa.parse_failure(msg)
            raise HostAuthError(f"controller refused the negotiation (reason {exp:#x})", exp)
        if auth_type != sa.AuthType.DHCHAP or auth_id != sa.AuthId.CHALLENGE:
            raise HostAuthError(f"expected a challenge, got message {auth_type}/{auth_id:#x}",
                                FailureReason.INCORRECT_MESSAGE)
        c = sa.parse_challenge(msg)
        if c.hash_id not in self.hash_ids or c.dhgroup_id not in self.dhgroup_ids:
            raise HostAuthError("controller chose a hash or DH group the host did not offer",
                                FailureReason.HASH_UNUSABLE)
        hl = sa.HASH_LENGTHS[HashId(c.hash_id)]
        if len(c.challenge) != hl:
            raise HostAuthError(f"challenge of {len(c.challenge)} bytes for a {hl}-byte hash",
                                FailureReason.INCORRECT_PAYLOAD)
        self.hash_id, self.dhgroup_id = c.hash_id, c.dhgroup_id
        challenge = c.challenge
        dh_public = b""
        if c.dhgroup_id != DhGroupId.NULL:
            ex = DhExchange(c.dhgroup_id)
            try:
                self._session_key = ex.shared_secret(c.dh_value)
            except ValueError as e:
                raise HostAuthError(f"controller DH value: {e}", FailureReason.INCORRECT_PAYLOAD) from None
            dh_public = ex.public
            challenge = augment_challenge(c.hash_id, challenge, self._session_key)
        key = transform_key(self.host_secret, self.hostnqn)
        r1 = host_response(c.hash_id, key, challenge, c.seqnum, self.t_id, self.hostnqn, self.subnqn)
        cvalid = self.ctrlr_secret is not None
        if cvalid:
            self._c2 = self.rand(hl)
            self._s2 = random_seqnum(self.rand)
        return sa.build_reply(sa.Reply(self.t_id, r1, cvalid, self._s2, self._c2, dh_public))

    def success1(self, msg: bytes) -> bytes | None:
        """Take Success1 (or Failure1: raises); returns Success2/Failure2 to send, or None."""
        auth_type, auth_id, _ = sa.message_head(msg)
        if auth_id == sa.AuthId.FAILURE1:
            _, _, exp = sa.parse_failure(msg)
            raise HostAuthError(f"controller refused the reply (reason {exp:#x})", exp)
        if auth_type != sa.AuthType.DHCHAP or auth_id != sa.AuthId.SUCCESS1:
            raise HostAuthError(f"expected success1, got message {auth_type}/{auth_id:#x}",
                                FailureReason.INCORRECT_MESSAGE)
        _, r2 = sa.parse_success1(msg)
        if self.ctrlr_secret is None:
            self.done = True
            return None
        challenge = self._c2
        if self.dhgroup_id != DhGroupId.NULL:
            challenge = augment_challenge(self.hash_id, challenge, self._session_key)
        key = transform_key(self.ctrlr_secret, self.subnqn)
        want = ctrlr_response(self.hash_id, key, challenge, self._s2, self.t_id, self.hostnqn, self.subnqn)
        if r2 is None or not hmac.compare_digest(r2, want):
            return self.failure2(FailureReason.FAILED)
        self.done = True
        return sa.build_success2(self.t_id)
