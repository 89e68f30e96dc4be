"""Full Feature Phase SCSI commands: CmdSN ordering, immediate and unsolicited data, Data-Out,
R2T, direct placement of write data, Data-In and the SCSI Response."""
from __future__ import annotations

from collections.abc import Callable

from crc32c import crc32c as _crc

from spydk import trace as _trace
from spydk.iscsi import spec
from spydk.iscsi.conn_core import (
    _AHS_HDR,
    _DATA_IN_PACK,
    _DIGEST,
    _F,
    _F_S,
    _FROM_DEVICE,
    _IMM,
    _NO_DATA,
    _OP_DATA_IN,
    _PADS,
    _R,
    _RD,
    _RW,
    _SCSI_CMD_UNPACK,
    _SENSE_LEN,
    _TO_DEVICE,
    _U32,
    _W,
    ConnectionCore,
    ConnState,
    LocalProtocolError,
    _Cmd,
    _noop,
    _R2TState,
)
from spydk.iscsi.pdu import Buffer, Pdu
from spydk.iscsi.session import (
    SN_MASK,
    sn_le,
)
from spydk.iscsi.spec import Opcode, RejectReason
from spydk.scsi.task import ScsiStatus, ScsiTask
from spydk.trace import tpoints as _tp

_TRACE_ISCSI = False
_trace.bind_flag(globals(), "_TRACE_ISCSI", _tp.GROUP_ISCSI)


class CommandPhase(ConnectionCore):
    """Mixin of Connection: SCSI commands and their data."""

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
            if header[0] & _IMM and self._immediate_full(edtl):
                return None  # rejected when handled: nothing is allocated for it
            if self._write_budget_full(edtl):
                return None  # refused when handled (TASK SET FULL)
            self._staged = buf = self.pool.get(edtl)
            return memoryview(buf)[:dlen]
        return None

    def _immediate_full(self, edtl: int) -> bool:
        """True if one more immediate command (with edtl bytes to write) is too many."""
        n = 0
        nbytes = edtl
        for c in self._cmds.values():
            if c.immediate:
                n += 1
                if c.write:
                    nbytes += c.edtl
        cfg = self.config
        return n >= cfg.max_immediate_commands or nbytes > cfg.max_immediate_bytes

    def _write_budget_full(self, edtl: int) -> bool:
        out = getattr(self.pool, "outstanding", 0)
        return out > 0 and out + edtl > self.config.max_write_buffer_bytes

    def _busy_done(self, cmd: _Cmd) -> None:
        """Answer a command refused for want of write buffer room: TASK SET FULL, in order."""
        task = cmd.task
        task.status = ScsiStatus.TASK_SET_FULL
        task.sense = b""
        task.write_length = -1
        self._out = self.complete_task(task)

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
            self.digest_errors += 1
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
        if immediate and self._immediate_full(edtl if flags & _W else 0):
            if staged is not None:
                self.pool.put(staged)
            return self._reject(RejectReason.IMMEDIATE_COMMAND_REJECT, pdu.header)
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
        cmd.busy = False
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
            if staged is None and self._write_budget_full(edtl):
                # No room for its buffer: answered TASK SET FULL when its turn comes.
                cmd.busy = True
                cmd.write = False
                task.dxfer_dir = _NO_DATA
                cmd.received = 0
                cmd.r2tsn = 0
                cmd.todo = []
            elif staged is None:
                staged = self.pool.get(edtl)
                if dlen:
                    memoryview(staged)[:dlen] = pdu.data
        if cmd.busy:
            pass
        elif flags & _W and edtl:
            assert staged is not None
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
            if cmd.busy:
                self._busy_done(cmd)
            elif not cmd.write or cmd.received >= edtl:
                cmd.delivered = True
                if _TRACE_ISCSI:
                    _trace.record(_tp.ISCSI_TASK_QUEUE, id(self), id(cmd.task), cmd.edtl, id(cmd))
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
        if cmd.busy:
            self._busy_done(cmd)
        elif not cmd.write or cmd.received >= cmd.edtl:
            cmd.delivered = True
            if _TRACE_ISCSI:
                _trace.record(_tp.ISCSI_TASK_QUEUE, id(self), id(cmd.task), cmd.edtl, id(cmd))
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
            self.digest_errors += 1
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
            if _TRACE_ISCSI:
                _trace.record(_tp.ISCSI_TASK_QUEUE, id(self), id(cmd.task), cmd.edtl, id(cmd))
            self._events.append(cmd.ready)

    def complete_task(self, task: ScsiTask) -> list[Buffer]:
        """The SCSI layer finished ``task``: queue Data-In/SCSI Response and return everything
        to send.  The task object is recycled: do not touch it afterwards."""
        cmd = task.ctx
        if _TRACE_ISCSI:
            _trace.record(_tp.ISCSI_TASK_DONE, id(self), id(task))
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
        cmd.busy = False
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
