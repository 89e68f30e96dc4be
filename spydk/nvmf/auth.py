"""DH-HMAC-CHAP on the target: the controller half of the exchange (sans-IO) and the glue
that runs it from AUTH_Send / AUTH_Receive commands on a queue pair after Connect.

The exchange per queue pair: AUTH_Send(Negotiate) -> AUTH_Receive(Challenge) ->
AUTH_Send(Reply) -> AUTH_Receive(Success1 | Failure1) [-> AUTH_Send(Success2 | Failure2)
when the host also authenticates the controller]. Every refusal is answered with an
AUTH_Failure1 whose reason code explanation says why, in the AUTH_Receive that follows.
Until the exchange succeeds the queue pair is not attached to its controller, so every
other command gets AUTHENTICATION REQUIRED and the I/O fast path never sees it.
"""
from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from spydk.log import NOTICE, get_logger
from spydk.nvme.auth import dhchap
from spydk.nvme.spec import GenericStatus, StatusCodeType
from spydk.nvme.spec import auth as sa
from spydk.nvme.spec.auth import AuthFormatError, AuthId, AuthType, DhGroupId, FailureReason, HashId

if TYPE_CHECKING:
    from spydk.nvmf.ctrlr import Controller
    from spydk.nvmf.request import Qpair, Request

log = get_logger("nvmf")

# Preference when the host offers several: the strongest allowed.
HASH_PREFERENCE = (HashId.SHA512, HashId.SHA384, HashId.SHA256)
DHGROUP_PREFERENCE = (DhGroupId.FFDHE8192, DhGroupId.FFDHE6144, DhGroupId.FFDHE4096,
                      DhGroupId.FFDHE3072, DhGroupId.FFDHE2048, DhGroupId.NULL)
ALL_DIGESTS = tuple(sa.HASH_NAMES[h] for h in (HashId.SHA256, HashId.SHA384, HashId.SHA512))
ALL_DHGROUPS = tuple(sa.DHGROUP_NAMES[g] for g in DhGroupId)
SC_AUTH_REQUIRED = 0x91  # command specific status: authentication required
FABRICS_AUTH_SEND, FABRICS_AUTH_RECV = 0x05, 0x06


