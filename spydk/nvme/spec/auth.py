"""NVMe in-band authentication structures (NVMe Base 2.0 section 8.13, TP 8006): the
AUTH_Send / AUTH_Receive Fabrics command fields and the DH-HMAC-CHAP messages.

Parsers take the received bytes and raise AuthFormatError (with the failure reason code to
answer) when a message is too short or its lengths do not add up; nothing here allocates
more than the message itself holds.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from spydk.nvme.spec.base import FABRICS_OPCODE, SQE_SIZE
from spydk.nvme.spec.fabrics import FABRICS_SQE_HEAD, FabricsCommandType

# AUTH_Send / AUTH_Receive SQE bytes 40..47: reserved, SPSP0, SPSP1, SECP, TL (or AL).
AUTH_CMD = struct.Struct("<xBBBI")
assert AUTH_CMD.size == 8
AUTH_CMD_OFF = 40
SECP_NVME_AUTH = 0xE9  # security protocol: NVMe in-band authentication
SPSP_DHCHAP = 0x01  # SPSP0 and SPSP1 for DH-HMAC-CHAP

# Connect response AUTHREQ (DW0 bits 31:16): bit 1 ATR (authentication transaction required),
# bit 2 ASCR (secure channel concatenation required).
AUTHREQ_ATR = 1 << 1
AUTHREQ_ASCR = 1 << 2


class AuthType(enum.IntEnum):
    COMMON = 0x00  # negotiate and failure messages
    DHCHAP = 0x01  # challenge, reply, success messages


class AuthId(enum.IntEnum):
    NEGOTIATE = 0x00
    CHALLENGE = 0x01
    REPLY = 0x02
    SUCCESS1 = 0x03
    SUCCESS2 = 0x04
    FAILURE2 = 0xF0  # sent by the host
    FAILURE1 = 0xF1  # sent by the controller


class HashId(enum.IntEnum):
    SHA256 = 0x01
    SHA384 = 0x02
    SHA512 = 0x03


class DhGroupId(enum.IntEnum):
    NULL = 0x00
    FFDHE2048 = 0x01
    FFDHE3072 = 0x02
    FFDHE4096 = 0x03
    FFDHE6144 = 0x04
    FFDHE8192 = 0x05


HASH_NAMES = {HashId.SHA256: "sha256", HashId.SHA384: "sha384", HashId.SHA512: "sha512"}
HASH_LENGTHS = {HashId.SHA256: 32, HashId.SHA384: 48, HashId.SHA512: 64}
DHGROUP_NAMES = {DhGroupId.NULL: "null", DhGroupId.FFDHE2048: "ffdhe2048",
                 DhGroupId.FFDHE3072: "ffdhe3072", DhGroupId.FFDHE4096: "ffdhe4096",
                 DhGroupId.FFDHE6144: "ffdhe6144", DhGroupId.FFDHE8192: "ffdhe8192"}
DHGROUP_BITS = {DhGroupId.NULL: 0, DhGroupId.FFDHE2048: 2048, DhGroupId.FFDHE3072: 3072,
                DhGroupId.FFDHE4096: 4096, DhGroupId.FFDHE6144: 6144, DhGroupId.FFDHE8192: 8192}
HASH_BY_NAME = {v: k for k, v in HASH_NAMES.items()}
DHGROUP_BY_NAME = {v: k for k, v in DHGROUP_NAMES.items()}


class FailureReason(enum.IntEnum):
    """Reason code explanations of AUTH_Failure1/AUTH_Failure2 (reason code 1: failed)."""

    FAILED = 0x01
    PROTOCOL_UNUSABLE = 0x02
    CONCAT_MISMATCH = 0x03
    HASH_UNUSABLE = 0x04
    DHGROUP_UNUSABLE = 0x05
    INCORRECT_PAYLOAD = 0x06
    INCORRECT_MESSAGE = 0x07


FAILURE_RESCODE = 0x01  # "authentication failure"


class AuthFormatError(ValueError):
    """A message that cannot be parsed; ``reason`` is the failure explanation to answer with."""

    def __init__(self, message: str, reason: FailureReason = FailureReason.INCORRECT_PAYLOAD):
        super().__init__(message)
        self.reason = reason


# Common header of every message: AUTH_TYPE, AUTH_ID, reserved, T_ID.
MSG_HEAD = struct.Struct("<BBxxH")
assert MSG_HEAD.size == 6

# Negotiate: header, SC_C, NAPD, then NAPD protocol descriptors of 64 bytes.
NEGOTIATE = struct.Struct("<BBxxHBB")
assert NEGOTIATE.size == 8
# DH-HMAC-CHAP protocol descriptor: AUTHID, reserved, HALEN, DHLEN, 30 hash IDs, 30 DH group IDs.
PROTOCOL_DESC = struct.Struct("<BxBB30s30s")
assert PROTOCOL_DESC.size == 64
AUTHID_DHCHAP = 0x01
MAX_PROTOCOL_DESCS = 8  # a host sends one; more is refused rather than walked

# Challenge: header, HL, reserved, HASHID, DHGID, DHVLEN, SEQNUM; then C (HL) and DH value.
CHALLENGE = struct.Struct("<BBxxHBxBBHI")
assert CHALLENGE.size == 16
# Reply: header, HL, reserved, CVALID, reserved, DHVLEN, SEQNUM; then R (HL), C2 (HL), DH value.
REPLY = struct.Struct("<BBxxHBxBxHI")
assert REPLY.size == 16
# Success1: header, HL, reserved, RVALID, 7 reserved; then R2 (HL).
SUCCESS1 = struct.Struct("<BBxxHBxB7x")
assert SUCCESS1.size == 16
SUCCESS2 = struct.Struct("<BBxxH10x")
assert SUCCESS2.size == 16
# Failure1/2: header, reason code, reason code explanation.
FAILURE = struct.Struct("<BBxxHBB")
assert FAILURE.size == 8
MAX_DH_VALUE = 1024  # ffdhe8192 public value


@dataclass(slots=True)
class AuthCommand:
    spsp0: int
    spsp1: int
    secp: int
    length: int  # TL (send) or AL (receive)


def parse_auth_command(sqe: bytes | bytearray | memoryview) -> AuthCommand:
    spsp0, spsp1, secp, length = AUTH_CMD.unpack_from(sqe, AUTH_CMD_OFF)
    return AuthCommand(spsp0, spsp1, secp, length)


def build_auth_command(cid: int, send: bool, length: int, sgl1: bytes, *, secp: int = SECP_NVME_AUTH) -> bytes:
    """An AUTH_Send (send=True, TL) or AUTH_Receive (AL) SQE; sgl1 describes the data."""
    buf = bytearray(SQE_SIZE)
    fct = FabricsCommandType.AUTH_SEND if send else FabricsCommandType.AUTH_RECV
    FABRICS_SQE_HEAD.pack_into(buf, 0, FABRICS_OPCODE, 0x40, cid, fct)
    buf[24:40] = sgl1
    AUTH_CMD.pack_into(buf, AUTH_CMD_OFF, SPSP_DHCHAP, SPSP_DHCHAP, secp, length)
    return bytes(buf)


def message_head(msg: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(AUTH_TYPE, AUTH_ID, T_ID) of any message."""
    if len(msg) < MSG_HEAD.size:
        raise AuthFormatError(f"authentication message of {len(msg)} bytes is shorter than its header",
                              FailureReason.INCORRECT_MESSAGE)
    return MSG_HEAD.unpack_from(msg, 0)


