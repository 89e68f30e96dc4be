"""Target-side iSCSI connection: login, Full Feature Phase, logout (RFC 7143), sans-IO.

Driving it::

    conn = Connection(config, policy, registry, initiator_address="10.0.0.2:51000", now=t)
    buf = conn.get_buffer(n); ...; events = conn.buffer_updated(nread, now=t)   # or receive_data()
    for ev in events: ...            # ScsiCommandReady -> hand ev.task to the SCSI layer
    sock.sendmsg(conn.data_to_send())
    ...                              # SCSI layer done:
    sock.sendmsg(conn.complete_task(task))
    timer: conn.get_timer() -> deadline; conn.handle_timer(now) -> events

Errors: peer protocol violations become Reject PDUs, login failure responses or a
``ConnectionFailed`` event (ErrorRecoveryLevel 0: the connection then ignores input; flush
``data_to_send()`` and close).  Misuse of this API raises ``LocalProtocolError``.

Buffers returned for sending reference fresh header bytes plus the SCSI layer's data views;
nothing is overwritten later, so a transport may queue them.
"""
from __future__ import annotations

import enum
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from crc32c import crc32c as _crc

from ..scsi.task import DataDir, ScsiTask, TmfFunction, TmfResponse
from . import spec
from .chap import ChapCredentials, ChapError, ChapTarget
from .negotiation import (
    Limits,
    NegotiationError,
    Negotiator,
    SessionParams,
    TextCollector,
    encode_text,
    parse_text,
    split_text,
)
from .pdu import Buffer, Pdu, PduError, PduReader
from .session import (
    SN_MASK,
    AuthRequirement,
    BufferPool,
    Session,
    SessionRegistry,
    SessionType,
    TargetInfo,
    TargetPolicy,
    sn_le,
)
from .spec import LoginStatus, Opcode, RejectReason, Stage

_R = spec.RESERVED_TAG
_F = spec.FLAG_FINAL
_DIGEST = struct.Struct("<I")
_SENSE_LEN = struct.Struct(">H")
_AHS_HDR = struct.Struct(">HBx")
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")
_U32 = spec.U32
_DATA_IN_PACK = spec.DATA_IN.pack
_OP_DATA_IN = int(Opcode.DATA_IN)
_F_S = _F | spec.DATAIN_STATUS
_SCSI_CMD_UNPACK = spec.SCSI_CMD.unpack_from
_IMM = spec.IMMEDIATE
_RD = spec.CMD_READ
_W = spec.CMD_WRITE
_RW = spec.CMD_READ | spec.CMD_WRITE
_TO_DEVICE = DataDir.TO_DEVICE
_FROM_DEVICE = DataDir.FROM_DEVICE
_NO_DATA = DataDir.NONE


class LocalProtocolError(Exception):
    """The caller used this API wrongly."""


# ----------------------------------------------------------------------------------------------
# Events


@dataclass(slots=True)
class LoginComplete:
    session: Session
    leading: bool


@dataclass(slots=True)
class ScsiCommandReady:
    """All data the target needs for ``task`` is here: execute it, then ``complete_task``."""

    task: ScsiTask


@dataclass(slots=True)
class TaskManagementRequest:
    """Answer with ``conn.task_management_done(req, TmfResponse)``."""

    function: TmfFunction
    lun: int
    itt: int
    ref_itt: int
    task: ScsiTask | None  # ABORT TASK: the task (already with the SCSI layer)
    immediate: bool = True


@dataclass(slots=True)
class LoggedOut:
    """Logout response queued: send it, then close the TCP connection."""

    close_session: bool


@dataclass(slots=True)
class ConnectionFailed:
    """Fatal for this connection: flush ``data_to_send()`` (maybe a reject) and close."""

    reason: str
    login_status: LoginStatus | None = None


Event = LoginComplete | ScsiCommandReady | TaskManagementRequest | LoggedOut | ConnectionFailed


# ----------------------------------------------------------------------------------------------
# State machine: every state and what moves between them, in one place.


class ConnState(enum.Enum):
    SECURITY = "security"            # login, CSG=SecurityNegotiation
    OPERATIONAL = "operational"      # login, CSG=LoginOperationalNegotiation
    FULL_FEATURE = "full-feature"
    LOGGED_OUT = "logged-out"
    FAILED = "failed"


# Login stage transitions a final-bit (T=1) Login Request may ask for: (state, NSG) -> state.
LOGIN_TRANSITIONS: dict[tuple[ConnState, Stage], ConnState] = {
    (ConnState.SECURITY, Stage.OPERATIONAL): ConnState.OPERATIONAL,
    (ConnState.SECURITY, Stage.FULL_FEATURE): ConnState.FULL_FEATURE,
    (ConnState.OPERATIONAL, Stage.FULL_FEATURE): ConnState.FULL_FEATURE,
}
STAGE_OF = {ConnState.SECURITY: Stage.SECURITY, ConnState.OPERATIONAL: Stage.OPERATIONAL}
# Opcodes each state accepts; anything else: login reject (0x020b) during login, Reject in FFP.
ACCEPTS: dict[ConnState, frozenset[int]] = {
    ConnState.SECURITY: frozenset({Opcode.LOGIN_REQ}),
    ConnState.OPERATIONAL: frozenset({Opcode.LOGIN_REQ}),
    ConnState.FULL_FEATURE: frozenset({Opcode.NOP_OUT, Opcode.SCSI_CMD, Opcode.TASK_MGMT_REQ, Opcode.TEXT_REQ,
                                       Opcode.DATA_OUT, Opcode.LOGOUT_REQ, Opcode.SNACK}),
    ConnState.LOGGED_OUT: frozenset(),
    ConnState.FAILED: frozenset(),
}
DISCOVERY_ACCEPTS = frozenset({Opcode.NOP_OUT, Opcode.TEXT_REQ, Opcode.LOGOUT_REQ})
# Other transitions: FULL_FEATURE --Logout--> LOGGED_OUT; any --fatal error/timeout--> FAILED.


# ----------------------------------------------------------------------------------------------


@dataclass
class TargetConfig:
    limits: Limits = field(default_factory=Limits)
    queue_depth: int = 64           # CmdSN window per session
    nop_interval: float = 30.0      # idle time before a NOP-In ping (0: never)
    nop_timeout: float = 60.0       # no answer to a ping for this long: connection dead
    login_timeout: float = 30.0     # login must reach Full Feature Phase within this
    direct_placement_threshold: int = 16384
    max_write_length: int = 16 << 20  # larger writes are rejected (bounds per-task buffers)
    max_tasks_cached: int = 128


class WriteBufferPool(Protocol):
    def get(self, size: int) -> bytearray: ...

    def put(self, buf: bytearray) -> None: ...


class _R2TState:
    __slots__ = ("ttt", "offset", "end", "next", "datasn")

    def __init__(self, ttt: int, offset: int, length: int) -> None:
        self.ttt = ttt
        self.offset = offset
        self.end = offset + length
        self.next = offset
        self.datasn = 0