class ControllerAuth:
    """The controller half of one DH-HMAC-CHAP transaction.

    ``send(msg)`` takes what the host sent with AUTH_Send; ``receive()`` gives what the next
    AUTH_Receive returns. ``state`` ends at "success" or "failure"; ``reason`` says why.
    """

    def __init__(self, hostnqn: str, subnqn: str, host_secret: dhchap.Secret,
                 ctrlr_secret: dhchap.Secret | None, digests: tuple[str, ...] = ALL_DIGESTS,
                 dhgroups: tuple[str, ...] = ALL_DHGROUPS, rand: Callable[[int], bytes] = os.urandom):
        self.hostnqn = hostnqn
        self.subnqn = subnqn
        self.host_secret = host_secret
        self.ctrlr_secret = ctrlr_secret
        self.digests = {sa.HASH_BY_NAME[d] for d in digests}
        self.dhgroups = {sa.DHGROUP_BY_NAME[g] for g in dhgroups}
        self.rand = rand
        self.state = "negotiate"  # what comes next: negotiate, challenge, reply, success1, success2
        self.reason = ""  # why it failed (for the log)
        self.t_id = 0
        self.hash_id = 0
        self.dhgroup_id = 0
        self._c1 = b""
        self._s1 = 0
        self._dh: dhchap.DhExchange | None = None
        self._success1 = b""
        self._failure: bytes | None = None  # Failure1 to return with the next AUTH_Receive
        self.bidirectional = False

    @property
    def hash_name(self) -> str:
        return sa.HASH_NAMES.get(HashId(self.hash_id), "") if self.hash_id else ""

    @property
    def dhgroup_name(self) -> str:
        return sa.DHGROUP_NAMES[DhGroupId(self.dhgroup_id)]

    def _fail(self, reason: FailureReason, why: str) -> None:
        self.reason = why
        self._failure = sa.build_failure(self.t_id, reason)
        self.state = "failure1"

    def send(self, msg: bytes | bytearray | memoryview) -> None:
        if self.state in ("failure1", "failure", "success"):
            self._fail(FailureReason.INCORRECT_MESSAGE, "message after the end of the transaction")
            return
        try:
            auth_type, auth_id, t_id = sa.message_head(msg)
            if auth_id == AuthId.FAILURE2:
                _, _, exp = sa.parse_failure(msg)
                self.reason = f"the host refused the controller (Failure2, reason {exp:#x})"
                self.state = "failure"
                return
            if self.state == "negotiate" and auth_type == AuthType.COMMON and auth_id == AuthId.NEGOTIATE:
                self.t_id = t_id
                self._negotiate(sa.parse_negotiate(msg))
            elif self.state == "reply" and auth_type == AuthType.DHCHAP and auth_id == AuthId.REPLY \
                    and t_id == self.t_id:
                hl = sa.HASH_LENGTHS[HashId(self.hash_id)]
                dhvlen = self._dh.length if self._dh is not None else 0
                self._reply(sa.parse_reply(msg, hl, dhvlen))
            elif self.state == "success2" and auth_type == AuthType.DHCHAP and auth_id == AuthId.SUCCESS2 \
                    and t_id == self.t_id:
                self.state = "success"
            else:
                self._fail(FailureReason.INCORRECT_MESSAGE,
                           f"unexpected message (type {auth_type}, id {auth_id:#x}, transaction {t_id}) "
                           f"while waiting for {self.state}")
        except AuthFormatError as e:
            self._fail(e.reason, str(e))

    def _negotiate(self, n: sa.Negotiate) -> None:
        if n.sc_c != 0:
            self._fail(FailureReason.CONCAT_MISMATCH, "the host asks for secure channel concatenation, "
                                                      "which this target does not offer")
            return
        if not n.has_dhchap:
            self._fail(FailureReason.PROTOCOL_UNUSABLE, "the host offers no DH-HMAC-CHAP descriptor")
            return
        h = next((h for h in HASH_PREFERENCE if h in n.hash_ids and h in self.digests), None)
        if h is None:
            self._fail(FailureReason.HASH_UNUSABLE,
                       f"no common hash function (host offers ids {n.hash_ids}, nvmf_set_config "
                       f"dhchap_digests allows {sorted(sa.HASH_NAMES[x] for x in self.digests)})")
            return
        g = next((g for g in DHGROUP_PREFERENCE if g in n.dhgroup_ids and g in self.dhgroups), None)
        if g is None:
            self._fail(FailureReason.DHGROUP_UNUSABLE,
                       f"no common DH group (host offers ids {n.dhgroup_ids}, nvmf_set_config "
                       f"dhchap_dhgroups allows {sorted(sa.DHGROUP_NAMES[x] for x in self.dhgroups)})")
            return
        self.hash_id, self.dhgroup_id = h, g
        self.state = "challenge"

    def _challenge(self) -> bytes:
        hl = sa.HASH_LENGTHS[HashId(self.hash_id)]
        self._c1 = self.rand(hl)
        self._s1 = dhchap.random_seqnum(self.rand)
        dh_value = b""
        if self.dhgroup_id != DhGroupId.NULL:
            self._dh = dhchap.DhExchange(self.dhgroup_id)
            dh_value = self._dh.public
        self.state = "reply"
        return sa.build_challenge(sa.Challenge(self.t_id, self.hash_id, self.dhgroup_id, self._s1,
                                               self._c1, dh_value))

    def _reply(self, r: sa.Reply) -> None:
        c1 = self._c1
        session_key = b""
        if self._dh is not None:
            try:
                session_key = self._dh.shared_secret(r.dh_value)
            except ValueError as e:
                self._fail(FailureReason.INCORRECT_PAYLOAD, f"host DH value: {e}")
                return
            c1 = dhchap.augment_challenge(self.hash_id, c1, session_key)
        key = dhchap.transform_key(self.host_secret, self.hostnqn)
        want = dhchap.host_response(self.hash_id, key, c1, self._s1, self.t_id, self.hostnqn, self.subnqn)
        if not hmac.compare_digest(want, r.response):
            self._fail(FailureReason.FAILED, "the host's response does not match its key (wrong "
                                             "--dhchap-secret, or the key was rotated)")
            return
        hl = len(want)
        if r.cvalid:
            if self.ctrlr_secret is None:
                self._fail(FailureReason.FAILED, "the host asks to authenticate the controller but no "
                                                 "dhchap_ctrlr_key is set for it (nvmf_subsystem_add_host)")
                return
            if r.seqnum == 0:
                self._fail(FailureReason.INCORRECT_PAYLOAD, "controller challenge with sequence number 0")
                return
            c2 = r.challenge
            if session_key:
                c2 = dhchap.augment_challenge(self.hash_id, c2, session_key)
            ckey = dhchap.transform_key(self.ctrlr_secret, self.subnqn)
            r2 = dhchap.ctrlr_response(self.hash_id, ckey, c2, r.seqnum, self.t_id, self.hostnqn,
                                       self.subnqn)
            self._success1 = sa.build_success1(self.t_id, hl, r2)
            self.bidirectional = True
        else:
            self._success1 = sa.build_success1(self.t_id, hl, None)
        self.state = "success1"

    def receive(self) -> bytes:
        """The message for this AUTH_Receive (a Failure1 when nothing else fits)."""
        if self._failure is not None:
            msg, self._failure = self._failure, None
            self.state = "failure"
            return msg
        if self.state == "challenge":
            return self._challenge()
        if self.state == "success1":
            self.state = "success2" if self.bidirectional else "success"
            return self._success1
        self.reason = self.reason or f"AUTH_Receive while waiting for {self.state}"
        self.state = "failure"
        return sa.build_failure(self.t_id, FailureReason.INCORRECT_MESSAGE)