# -- negotiate ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Negotiate:
    t_id: int
    sc_c: int
    hash_ids: list[int]  # of the DH-HMAC-CHAP descriptor, in the host's order
    dhgroup_ids: list[int]
    has_dhchap: bool = True


def build_negotiate(t_id: int, hash_ids: list[int], dhgroup_ids: list[int], sc_c: int = 0) -> bytes:
    if len(hash_ids) > 30 or len(dhgroup_ids) > 30:
        raise ValueError("at most 30 hash functions and 30 DH groups")
    desc = PROTOCOL_DESC.pack(AUTHID_DHCHAP, len(hash_ids), len(dhgroup_ids), bytes(hash_ids),
                              bytes(dhgroup_ids))
    return NEGOTIATE.pack(AuthType.COMMON, AuthId.NEGOTIATE, t_id, sc_c, 1) + desc


def parse_negotiate(msg: bytes | bytearray | memoryview) -> Negotiate:
    if len(msg) < NEGOTIATE.size:
        raise AuthFormatError(f"negotiate message of {len(msg)} bytes (at least {NEGOTIATE.size})")
    _, _, t_id, sc_c, napd = NEGOTIATE.unpack_from(msg, 0)
    if napd == 0 or napd > MAX_PROTOCOL_DESCS:
        raise AuthFormatError(f"negotiate message lists {napd} protocol descriptors (1..{MAX_PROTOCOL_DESCS})")
    if len(msg) < NEGOTIATE.size + napd * PROTOCOL_DESC.size:
        raise AuthFormatError(f"negotiate message of {len(msg)} bytes cannot hold its {napd} descriptors")
    for i in range(napd):
        authid, halen, dhlen, hids, dhids = PROTOCOL_DESC.unpack_from(msg, NEGOTIATE.size + i * 64)
        if authid != AUTHID_DHCHAP:
            continue
        if halen > 30 or dhlen > 30:
            raise AuthFormatError(f"DH-HMAC-CHAP descriptor lists {halen} hashes and {dhlen} DH groups "
                                  "(at most 30 each)")
        return Negotiate(t_id, sc_c, list(hids[:halen]), list(dhids[:dhlen]))
    return Negotiate(t_id, sc_c, [], [], has_dhchap=False)


