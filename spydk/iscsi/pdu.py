"""iSCSI PDU framing: a zero-copy receive side and list-of-buffers encoders.

Receive side (``PduReader``) works like ``asyncio.BufferedProtocol``: ``get_buffer()``
hands out writable memory, ``buffer_updated(n)`` says how much was filled, and
``next_pdu()`` returns parsed PDUs one at a time (``None`` = need more bytes).  Plain
``receive_data(bytes)`` is there for tests and non-buffered transports.

A returned ``Pdu`` holds memoryviews into the receive buffer; they stay valid until the
next ``get_buffer``/``receive_data`` call, so the consumer handles each PDU before feeding
more bytes (``next_pdu`` is pulled, never pushed, for the same reason: a login response can
switch digests on for the very next PDU).

Direct data placement: an optional ``place(header) -> memoryview | None`` callback is asked
where a PDU's data segment should live (e.g. a slice of a task's write buffer).  Bytes
already in the receive buffer are copied there once; if much of a large segment is still to
come, ``get_buffer`` returns the destination itself so the socket writes into it directly.

Digests are CRC32C (the ``crc32c`` package), computed incrementally over the buffers,
transmitted little-endian (RFC 7143 appendix B.4 vector: 32 zero bytes -> aa 36 91 8a).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from . import spec

Buffer = bytes | bytearray | memoryview
PlaceFn = Callable[[memoryview], "memoryview | None"]

_DIGEST = struct.Struct("<I")
assert _DIGEST.size == spec.DIGEST_SIZE
_LENS = struct.Struct(">BBBBI")  # opcode, flags, b2, b3, lengths word
_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by n & 3
_EMPTY = memoryview(b"")
MAX_AHS = 255 * 4


class PduError(Exception):
    """The peer sent bytes that cannot be framed (fatal for the connection at ERL 0).

    ``header`` is the offending BHS when one was read (for a Reject), else empty.
    """

    def __init__(self, reason: str, header: bytes = b"", reject: spec.RejectReason | None = None):
        super().__init__(reason)
        self.reason = reason
        self.header = header
        self.reject = reject


@dataclass(slots=True, eq=False)
class Pdu:
    header: memoryview  # the 48-byte BHS
    opcode: int          # without the I bit
    flags: int           # byte 1
    itt: int
    ahs: memoryview
    data: memoryview     # without padding; a placed destination when ``placed``
    placed: bool = False
    data_digest_ok: bool = True  # False: header fine but data digest wrong (PDU is skippable)

    @property
    def immediate(self) -> bool:
        return bool(self.header[0] & spec.IMMEDIATE)


def digest(parts: Sequence[Buffer]) -> bytes:
    crc = 0
    for p in parts:
        crc = crc32c(p, crc)
    return _DIGEST.pack(crc)


class _Direct:
    """A PDU whose data segment is being received straight into a placed destination."""

    __slots__ = ("header", "ahs", "dest", "have", "crc", "tail")

    def __init__(self, header: memoryview, ahs: memoryview, dest: memoryview, have: int, crc: int, tail: int):
        self.header = header
        self.ahs = ahs
        self.dest = dest
        self.have = have
        self.crc = crc
        self.tail = tail  # pad + data digest bytes still to read from the ring


class PduReader:
    def __init__(
        self,
        max_data_segment: int = 8192,
        *,
        header_digest: bool = False,
        data_digest: bool = False,
        place: PlaceFn | None = None,
        direct_threshold: int = 16384,
        capacity: int = 0,
        reuse_pdu: bool = False,
    ) -> None:
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.place = place
        self.direct_threshold = direct_threshold
        self._max_data = 0
        self._buf = bytearray(0)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._direct: _Direct | None = None
        self._capacity = capacity
        # With reuse_pdu, next_pdu() refills one Pdu object (valid until the next call).
        self._reuse: Pdu | None = Pdu(_EMPTY, 0, 0, 0, _EMPTY, _EMPTY) if reuse_pdu else None
        self.set_max_data_segment(max_data_segment)

    # -- configuration -------------------------------------------------------------------
    def set_max_data_segment(self, n: int) -> None:
        """Our MaxRecvDataSegmentLength: a longer data segment is a protocol error."""
        self._max_data = n
        need = max(self._capacity, 2 * (spec.BHS_SIZE + MAX_AHS + 8 + n + 3), 65536)
        if len(self._buf) < need:
            # Never resize in place: older views may still point at the old buffer.
            new = bytearray(need)
            pending = self._end - self._start
            new[:pending] = self._view[self._start:self._end]
            self._buf = new
            self._view = memoryview(new)
            self._start, self._end = 0, pending

    # -- feeding ------------------------------------------------------------------------
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        d = self._direct
        if d is not None and d.have < len(d.dest):
            return d.dest[d.have:]
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
        elif len(self._buf) - end < 16384:
            n = end - start
            if n <= start:
                self._view[:n] = self._view[start:end]
            else:
                self._view[:n] = bytes(self._view[start:end])
            self._start, self._end = 0, n
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        d = self._direct
        if d is not None and d.have < len(d.dest):
            if self.data_digest:
                d.crc = crc32c(d.dest[d.have:d.have + nbytes], d.crc)
            d.have += nbytes
        else:
            self._end += nbytes

    def receive_data(self, data: Buffer) -> None:
        mv = memoryview(data)
        while mv:
            buf = self.get_buffer(len(mv))
            n = min(len(buf), len(mv))
            if n == 0:  # the ring is full of unparsed bytes: caller must drain next_pdu()
                raise BufferError("receive buffer full; call next_pdu() first")
            buf[:n] = mv[:n]
            self.buffer_updated(n)
            mv = mv[n:]

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as PDUs (0 = at a PDU boundary)."""
        d = self._direct
        return self._end - self._start + (d.have + spec.BHS_SIZE if d is not None else 0)

    # -- parsing ------------------------------------------------------------------------
    def needs_input(self) -> bool:
        """True when next_pdu() would return None: less than a header is buffered and no
        payload is being received in place. A loop over next_pdu() can stop without asking."""
        return self._end - self._start < spec.BHS_SIZE and self._direct is None

    def next_pdu(self) -> Pdu | None:
        if self._direct is not None:
            return self._finish_direct()
        start = self._start
        avail = self._end - start
        if avail < spec.BHS_SIZE:
            return None
        view = self._view
        op, flags, _, _, lens = _LENS.unpack_from(view, start)
        ahs_len = (lens >> 24) << 2
        dlen = lens & 0xFFFFFF
        hlen = spec.BHS_SIZE + ahs_len
        hd = 4 if self.header_digest else 0
        if avail < hlen + hd:
            return None
        header = view[start:start + spec.BHS_SIZE]
        if hd:
            want = _DIGEST.unpack_from(view, start + hlen)[0]
            if crc32c(view[start:start + hlen]) != want:
                raise PduError("header digest error", bytes(header))
        if dlen > self._max_data:
            raise PduError("data segment longer than MaxRecvDataSegmentLength", bytes(header),
                           spec.RejectReason.PROTOCOL_ERROR)
        ahs = view[start + spec.BHS_SIZE:start + hlen] if ahs_len else _EMPTY
        itt = spec.U32.unpack_from(view, start + spec.OFF_ITT)[0]
        op &= spec.OPCODE_MASK
        if dlen == 0:
            self._start = start + hlen + hd
            p = self._reuse
            if p is not None:
                p.header = header
                p.opcode = op
                p.flags = flags
                p.itt = itt
                p.ahs = ahs
                p.data = _EMPTY
                p.placed = False
                p.data_digest_ok = True
                return p
            return Pdu(header, op, flags, itt, ahs, _EMPTY)
        dstart = start + hlen + hd
        pad = -dlen & 3
        dd = 4 if self.data_digest else 0
        total = hlen + hd + dlen + pad + dd
        if avail >= total:
            data = view[dstart:dstart + dlen]
            ok = True
            if dd:
                ok = crc32c(view[dstart:dstart + dlen + pad]) == _DIGEST.unpack_from(view, dstart + dlen + pad)[0]
            self._start = start + total
            placed = False
            if self.place is not None and ok:
                dest = self.place(header)
                if dest is not None:
                    dest[:] = data
                    data = dest
                    placed = True
            return Pdu(header, op, flags, itt, ahs, data, placed, ok)
        have = avail - hlen - hd
        if self.place is None or dlen - have < self.direct_threshold:
            return None
        dest = self.place(header)
        if dest is None:
            return None
        # Keep our own copy of the header: the ring may be compacted under it.
        hcopy = memoryview(bytes(view[start:start + hlen]))
        dest[:have] = view[dstart:dstart + have]
        crc = crc32c(dest[:have]) if dd else 0
        self._direct = _Direct(hcopy[:spec.BHS_SIZE], hcopy[spec.BHS_SIZE:], dest, have, crc, pad + dd)
        self._start = self._end
        return None

    def _finish_direct(self) -> Pdu | None:
        d = self._direct
        assert d is not None
        if d.have < len(d.dest) or self._end - self._start < d.tail:
            return None
        start = self._start
        ok = True
        if self.data_digest:
            pad = d.tail - 4
            crc = crc32c(self._view[start:start + pad], d.crc) if pad else d.crc
            ok = crc == _DIGEST.unpack_from(self._view, start + pad)[0]
        self._start = start + d.tail
        self._direct = None
        h = d.header
        return Pdu(h, h[0] & spec.OPCODE_MASK, h[1], spec.U32.unpack_from(h, spec.OFF_ITT)[0], d.ahs, d.dest,
                   True, ok)