class _Cmd:
    """Our per-task state (``task.ctx``)."""

    __slots__ = ("task", "itt", "lun_raw", "immediate", "edtl", "buf", "received", "unsol_next",
                 "unsol_end", "unsol_datasn", "todo", "r2ts", "r2tsn", "ordered", "delivered",
                 "write", "conn_epoch", "ready")

    def __init__(self, task: ScsiTask) -> None:
        self.task = task
        self.itt = 0
        self.lun_raw = 0
        self.immediate = False
        self.edtl = 0
        self.buf: bytearray | None = None
        self.received = 0
        self.unsol_next = 0   # next unsolicited offset expected
        self.unsol_end = 0    # unsolicited data (immediate + Data-Out) ends here
        self.unsol_datasn = 0
        self.todo: list[tuple[int, int]] = []  # (offset, length) still to solicit with R2Ts
        self.r2ts: dict[int, _R2TState] = {}   # outstanding R2Ts by TTT
        self.r2tsn = 0
        self.ordered = False    # its CmdSN turn has come
        self.delivered = False  # handed to the SCSI layer
        self.write = False
        self.conn_epoch = 0
        self.ready = ScsiCommandReady(task)  # one event object per task slot, reused


class Connection:
    def __init__(self, config: TargetConfig, policy: TargetPolicy, registry: SessionRegistry, *,
                 initiator_address: str = "", target_address: str = "", now: float = 0.0,
                 buffer_pool: WriteBufferPool | None = None,
                 token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.config = config
        self.policy = policy
        self.registry = registry
        self.initiator_address = initiator_address
        self.target_address = target_address
        self.pool: WriteBufferPool = buffer_pool if buffer_pool is not None else BufferPool()
        self._token_bytes = token_bytes
        self.state = ConnState.SECURITY
        self.session: Session | None = None
        self.target: TargetInfo | None = None
        self.initiator_name = ""
        # SCSI initiator port name (RFC 7143 section 4.4.2): name + ",i,0x" + ISID, so two
        # sessions of one initiator are distinct I_T nexuses (reservations, UNIT ATTENTIONs).
        self.initiator_port = ""
        self.cid = 0
        self.isid = b""
        self.stat_sn = 0
        lim = config.limits
        self.reader = PduReader(8192, place=self._place, direct_threshold=config.direct_placement_threshold,
                                capacity=2 * (lim.max_recv_data_segment_length + 2048), reuse_pdu=True)
        self._events: list[Event] = []
        self._out: list[Buffer] = []
        self._hd = False
        self._dd = False
        self.max_send_data = 8192
        # login
        self._login_started = False
        self._login_deadline = now + config.login_timeout
        self._login_tsih = 0
        self._login_cmd_sn = 0
        self._login_text = TextCollector()
        self._login_rsp_chunks: list[bytes] = []
        self._login_rsp_transit: tuple[int, bool, ConnState] = (0, False, ConnState.SECURITY)
        self._negotiator: Negotiator | None = None
        self._auth_req = AuthRequirement.NONE
        self._auth_method: str | None = None
        self._chap: ChapTarget | None = None
        self._session_type = SessionType.NORMAL
        self._mrdsl_declared = False
        self._join: Session | None = None
        # full feature
        self._cmds: dict[int, _Cmd] = {}
        self._free: list[_Cmd] = []
        self._staged: bytearray | None = None  # write buffer placed for the PDU being parsed
        self._ttt = 0
        self._text = TextCollector()
        self._text_chunks: list[bytes] = []
        self._text_ttt = _R
        # timers
        self._last_rx = now
        self._ping_ttt = _R
        self._ping_deadline = 0.0
        self._params = SessionParams()
        self._dispatch: dict[int, Callable[[Pdu], None]] = {
            Opcode.NOP_OUT: self._on_nop_out,
            Opcode.SCSI_CMD: self._on_scsi_cmd,
            Opcode.TASK_MGMT_REQ: self._on_tmf,
            Opcode.TEXT_REQ: self._on_text,
            Opcode.DATA_OUT: self._on_data_out,
            Opcode.LOGOUT_REQ: self._on_logout,
            Opcode.SNACK: self._on_snack,
        }

    # ==========================================================================================
    # Input

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int, now: float | None = None) -> list[Event]:
        self.reader.buffer_updated(nbytes)
        if now is not None:
            self._last_rx = now
        self._process()
        ev = self._events
        if not ev:
            return []
        self._events = []
        return ev

    def receive_data(self, data: Buffer, now: float | None = None) -> list[Event]:
        if now is not None:
            self._last_rx = now
        mv = memoryview(data)
        reader = self.reader
        while mv and self.state is not ConnState.FAILED and self.state is not ConnState.LOGGED_OUT:
            buf = reader.get_buffer(len(mv))
            n = min(len(buf), len(mv))
            buf[:n] = mv[:n]
            reader.buffer_updated(n)
            mv = mv[n:]
            self._process()
        return self.pending_events()

    def pending_events(self) -> list[Event]:
        ev = self._events
        if not ev:
            return []
        self._events = []
        return ev

    def _process(self) -> None:
        reader = self.reader
        while True:
            state = self.state
            if state is ConnState.FAILED or state is ConnState.LOGGED_OUT:
                return
            try:
                pdu = reader.next_pdu()
            except PduError as e:
                if e.reject is not None and e.header and state is ConnState.FULL_FEATURE:
                    self._reject(e.reject, e.header)
                elif state is not ConnState.FULL_FEATURE:
                    self._login_fail(LoginStatus.INITIATOR_ERROR, None, e.reason)
                    return
                self._fail(e.reason)
                return
            if pdu is None:
                return
            self._ping_ttt = _R  # any PDU proves the peer alive
            if state is ConnState.FULL_FEATURE:
                handler = self._dispatch.get(pdu.opcode)
                if handler is None:
                    self._release_staged()
                    self._reject(RejectReason.COMMAND_NOT_SUPPORTED, pdu.header)
                else:
                    handler(pdu)
                # Nothing more buffered: skip the next_pdu() call that would say so.
                if reader._end - reader._start < spec.BHS_SIZE and reader._direct is None:
                    return
            elif pdu.opcode == Opcode.LOGIN_REQ:
                self._on_login(pdu)
            else:
                self._login_fail(LoginStatus.INVALID_DURING_LOGIN, pdu, "non-login PDU during login")

    # ==========================================================================================
    # Output

    def data_to_send(self) -> list[Buffer]:
        out = self._out
        if out:
            self._out = []
        return out

    def _send(self, header: Buffer, data: Buffer | None = None) -> None:
        out = self._out
        out.append(header)
        if self._hd:
            out.append(_DIGEST.pack(_crc(header)))
        if data:
            out.append(data)
            n = len(data)
            pad = _PADS[n & 3]
            if pad:
                out.append(pad)
            if self._dd:
                out.append(_DIGEST.pack(_crc(pad, _crc(data)) if pad else _crc(data)))

    def _window(self) -> tuple[int, int]:
        s = self.session
        if s is None:
            return self._login_cmd_sn, (self._login_cmd_sn + self.config.queue_depth - 1) & SN_MASK
        return s.exp_cmd_sn, s.max_cmd_sn

    def _next_stat_sn(self) -> int:
        sn = self.stat_sn
        self.stat_sn = (sn + 1) & SN_MASK
        return sn

    def _new_ttt(self) -> int:
        t = (self._ttt + 1) & SN_MASK
        if t == _R:
            t = 1
        self._ttt = t
        return t

    def _reject(self, reason: RejectReason, header: Buffer) -> None:
        exp, mx = self._window()
        hdr = spec.REJECT.pack(Opcode.REJECT, _F, reason, spec.BHS_SIZE, _R, self._next_stat_sn(), exp, mx, 0)
        self._send(hdr, bytes(header[:spec.BHS_SIZE]))

    # ==========================================================================================
    # Failure and teardown

    def _fail(self, reason: str, status: LoginStatus | None = None) -> None:
        if self.state is ConnState.FAILED:
            return
        self.state = ConnState.FAILED
        self._events.append(ConnectionFailed(reason, status))
        self._detach()

    def fail(self, reason: str) -> None:
        """Drop this connection from outside (session reinstated, target removed...)."""
        if self.state not in (ConnState.FAILED, ConnState.LOGGED_OUT):
            self._fail(reason)
            self.registry.wake(self)

    def connection_lost(self) -> None:
        """The transport closed: forget the connection (tasks in flight complete into nothing)."""
        if self.state not in (ConnState.FAILED, ConnState.LOGGED_OUT):
            self.state = ConnState.FAILED
        self._detach()

    def _detach(self) -> None:
        self._release_staged()
        for cmd in list(self._cmds.values()):
            if not cmd.delivered:
                self._drop_cmd(cmd)
        s = self.session
        if s is not None and s.connections.get(self.cid) is self:
            del s.connections[self.cid]
            for sn, (c, _) in list(s.deferred.items()):
                if c is self:
                    del s.deferred[sn]
            if not s.connections:
                self.registry.remove(s)

    def outstanding_tasks(self) -> list[ScsiTask]:
        """Tasks handed to the SCSI layer and not completed yet."""
        return [c.task for c in self._cmds.values() if c.delivered]

    # ==========================================================================================
    # Timers

    def get_timer(self) -> float | None:
        state = self.state
        if state is ConnState.SECURITY or state is ConnState.OPERATIONAL:
            return self._login_deadline
        if state is ConnState.FULL_FEATURE and self.config.nop_interval > 0:
            if self._ping_ttt != _R:
                return self._ping_deadline
            return self._last_rx + self.config.nop_interval
        return None

    def handle_timer(self, now: float) -> list[Event]:
        state = self.state
        if state is ConnState.SECURITY or state is ConnState.OPERATIONAL:
            if now >= self._login_deadline:
                self._fail("login timeout")
        elif state is ConnState.FULL_FEATURE and self.config.nop_interval > 0:
            if self._ping_ttt != _R:
                if now >= self._ping_deadline:
                    self._fail("NOP-Out timeout")
            elif now >= self._last_rx + self.config.nop_interval:
                self._send_ping(now)
        return self.pending_events()

    def _send_ping(self, now: float) -> None:
        ttt = self._new_ttt()
        self._ping_ttt = ttt
        self._ping_deadline = now + self.config.nop_timeout
        exp, mx = self._window()
        self._send(spec.NOP_IN.pack(Opcode.NOP_IN, _F, 0, 0, _R, ttt, self.stat_sn, exp, mx))

    # ==========================================================================================
    # Login

    def _login_fail(self, status: LoginStatus, pdu: Pdu | None, reason: str) -> None:
        isid, tsih, itt = self.isid or b"\0" * 6, self._login_tsih, 0
        if pdu is not None and pdu.opcode == Opcode.LOGIN_REQ:
            f = spec.LOGIN_REQ.unpack_from(pdu.header)
            isid, tsih, itt = f[5], f[6], f[7]
        elif pdu is not None:
            itt = pdu.itt
        exp, mx = self._window()
        hdr = spec.LOGIN_RSP.pack(Opcode.LOGIN_RSP, 0, 0, 0, 0, isid, tsih, itt, self._next_stat_sn(), exp, mx,
                                  status.status_class, status.detail)
        self._send(hdr)
        self._fail(reason, status)

    def _on_login(self, pdu: Pdu) -> None:
        (_, flags, _vmax, vmin, _, isid, tsih, itt, cid, cmd_sn, exp_stat_sn) = spec.LOGIN_REQ.unpack_from(pdu.header)
        transit = bool(flags & spec.LOGIN_TRANSIT)
        cont = bool(flags & spec.LOGIN_CONTINUE)
        csg = (flags & spec.LOGIN_CSG_MASK) >> spec.LOGIN_CSG_SHIFT
        nsg = flags & spec.LOGIN_NSG_MASK
        if not self._login_started:
            self._login_started = True
            self.isid, self._login_tsih, self.cid = isid, tsih, cid
            self.stat_sn = exp_stat_sn
            self._login_cmd_sn = cmd_sn
            if vmin > spec.ISCSI_VERSION:
                return self._login_fail(LoginStatus.UNSUPPORTED_VERSION, pdu, "unsupported version")
            if csg == Stage.OPERATIONAL:
                self.state = ConnState.OPERATIONAL  # security stage skipped; checked below
        elif isid != self.isid or tsih != self._login_tsih or cid != self.cid:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "login identity changed")
        if transit and cont:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "T and C both set")
        if csg != STAGE_OF[self.state]:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "wrong login stage")
        if self._login_rsp_chunks:
            # The initiator is pulling the rest of a long response.
            if pdu.data:
                return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "data while response pending")
            chunk = self._login_rsp_chunks.pop(0)
            if self._login_rsp_chunks:
                self._login_respond(itt, isid, csg, 0, False, chunk, True)
                return None
            # Last part: now the transition decided on the original request happens.
            nsg_p, go_p, state_p = self._login_rsp_transit
            self._login_respond(itt, isid, csg, nsg_p if go_p else 0, go_p, chunk, False)
            if go_p:
                self.state = state_p
                if state_p is ConnState.FULL_FEATURE:
                    self._enter_full_feature()
            return None
        try:
            self._login_text.add(pdu.data)
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        if cont:
            self._login_respond(itt, isid, csg, 0, False, b"", False)
            return None
        try:
            pairs = parse_text(self._login_text.take())
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        answers: list[tuple[str, str]] = []
        if self._negotiator is None:
            status = self._login_identify(dict(pairs), answers)
            if status is not None:
                return self._login_fail(status, pdu, "login refused: " + status.name)
            if self.state is ConnState.OPERATIONAL and self._auth_req in (AuthRequirement.CHAP,
                                                                           AuthRequirement.MUTUAL_CHAP):
                return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, "authentication required")
        neg = self._negotiator
        assert neg is not None
        security = csg == Stage.SECURITY
        try:
            if security:
                answers += self._login_security(pairs)
            elif any(k == "AuthMethod" or k.startswith("CHAP_") for k, _ in pairs):
                raise NegotiationError("security keys in operational stage")
            answers += neg.answer(pairs, in_login=True, security_stage=security)
        except ChapError as e:
            return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, str(e))
        except NegotiationError as e:
            return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, str(e))
        go = False
        new_state = self.state
        if transit:
            try:
                new_state = LOGIN_TRANSITIONS[(self.state, Stage(nsg))]
            except (KeyError, ValueError):
                return self._login_fail(LoginStatus.INITIATOR_ERROR, pdu, "bad NSG")
            go = True
            if security and not self._auth_done():
                if self._auth_method == "CHAP" and self._chap is not None and not self._chap.done:
                    go = False  # keep going with the CHAP exchange
                else:
                    return self._login_fail(LoginStatus.AUTH_FAILURE, pdu, "not authenticated")
            if go and not self._mrdsl_declared and (new_state is ConnState.FULL_FEATURE or not security):
                answers.append(("MaxRecvDataSegmentLength", str(neg.conn.max_recv_data_segment)))
                self._mrdsl_declared = True
        elif not security and not self._mrdsl_declared:
            answers.append(("MaxRecvDataSegmentLength", str(neg.conn.max_recv_data_segment)))
            self._mrdsl_declared = True
        final = go and new_state is ConnState.FULL_FEATURE
        if final:
            status = self._login_finish()
            if status is not None:
                return self._login_fail(status, pdu, "login refused: " + status.name)
        text = encode_text(answers)
        chunks = split_text(text, self.max_send_data) if len(text) > self.max_send_data else [text]
        if len(chunks) > 1:
            # Send the first part with C=1 and no transit; the initiator pulls the rest.
            self._login_rsp_chunks = chunks[1:]
            self._login_rsp_transit = (nsg, go, new_state)
            self._login_respond(itt, isid, csg, 0, False, chunks[0], True)
            return None
        self._login_respond(itt, isid, csg, nsg if go else 0, go, text, False)
        if go:
            self.state = new_state
            if final:
                self._enter_full_feature()
        return None

    def _login_respond(self, itt: int, isid: bytes, csg: int, nsg: int, transit: bool, text: bytes,
                       more: bool) -> None:
        flags = (spec.LOGIN_TRANSIT if transit else 0) | (spec.LOGIN_CONTINUE if more else 0) | (csg << 2) | nsg
        final = transit and nsg == Stage.FULL_FEATURE
        tsih = self.session.tsih if final and self.session is not None else self._login_tsih
        exp, mx = self._window()
        hdr = spec.LOGIN_RSP.pack(Opcode.LOGIN_RSP, flags, spec.ISCSI_VERSION, spec.ISCSI_VERSION, len(text), isid,
                                  tsih, itt, self._next_stat_sn(), exp, mx, 0, 0)
        self._send(hdr, text)

    def _login_identify(self, keys: dict[str, str], answers: list[tuple[str, str]]) -> LoginStatus | None:
        """First login PDU: who is this, what do they want, may they."""
        iname = keys.get("InitiatorName")
        if not iname:
            return LoginStatus.MISSING_PARAMETER
        self.initiator_name = iname
        stype = keys.get("SessionType", "Normal")
        if stype == "Discovery":
            self._session_type = SessionType.DISCOVERY
            self._auth_req = self.policy.discovery_auth(iname, self.initiator_address)
        elif stype == "Normal":
            tname = keys.get("TargetName")
            if not tname:
                return LoginStatus.MISSING_PARAMETER
            got = self.policy.authorize(tname, iname, self.initiator_address)
            if isinstance(got, LoginStatus):
                return got
            self.target = got
            self._auth_req = got.auth
        else:
            return LoginStatus.SESSION_TYPE_NOT_SUPPORTED
        leading = self._login_tsih == 0
        if not leading:
            s = self.registry.get(self._login_tsih)
            if (s is None or s.closed or s.initiator_name != iname or s.isid != self.isid
                    or s.session_type is not self._session_type
                    or (s.target.name if s.target else None) != (self.target.name if self.target else None)):
                return LoginStatus.SESSION_DOES_NOT_EXIST
            if self.cid not in s.connections and len(s.connections) >= s.params.max_connections:
                return LoginStatus.TOO_MANY_CONNECTIONS
            self._join = s
        limits = self.config.limits
        if self.target is not None and (self.target.header_digest_required or self.target.data_digest_required):
            limits = Limits(**{k: getattr(limits, k) for k in limits.__dataclass_fields__})
            if self.target.header_digest_required:
                limits.header_digests = ("CRC32C",)
            if self.target.data_digest_required:
                limits.data_digests = ("CRC32C",)
        self._negotiator = Negotiator(limits, leading=leading,
                                      discovery=self._session_type is SessionType.DISCOVERY)
        if self.target is not None:
            answers.append(("TargetPortalGroupTag", str(self.target.portal_group_tag)))
            if self.target.alias:
                answers.append(("TargetAlias", self.target.alias))
        return None

    def _login_security(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        chap_keys: dict[str, str] = {}
        for k, v in pairs:
            if k == "AuthMethod":
                if self._auth_method is not None:
                    raise NegotiationError("AuthMethod negotiated twice")
                req = self._auth_req
                allowed = {AuthRequirement.NONE: ("None",), AuthRequirement.OPTIONAL: ("None", "CHAP"),
                           AuthRequirement.CHAP: ("CHAP",), AuthRequirement.MUTUAL_CHAP: ("CHAP",)}[req]
                choice = next((o for o in v.split(",") if o in allowed), None)
                if choice is None:
                    raise ChapError("no acceptable AuthMethod")
                self._auth_method = choice
                if choice == "CHAP":
                    self._chap = ChapTarget(partial(self._chap_lookup, self.target),
                                            mutual_required=req is AuthRequirement.MUTUAL_CHAP,
                                            token_bytes=self._token_bytes)
                out.append(("AuthMethod", choice))
            elif k.startswith("CHAP_"):
                if k in chap_keys:
                    raise NegotiationError("CHAP key repeated")
                chap_keys[k] = v
        if chap_keys:
            if self._chap is None:
                raise ChapError("CHAP keys without AuthMethod=CHAP")
            out += self._chap.step(chap_keys)
        return out

    def _chap_lookup(self, target: TargetInfo | None, user: str) -> ChapCredentials | None:
        return self.policy.chap_credentials(user, target)

    def _auth_done(self) -> bool:
        m = self._auth_method
        if m == "CHAP":
            return self._chap is not None and self._chap.done
        if m == "None":
            return True
        return self._auth_req in (AuthRequirement.NONE, AuthRequirement.OPTIONAL)

    def _login_finish(self) -> LoginStatus | None:
        neg = self._negotiator
        assert neg is not None
        neg.finish()
        t = self.target
        if t is not None and ((t.header_digest_required and not neg.conn.header_digest)
                              or (t.data_digest_required and not neg.conn.data_digest)):
            return LoginStatus.INITIATOR_ERROR
        if self._join is not None:
            s = self._join
            if s.closed:
                return LoginStatus.SESSION_DOES_NOT_EXIST
            old = s.connections.get(self.cid)
            if old is not None and old is not self:
                old.fail("connection reinstated")
        else:
            old_s = self.registry.find(self.initiator_name, self.isid, t.name if t else None)
            if old_s is not None:
                # Session reinstatement (ERL 0): the old session and its connections go.
                for c in list(old_s.connections.values()):
                    c.fail("session reinstated")
                self.registry.remove(old_s)
            s = self.registry.create(self.isid, self.initiator_name, self._session_type, t, neg.session,
                                     self._login_cmd_sn, self.config.queue_depth)
        s.connections[self.cid] = self
        self.session = s
        return None

    def _enter_full_feature(self) -> None:
        neg = self._negotiator
        assert neg is not None and self.session is not None
        self._hd = neg.conn.header_digest
        self._dd = neg.conn.data_digest
        self.initiator_port = f"{self.initiator_name},i,0x{self.isid.hex()}"
        self.max_send_data = neg.conn.max_send_data_segment
        r = self.reader
        r.header_digest = self._hd
        r.data_digest = self._dd
        r.set_max_data_segment(neg.conn.max_recv_data_segment)
        self._params = self.session.params
        if self.session.discovery:
            for op in list(self._dispatch):
                if op not in DISCOVERY_ACCEPTS:
                    self._dispatch[op] = self._not_in_discovery
        self._events.append(LoginComplete(self.session, self._join is None))

    def _not_in_discovery(self, pdu: Pdu) -> None:
        self._release_staged()
        self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)

    # ==========================================================================================
    # Full Feature Phase: command numbering

    def _order(self, cmd_sn: int, immediate: bool, run: Callable[[], None]) -> bool:
        """CmdSN rules (RFC 7143 section 4.2.2.1).  Runs ``run`` now, later (deferred until
        the gap closes) or never (outside the window: silently dropped).  True if run now."""
        s = self.session
        assert s is not None
        if immediate:
            run()
            return True
        if cmd_sn == s.exp_cmd_sn and sn_le(cmd_sn, s.max_cmd_sn):
            s.exp_cmd_sn = (cmd_sn + 1) & SN_MASK
            run()
            if s.deferred:
                s.advance_deferred()
            return True
        if s.in_window(cmd_sn) and cmd_sn not in s.deferred:
            s.deferred[cmd_sn] = (self, run)
        return False

    def _consume(self, cmd_sn: int, immediate: bool) -> None:
        """A command we refuse (Reject) still uses up its CmdSN and window slot."""
        self._order(cmd_sn, immediate, _noop if immediate else self._command_done)

    def _command_done(self) -> None:
        if self.session is not None:
            self.session.command_done()

    # ==========================================================================================
    # SCSI Command / Data-Out / R2T

    def _place(self, header: memoryview) -> memoryview | None:
        """Where a data segment should go (called by the reader before the PDU is handled)."""
        if self.state is not ConnState.FULL_FEATURE:
            return None
        op = header[0] & spec.OPCODE_MASK
        dlen = _U32.unpack_from(header, 4)[0] & 0xFFFFFF
        if op == Opcode.DATA_OUT:
            cmd = self._cmds.get(_U32.unpack_from(header, spec.OFF_ITT)[0])
            if cmd is None or cmd.buf is None or cmd.delivered:
                return None
            off = _U32.unpack_from(header, 40)[0]
            if off + dlen > cmd.edtl:
                return None
            return memoryview(cmd.buf)[off:off + dlen]
        if op == Opcode.SCSI_CMD and header[1] & spec.CMD_WRITE:
            edtl = _U32.unpack_from(header, 20)[0]
            if dlen > edtl or edtl > self.config.max_write_length or self._staged is not None:
                return None
            self._staged = buf = self.pool.get(edtl)
            return memoryview(buf)[:dlen]
        return None

    def _release_staged(self) -> None:
        if self._staged is not None:
            self.pool.put(self._staged)
            self._staged = None

    def _on_scsi_cmd(self, pdu: Pdu) -> None:
        (b0, flags, _, lun_raw, itt, edtl, cmd_sn, _exp_stat_sn, cdb) = _SCSI_CMD_UNPACK(pdu.header)
        staged = self._staged
        self._staged = None
        immediate = bool(b0 & _IMM)
        if not pdu.data_digest_ok:
            if staged is not None:
                self.pool.put(staged)
            self._reject(RejectReason.DATA_DIGEST_ERROR, pdu.header)
            return self._fail("data digest error on SCSI command")
        if pdu.ahs:
            cdb = self._extended_cdb(pdu, cdb)
            if cdb is None:
                if staged is not None:
                    self.pool.put(staged)
                self._consume(cmd_sn, immediate)
                return self._reject(RejectReason.COMMAND_NOT_SUPPORTED, pdu.header)
        if itt in self._cmds or itt == _R or flags & _RW == _RW:
            if staged is not None:
                self.pool.put(staged)
            self._consume(cmd_sn, immediate)
            reason = RejectReason.COMMAND_NOT_SUPPORTED if itt not in self._cmds and itt != _R else \
                RejectReason.INVALID_PDU_FIELD
            return self._reject(reason, pdu.header)
        free = self._free
        if free:
            cmd = free.pop()
        else:
            cmd = _Cmd(ScsiTask())
            cmd.task.ctx = cmd
            cmd.task.initiator_port = self.initiator_port
        task = cmd.task
        top = lun_raw >> 48
        task.lun = top & 0x3FFF if top >> 14 == 1 else top & 0xFF
        task.cdb = cdb
        task.transfer_length = edtl
        task.tag = itt
        cmd.itt = itt
        cmd.lun_raw = lun_raw
        cmd.immediate = immediate
        cmd.edtl = edtl
        cmd.delivered = False
        cmd.ordered = False
        if flags & _W and edtl:
            task.dxfer_dir = _TO_DEVICE
            cmd.write = True
            dlen = len(pdu.data)
            p = self._params
            if edtl > self.config.max_write_length:
                if staged is not None:
                    self.pool.put(staged)
                self._recycle(cmd)
                self._consume(cmd_sn, immediate)
                return self._reject(RejectReason.INVALID_PDU_FIELD, pdu.header)
            if (dlen and not p.immediate_data) or dlen > edtl or dlen > p.first_burst_length \
                    or (not flags & _F and p.initial_r2t):
                if staged is not None:
                    self.pool.put(staged)
                self._recycle(cmd)
                self._consume(cmd_sn, immediate)
                return self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)
            if staged is None:
                staged = self.pool.get(edtl)
                if dlen:
                    memoryview(staged)[:dlen] = pdu.data
            cmd.buf = staged
            cmd.received = dlen
            cmd.unsol_next = dlen
            cmd.unsol_datasn = 0
            unsol_end = dlen if flags & _F else min(edtl, p.first_burst_length)
            cmd.unsol_end = unsol_end
            cmd.todo = [(unsol_end, edtl - unsol_end)] if unsol_end < edtl else []
            cmd.r2tsn = 0
            task.data_out = [memoryview(staged)[:edtl]]
        else:
            if staged is not None:
                self.pool.put(staged)
            task.dxfer_dir = _FROM_DEVICE if flags & _RD else _NO_DATA
            cmd.write = False
            cmd.received = 0
            cmd.r2tsn = 0
        self._cmds[itt] = cmd
        s = self.session
        assert s is not None
        if immediate or (cmd_sn == s.exp_cmd_sn and ((s.max_cmd_sn - cmd_sn) & SN_MASK) < 0x80000000):
            if not immediate:
                s.exp_cmd_sn = (cmd_sn + 1) & SN_MASK
            cmd.ordered = True
            if not cmd.write or cmd.received >= edtl:
                cmd.delivered = True
                self._events.append(cmd.ready)
            if s.deferred:
                s.advance_deferred()
        elif s.in_window(cmd_sn) and cmd_sn not in s.deferred:
            s.deferred[cmd_sn] = (self, lambda: self._cmd_ordered(cmd))
        else:
            self._drop_cmd(cmd)  # outside the window: silently ignored
            return None
        if cmd.write and cmd.todo:
            self._send_r2ts(cmd)
        return None

    def _cmd_ordered(self, cmd: _Cmd) -> None:
        cmd.ordered = True
        if not cmd.write or cmd.received >= cmd.edtl:
            cmd.delivered = True
            self._events.append(cmd.ready)

    def _extended_cdb(self, pdu: Pdu, cdb: bytes) -> bytes | None:
        ahs = pdu.ahs
        out = cdb
        pos = 0
        while pos + 4 <= len(ahs):
            length, typ = _AHS_HDR.unpack_from(ahs, pos)
            body = bytes(ahs[pos + 4:pos + 3 + length])
            if typ != 1:  # only Extended CDB; bidirectional read length (2) is unsupported
                return None
            out = cdb + body
            pos += 4 + ((length - 1 + 3) & ~3)
        return out

    def _send_r2ts(self, cmd: _Cmd) -> None:
        p = self._params
        exp, mx = self._window()
        todo = cmd.todo
        while todo and len(cmd.r2ts) < p.max_outstanding_r2t:
            off, length = todo[0]
            n = min(length, p.max_burst_length)
            if n == length:
                todo.pop(0)
            else:
                todo[0] = (off + n, length - n)
            ttt = self._new_ttt()
            cmd.r2ts[ttt] = _R2TState(ttt, off, n)
            r2tsn = cmd.r2tsn
            cmd.r2tsn = r2tsn + 1
            self._send(spec.R2T.pack(Opcode.R2T, _F, 0, cmd.lun_raw, cmd.itt, ttt, self.stat_sn, exp, mx, r2tsn,
                                     off, n))

    def _on_data_out(self, pdu: Pdu) -> None:
        (_, flags, _, _lun, itt, ttt, _esn, datasn, off) = spec.DATA_OUT.unpack_from(pdu.header)
        if not pdu.data_digest_ok:
            self._reject(RejectReason.DATA_DIGEST_ERROR, pdu.header)
            return self._fail("data digest error on Data-Out")
        cmd = self._cmds.get(itt)
        if cmd is None or not cmd.write or cmd.delivered or cmd.buf is None:
            return self._reject(RejectReason.INVALID_PDU_FIELD, pdu.header)
        data = pdu.data
        n = len(data)
        if ttt == _R:
            if off != cmd.unsol_next or off + n > cmd.unsol_end or datasn != cmd.unsol_datasn:
                self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)
                return self._fail("unsolicited Data-Out out of order or beyond FirstBurstLength")
            cmd.unsol_next = off + n
            cmd.unsol_datasn = datasn + 1
            if flags & _F and cmd.unsol_next < cmd.unsol_end:
                # Unsolicited burst ended early: solicit the gap too.
                cmd.todo.append((cmd.unsol_next, cmd.unsol_end - cmd.unsol_next))
                cmd.unsol_end = cmd.unsol_next
            r2t = None
        else:
            r2t = cmd.r2ts.get(ttt)
            if r2t is None or off != r2t.next or off + n > r2t.end or datasn != r2t.datasn:
                self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)
                return self._fail("Data-Out outside its R2T")
            r2t.next = off + n
            r2t.datasn = datasn + 1
        if not pdu.placed and n:
            memoryview(cmd.buf)[off:off + n] = data
        cmd.received += n
        if r2t is not None and r2t.next == r2t.end:
            del cmd.r2ts[ttt]
        if cmd.todo and len(cmd.r2ts) < self._params.max_outstanding_r2t:
            self._send_r2ts(cmd)
        if cmd.received >= cmd.edtl and cmd.ordered:
            cmd.delivered = True
            self._events.append(cmd.ready)

    # ==========================================================================================
    # Completion

    def complete_task(self, task: ScsiTask) -> list[Buffer]:
        """The SCSI layer finished ``task``: queue Data-In/SCSI Response and return everything
        to send.  The task object is recycled: do not touch it afterwards."""
        cmd = task.ctx
        if type(cmd) is not _Cmd or cmd.task is not task:
            raise LocalProtocolError("task does not belong to this connection")
        if self._cmds.pop(cmd.itt, None) is not cmd:
            raise LocalProtocolError("task already completed")
        s = self.session
        if self.state is not ConnState.FULL_FEATURE or s is None:
            self._recycle(cmd)
            return self.data_to_send()
        if not cmd.immediate:
            s.max_cmd_sn = (s.max_cmd_sn + 1) & SN_MASK
        if task.aborted:
            self._recycle(cmd)
            return self.data_to_send()
        edtl = cmd.edtl
        status = task.status
        sense = task.sense
        n = task.data_in_length if task.dxfer_dir is _FROM_DEVICE else 0
        if n > edtl:
            send, rflags, residual = edtl, spec.RSP_OVERFLOW, n - edtl
        elif n < edtl and task.dxfer_dir is _FROM_DEVICE:
            send, rflags, residual = n, spec.RSP_UNDERFLOW, edtl - n
        elif task.write_length >= 0 and task.write_length != edtl:
            # A write whose CDB asks for more (overflow) or less (underflow) than EDTL.
            wl = task.write_length
            send = 0
            rflags, residual = (spec.RSP_OVERFLOW, wl - edtl) if wl > edtl else (spec.RSP_UNDERFLOW, edtl - wl)
        else:
            send, rflags, residual = n, 0, 0
        exp, mx = s.exp_cmd_sn, s.max_cmd_sn
        datasn = 0
        if send:
            collapse = not sense
            mrdsl = self.max_send_data
            views = task.data_in
            if len(views) == 1 and send <= mrdsl and send <= self._params.max_burst_length \
                    and len(views[0]) >= send:
                # Hot path: one Data-In PDU.
                v = views[0]
                data = v if len(v) == send else v[:send]
                if collapse:
                    sn = self.stat_sn
                    self.stat_sn = (sn + 1) & SN_MASK
                    hdr = _DATA_IN_PACK(_OP_DATA_IN, _F_S | rflags, status, send, cmd.lun_raw, cmd.itt, _R,
                                        sn, exp, mx, 0, 0, residual)
                    if not self._hd and not self._dd and not send & 3:
                        out = self._out
                        out.append(hdr)
                        out.append(data)
                        self._recycle(cmd)
                        self._out = []
                        return out
                else:
                    hdr = _DATA_IN_PACK(_OP_DATA_IN, _F, 0, send, cmd.lun_raw, cmd.itt, _R, 0, exp, mx, 0, 0, 0)
                self._send(hdr, data)
                datasn = 1
            else:
                datasn = self._data_in_many(cmd, views, send, collapse, status, rflags, residual, exp, mx)
            if collapse:
                self._recycle(cmd)
                return self.data_to_send()
        if sense:
            body = _SENSE_LEN.pack(len(sense)) + bytes(sense)
        else:
            body = b""
        hdr = spec.SCSI_RSP.pack(Opcode.SCSI_RSP, _F | rflags, spec.ScsiResponse.COMPLETED, status,
                                 len(body), cmd.itt, 0, self._next_stat_sn(), exp, mx,
                                 datasn if not cmd.write else cmd.r2tsn, 0, residual)
        self._send(hdr, body)
        self._recycle(cmd)
        return self.data_to_send()

    def _data_in_many(self, cmd: _Cmd, views: list[memoryview], send: int, collapse: bool, status: int,
                      rflags: int, residual: int, exp: int, mx: int) -> int:
        mrdsl = self.max_send_data
        mbl = self._params.max_burst_length
        vi = voff = 0
        offset = datasn = 0
        burst_left = mbl
        out = self._out
        while offset < send:
            seg = min(mrdsl, send - offset, burst_left)
            parts: list[memoryview] = []
            need = seg
            while need:
                if vi >= len(views):
                    raise LocalProtocolError("task.data_in shorter than data_in_length")
                v = views[vi]
                take = min(len(v) - voff, need)
                if take:
                    parts.append(v[voff:voff + take])
                voff += take
                need -= take
                if voff >= len(v):
                    vi += 1
                    voff = 0
            last = offset + seg == send
            burst_left -= seg
            flags = _F if (last or burst_left == 0) else 0
            if burst_left == 0:
                burst_left = mbl
            if last and collapse:
                hdr = spec.DATA_IN.pack(Opcode.DATA_IN, _F | spec.DATAIN_STATUS | rflags, status,
                                        spec.lengths_word(0, seg), cmd.lun_raw, cmd.itt, _R, self._next_stat_sn(),
                                        exp, mx, datasn, offset, residual)
            else:
                hdr = spec.DATA_IN.pack(Opcode.DATA_IN, flags, 0, spec.lengths_word(0, seg), cmd.lun_raw, cmd.itt,
                                        _R, 0, exp, mx, datasn, offset, 0)
            out.append(hdr)
            if self._hd:
                out.append(_DIGEST.pack(_crc(hdr)))
            out.extend(parts)
            pad = _PADS[seg & 3]
            if pad:
                out.append(pad)
            if self._dd:
                crc = 0
                for p in parts:
                    crc = _crc(p, crc)
                if pad:
                    crc = _crc(pad, crc)
                out.append(_DIGEST.pack(crc))
            offset += seg
            datasn += 1
        return datasn

    def _recycle(self, cmd: _Cmd) -> None:
        if cmd.buf is not None:
            self.pool.put(cmd.buf)
            cmd.buf = None
        if cmd.r2ts:
            cmd.r2ts.clear()
        if cmd.todo:
            cmd.todo = []
        # Lighter than ScsiTask.reset(): the next command overwrites lun/cdb/dir/length/tag.
        task = cmd.task
        task.status = 0
        task.sense = b""
        task.data_in = []
        task.data_in_length = 0
        task.write_length = -1
        task.aborted = False
        task.on_complete = None
        if task.data_out:
            task.data_out = []
        if len(self._free) < self.config.max_tasks_cached:
            self._free.append(cmd)

    def _drop_cmd(self, cmd: _Cmd) -> None:
        """Forget a command the SCSI layer never saw (abort before all data arrived)."""
        if self._cmds.get(cmd.itt) is cmd:
            del self._cmds[cmd.itt]
        self._recycle(cmd)

    # ==========================================================================================
    # NOP

    def _on_nop_out(self, pdu: Pdu) -> None:
        (b0, _, _, lun_raw, itt, ttt, cmd_sn, _) = spec.NOP_OUT.unpack_from(pdu.header)
        if not pdu.data_digest_ok:
            return self._reject(RejectReason.DATA_DIGEST_ERROR, pdu.header)
        if itt == _R:
            return None  # answer to our ping (or a bare ExpStatSN update): nothing to send
        data = bytes(pdu.data[:self.max_send_data])
        immediate = bool(b0 & spec.IMMEDIATE)

        def run() -> None:
            s = self.session
            assert s is not None
            if not immediate:
                s.command_done()
            hdr = spec.NOP_IN.pack(Opcode.NOP_IN, _F, len(data), lun_raw, itt, _R, self._next_stat_sn(),
                                   s.exp_cmd_sn, s.max_cmd_sn)
            self._send(hdr, data)

        self._order(cmd_sn, immediate, run)
        return None

    def _on_snack(self, pdu: Pdu) -> None:
        # ErrorRecoveryLevel 0 has no SNACK support.
        self._reject(RejectReason.PROTOCOL_ERROR, pdu.header)

    # ==========================================================================================
    # Task management

    def _on_tmf(self, pdu: Pdu) -> None:
        (b0, flags, _, lun_raw, itt, rtt, cmd_sn, _, _refcmdsn, _) = spec.TASK_MGMT_REQ.unpack_from(pdu.header)
        immediate = bool(b0 & spec.IMMEDIATE)
        top = lun_raw >> 48
        lun = top & 0x3FFF if top >> 14 == 1 else top & 0xFF
        fn = flags & spec.TMF_FUNCTION_MASK
        def run() -> None:
            try:
                func = TmfFunction(fn)
            except ValueError:
                self._tmf_respond(itt, immediate, TmfResponse.REJECTED)
                return
            if func is TmfFunction.TASK_REASSIGN:
                self._tmf_respond(itt, immediate, TmfResponse.REASSIGNMENT_NOT_SUPPORTED)
                return
            if func is TmfFunction.ABORT_TASK:
                found = self._find_cmd(rtt)
                if found is None:
                    self._tmf_respond(itt, immediate, TmfResponse.TASK_DOES_NOT_EXIST)
                    return
                conn, cmd = found
                cmd.r2ts.clear()  # no more R2Ts for it
                cmd.todo = []
                if not cmd.delivered:
                    conn._drop_cmd(cmd)
                    self._tmf_respond(itt, immediate, TmfResponse.COMPLETE)
                    return
                self._events.append(TaskManagementRequest(func, lun, itt, rtt, cmd.task, immediate))
                return
            if func in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET, TmfFunction.LOGICAL_UNIT_RESET,
                        TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
                whole_target = func in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET)
                for conn in self._session_conns():
                    for cmd in list(conn._cmds.values()):
                        if not cmd.delivered and (whole_target or cmd.task.lun == lun):
                            conn._drop_cmd(cmd)
            self._events.append(TaskManagementRequest(func, lun, itt, rtt, None, immediate))

        self._order(cmd_sn, immediate, run)

    def _session_conns(self) -> list[Connection]:
        s = self.session
        return list(s.connections.values()) if s is not None else [self]

    def _find_cmd(self, itt: int) -> tuple[Connection, _Cmd] | None:
        for conn in self._session_conns():
            cmd = conn._cmds.get(itt)
            if cmd is not None:
                return conn, cmd
        return None

    def task_management_done(self, req: TaskManagementRequest, response: TmfResponse) -> list[Buffer]:
        """Queue the Task Management Function Response for ``req``; returns what to send."""
        if self.state is ConnState.FULL_FEATURE:
            self._tmf_respond(req.itt, req.immediate, response)
        return self.data_to_send()

    def _tmf_respond(self, itt: int, immediate: bool, response: TmfResponse) -> None:
        s = self.session
        assert s is not None
        if not immediate:
            s.command_done()
        self._send(spec.TASK_MGMT_RSP.pack(Opcode.TASK_MGMT_RSP, _F, response, 0, itt, self._next_stat_sn(),
                                           s.exp_cmd_sn, s.max_cmd_sn))

    # ==========================================================================================
    # Text (SendTargets, FFP negotiation)

    def _on_text(self, pdu: Pdu) -> None:
        (b0, flags, _, lun_raw, itt, ttt, cmd_sn, _) = spec.TEXT_REQ.unpack_from(pdu.header)
        immediate = bool(b0 & spec.IMMEDIATE)
        if not pdu.data_digest_ok:
            return self._reject(RejectReason.DATA_DIGEST_ERROR, pdu.header)
        data = bytes(pdu.data)
        header = bytes(pdu.header)

        def run() -> None:
            if ttt != _R:
                if ttt != self._text_ttt or not self._text_chunks:
                    self._reject(RejectReason.INVALID_PDU_FIELD, header)
                    return
                self._text_next(itt, lun_raw, immediate)
                return
            self._text_chunks = []  # a new request resets any unfinished response
            try:
                self._text.add(data)
            except NegotiationError:
                self._text.take()
                self._reject(RejectReason.PROTOCOL_ERROR, header)
                return
            if flags & spec.TEXT_CONTINUE:
                self._text_ttt = self._new_ttt()
                self._text_respond(itt, lun_raw, immediate, b"", final=False, ttt=self._text_ttt)
                return
            try:
                pairs = parse_text(self._text.take())
                answers = self._text_answers(pairs)
            except NegotiationError:
                self._reject(RejectReason.PROTOCOL_ERROR, header)
                return
            text = encode_text(answers)
            if len(text) <= self.max_send_data:
                self._text_respond(itt, lun_raw, immediate, text, final=True, ttt=_R)
                return
            self._text_chunks = split_text(text, self.max_send_data)
            self._text_ttt = self._new_ttt()
            self._text_next(itt, lun_raw, immediate)

        self._order(cmd_sn, immediate, run)
        return None

    def _text_next(self, itt: int, lun_raw: int, immediate: bool) -> None:
        chunk = self._text_chunks.pop(0)
        more = bool(self._text_chunks)
        self._text_respond(itt, lun_raw, immediate, chunk, final=not more, ttt=self._text_ttt if more else _R,
                           cont=more)

    def _text_respond(self, itt: int, lun_raw: int, immediate: bool, text: bytes, *, final: bool, ttt: int,
                      cont: bool = False) -> None:
        s = self.session
        assert s is not None
        if not immediate:
            s.command_done()
        flags = (_F if final else 0) | (spec.TEXT_CONTINUE if cont else 0)
        self._send(spec.TEXT_RSP.pack(Opcode.TEXT_RSP, flags, len(text), lun_raw, itt, ttt, self._next_stat_sn(),
                                      s.exp_cmd_sn, s.max_cmd_sn), text)

    def _text_answers(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        rest: list[tuple[str, str]] = []
        s = self.session
        assert s is not None
        for k, v in pairs:
            if k == "SendTargets":
                if v == "All" and not s.discovery:
                    out.append(("SendTargets", "Reject"))
                    continue
                for name, addrs in self.policy.send_targets(v, self.initiator_name, self.initiator_address,
                                                            s.target):
                    out.append(("TargetName", name))
                    out.extend(("TargetAddress", a) for a in addrs)
            else:
                rest.append((k, v))
        if rest:
            neg = Negotiator(self.config.limits, leading=False, discovery=s.discovery)
            out += neg.answer(rest, in_login=False)
            if "MaxRecvDataSegmentLength" in dict(rest) and neg.conn.max_send_data_segment:
                self.max_send_data = neg.conn.max_send_data_segment
        return out

    # ==========================================================================================
    # Logout

    def _on_logout(self, pdu: Pdu) -> None:
        (b0, flags, _, itt, cid, cmd_sn, _) = spec.LOGOUT_REQ.unpack_from(pdu.header)
        immediate = bool(b0 & spec.IMMEDIATE)
        reason = flags & spec.LOGOUT_REASON_MASK

        def run() -> None:
            s = self.session
            assert s is not None
            if not immediate:
                s.command_done()
            close_session = reason == spec.LogoutReason.CLOSE_SESSION
            if reason == spec.LogoutReason.REMOVE_FOR_RECOVERY:
                resp = spec.LogoutResponse.RECOVERY_NOT_SUPPORTED
            elif close_session or cid == self.cid:
                resp = spec.LogoutResponse.SUCCESS
            elif reason == spec.LogoutReason.CLOSE_CONNECTION:
                other = s.connections.get(cid)
                if other is None:
                    resp = spec.LogoutResponse.CID_NOT_FOUND
                else:
                    other.fail("logged out from another connection")
                    resp = spec.LogoutResponse.SUCCESS
            else:
                return self._reject(RejectReason.INVALID_PDU_FIELD, pdu_header)
            self._send(spec.LOGOUT_RSP.pack(Opcode.LOGOUT_RSP, _F, resp, 0, itt, self._next_stat_sn(),
                                            s.exp_cmd_sn, s.max_cmd_sn, s.params.default_time2wait, 0))
            if resp == spec.LogoutResponse.SUCCESS and (close_session or cid == self.cid):
                self.state = ConnState.LOGGED_OUT
                self._events.append(LoggedOut(close_session))
                if close_session:
                    for c in list(s.connections.values()):
                        if c is not self:
                            c.fail("session logged out")
                    self.registry.remove(s)
                self._detach()

        pdu_header = bytes(pdu.header)
        self._order(cmd_sn, immediate, run)

    # ==========================================================================================
    # Target-initiated messages

    def request_logout(self, time2wait: int = 0) -> list[Buffer]:
        """Async Message asking the initiator to log out (e.g. target being removed)."""
        if self.state is not ConnState.FULL_FEATURE:
            raise LocalProtocolError("not in Full Feature Phase")
        exp, mx = self._window()
        self._send(spec.ASYNC_MSG.pack(Opcode.ASYNC_MSG, _F, 0, 0, _R, self._next_stat_sn(), exp, mx,
                                       spec.AsyncEvent.LOGOUT_REQUEST, 0, 0, 0, time2wait))
        return self.data_to_send()


def _noop() -> None:
    return None