# -- challenge ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Challenge:
    t_id: int
    hash_id: int
    dhgroup_id: int
    seqnum: int
    challenge: bytes
    dh_value: bytes


def build_challenge(c: Challenge) -> bytes:
    return CHALLENGE.pack(AuthType.DHCHAP, AuthId.CHALLENGE, c.t_id, len(c.challenge), c.hash_id,
                          c.dhgroup_id, len(c.dh_value), c.seqnum) + c.challenge + c.dh_value


def parse_challenge(msg: bytes | bytearray | memoryview) -> Challenge:
    if len(msg) < CHALLENGE.size:
        raise AuthFormatError(f"challenge message of {len(msg)} bytes (at least {CHALLENGE.size})")
    _, _, t_id, hl, hash_id, dhgid, dhvlen, seqnum = CHALLENGE.unpack_from(msg, 0)
    end = CHALLENGE.size + hl + dhvlen
    if len(msg) < end:
        raise AuthFormatError(f"challenge message of {len(msg)} bytes cannot hold HL {hl} and DHVLEN {dhvlen}")
    c = bytes(msg[CHALLENGE.size:CHALLENGE.size + hl])
    return Challenge(t_id, hash_id, dhgid, seqnum, c, bytes(msg[CHALLENGE.size + hl:end]))


# -- reply -------------------------------------------------------------------------------------

@dataclass(slots=True)
class Reply:
    t_id: int
    response: bytes
    cvalid: bool
    seqnum: int  # S2 (0 when cvalid is clear)
    challenge: bytes  # C2, meaningful when cvalid
    dh_value: bytes


def build_reply(r: Reply) -> bytes:
    hl = len(r.response)
    c2 = r.challenge if r.cvalid else bytes(hl)
    if len(c2) != hl:
        raise ValueError("the controller challenge must be as long as the response")
    return REPLY.pack(AuthType.DHCHAP, AuthId.REPLY, r.t_id, hl, int(r.cvalid), len(r.dh_value),
                      r.seqnum) + r.response + c2 + r.dh_value


def parse_reply(msg: bytes | bytearray | memoryview, hl_expected: int, dhvlen_expected: int) -> Reply:
    if len(msg) < REPLY.size:
        raise AuthFormatError(f"reply message of {len(msg)} bytes (at least {REPLY.size})")
    _, _, t_id, hl, cvalid, dhvlen, seqnum = REPLY.unpack_from(msg, 0)
    if hl != hl_expected:
        raise AuthFormatError(f"reply HL {hl} differs from the negotiated hash length {hl_expected}")
    if dhvlen != dhvlen_expected:
        raise AuthFormatError(f"reply DHVLEN {dhvlen}, the DH group needs {dhvlen_expected}")
    end = REPLY.size + 2 * hl + dhvlen
    if len(msg) < end:
        raise AuthFormatError(f"reply message of {len(msg)} bytes, HL {hl} and DHVLEN {dhvlen} need {end}")
    o = REPLY.size
    return Reply(t_id, bytes(msg[o:o + hl]), bool(cvalid & 1), seqnum, bytes(msg[o + hl:o + 2 * hl]),
                 bytes(msg[o + 2 * hl:end]))


# -- success and failure -----------------------------------------------------------------------

def build_success1(t_id: int, hl: int, response: bytes | None) -> bytes:
    rval = response if response is not None else bytes(hl)
    return SUCCESS1.pack(AuthType.DHCHAP, AuthId.SUCCESS1, t_id, hl, int(response is not None)) + rval


def parse_success1(msg: bytes | bytearray | memoryview) -> tuple[int, bytes | None]:
    """(T_ID, the controller's response or None when RVALID is clear)."""
    if len(msg) < SUCCESS1.size:
        raise AuthFormatError(f"success1 message of {len(msg)} bytes (at least {SUCCESS1.size})")
    _, _, t_id, hl, rvalid = SUCCESS1.unpack_from(msg, 0)
    if not rvalid & 1:
        return t_id, None
    if len(msg) < SUCCESS1.size + hl:
        raise AuthFormatError(f"success1 message of {len(msg)} bytes cannot hold HL {hl}")
    return t_id, bytes(msg[SUCCESS1.size:SUCCESS1.size + hl])


def build_success2(t_id: int) -> bytes:
    return SUCCESS2.pack(AuthType.DHCHAP, AuthId.SUCCESS2, t_id)


def build_failure(t_id: int, reason: int, auth_id: int = AuthId.FAILURE1) -> bytes:
    return FAILURE.pack(AuthType.COMMON, auth_id, t_id, FAILURE_RESCODE, reason)


def parse_failure(msg: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """(T_ID, reason code, reason code explanation)."""
    if len(msg) < FAILURE.size:
        raise AuthFormatError(f"failure message of {len(msg)} bytes (at least {FAILURE.size})")
    _, _, t_id, rescode, exp = FAILURE.unpack_from(msg, 0)
    return t_id, rescode, exp