# -- glue: AUTH_Send / AUTH_Receive on a queue pair ------------------------------------------------

class QpairAuth:
    """What a queue pair waiting for authentication holds: the exchange and its controller."""

    __slots__ = ("exchange", "ctrlr", "qpair", "qid")

    def __init__(self, exchange: ControllerAuth, ctrlr: Controller, qpair: Qpair, qid: int):
        self.exchange = exchange
        self.ctrlr = ctrlr
        self.qpair = qpair
        self.qid = qid

    def to_json(self) -> dict[str, str]:
        ex = self.exchange
        state = {"success": "completed", "failure": "failed"}.get(ex.state, "in progress")
        return {"state": state, "digest": ex.hash_name, "dhgroup": ex.dhgroup_name if ex.hash_id else ""}


def exec_auth(req: Request, fctype: int, attach: Callable[[QpairAuth], None]) -> None:
    """Run one AUTH_Send / AUTH_Receive; ``attach`` connects the queue pair once it succeeded."""
    qp = req.qpair
    qa: QpairAuth | None = getattr(qp, "auth", None)
    if qa is None or qa.exchange.state in ("success", "failure"):
        req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)  # no transaction in progress here
        return
    cmd = sa.parse_auth_command(req.sqe)
    if cmd.secp != sa.SECP_NVME_AUTH or cmd.spsp0 != sa.SPSP_DHCHAP or cmd.spsp1 != sa.SPSP_DHCHAP:
        log.error("AUTH command on qid %d of host %s: security protocol %#x/%#x/%#x is not "
                  "DH-HMAC-CHAP (E9h/01h/01h)", qa.qid, qa.exchange.hostnqn, cmd.secp, cmd.spsp0, cmd.spsp1)
        req.fail(GenericStatus.INVALID_FIELD)
        return
    ex = qa.exchange
    if fctype == FABRICS_AUTH_SEND:
        data = req.data
        if cmd.length == 0 or data is None or len(data) < cmd.length:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        ex.send(memoryview(data)[:cmd.length])
        _finish(qa, req, attach)
        return
    if cmd.length == 0 or req.length < cmd.length:
        req.fail(GenericStatus.INVALID_FIELD)
        return
    msg = ex.receive()
    if len(msg) > cmd.length:
        log.error("AUTH_Receive on qid %d of host %s: allocation length %d is shorter than the %d-byte "
                  "message", qa.qid, ex.hostnqn, cmd.length, len(msg))
        req.fail(GenericStatus.INVALID_FIELD)
        return
    req.data = msg.ljust(req.length, b"\0")
    _finish(qa, req, attach)


def _finish(qa: QpairAuth, req: Request, attach: Callable[[QpairAuth], None]) -> None:
    ex = qa.exchange
    if ex.state == "success":
        # one line per controller (its admin queue); I/O queues at INFO level
        log.log(NOTICE if qa.qid == 0 else logging.INFO,
                "host %s authenticated on qid %d of controller %d (%s, %s%s)", ex.hostnqn, qa.qid,
                 qa.ctrlr.cntlid, ex.hash_name, ex.dhgroup_name, ", bidirectional" if ex.bidirectional else "")
        attach(qa)
    elif ex.state == "failure":
        log.error("DH-HMAC-CHAP of host %s to %s failed on qid %d: %s", ex.hostnqn, ex.subnqn, qa.qid,
                  ex.reason)
    req.complete()


def fail_auth_required(req: Request) -> None:
    req.fail(SC_AUTH_REQUIRED, StatusCodeType.COMMAND_SPECIFIC)
