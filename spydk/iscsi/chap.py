"""CHAP for iSCSI login (RFC 1994, RFC 7143 section 12.1.3), MD5 only (CHAP_A=5).

Target side of the exchange, one instance per login:

  initiator: CHAP_A=<list>              target: CHAP_A=5 CHAP_I=<id> CHAP_C=<challenge>
  initiator: CHAP_N=<user> CHAP_R=<rsp> [CHAP_I=<id> CHAP_C=<challenge>]   (mutual)
                                        target: [CHAP_N=<name> CHAP_R=<rsp>] (mutual)

Response = MD5(identifier byte || secret || challenge).  Binary values are hex ("0x...")
or base64 ("0b..."); we read both and write hex.  A mutual challenge equal to the one we
sent (a reflection attack) is refused, as is an empty or over-long challenge.
"""
from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

CHAP_MD5 = 5
CHALLENGE_LEN = 16
MAX_CHALLENGE = 1024


class ChapError(Exception):
    """Authentication failed (login status 0x0201)."""


@dataclass(frozen=True, slots=True)
class ChapCredentials:
    """Secrets for one initiator user name (SPDK auth group entry: user/secret/muser/msecret)."""

    user: str
    secret: bytes
    mutual_user: str = ""
    mutual_secret: bytes = b""


def chap_md5(ident: int, secret: bytes, challenge: bytes) -> bytes:
    return hashlib.md5(bytes((ident & 0xFF,)) + secret + challenge).digest()


def encode_binary(data: bytes, *, b64: bool = False) -> str:
    if b64:
        return "0b" + base64.b64encode(data).decode("ascii")
    return "0x" + data.hex()


def decode_binary(text: str) -> bytes:
    """Parse a hex (0x) or base64 (0b) binary value; ValueError if malformed."""
    prefix, body = text[:2], text[2:]
    try:
        if prefix in ("0x", "0X"):
            if len(body) % 2:
                body = "0" + body  # RFC 7143 allows an odd number of hex digits
            return bytes.fromhex(body)
        if prefix in ("0b", "0B"):
            return base64.b64decode(body, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("malformed binary value") from None
    raise ValueError("binary value needs 0x or 0b prefix")


class ChapState(enum.Enum):
    WAIT_ALGORITHM = "wait-algorithm"
    WAIT_RESPONSE = "wait-response"
    DONE = "done"


CredentialLookup = Callable[[str], "ChapCredentials | None"]


class ChapTarget:
    """Target-side CHAP responder.  ``step()`` takes the CHAP keys of one login PDU."""

    def __init__(self, lookup: CredentialLookup, *, mutual_required: bool = False,
                 token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._lookup = lookup
        self.mutual_required = mutual_required
        self._token_bytes = token_bytes
        self.state = ChapState.WAIT_ALGORITHM
        self.ident = 0
        self.challenge = b""
        self.user = ""
        self.mutual = False

    def step(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        if self.state is ChapState.WAIT_ALGORITHM:
            return self._on_algorithm(keys)
        if self.state is ChapState.WAIT_RESPONSE:
            return self._on_response(keys)
        if any(k.startswith("CHAP_") for k in keys):
            raise ChapError("CHAP keys after authentication")
        return []

    @property
    def done(self) -> bool:
        return self.state is ChapState.DONE

    def _on_algorithm(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        offered = keys.get("CHAP_A")
        if offered is None:
            if any(k.startswith("CHAP_") for k in keys):
                raise ChapError("CHAP keys out of order")
            return []  # nothing yet (e.g. the AuthMethod PDU)
        if str(CHAP_MD5) not in offered.split(","):
            raise ChapError("no supported CHAP algorithm")
        self.ident = self._token_bytes(1)[0]
        self.challenge = self._token_bytes(CHALLENGE_LEN)
        self.state = ChapState.WAIT_RESPONSE
        return [("CHAP_A", str(CHAP_MD5)), ("CHAP_I", str(self.ident)),
                ("CHAP_C", encode_binary(self.challenge))]

    def _on_response(self, keys: Mapping[str, str]) -> list[tuple[str, str]]:
        name, resp = keys.get("CHAP_N"), keys.get("CHAP_R")
        if name is None or resp is None:
            raise ChapError("CHAP_N and CHAP_R required")
        try:
            got = decode_binary(resp)
        except ValueError:
            raise ChapError("malformed CHAP_R") from None
        creds = self._lookup(name)
        if creds is None:
            raise ChapError("unknown CHAP user")
        want = chap_md5(self.ident, creds.secret, self.challenge)
        if not hmac.compare_digest(got, want):
            raise ChapError("CHAP response mismatch")
        self.user = name
        m_id, m_chal = keys.get("CHAP_I"), keys.get("CHAP_C")
        if m_id is None and m_chal is None:
            if self.mutual_required:
                raise ChapError("mutual CHAP required")
            self.state = ChapState.DONE
            return []
        if m_id is None or m_chal is None:
            raise ChapError("CHAP_I and CHAP_C must come together")
        if not m_id.isdigit() or int(m_id) > 255:
            raise ChapError("bad CHAP_I")
        try:
            challenge = decode_binary(m_chal)
        except ValueError:
            raise ChapError("malformed CHAP_C") from None
        if not challenge or len(challenge) > MAX_CHALLENGE:
            raise ChapError("bad CHAP_C length")
        if challenge == self.challenge:
            raise ChapError("reflected CHAP challenge")
        if not creds.mutual_secret:
            raise ChapError("no mutual CHAP secret configured")
        self.mutual = True
        self.state = ChapState.DONE
        return [("CHAP_N", creds.mutual_user),
                ("CHAP_R", encode_binary(chap_md5(int(m_id), creds.mutual_secret, challenge)))]
