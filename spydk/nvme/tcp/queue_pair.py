"""Sans-IO NVMe/TCP queue pair: PDU codec plus the per-connection state machine.

One ``TcpQueuePair`` object serves either end (``Role.CONTROLLER`` for a target, ``Role.HOST``
for an initiator), in the manner of h11's ``Connection``:

Receiving
    ``get_buffer(sizehint)`` / ``buffer_updated(nbytes)`` match ``asyncio.BufferedProtocol``
    (the transport ``recv_into``s the returned view); ``receive_data(data)`` copies bytes in
    for other transports; ``eof_received()`` (or ``receive_data(b"")``) signals EOF.
    ``next_event()`` then returns one event at a time, or ``None`` when more bytes are needed.
    Hot loops may instead pop from ``pending_events`` (the same deque, in order) directly.

Buffer ownership (why views need no lifetime rule)
    Data and SQE/CQE views in events point into the receive ring without copying. The ring is
    never overwritten while any view into it is alive: when it must wrap, the qpair checks for
    live exports and, if there are any, moves to another ring instead of compacting: a retired
    ring whose views have all gone (a few are kept per qpair), else a fresh one. So a target
    may keep in-capsule or H2C write data (or the SQE) until the bdev write completes; dropping
    the views lets the ring be reused. PDUs larger than the ring (e.g. 128 KiB H2C data) are
    received into a fresh buffer of their own. A caller can also name the destination itself:
    ``send_r2t(..., dest=view)`` (controller) or ``send_capsule_cmd(..., dest=view)`` (host
    reads) make the payload land there (only bytes already received are copied; the rest is
    received straight into it by the next ``get_buffer``).

Parsing is eager: ``buffer_updated``/``receive_data`` parse every complete PDU and queue its
event, so payloads can be steered as soon as their header is in.

Sending
    Every ``send_*`` method returns a list of buffers for one ``sendmsg``/``writelines``;
    payload buffers are passed through, never copied. Digests are computed incrementally.
    The per-I/O encoders also come as ``append_*`` methods that extend a caller's output
    list in place (``append_c2h_data``, ``append_response``): same bytes, no list per PDU.

Errors
    Peer protocol violations never raise: the qpair returns a ``ProtocolError`` event carrying
    the H2C/C2H TermReq to send, then refuses further input. Local misuse raises
    ``LocalProtocolError``. A data digest mismatch is not fatal (framing is intact): it yields
    ``DataDigestError`` and the command should complete with Transient Transport Error.
"""
from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from crc32c import crc32c

from spydk.nvme import spec
from spydk.nvme.spec.tcp import (
    C2H_DATA,
    CAPSULE_CMD_HLEN,
    CAPSULE_RESP_HLEN,
    CH,
    DATA_HLEN,
    DDGSTF,
    DIGEST_LEN,
    H2C_DATA,
    HDGSTF,
    IC_HLEN,
    IC_REQ,
    IC_RESP,
    LAST_PDU,
    MAX_PDA,
    MIN_MAXH2CDATA,
    R2T,
    SUCCESS,
    TERM_REQ,
    TERM_REQ_HLEN,
    TERM_REQ_MAX_DATA,
    TERM_REQ_MAX_PLEN,
    Fes,
    PduType,
    data_offset,
    pda_alignment,
)

Buffer = bytes | bytearray | memoryview


class Role(enum.Enum):
    HOST = "host"
    CONTROLLER = "controller"


class LocalProtocolError(Exception):
    """The caller used the API in a way the protocol state does not allow."""


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ICReqReceived:
    pfv: int
    hpda: int
    header_digest: bool  # requested by the host
    data_digest: bool
    maxr2t: int  # 0's based


@dataclass(slots=True)
class ICRespReceived:
    pfv: int
    cpda: int
    header_digest: bool  # now in force
    data_digest: bool
    maxh2cdata: int


@dataclass(slots=True)
class CapsuleCommand:
    sqe: memoryview  # 64 bytes
    data: memoryview | None  # in-capsule data


@dataclass(slots=True)
class CapsuleResponse:
    cid: int
    cqe: memoryview  # 16 bytes


@dataclass(slots=True)
class H2CData:
    cccid: int
    ttag: int
    offset: int  # DATAO: offset in the command's data
    data: memoryview
    last: bool  # this PDU completes its R2T (the R2T's ttag is now free)


