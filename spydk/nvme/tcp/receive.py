"""The receive side of the NVMe/TCP codec: the receive ring, PDU parsing, per-type checks.

One way in: the transport receives into ``get_buffer()`` and reports ``buffer_updated(n)``
(asyncio.BufferedProtocol's pair); ``eof_received()`` at EOF. Events come out in the
``pending_events`` deque, in order. ``receive_data(data)`` and ``next_event()`` are the same
thing for callers without a buffer protocol (tests, simple initiators): they go through
get_buffer/buffer_updated and pop pending_events.
"""
from __future__ import annotations

from crc32c import crc32c

from spydk.nvme import spec
from spydk.nvme.spec.tcp import (
    CAPSULE_CMD_HLEN,
    CAPSULE_RESP_HLEN,
    DDGSTF,
    DIGEST_LEN,
    HDGSTF,
    IC_HLEN,
    IC_REQ,
    IC_RESP,
    LAST_PDU,
    MAX_PDA,
    MIN_MAXH2CDATA,
    SUCCESS,
    TERM_REQ,
    TERM_REQ_HLEN,
    TERM_REQ_MAX_DATA,
    TERM_REQ_MAX_PLEN,
    Fes,
    PduType,
)
from spydk.nvme.tcp.events import (
    Buffer,
    C2HData,
    CapsuleCommand,
    CapsuleResponse,
    ConnectionClosed,
    DataDigestError,
    Event,
    H2CData,
    ICReqReceived,
    ICRespReceived,
    LocalProtocolError,
    ProtocolError,
    R2TReceived,
    TermReqReceived,
)
from spydk.nvme.tcp.pdu import (
    _C2H_DIR,
    _CH_UNPACK,
    _DATA_PSH_UNPACK,
    _H2C_DIR,
    _HLEN,
    _MAX_PAD,
    _U16_UNPACK,
    _U32_UNPACK,
    AWAIT_IC,
    CLOSED,
    IC_PENDING,
    READY,
    Pending,
    QueuePairState,
    _new_object,
    _unexported,
)


