"""NVMe/TCP PDU packing helpers and per-connection records, shared by the receive side and the
two roles' send sides (the wire layouts themselves are spydk.nvme.spec.tcp)."""
from __future__ import annotations

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
    LAST_PDU,
    R2T,
    SUCCESS,
    TERM_REQ,
    TERM_REQ_HLEN,
    TERM_REQ_MAX_DATA,
    PduType,
)
from spydk.nvme.tcp.events import Buffer, Event, LocalProtocolError, ProtocolError, Role

# Connection states (plain ints: Enum member lookups are slow on the hot path).
AWAIT_IC = 0  # controller: waiting for ICReq; host: waiting for ICResp
IC_PENDING = 1  # controller got ICReq and has not sent ICResp yet; host has not sent ICReq
READY = 2
CLOSED = 3
STATE_NAMES = ("AWAIT_IC", "IC_PENDING", "READY", "CLOSED")
_C2H_DIR = int(spec.DataTransfer.CONTROLLER_TO_HOST)
_H2C_DIR = int(spec.DataTransfer.HOST_TO_CONTROLLER)


@dataclass(slots=True)
class R2TState:
    """Controller side: one outstanding R2T."""

    cccid: int
    end: int  # offset + length
    next: int  # next expected DATAO
    base: int  # R2T offset (dest[0] corresponds to it)
    dest: memoryview | None


@dataclass(slots=True)
class HostCmd:
    """Host side: one outstanding command."""

    direction: int
    length: int  # SGL1 length
    next: int  # next expected C2H DATAO
    incapsule: bool
    dest: memoryview | None
    r2ts: int = 0  # outstanding R2Ts


@dataclass(slots=True)
class Pending:
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


class QueuePairState:
    """The attributes of one queue pair, declared once for the mixins that make up TcpQueuePair
    (receive.py parses, controller.py/host.py send by role); queue_pair.py initializes them."""

    role: Role
    _controller: bool
    _rx_types: frozenset[int]
    _state: int
    header_digest: bool
    data_digest: bool
    hpda: int
    cpda: int
    maxr2t: int
    maxh2cdata: int
    max_incapsule_data: int
    _hd: int
    _rx_align: int
    _cmd_fast_plen: int
    _cmd_fast_flags: int
    _cmd_data_pdo: int
    _tx_pdo: int
    _tx_pad: bytes
    _tx_flags: int
    _c2h_fast: bool
    _req_hdgst: bool
    _req_ddgst: bool
    _ring_size: int
    _low_water: int
    _ring: bytearray
    _rview: memoryview
    _spare_rings: deque[bytearray]
    _rpos: int
    _rend: int
    _need: int
    _pending: Pending | None
    _ddgst_wait: bool
    _eof: bool
    _events: deque[Event]
    pending_events: deque[Event]
    _r2ts: dict[int, R2TState]
    _r2t_count: dict[int, int]
    _cmds: dict[int, HostCmd]

    def _negotiated(self) -> None:
        raise NotImplementedError

    def _fail(self, fes: int, fei: int, reason: str, *, reply: bool = True) -> ProtocolError:
        raise NotImplementedError

    def _require_ready(self) -> None:
        if self._state != READY:
            raise LocalProtocolError(f"queue pair is {STATE_NAMES[self._state]}, not READY")

    def _term_req(self, fes: int, fei: int, header: Buffer) -> list[Buffer]:
        ptype = PduType.C2H_TERM_REQ if self._controller else PduType.H2C_TERM_REQ
        data = bytes(header[:TERM_REQ_MAX_DATA])
        return [TERM_REQ.pack(ptype, 0, TERM_REQ_HLEN, 0, TERM_REQ_HLEN + len(data), fes, fei)
                + data]

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
