"""Full Feature Phase control PDUs: NOP-Out/In, SNACK, task management, Text (SendTargets),
Logout and the asynchronous logout request."""
from __future__ import annotations

from spydk.iscsi import spec
from spydk.iscsi.conn_core import (
    _F,
    _R,
    ConnectionCore,
    ConnState,
    LocalProtocolError,
    LoggedOut,
    TaskManagementRequest,
    _Cmd,
)
from spydk.iscsi.negotiation import (
    NegotiationError,
    Negotiator,
    encode_text,
    parse_text,
    split_text,
)
from spydk.iscsi.pdu import Buffer, Pdu
from spydk.iscsi.spec import Opcode, RejectReason
from spydk.scsi.task import TmfFunction, TmfResponse


class ControlPhase(ConnectionCore):
    """Mixin of Connection: everything but SCSI commands in Full Feature Phase."""

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

    def _session_conns(self) -> list[ConnectionCore]:
        s = self.session
        return list(s.connections.values()) if s is not None else [self]

    def _find_cmd(self, itt: int) -> tuple[ConnectionCore, _Cmd] | None:
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

    def request_logout(self, time2wait: int = 0) -> list[Buffer]:
        """Async Message asking the initiator to log out (e.g. target being removed)."""
        if self.state is not ConnState.FULL_FEATURE:
            raise LocalProtocolError("not in Full Feature Phase")
        exp, mx = self._window()
        self._send(spec.ASYNC_MSG.pack(Opcode.ASYNC_MSG, _F, 0, 0, _R, self._next_stat_sn(), exp, mx,
                                       spec.AsyncEvent.LOGOUT_REQUEST, 0, 0, 0, time2wait))
        return self.data_to_send()
