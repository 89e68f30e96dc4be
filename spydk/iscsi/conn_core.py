"""The iSCSI connection's core: events, states, per-task records, input, output and timers."""
from __future__ import annotations

import enum
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from crc32c import crc32c as _crc

from spydk.iscsi import spec
from spydk.iscsi.chap import ChapTarget
from spydk.iscsi.negotiation import (
    Limits,
    Negotiator,
    SessionParams,
    TextCollector,
)
from spydk.iscsi.pdu import Buffer, Pdu, PduError, PduReader
from spydk.iscsi.session import (
    SN_MASK,
    AuthRequirement,
    BufferPool,
    Session,
    SessionRegistry,
    SessionType,
    TargetInfo,
    TargetPolicy,
)
from spydk.iscsi.spec import LoginStatus, Opcode, RejectReason, Stage
from spydk.scsi.task import DataDir, ScsiTask, TmfFunction

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
    # Immediate commands skip the CmdSN window, so they are bounded on their own (per
    # connection): more are rejected with "too many immediate commands" (RFC 7143 11.17.1).
    max_immediate_commands: int = 8
    max_immediate_bytes: int = 16 << 20  # write buffers of outstanding immediate commands
    # Write buffers of one connection's outstanding commands: a write that would go past it
    # (unless nothing else is outstanding) completes with TASK SET FULL and the initiator
    # retries it, so an initiator withholding Data-Out cannot make the target hold
    # queue depth x 32 MiB.
    max_write_buffer_bytes: int = 64 << 20
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
                 "write", "conn_epoch", "ready", "busy")

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
        self.busy = False  # refused with TASK SET FULL (no write buffer left for it)



class ConnectionCore:
    """State, input, output and timers of a connection; the phases are mixins (login.py,
    commands.py, control.py) and conn.Connection assembles them."""

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
        # Failures counted where they end the connection (never on the I/O path): metrics.
        self.digest_errors = 0
        self.pdu_errors = 0
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
                self.pdu_errors += 1
                if "digest" in e.reason:
                    self.digest_errors += 1
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
                if reader.needs_input():
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
        # The dispatch table and the reader's placement callback are bound methods of ours:
        # drop them so that the connection and its receive buffer go now, not at the next
        # cyclic collection (nothing is parsed after the transport closed).
        self._dispatch = {}
        self.reader.place = None

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

    # ==========================================================================================
    # Full Feature Phase: command numbering

    # ==========================================================================================
    # SCSI Command / Data-Out / R2T

    # ==========================================================================================
    # Completion

    # ==========================================================================================
    # NOP

    # ==========================================================================================
    # Task management

    # ==========================================================================================
    # Text (SendTargets, FFP negotiation)

    # ==========================================================================================
    # Logout

    # ==========================================================================================
    # Target-initiated messages


    # -- provided by the phase mixins (login.py, commands.py, control.py) ----------------------

    def _place(self, header: memoryview) -> memoryview | None:
        raise NotImplementedError

    def _on_nop_out(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_scsi_cmd(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_tmf(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_text(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_data_out(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_logout(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _on_snack(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _login_fail(self, status: LoginStatus, pdu: Pdu | None, reason: str) -> None:
        raise NotImplementedError

    def _release_staged(self) -> None:
        raise NotImplementedError

    def _on_login(self, pdu: Pdu) -> None:
        raise NotImplementedError

    def _drop_cmd(self, cmd: _Cmd) -> None:
        raise NotImplementedError

    def _order(self, cmd_sn: int, immediate: bool, run: Callable[[], None]) -> bool:
        raise NotImplementedError


def _noop() -> None:
    return None