# ---------------------------------------------------------------------------------------
# Encoding


def frame(header: Buffer, data: Sequence[Buffer] = (), data_len: int = 0,
          header_digest: bool = False, data_digest: bool = False) -> list[Buffer]:
    """Buffers for one PDU: header [+digest] [+data parts +pad [+digest]].

    ``header`` must already carry the DataSegmentLength (``data_len``).
    """
    out: list[Buffer] = [header]
    if header_digest:
        out.append(_DIGEST.pack(crc32c(header)))
    if data_len:
        out.extend(data)
        pad = _PADS[data_len & 3]
        if pad:
            out.append(pad)
        if data_digest:
            crc = 0
            for p in data:
                crc = crc32c(p, crc)
            if pad:
                crc = crc32c(pad, crc)
            out.append(_DIGEST.pack(crc))
    return out


# Table-driven field names per opcode, for tests, tools and the slow paths.  "lens" is the
# TotalAHSLength/DataSegmentLength word; decode() splits it into ahs_len and data_len.
LAYOUTS: dict[spec.Opcode, tuple[struct.Struct, tuple[str, ...]]] = {
    spec.Opcode.NOP_OUT: (spec.NOP_OUT, ("opcode", "flags", "lens", "lun", "itt", "ttt", "cmdsn", "expstatsn")),
    spec.Opcode.NOP_IN: (spec.NOP_IN, ("opcode", "flags", "lens", "lun", "itt", "ttt", "statsn", "expcmdsn",
                                       "maxcmdsn")),
    spec.Opcode.SCSI_CMD: (spec.SCSI_CMD, ("opcode", "flags", "lens", "lun", "itt", "edtl", "cmdsn", "expstatsn",
                                           "cdb")),
    spec.Opcode.SCSI_RSP: (spec.SCSI_RSP, ("opcode", "flags", "response", "status", "lens", "itt", "snack_tag",
                                           "statsn", "expcmdsn", "maxcmdsn", "expdatasn", "bidi_residual",
                                           "residual")),
    spec.Opcode.TASK_MGMT_REQ: (spec.TASK_MGMT_REQ, ("opcode", "flags", "lens", "lun", "itt", "rtt", "cmdsn",
                                                     "expstatsn", "refcmdsn", "expdatasn")),
    spec.Opcode.TASK_MGMT_RSP: (spec.TASK_MGMT_RSP, ("opcode", "flags", "response", "lens", "itt", "statsn",
                                                     "expcmdsn", "maxcmdsn")),
    spec.Opcode.LOGIN_REQ: (spec.LOGIN_REQ, ("opcode", "flags", "version_max", "version_min", "lens", "isid",
                                             "tsih", "itt", "cid", "cmdsn", "expstatsn")),
    spec.Opcode.LOGIN_RSP: (spec.LOGIN_RSP, ("opcode", "flags", "version_max", "version_active", "lens", "isid",
                                             "tsih", "itt", "statsn", "expcmdsn", "maxcmdsn", "status_class",
                                             "status_detail")),
    spec.Opcode.TEXT_REQ: (spec.TEXT_REQ, ("opcode", "flags", "lens", "lun", "itt", "ttt", "cmdsn", "expstatsn")),
    spec.Opcode.TEXT_RSP: (spec.TEXT_RSP, ("opcode", "flags", "lens", "lun", "itt", "ttt", "statsn", "expcmdsn",
                                           "maxcmdsn")),
    spec.Opcode.DATA_OUT: (spec.DATA_OUT, ("opcode", "flags", "lens", "lun", "itt", "ttt", "expstatsn", "datasn",
                                           "buffer_offset")),
    spec.Opcode.DATA_IN: (spec.DATA_IN, ("opcode", "flags", "status", "lens", "lun", "itt", "ttt", "statsn",
                                         "expcmdsn", "maxcmdsn", "datasn", "buffer_offset", "residual")),
    spec.Opcode.LOGOUT_REQ: (spec.LOGOUT_REQ, ("opcode", "flags", "lens", "itt", "cid", "cmdsn", "expstatsn")),
    spec.Opcode.LOGOUT_RSP: (spec.LOGOUT_RSP, ("opcode", "flags", "response", "lens", "itt", "statsn", "expcmdsn",
                                               "maxcmdsn", "time2wait", "time2retain")),
    spec.Opcode.R2T: (spec.R2T, ("opcode", "flags", "lens", "lun", "itt", "ttt", "statsn", "expcmdsn", "maxcmdsn",
                                 "r2tsn", "buffer_offset", "desired_length")),
    spec.Opcode.ASYNC_MSG: (spec.ASYNC_MSG, ("opcode", "flags", "lens", "lun", "itt", "statsn", "expcmdsn",
                                             "maxcmdsn", "event", "vcode", "param1", "param2", "param3")),
    spec.Opcode.REJECT: (spec.REJECT, ("opcode", "flags", "reason", "lens", "itt", "statsn", "expcmdsn",
                                       "maxcmdsn", "datasn")),
    spec.Opcode.SNACK: (spec.SNACK, ("opcode", "flags", "lens", "lun", "itt", "ttt", "expstatsn", "begrun",
                                     "runlength")),
}