@dataclass(slots=True)
class C2HData:
    cccid: int
    offset: int
    data: memoryview
    last: bool
    success: bool  # the command is complete; no CapsuleResp follows


@dataclass(slots=True)
class R2TReceived:
    cccid: int
    ttag: int
    offset: int
    length: int


@dataclass(slots=True)
class DataDigestError:
    """A payload failed its data digest; the data was dropped, the connection goes on."""

    pdu_type: int
    cccid: int
    ttag: int = 0
    offset: int = 0
    length: int = 0
    last: bool = False  # for H2C data: the R2T is finished (its ttag is free)


@dataclass(slots=True)
class TermReqReceived:
    """The peer terminated the connection; close it."""

    fes: int
    fei: int
    pdu_header: bytes


@dataclass(slots=True)
class ProtocolError:
    """The peer broke the protocol. Send ``term_req`` (may be empty) and close the connection."""

    fes: int
    fei: int
    reason: str
    term_req: list[Buffer]


@dataclass(slots=True)
class ConnectionClosed:
    clean: bool  # EOF fell on a PDU boundary


Event = (ICReqReceived | ICRespReceived | CapsuleCommand | CapsuleResponse | H2CData | C2HData
         | R2TReceived | DataDigestError | TermReqReceived | ProtocolError | ConnectionClosed)


# ---------------------------------------------------------------------------------------------
# Internal state
# ---------------------------------------------------------------------------------------------


# Connection states (plain ints: Enum member lookups are slow on the hot path).
_AWAIT_IC = 0  # controller: waiting for ICReq; host: waiting for ICResp
_IC_PENDING = 1  # controller got ICReq and has not sent ICResp yet; host has not sent ICReq
_READY = 2
_CLOSED = 3
_STATE_NAMES = ("AWAIT_IC", "IC_PENDING", "READY", "CLOSED")
_C2H_DIR = int(spec.DataTransfer.CONTROLLER_TO_HOST)
_H2C_DIR = int(spec.DataTransfer.HOST_TO_CONTROLLER)


@dataclass(slots=True)
class _R2TState:
    """Controller side: one outstanding R2T."""

    cccid: int
    end: int  # offset + length
    next: int  # next expected DATAO
    base: int  # R2T offset (dest[0] corresponds to it)
    dest: memoryview | None


@dataclass(slots=True)
class _HostCmd:
    """Host side: one outstanding command."""

    direction: int
    length: int  # SGL1 length
    next: int  # next expected C2H DATAO
    incapsule: bool
    dest: memoryview | None
    r2ts: int = 0  # outstanding R2Ts


@dataclass(slots=True)
class _Pending:
    """A data PDU whose payload is being received into a buffer outside the ring."""

    ptype: int
    flags: int
    cccid: int
    ttag: int
    offset: int
    dest: memoryview
    length: int
    filled: int
    sqe: bytes | None  # capsule command: its SQE, copied out of the ring (64 bytes)


_CH_UNPACK = CH.unpack_from
_U32 = struct.Struct("<I")
_U32_PACK = _U32.pack
_U32_UNPACK = _U32.unpack_from
_DATA_PSH = struct.Struct("<HHII")  # CCCID, TTAG (reserved in C2H), DATAO, DATAL
_DATA_PSH_UNPACK = _DATA_PSH.unpack_from
_U16_UNPACK = struct.Struct("<H").unpack_from
_RESP_PDU = struct.Struct("<BBBBIIIHHHH")  # CH + CQE in one pack
assert _RESP_PDU.size == CAPSULE_RESP_HLEN
_RESP_PACK = _RESP_PDU.pack
_C2H_PACK = C2H_DATA.pack
_H2C_PACK = H2C_DATA.pack
_R2T_PACK = R2T.pack
_CH_PACK = CH.pack
_ZERO_PAD = bytes(128)
_LAST_SUCCESS = LAST_PDU | SUCCESS
_BUF_TYPES = (bytes, bytearray, memoryview)  # a tuple: isinstance on a union type is slower

_CONTROLLER_RX = frozenset({PduType.IC_REQ, PduType.H2C_TERM_REQ, PduType.CAPSULE_CMD,
                            PduType.H2C_DATA})
_HOST_RX = frozenset({PduType.IC_RESP, PduType.C2H_TERM_REQ, PduType.CAPSULE_RESP,
                      PduType.C2H_DATA, PduType.R2T})