class PduReceiver(QueuePairState):
    """Mixin of TcpQueuePair: bytes in, events out."""

    @property
    def closed(self) -> bool:
        return self._state == CLOSED

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable buffer for the transport to receive into (asyncio.BufferedProtocol).

        Once closed, the ring is still handed out but buffer_updated() discards what lands."""
        p = self._pending
        if p is not None and not self._ddgst_wait:
            return p.dest[p.filled:]
        rend = self._rend
        free = self._ring_size - rend
        # Wrap when the tail has become small or cannot hold the rest of the current PDU.
        if free < self._low_water or free < self._need - rend + self._rpos:
            self._make_room()
            rend = self._rend
        return self._rview[rend:]

    def buffer_updated(self, nbytes: int) -> None:
        """The transport wrote nbytes into the last buffer from get_buffer(); parses them."""
        if nbytes <= 0 or self._state == CLOSED:
            return
        p = self._pending
        if p is not None and not self._ddgst_wait:
            p.filled += nbytes
            if p.filled > p.length:
                raise LocalProtocolError("buffer_updated beyond the buffer given")
        else:
            self._rend += nbytes
            if self._rend > self._ring_size:
                raise LocalProtocolError("buffer_updated beyond the buffer given")
        self._parse()

    def receive_data(self, data: Buffer) -> None:
        """Feed received bytes (copying them in); b"" means EOF."""
        n = len(data)
        if n == 0:
            self.eof_received()
            return
        mv = data if isinstance(data, bytes) else memoryview(data).cast("B")
        pos = 0
        while pos < n and self._state != CLOSED:
            buf = self.get_buffer(n - pos)
            k = min(len(buf), n - pos)
            buf[:k] = mv[pos:pos + k]
            self.buffer_updated(k)
            pos += k

    def eof_received(self) -> None:
        """The peer closed its side; queues ConnectionClosed unless already closed."""
        if self._eof:
            return
        self._eof = True
        if self._state != CLOSED:
            clean = self._rend == self._rpos and self._pending is None
            self._state = CLOSED
            self._pending = None
            self._events.append(ConnectionClosed(clean=clean))

    def next_event(self) -> Event | None:
        """The next event, or None when more data is needed (or the connection is closed)."""
        evs = self._events
        return evs.popleft() if evs else None

    def events(self) -> list[Event]:
        """All events available now."""
        out = list(self._events)
        self._events.clear()
        return out

    def _parse(self) -> None:
        append = self._events.append
        new_event = _new_object
        fast_plen = self._cmd_fast_plen
        fast_flags = self._cmd_fast_flags
        closed = CLOSED
        while self._state != closed:
            if self._pending is None:
                rpos = self._rpos
                avail = self._rend - rpos
                if avail < 8:
                    return
                # Fast path: a header-only CapsuleCmd (reads, flushes, admin commands).
                if avail >= fast_plen > 0:
                    ring = self._rview
                    ptype, flags, hlen, pdo, plen = _CH_UNPACK(ring, rpos)
                    if ptype == 4 and hlen == 72:
                        if plen == fast_plen and flags == fast_flags:
                            if fast_flags and crc32c(ring[rpos:rpos + 72]) != _U32_UNPACK(ring, rpos + 72)[0]:
                                append(self._fail(Fes.HEADER_DIGEST_ERROR, 0, "header digest mismatch"))
                                return
                            self._rpos = rpos + plen
                            ev = new_event(CapsuleCommand)  # no Python-level __init__ call
                            ev.sqe = ring[rpos + 8:rpos + 72]
                            ev.data = None
                            append(ev)
                            continue
                        # In-capsule data, no digests, no padding, all of it in the ring.
                        if (not flags and pdo == self._cmd_data_pdo and avail >= plen
                                and 72 < plen <= 72 + self.max_incapsule_data):
                            self._rpos = rpos + plen
                            self._need = 0
                            ev = new_event(CapsuleCommand)
                            ev.sqe = ring[rpos + 8:rpos + 72]
                            ev.data = ring[rpos + 72:rpos + plen]
                            append(ev)
                            continue
            other = self._parse_one()
            if other is None:
                return
            append(other)

    def _make_room(self) -> None:
        live = self._rend - self._rpos
        ring = self._ring
        self._rview.release()
        if _unexported(ring):
            ring[0:live] = ring[self._rpos:self._rend]
        else:
            spares = self._spare_rings
            for new in spares:
                if _unexported(new):
                    spares.remove(new)
                    break
            else:
                new = bytearray(self._ring_size)
            new[0:live] = ring[self._rpos:self._rend]
            spares.append(ring)  # the oldest spare drops out when the deque is full
            self._ring = ring = new
        self._rview = memoryview(ring)
        self._rpos = 0
        self._rend = live

    def _parse_one(self) -> Event | None:
        """Parse one PDU from the ring; None when more bytes are needed."""
        if self._pending is not None:
            return self._finish_pending()
        rpos = self._rpos
        avail = self._rend - rpos
        if avail < 8:
            return None
        ring = self._rview
        ptype, flags, hlen, pdo, plen = _CH_UNPACK(ring, rpos)
        # Fast path: header-only or data-in-ring CapsuleCmd / H2CData / C2HData / CapsuleResp.
        if ptype not in self._rx_types:
            return self._fail(Fes.INVALID_HEADER_FIELD, 0, "unexpected PDU type")
        if hlen != _HLEN[ptype]:
            return self._fail(Fes.INVALID_HEADER_FIELD, 2, "wrong HLEN for PDU type")
        if ptype <= 3:
            return self._rx_control(ptype, flags, hlen, plen, avail)
        if self._state != READY:
            return self._fail(Fes.PDU_SEQUENCE_ERROR, 0, "PDU before connection initialization")
        hd = self._hd
        if (flags & HDGSTF) != (hd and HDGSTF):
            return self._fail(Fes.INVALID_HEADER_FIELD, 1, "header digest flag mismatch")
        hend = hlen + hd
        if plen < hend:
            return self._fail(Fes.INVALID_HEADER_FIELD, 4, "PLEN shorter than header")
        dd = 0
        dlen = 0
        if plen > hend:
            if ptype == 5 or ptype == 9:
                return self._fail(Fes.INVALID_HEADER_FIELD, 4, "PLEN too long for PDU type")
            if flags & DDGSTF:
                if not self.data_digest:
                    return self._fail(Fes.INVALID_HEADER_FIELD, 1, "data digest not negotiated")
                dd = DIGEST_LEN
            elif self.data_digest:
                return self._fail(Fes.INVALID_HEADER_FIELD, 1, "data digest flag missing")
            if pdo < hend or pdo > hend + _MAX_PAD or pdo + dd > plen:
                return self._fail(Fes.INVALID_HEADER_FIELD, 3, "bad PDO")
            align = self._rx_align
            if align and pdo % align:
                return self._fail(Fes.INVALID_HEADER_FIELD, 3, "PDO not aligned")
            dlen = plen - pdo - dd
            if dlen == 0:
                return self._fail(Fes.INVALID_HEADER_FIELD, 4, "empty data section")
        elif flags & DDGSTF:
            return self._fail(Fes.INVALID_HEADER_FIELD, 1, "data digest flag without data")
        # Per-type length limits, decided before waiting for (or allocating) the payload.
        if ptype == 4:
            if dlen > self.max_incapsule_data:
                return self._fail(Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 4, "in-capsule data too long")
        elif ptype == 6 or ptype == 7:
            if dlen == 0:
                return self._fail(Fes.INVALID_HEADER_FIELD, 4, "data PDU without data")
        need = pdo if dlen else hend
        if avail < need:
            self._need = need
            return None
        if hd:
            got = _U32_UNPACK(ring, rpos + hlen)[0]
            if crc32c(ring[rpos:rpos + hlen]) != got:
                return self._fail(Fes.HEADER_DIGEST_ERROR, 0, "header digest mismatch")
        if ptype == 4:
            return self._rx_capsule_cmd(flags, rpos, pdo, plen, dlen, avail)
        if ptype == 6 or ptype == 7:
            return self._rx_data(ptype, flags, rpos, pdo, plen, dlen, avail)
        if ptype == 5:
            return self._rx_capsule_resp(rpos, plen)
        return self._rx_r2t(rpos, plen)

    def _rx_control(self, ptype: int, flags: int, hlen: int, plen: int, avail: int) -> Event | None:
        """ICReq, ICResp and TermReqs: never digested, fixed small sizes."""
        rpos = self._rpos
        ring = self._rview
        if ptype >= 2:  # TermReq from the peer
            if plen < TERM_REQ_HLEN or plen > TERM_REQ_MAX_PLEN:
                # No TermReq in answer to a TermReq: just close.
                return self._fail(Fes.INVALID_HEADER_FIELD, 4, "malformed TermReq", reply=False)
            if avail < plen:
                self._need = plen
                return None
            _, _, _, _, _, fes, fei = TERM_REQ.unpack_from(ring, rpos)
            data = bytes(ring[rpos + TERM_REQ_HLEN:rpos + plen])
            self._consume(plen)
            self._state = CLOSED
            return TermReqReceived(fes=fes, fei=fei, pdu_header=data)
        if self._state != AWAIT_IC:
            return self._fail(Fes.PDU_SEQUENCE_ERROR, 0, "unexpected connection initialization PDU")
        if plen != IC_HLEN:
            return self._fail(Fes.INVALID_HEADER_FIELD, 4, "IC PDU PLEN must be 128")
        if avail < IC_HLEN:
            self._need = IC_HLEN
            return None
        if ptype == PduType.IC_REQ:
            _, _, _, _, _, pfv, hpda, dgst, maxr2t = IC_REQ.unpack_from(ring, rpos)
            if pfv != 0:
                return self._fail(Fes.UNSUPPORTED_PARAMETER, 8, "unsupported PFV")
            if hpda > MAX_PDA:
                return self._fail(Fes.INVALID_HEADER_FIELD, 10, "HPDA out of range")
            self._consume(IC_HLEN)
            self.hpda = hpda
            self.maxr2t = maxr2t
            self._req_hdgst = bool(dgst & 1)
            self._req_ddgst = bool(dgst & 2)
            self._state = IC_PENDING
            return ICReqReceived(pfv=pfv, hpda=hpda, header_digest=self._req_hdgst,
                                 data_digest=self._req_ddgst, maxr2t=maxr2t)
        _, _, _, _, _, pfv, cpda, dgst, maxh2cdata = IC_RESP.unpack_from(ring, rpos)
        if pfv != 0:
            return self._fail(Fes.UNSUPPORTED_PARAMETER, 8, "unsupported PFV")
        if cpda > MAX_PDA:
            return self._fail(Fes.INVALID_HEADER_FIELD, 10, "CPDA out of range")
        if (dgst & 1 and not self._req_hdgst) or (dgst & 2 and not self._req_ddgst) or dgst & ~3:
            return self._fail(Fes.INVALID_HEADER_FIELD, 11, "digest not requested")
        if maxh2cdata < MIN_MAXH2CDATA or maxh2cdata % 4:
            return self._fail(Fes.INVALID_HEADER_FIELD, 12, "MAXH2CDATA invalid")
        self._consume(IC_HLEN)
        self.cpda = cpda
        self.maxh2cdata = maxh2cdata
        self.header_digest = bool(dgst & 1)
        self.data_digest = bool(dgst & 2)
        self._negotiated()
        return ICRespReceived(pfv=pfv, cpda=cpda, header_digest=self.header_digest,
                              data_digest=self.data_digest, maxh2cdata=maxh2cdata)

    def _consume(self, n: int) -> None:
        self._rpos += n
        self._need = 0

    def _rx_capsule_cmd(self, flags: int, rpos: int, pdo: int, plen: int, dlen: int,
                        avail: int) -> Event | None:
        ring = self._rview
        if dlen == 0:
            self._rpos = rpos + plen
            self._need = 0
            return CapsuleCommand(ring[rpos + 8:rpos + CAPSULE_CMD_HLEN], None)
        if avail >= plen:
            data = ring[rpos + pdo:rpos + pdo + dlen]
            self._rpos = rpos + plen
            self._need = 0
            if flags & DDGSTF and crc32c(data) != _U32_UNPACK(ring, rpos + pdo + dlen)[0]:
                return DataDigestError(PduType.CAPSULE_CMD, _U16_UNPACK(ring, rpos + 10)[0])
            return CapsuleCommand(ring[rpos + 8:rpos + CAPSULE_CMD_HLEN], data)
        if plen <= self._ring_size:
            self._need = plen
            return None
        # Larger than the ring (only with a huge max_incapsule_data): a buffer of its own.
        sqe = bytes(ring[rpos + 8:rpos + CAPSULE_CMD_HLEN])
        cid = _U16_UNPACK(sqe, 2)[0]
        return self._start_pending(4, flags, cid, 0, 0, memoryview(bytearray(dlen)), pdo, dlen, sqe)

    def _rx_data(self, ptype: int, flags: int, rpos: int, pdo: int, plen: int, dlen: int,
                 avail: int) -> Event | None:
        ring = self._rview
        cccid, ttag, datao, datal = _DATA_PSH_UNPACK(ring, rpos + 8)
        if datal != dlen:
            return self._fail(Fes.INVALID_HEADER_FIELD, 16, "DATAL does not match PLEN")
        dest: memoryview | None
        if ptype == 6:  # H2CData, controller side
            r2t = self._r2ts.get(ttag)
            if r2t is None:
                return self._fail(Fes.INVALID_HEADER_FIELD, 10, "unknown TTAG")
            if r2t.cccid != cccid:
                return self._fail(Fes.INVALID_HEADER_FIELD, 8, "CCCID does not match the R2T")
            if datal > self.maxh2cdata:
                return self._fail(Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 16, "H2C data over MAXH2CDATA")
            if datao != r2t.next:
                return self._fail(Fes.DATA_TRANSFER_OUT_OF_RANGE, 12, "DATAO not the expected offset")
            if datao + datal > r2t.end:
                return self._fail(Fes.DATA_TRANSFER_OUT_OF_RANGE, 16, "data beyond the R2T")
            r2t.next = datao + datal
            dest = r2t.dest
            if dest is not None:
                dest = dest[datao - r2t.base:datao - r2t.base + datal]
        else:  # C2HData, host side
            cmd = self._cmds.get(cccid)
            if cmd is None or not cmd.direction & _C2H_DIR:
                return self._fail(Fes.INVALID_HEADER_FIELD, 8, "C2H data for no read command")
            if flags & SUCCESS and not flags & LAST_PDU:
                return self._fail(Fes.INVALID_HEADER_FIELD, 1, "SUCCESS without LAST_PDU")
            if datao != cmd.next:
                return self._fail(Fes.DATA_TRANSFER_OUT_OF_RANGE, 12, "DATAO not the expected offset")
            if datao + datal > cmd.length:
                return self._fail(Fes.DATA_TRANSFER_OUT_OF_RANGE, 16, "data beyond the command")
            cmd.next = datao + datal
            dest = cmd.dest
            if dest is not None:
                dest = dest[datao:datao + datal]
        if avail >= plen and dest is None:
            data = ring[rpos + pdo:rpos + pdo + dlen]
            self._rpos = rpos + plen
            self._need = 0
            bad = bool(flags & DDGSTF) and crc32c(data) != _U32_UNPACK(ring, rpos + pdo + dlen)[0]
            return self._data_event(ptype, flags, cccid, ttag, datao, data, bad)
        if dest is None:
            if plen <= self._ring_size:
                # Undo the offset bookkeeping: the header is parsed again once the PDU is in.
                if ptype == 6:
                    self._r2ts[ttag].next = datao
                else:
                    self._cmds[cccid].next = datao
                self._need = plen
                return None
            dest = memoryview(bytearray(dlen))
        return self._start_pending(ptype, flags, cccid, ttag, datao, dest, pdo, dlen, None)

    def _start_pending(self, ptype: int, flags: int, cccid: int, ttag: int, offset: int,
                       dest: memoryview, pdo: int, dlen: int, sqe: bytes | None) -> Event | None:
        """Steer a payload to dest: copy what is already buffered, receive the rest directly."""
        rpos = self._rpos
        start = rpos + pdo
        have = min(self._rend - start, dlen)
        if have > 0:
            dest[:have] = self._rview[start:start + have]
        else:
            have = 0
        self._rpos = start + have
        self._need = 0
        self._pending = Pending(ptype, flags, cccid, ttag, offset, dest, dlen, have, sqe)
        self._ddgst_wait = have == dlen
        return self._finish_pending()

    def _finish_pending(self) -> Event | None:
        p = self._pending
        assert p is not None
        if p.filled < p.length:
            return None
        self._ddgst_wait = True
        bad = False
        if p.flags & DDGSTF:
            if self._rend - self._rpos < DIGEST_LEN:
                self._need = DIGEST_LEN
                return None
            got = _U32_UNPACK(self._rview, self._rpos)[0]
            self._rpos += DIGEST_LEN
            bad = crc32c(p.dest) != got
        self._need = 0
        self._pending = None
        self._ddgst_wait = False
        if p.ptype == 4:
            if bad:
                return DataDigestError(PduType.CAPSULE_CMD, p.cccid)
            assert p.sqe is not None
            return CapsuleCommand(memoryview(p.sqe), p.dest)
        return self._data_event(p.ptype, p.flags, p.cccid, p.ttag, p.offset, p.dest, bad)

    def _data_event(self, ptype: int, flags: int, cccid: int, ttag: int, offset: int,
                    data: memoryview, bad: bool) -> Event:
        if ptype == 6:
            r2t = self._r2ts[ttag]
            last = r2t.next == r2t.end
            if last:
                del self._r2ts[ttag]
                n = self._r2t_count[cccid] - 1
                if n:
                    self._r2t_count[cccid] = n
                else:
                    del self._r2t_count[cccid]
            if bad:
                return DataDigestError(6, cccid, ttag, offset, len(data), last)
            return H2CData(cccid, ttag, offset, data, last)
        last = bool(flags & LAST_PDU)
        success = bool(flags & SUCCESS)
        if success:
            del self._cmds[cccid]
        if bad:
            return DataDigestError(7, cccid, 0, offset, len(data), last)
        return C2HData(cccid, offset, data, last, success)

    def _rx_capsule_resp(self, rpos: int, plen: int) -> Event:
        ring = self._rview
        cid = _U16_UNPACK(ring, rpos + 8 + spec.CQE_OFF_CID)[0]
        if self._cmds.pop(cid, None) is None:
            return self._fail(Fes.INVALID_HEADER_FIELD, 8 + spec.CQE_OFF_CID, "response for no command")
        self._rpos = rpos + plen
        self._need = 0
        return CapsuleResponse(cid, ring[rpos + 8:rpos + CAPSULE_RESP_HLEN])

    def _rx_r2t(self, rpos: int, plen: int) -> Event:
        cccid, ttag, r2to, r2tl = _DATA_PSH_UNPACK(self._rview, rpos + 8)
        cmd = self._cmds.get(cccid)
        if cmd is None or not cmd.direction & _H2C_DIR:
            return self._fail(Fes.INVALID_HEADER_FIELD, 8, "R2T for no write command")
        if r2tl == 0:
            return self._fail(Fes.INVALID_HEADER_FIELD, 16, "zero-length R2T")
        if cmd.incapsule or r2to + r2tl > cmd.length:
            return self._fail(Fes.DATA_TRANSFER_OUT_OF_RANGE, 12, "R2T beyond the command's data")
        if cmd.r2ts > self.maxr2t:
            return self._fail(Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 0, "R2T limit exceeded")
        cmd.r2ts += 1
        self._rpos = rpos + plen
        self._need = 0
        return R2TReceived(cccid, ttag, r2to, r2tl)

    def _fail(self, fes: int, fei: int, reason: str, *, reply: bool = True) -> ProtocolError:
        """Fatal peer error: build our TermReq carrying the offending header; stop receiving."""
        avail = self._rend - self._rpos
        if avail >= 8:
            hlen = self._rview[self._rpos + 2]
            n = min(avail, max(8, hlen), TERM_REQ_MAX_DATA)
        else:
            n = max(avail, 0)
        header = bytes(self._rview[self._rpos:self._rpos + n])
        term = self._term_req(fes, fei, header) if reply else []
        self._state = CLOSED
        self._pending = None
        return ProtocolError(fes, fei, reason, term)