def decode(header: Buffer) -> dict[str, Any]:
    """All fields of a BHS as a dict (slow path: tests, tracing).  Unknown opcode -> PduError."""
    op = header[0] & spec.OPCODE_MASK
    try:
        st, names = LAYOUTS[spec.Opcode(op)]
    except ValueError:
        raise PduError("unknown opcode", bytes(header[:spec.BHS_SIZE]), spec.RejectReason.COMMAND_NOT_SUPPORTED) from None
    fields = dict(zip(names, st.unpack_from(header), strict=True))
    fields["opcode"] = op
    fields["immediate"] = bool(header[0] & spec.IMMEDIATE)
    lens = fields.pop("lens")
    fields["ahs_len"] = (lens >> 24) << 2
    fields["data_len"] = lens & 0xFFFFFF
    return fields


def encode(opcode: spec.Opcode, *, immediate: bool = False, ahs_len: int = 0, data_len: int = 0,
           **fields: Any) -> bytearray:
    """Build a BHS from named fields (missing ones are 0; ``flags`` defaults to F=1)."""
    st, names = LAYOUTS[opcode]
    fields.setdefault("flags", spec.FLAG_FINAL)
    fields["opcode"] = opcode | (spec.IMMEDIATE if immediate else 0)
    fields["lens"] = spec.lengths_word(ahs_len, data_len)
    unknown = set(fields) - set(names)
    if unknown:
        raise TypeError(f"unknown fields for {opcode.name}: {sorted(unknown)}")
    values = [fields.get(n, b"" if n in ("cdb", "isid") else 0) for n in names]
    out = bytearray(spec.BHS_SIZE)
    st.pack_into(out, 0, *values)
    return out