_HLEN = {0: IC_HLEN, 1: IC_HLEN, 2: TERM_REQ_HLEN, 3: TERM_REQ_HLEN, 4: CAPSULE_CMD_HLEN,
         5: CAPSULE_RESP_HLEN, 6: DATA_HLEN, 7: DATA_HLEN, 9: DATA_HLEN}
_MAX_PAD = 128  # largest alignment is 32 dwords

DEFAULT_RING_SIZE = 256 * 1024
DEFAULT_MAXH2CDATA = 128 * 1024
DEFAULT_MAX_INCAPSULE = 8192


_SPARE_RINGS = 3
_new_object = object.__new__  # events of the parse fast path: slots stored directly


def _unexported(ring: bytearray) -> bool:
    """No view into ring is alive (resizing fails with BufferError while one is)."""
    try:
        ring.append(0)
    except BufferError:
        return False
    ring.pop()
    return True


def _digest(bufs: Sequence[Buffer]) -> int:
    crc = 0
    for b in bufs:
        crc = crc32c(b, crc)
    return crc


class TcpQueuePair:
    """NVMe/TCP connection state for one queue pair, either role. See the module docstring."""

    def __init__(self, role: Role, *, ring_size: int = DEFAULT_RING_SIZE,
                 max_incapsule_data: int = DEFAULT_MAX_INCAPSULE) -> None:
        if ring_size < 4096:
            raise ValueError("ring_size must be at least 4096")
        self.role = role
        self._controller = role is Role.CONTROLLER
        self._rx_types = _CONTROLLER_RX if self._controller else _HOST_RX
        # Controller waits for the ICReq; host must send its ICReq before anything arrives.
        self._state = _AWAIT_IC if self._controller else _IC_PENDING
        # Negotiated parameters.
        self.header_digest = False
        self.data_digest = False
        self.hpda = 0  # alignment the host wants for C2H data
        self.cpda = 0  # alignment the controller wants for H2C data
        self.maxr2t = 0  # 0's based: outstanding R2Ts per command allowed by the host
        self.maxh2cdata = DEFAULT_MAXH2CDATA
        self.max_incapsule_data = max_incapsule_data  # set from IOCCSZ after Connect
        self._hd = 0  # header digest length in force
        # Precomputed at negotiation for the hot paths (see _negotiated).
        self._rx_align = 0
        self._cmd_fast_plen = -1  # PLEN of a header-only CapsuleCmd; -1 = no fast path
        self._cmd_fast_flags = 0
        self._cmd_data_pdo = -1  # PDO of an undigested CapsuleCmd with data; -1 = no fast path
        self._tx_pdo = DATA_HLEN  # PDO of the data PDUs we send
        self._tx_pad = b""
        self._tx_flags = 0  # HDGSTF/DDGSTF on data PDUs we send
        self._c2h_fast = False
        self._req_hdgst = False
        self._req_ddgst = False
        # Receive ring: bytes [_rpos, _rend) are received and not yet parsed.
        self._ring_size = ring_size
        self._low_water = ring_size >> 3
        self._ring = bytearray(ring_size)
        self._rview = memoryview(self._ring)
        # Retired rings that still had views out when they were left, newest last: reused
        # once those views are gone (allocating a fresh ring costs ~1 us per 4 KiB capsule).
        self._spare_rings: deque[bytearray] = deque(maxlen=_SPARE_RINGS)
        self._rpos = 0
        self._rend = 0
        self._need = 0  # bytes the current PDU needs in the ring in total (0 = unknown)
        self._pending: _Pending | None = None
        self._ddgst_wait = False  # pending payload complete, waiting for its 4-byte digest
        self._eof = False
        self._events: deque[Event] = deque()
        self.pending_events = self._events  # parsed, not yet taken; popleft() = next_event()
        # Controller: ttag -> R2T; cccid -> outstanding R2T count.
        self._r2ts: dict[int, _R2TState] = {}
        self._r2t_count: dict[int, int] = {}
        # Host: cid -> command.
        self._cmds: dict[int, _HostCmd] = {}

    # -----------------------------------------------------------------------------------------
    # Receive side
    # -----------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

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
        if nbytes <= 0 or self._state == _CLOSED:
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
        while pos < n and self._state != _CLOSED:
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
        if self._state != _CLOSED:
            clean = self._rend == self._rpos and self._pending is None
            self._state = _CLOSED
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

    def _negotiated(self) -> None:
        """Connection initialization done: derive the per-PDU constants."""
        hd = self._hd = DIGEST_LEN if self.header_digest else 0
        self._state = _READY
        self._rx_align = pda_alignment(self.cpda if self._controller else self.hpda)
        if self._controller:
            self._cmd_fast_plen = CAPSULE_CMD_HLEN + hd
            self._cmd_fast_flags = HDGSTF if hd else 0
            if not hd and not self.data_digest and not self.cpda:
                self._cmd_data_pdo = CAPSULE_CMD_HLEN
        tx_pda = self.hpda if self._controller else self.cpda
        self._tx_pdo = data_offset(DATA_HLEN, bool(hd), tx_pda)
        self._tx_pad = bytes(self._tx_pdo - DATA_HLEN - hd)
        self._tx_flags = (HDGSTF if hd else 0) | (DDGSTF if self.data_digest else 0)
        self._c2h_fast = self._controller and not self._tx_flags and not self._tx_pad

    def _parse(self) -> None:
        append = self._events.append
        new_event = _new_object
        fast_plen = self._cmd_fast_plen
        fast_flags = self._cmd_fast_flags
        closed = _CLOSED
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
        if self._state != _READY:
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

    # --- per-type receive handlers -----------------------------------------------------------

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
            self._state = _CLOSED
            return TermReqReceived(fes=fes, fei=fei, pdu_header=data)
        if self._state != _AWAIT_IC:
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
            self._state = _IC_PENDING
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
        self._pending = _Pending(ptype, flags, cccid, ttag, offset, dest, dlen, have, sqe)
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
        self._state = _CLOSED
        self._pending = None
        return ProtocolError(fes, fei, reason, term)

    # -----------------------------------------------------------------------------------------
    # Send side
    # -----------------------------------------------------------------------------------------

    def _term_req(self, fes: int, fei: int, header: Buffer) -> list[Buffer]:
        ptype = PduType.C2H_TERM_REQ if self._controller else PduType.H2C_TERM_REQ
        data = bytes(header[:TERM_REQ_MAX_DATA])
        return [TERM_REQ.pack(ptype, 0, TERM_REQ_HLEN, 0, TERM_REQ_HLEN + len(data), fes, fei)
                + data]

    def send_term_req(self, fes: int, fei: int = 0, pdu_header: Buffer = b"") -> list[Buffer]:
        """Terminate the connection (C2HTermReq or H2CTermReq by role); close it after sending."""
        out = self._term_req(fes, fei, pdu_header)
        self._state = _CLOSED
        return out

    def _require_ready(self) -> None:
        if self._state != _READY:
            raise LocalProtocolError(f"queue pair is {_STATE_NAMES[self._state]}, not READY")

    # --- connection initialization -----------------------------------------------------------

    def send_icreq(self, *, hpda: int = 0, header_digest: bool = False, data_digest: bool = False,
                   maxr2t: int = 0) -> list[Buffer]:
        if self._controller or self._state != _IC_PENDING:
            raise LocalProtocolError("send_icreq: host role, once, first")
        if not 0 <= hpda <= MAX_PDA:
            raise LocalProtocolError("hpda out of range")
        self.hpda = hpda
        self.maxr2t = maxr2t
        self._req_hdgst = header_digest
        self._req_ddgst = data_digest
        self._state = _AWAIT_IC
        dgst = (1 if header_digest else 0) | (2 if data_digest else 0)
        return [IC_REQ.pack(PduType.IC_REQ, 0, IC_HLEN, 0, IC_HLEN, 0, hpda, dgst, maxr2t)]

    def send_icresp(self, *, cpda: int = 0, maxh2cdata: int = DEFAULT_MAXH2CDATA,
                    header_digest: bool = True, data_digest: bool = True) -> list[Buffer]:
        """Answer the ICReq. Digests are enabled where the host asked and these allow it."""
        if not self._controller or self._state != _IC_PENDING:
            raise LocalProtocolError("send_icresp: controller role, after ICReqReceived")
        if not 0 <= cpda <= MAX_PDA or maxh2cdata < MIN_MAXH2CDATA or maxh2cdata % 4:
            raise LocalProtocolError("cpda or maxh2cdata out of range")
        self.cpda = cpda
        self.maxh2cdata = maxh2cdata
        self.header_digest = header_digest and self._req_hdgst
        self.data_digest = data_digest and self._req_ddgst
        self._negotiated()
        dgst = (1 if self.header_digest else 0) | (2 if self.data_digest else 0)
        return [IC_RESP.pack(PduType.IC_RESP, 0, IC_HLEN, 0, IC_HLEN, 0, cpda, dgst, maxh2cdata)]

    # --- controller send side ----------------------------------------------------------------

    def send_capsule_resp(self, cqe: Buffer) -> list[Buffer]:
        """CapsuleResp carrying a 16-byte CQE built by the caller."""
        self._require_ready()
        hd = self._hd
        hdr = _CH_PACK(PduType.CAPSULE_RESP, HDGSTF if hd else 0, CAPSULE_RESP_HLEN, 0,
                       CAPSULE_RESP_HLEN + hd) + bytes(cqe)
        if hd:
            hdr += _U32_PACK(crc32c(hdr))
        return [hdr]

    def send_response(self, cid: int, status: int = 0, dw0: int = 0, dw1: int = 0, sqhd: int = 0,
                      sqid: int = 0) -> list[Buffer]:
        """CapsuleResp from CQE fields in one pack (the hot path for I/O completions)."""
        if self._state != _READY:
            raise LocalProtocolError("queue pair not READY")
        if self._hd:
            hdr = _RESP_PACK(5, HDGSTF, 24, 0, 28, dw0, dw1, sqhd, sqid, cid, status)
            return [hdr + _U32_PACK(crc32c(hdr))]
        return [_RESP_PACK(5, 0, 24, 0, 24, dw0, dw1, sqhd, sqid, cid, status)]

    def send_c2h_data(self, cccid: int, offset: int, data: Buffer | Sequence[Buffer], *,
                      last: bool = True, success: bool = False,
                      max_pdu_data: int = 0) -> list[Buffer]:
        """C2HData PDU(s) for data (one buffer or several). With max_pdu_data the data is split
        into PDUs of at most that many bytes; LAST_PDU/SUCCESS go on the final one only."""
        if self._state != _READY or not self._controller:
            raise LocalProtocolError("send_c2h_data: controller role, READY")
        if success and not last:
            raise LocalProtocolError("SUCCESS requires LAST_PDU")
        if self._c2h_fast and not max_pdu_data and isinstance(data, _BUF_TYPES):
            # Fast path: one PDU, no digests, no padding.
            dlen = len(data)
            if not dlen:
                raise LocalProtocolError("C2H data must not be empty")
            flags = (LAST_PDU if last else 0) | (SUCCESS if success else 0)
            return [_C2H_PACK(7, flags, 24, 24, 24 + dlen, cccid, offset, dlen), data]
        bufs = [data] if isinstance(data, _BUF_TYPES) else data
        total = 0
        for b in bufs:
            total += len(b)
        if total == 0:
            raise LocalProtocolError("C2H data must not be empty")
        final_flags = (LAST_PDU if last else 0) | (SUCCESS if success else 0)
        if not max_pdu_data or total <= max_pdu_data:
            return self._data_pdu_out(7, cccid, 0, offset, bufs, total, final_flags)
        out: list[Buffer] = []
        for chunk_off, chunk in _split(bufs, max_pdu_data):
            n = 0
            for b in chunk:
                n += len(b)
            flags = final_flags if chunk_off + n == total else 0
            out += self._data_pdu_out(7, cccid, 0, offset + chunk_off, chunk, n, flags)
        return out

    def append_c2h_data(self, out: list[Buffer], cccid: int, data: Buffer,
                        success: bool = True) -> None:
        """Append the PDU(s) of ``send_c2h_data(cccid, 0, data, last=True, success=success)``
        to out: the read-completion fast path (one header pack, no list per PDU)."""
        if self._c2h_fast and self._state == _READY:
            dlen = len(data)
            if dlen:
                out.append(_C2H_PACK(7, _LAST_SUCCESS if success else LAST_PDU, 24, 24, 24 + dlen,
                                      cccid, 0, dlen))
                out.append(data)
                return
        out += self.send_c2h_data(cccid, 0, data, last=True, success=success)

    def append_response(self, out: list[Buffer], cid: int, status: int = 0, dw0: int = 0,
                        dw1: int = 0, sqhd: int = 0, sqid: int = 0) -> None:
        """Append the CapsuleResp of ``send_response(...)`` to out."""
        if self._state != _READY:
            raise LocalProtocolError("queue pair not READY")
        if self._hd:
            hdr = _RESP_PACK(5, HDGSTF, 24, 0, 28, dw0, dw1, sqhd, sqid, cid, status)
            out.append(hdr + _U32_PACK(crc32c(hdr)))
        else:
            out.append(_RESP_PACK(5, 0, 24, 0, 24, dw0, dw1, sqhd, sqid, cid, status))

    def _data_pdu_out(self, ptype: int, cccid: int, ttag: int, offset: int,
                      bufs: Sequence[Buffer], dlen: int, flags: int) -> list[Buffer]:
        """One H2CData/C2HData PDU: header [+HDGST] [+pad] + data [+DDGST]."""
        flags |= self._tx_flags
        pdo = self._tx_pdo
        dd = DIGEST_LEN if flags & DDGSTF else 0
        plen = pdo + dlen + dd
        if ptype == 7:
            hdr = _C2H_PACK(7, flags, DATA_HLEN, pdo, plen, cccid, offset, dlen)
        else:
            hdr = _H2C_PACK(6, flags, DATA_HLEN, pdo, plen, cccid, ttag, offset, dlen)
        if flags & HDGSTF:
            hdr += _U32_PACK(crc32c(hdr))
        out: list[Buffer] = [hdr + self._tx_pad if self._tx_pad else hdr]
        out += bufs
        if dd:
            out.append(_U32_PACK(_digest(bufs)))
        return out

    def send_r2t(self, cccid: int, ttag: int, offset: int, length: int, *,
                 dest: memoryview | None = None) -> list[Buffer]:
        """Ask the host for [offset, offset + length) of command cccid's data.

        With dest (a writable view of length bytes) the H2CData payloads land in it directly."""
        if self._state != _READY or not self._controller:
            raise LocalProtocolError("send_r2t: controller role, READY")
        if ttag in self._r2ts:
            raise LocalProtocolError(f"TTAG {ttag} already in use")
        if length <= 0:
            raise LocalProtocolError("R2T length must be positive")
        if dest is not None:
            dest = _byte_view(dest)
            if len(dest) < length:
                raise LocalProtocolError("dest shorter than the R2T length")
        count = self._r2t_count.get(cccid, 0)
        if count > self.maxr2t:
            raise LocalProtocolError("more outstanding R2Ts than the host's MAXR2T allows")
        self._r2t_count[cccid] = count + 1
        self._r2ts[ttag] = _R2TState(cccid, offset + length, offset, offset, dest)
        hd = self._hd
        if hd:
            hdr = _R2T_PACK(9, HDGSTF, 24, 0, 28, cccid, ttag, offset, length)
            return [hdr + _U32_PACK(crc32c(hdr))]
        return [_R2T_PACK(9, 0, 24, 0, 24, cccid, ttag, offset, length)]

    def abort_r2t(self, ttag: int) -> None:
        """Forget an outstanding R2T (command aborted); later H2CData for it is a peer error."""
        r2t = self._r2ts.pop(ttag, None)
        if r2t is not None:
            n = self._r2t_count.get(r2t.cccid, 1) - 1
            if n > 0:
                self._r2t_count[r2t.cccid] = n
            else:
                self._r2t_count.pop(r2t.cccid, None)

    # --- host send side ----------------------------------------------------------------------

    def send_capsule_cmd(self, sqe: Buffer, data: Buffer | Sequence[Buffer] | None = None, *,
                         dest: memoryview | None = None) -> list[Buffer]:
        """CapsuleCmd for a 64-byte SQE, with optional in-capsule data. The command's data length
        and direction come from SGL1 and the opcode; dest receives C2H data for reads."""
        if self._state != _READY or self._controller:
            raise LocalProtocolError("send_capsule_cmd: host role, READY")
        if len(sqe) != spec.SQE_SIZE:
            raise LocalProtocolError("SQE must be 64 bytes")
        cid = _U16_UNPACK(sqe, 2)[0]
        if cid in self._cmds:
            raise LocalProtocolError(f"CID {cid} already outstanding")
        direction = spec.sqe_data_transfer(sqe)
        length = spec.sqe_sgl1(sqe)[1] if direction else 0
        bufs: Sequence[Buffer] = ()
        dlen = 0
        if data is not None:
            bufs = [data] if isinstance(data, _BUF_TYPES) else data
            for b in bufs:
                dlen += len(b)
            if dlen > self.max_incapsule_data:
                raise LocalProtocolError("in-capsule data longer than the controller accepts")
            if not direction & _H2C_DIR or dlen != length:
                raise LocalProtocolError("in-capsule data needs a write whose SGL1 length matches")
        if dest is not None:
            dest = _byte_view(dest)
            if len(dest) < length:
                raise LocalProtocolError("dest shorter than the command's data length")
        self._cmds[cid] = _HostCmd(direction, length, 0, dlen > 0, dest)
        hd = self._hd
        flags = HDGSTF if hd else 0
        hend = CAPSULE_CMD_HLEN + hd
        if not dlen:
            hdr = _CH_PACK(4, flags, CAPSULE_CMD_HLEN, 0, hend) + bytes(sqe)
            if hd:
                hdr += _U32_PACK(crc32c(hdr))
            return [hdr]
        pdo = hend
        if self.cpda:
            align = (self.cpda + 1) * 4
            pdo = -(-hend // align) * align
        dd = DIGEST_LEN if self.data_digest else 0
        if dd:
            flags |= DDGSTF
        hdr = _CH_PACK(4, flags, CAPSULE_CMD_HLEN, pdo, pdo + dlen + dd) + bytes(sqe)
        if hd:
            hdr += _U32_PACK(crc32c(hdr))
        if pdo != hend:
            hdr += _ZERO_PAD[:pdo - hend]
        out: list[Buffer] = [hdr]
        out += bufs
        if dd:
            out.append(_U32_PACK(_digest(bufs)))
        return out

    def send_h2c_data(self, cccid: int, ttag: int, offset: int, data: Buffer | Sequence[Buffer], *,
                      last: bool = True) -> list[Buffer]:
        """H2CData PDU(s) answering an R2T, split at MAXH2CDATA; last marks the end of the R2T's
        range (LAST_PDU on the final PDU, and the R2T stops counting against MAXR2T)."""
        if self._state != _READY or self._controller:
            raise LocalProtocolError("send_h2c_data: host role, READY")
        cmd = self._cmds.get(cccid)
        if cmd is None:
            raise LocalProtocolError(f"no outstanding command {cccid}")
        bufs = [data] if isinstance(data, _BUF_TYPES) else data
        total = 0
        for b in bufs:
            total += len(b)
        if total == 0:
            raise LocalProtocolError("H2C data must not be empty")
        if offset + total > cmd.length:
            raise LocalProtocolError("H2C data beyond the command's length")
        if last and cmd.r2ts:
            cmd.r2ts -= 1
        out: list[Buffer] = []
        for chunk_off, chunk in _split(bufs, self.maxh2cdata):
            n = 0
            for b in chunk:
                n += len(b)
            flags = LAST_PDU if last and chunk_off + n == total else 0
            out += self._data_pdu_out(6, cccid, ttag, offset + chunk_off, chunk, n, flags)
        return out

    def abort_command(self, cid: int) -> None:
        """Host: forget an outstanding command (e.g. timed out); later PDUs for it are errors."""
        self._cmds.pop(cid, None)

    @property
    def outstanding_commands(self) -> int:
        return len(self._cmds)

    @property
    def outstanding_r2ts(self) -> int:
        return len(self._r2ts)


def _split(bufs: Sequence[Buffer], limit: int) -> list[tuple[int, list[Buffer]]]:
    """Cut a buffer list into chunks of at most limit bytes (views, no copies)."""
    out: list[tuple[int, list[Buffer]]] = []
    chunk: list[Buffer] = []
    room = limit
    pos = 0
    start = 0
    for b in bufs:
        mv = memoryview(b).cast("B") if not isinstance(b, memoryview) or b.format != "B" else b
        i = 0
        n = len(mv)
        while i < n:
            take = min(room, n - i)
            chunk.append(mv[i:i + take] if take != n else b)
            i += take
            pos += take
            room -= take
            if room == 0:
                out.append((start, chunk))
                chunk = []
                room = limit
                start = pos
    if chunk:
        out.append((start, chunk))
    return out


def _byte_view(buf: memoryview) -> memoryview:
    mv = memoryview(buf)
    if mv.readonly:
        raise LocalProtocolError("dest must be writable")
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")
