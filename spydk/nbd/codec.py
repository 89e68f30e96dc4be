"""Sans-IO NBD server connection: bytes in, events out, buffers to send.

    conn = NbdServerConnection(lookup, names)     # greeting queued at once
    view = conn.get_buffer(65536); n = sock.recv_into(view); events = conn.buffer_updated(n)
    (or events = conn.receive_data(data))
    sock.sendmsg(conn.data_to_send())

Handshake: fixed newstyle (plain newstyle clients get EXPORT_NAME only), options
EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT (no contexts
offered), STARTTLS refused (no TLS). Transmission: READ, WRITE, FLUSH, TRIM,
WRITE_ZEROES, DISC. ``kernel=True`` starts in transmission (the Linux nbd driver speaks
no handshake; the export is given).

The codec checks every request against the export before it becomes an event: bad magic
ends the connection (the stream cannot be trusted after it), a range beyond the export,
unaligned to its block size, longer than ``max_payload`` or a write to a read-only export
gets an error reply and no event. The payload of a refused write is skipped without being
stored, so nothing a client sends makes the codec allocate more than one request's
payload of at most ``max_payload`` bytes. A WRITE's payload is received straight into the
request's own buffer (the event's ``data``, the caller's to keep).
"""
from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spydk.nbd import spec

Buffer = bytes | bytearray | memoryview


@dataclass
class Export:
    name: str
    size: int
    block_size: int = 512
    read_only: bool = False
    can_trim: bool = True
    can_write_zeroes: bool = True
    can_flush: bool = True
    description: str = ""
    max_payload: int = 32 * 1024 * 1024

    @property
    def tflags(self) -> int:
        f = spec.TFLAG_HAS_FLAGS | spec.TFLAG_CAN_MULTI_CONN
        if self.read_only:
            f |= spec.TFLAG_READ_ONLY
        if self.can_flush:
            f |= spec.TFLAG_SEND_FLUSH
        if self.can_trim and not self.read_only:
            f |= spec.TFLAG_SEND_TRIM
        if self.can_write_zeroes and not self.read_only:
            f |= spec.TFLAG_SEND_WRITE_ZEROES
        return f


@dataclass(slots=True)
class TransmissionStarted:
    export: Export
    structured: bool


@dataclass(slots=True)
class Request:
    type: int          # spec.CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES
    flags: int
    cookie: int
    offset: int
    length: int
    data: bytearray | None = None   # WRITE payload


@dataclass(slots=True)
class Disconnect:
    reason: str


@dataclass(slots=True)
class ProtocolError:
    message: str


Event = TransmissionStarted | Request | Disconnect | ProtocolError


class State(enum.Enum):
    CLIENT_FLAGS = "client flags"
    OPTIONS = "options"
    TRANSMISSION = "transmission"
    CLOSED = "closed"


_OPT_UNPACK = spec.OPTION.unpack_from
_REQ_UNPACK = spec.REQUEST.unpack_from
_SIMPLE_PACK = spec.SIMPLE_REPLY.pack
_STRUCT_PACK = spec.STRUCTURED_REPLY.pack
_U64 = struct.Struct(">Q")
_KNOWN_CMDS = (spec.CMD_READ, spec.CMD_WRITE, spec.CMD_FLUSH, spec.CMD_TRIM, spec.CMD_WRITE_ZEROES)


@dataclass
class _Rx:
    buf: bytearray = field(default_factory=lambda: bytearray(65536))
    r: int = 0
    w: int = 0


class NbdServerConnection:
    def __init__(self, lookup: Callable[[str], Export | None], names: Callable[[], list[str]] | None = None,
                 *, kernel_export: Export | None = None):
        self.lookup = lookup
        self.names = names or (lambda: [])
        self.out: list[Buffer] = []
        self.rx = _Rx()
        self.export: Export | None = None
        self.structured = False
        self.no_zeroes = False
        self.fixed = False
        # a WRITE being received: (request, bytes still missing) / a refused payload to skip
        self.payload: Request | None = None
        self.payload_got = 0
        self.skip = 0
        self.skip_reply: tuple[int, int] | None = None
        if kernel_export is not None:
            self.export = kernel_export
            self.state = State.TRANSMISSION
        else:
            self.state = State.CLIENT_FLAGS
            self.out.append(spec.GREETING.pack(spec.NBDMAGIC, spec.IHAVEOPT,
                                               spec.FLAG_FIXED_NEWSTYLE | spec.FLAG_NO_ZEROES))

    # -- receiving ---------------------------------------------------------------------------

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes from the peer go (recv_into it, then buffer_updated)."""
        if self.payload is not None and self.rx.r == self.rx.w:
            data = self.payload.data
            assert data is not None
            return memoryview(data)[self.payload_got:]
        rx = self.rx
        if rx.r == rx.w:
            rx.r = rx.w = 0
        elif len(rx.buf) - rx.w < 4096:
            n = rx.w - rx.r
            rx.buf[:n] = rx.buf[rx.r:rx.w]
            rx.r, rx.w = 0, n
        return memoryview(rx.buf)[rx.w:]

    def buffer_updated(self, n: int) -> list[Event]:
        if self.payload is not None and self.rx.r == self.rx.w:
            self.payload_got += n          # went straight into the request's buffer
            events: list[Event] = []
            self._payload_progress(events)
            if self.payload is None:
                self._parse(events)
            return events
        self.rx.w += n
        events = []
        self._parse(events)
        return events

    def receive_data(self, data: Buffer) -> list[Event]:
        """Copying entry point (tests, simple transports)."""
        events: list[Event] = []
        mv = memoryview(data).cast("B")
        while len(mv):
            view = self.get_buffer()
            n = min(len(view), len(mv))
            view[:n] = mv[:n]
            mv = mv[n:]
            events.extend(self.buffer_updated(n))
            if self.state is State.CLOSED:
                break
        return events

    def data_to_send(self) -> list[Buffer]:
        out, self.out = self.out, []
        return out

    # -- parsing -----------------------------------------------------------------------------

    def _avail(self) -> int:
        return self.rx.w - self.rx.r

    def _parse(self, events: list[Event]) -> None:
        rx = self.rx
        while self.state is not State.CLOSED:
            if self.skip:
                n = min(self.skip, rx.w - rx.r)
                rx.r += n
                self.skip -= n
                if self.skip:
                    return
                if self.skip_reply is not None:
                    cookie, err = self.skip_reply
                    self.skip_reply = None
                    self.reply_error(cookie, err, "request refused")
                continue
            if self.payload is not None:
                self._payload_fill()
                self._payload_progress(events)
                if self.payload is not None:
                    return
                continue
            st = self.state
            if st is State.TRANSMISSION:
                if rx.w - rx.r < 28:
                    return
                self._request(events)
            elif st is State.OPTIONS:
                if rx.w - rx.r < 16:
                    return
                magic, opt, length = _OPT_UNPACK(rx.buf, rx.r)
                if magic != spec.IHAVEOPT:
                    self._fail(events, f"option magic {magic:#x} is not IHAVEOPT")
                    return
                if length > spec.MAX_OPTION_LENGTH:
                    self._fail(events, f"option {opt} has length {length}, more than {spec.MAX_OPTION_LENGTH}")
                    return
                if rx.w - rx.r < 16 + length:
                    self._ensure(16 + length)
                    return
                data = bytes(rx.buf[rx.r + 16:rx.r + 16 + length])
                rx.r += 16 + length
                self._option(opt, data, events)
            else:  # CLIENT_FLAGS
                if rx.w - rx.r < 4:
                    return
                (flags,) = spec.CLIENT_FLAGS.unpack_from(rx.buf, rx.r)
                rx.r += 4
                if flags & ~spec.CLIENT_FLAGS_KNOWN:
                    self._fail(events, f"unknown client flags {flags:#x}")
                    return
                self.fixed = bool(flags & spec.FLAG_FIXED_NEWSTYLE)
                self.no_zeroes = bool(flags & spec.FLAG_NO_ZEROES)
                self.state = State.OPTIONS

    def _ensure(self, n: int) -> None:
        rx = self.rx
        if len(rx.buf) - rx.r < n:
            have = rx.w - rx.r
            nb = bytearray(max(n, len(rx.buf)))
            nb[:have] = rx.buf[rx.r:rx.w]
            rx.buf, rx.r, rx.w = nb, 0, have

    def _fail(self, events: list[Event], msg: str) -> None:
        self.state = State.CLOSED
        events.append(ProtocolError(msg))

    # -- options -------------------------------------------------------------------------------

    def _opt_reply(self, opt: int, rtype: int, data: bytes = b"") -> None:
        self.out.append(spec.OPTION_REPLY.pack(spec.OPT_REPLY_MAGIC, opt, rtype, len(data)) + data)

    def _option(self, opt: int, data: bytes, events: list[Event]) -> None:
        if opt == spec.OPT_EXPORT_NAME:
            name = data.decode(errors="replace")
            exp = self.lookup(name)
            if exp is None:
                # the protocol has no error reply for EXPORT_NAME: closing is the answer
                self._fail(events, f"export {name!r} does not exist")
                return
            self.out.append(spec.EXPORT_NAME_REPLY.pack(exp.size, exp.tflags) +
                            (b"" if self.no_zeroes else bytes(124)))
            self._start(exp, events)
            return
        if not self.fixed:
            self._fail(events, f"option {opt} needs the fixed newstyle handshake")
            return
        if opt == spec.OPT_ABORT:
            self._opt_reply(opt, spec.REP_ACK)
            self.state = State.CLOSED
            events.append(Disconnect("client aborted the handshake"))
        elif opt == spec.OPT_LIST:
            if data:
                self._opt_reply(opt, spec.REP_ERR_INVALID, b"LIST takes no data")
                return
            for n in self.names():
                b = n.encode()
                self._opt_reply(opt, spec.REP_SERVER, struct.pack(">I", len(b)) + b)
            self._opt_reply(opt, spec.REP_ACK)
        elif opt in (spec.OPT_INFO, spec.OPT_GO):
            self._info_go(opt, data, events)
        elif opt == spec.OPT_STRUCTURED_REPLY:
            if data:
                self._opt_reply(opt, spec.REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data")
                return
            self.structured = True
            self._opt_reply(opt, spec.REP_ACK)
        elif opt in (spec.OPT_LIST_META_CONTEXT, spec.OPT_SET_META_CONTEXT):
            if not self.structured:
                self._opt_reply(opt, spec.REP_ERR_INVALID, b"negotiate structured replies first")
                return
            self._opt_reply(opt, spec.REP_ACK)     # no metadata contexts offered
        elif opt == spec.OPT_STARTTLS:
            self._opt_reply(opt, spec.REP_ERR_UNSUP, b"TLS is not supported")
        else:
            self._opt_reply(opt, spec.REP_ERR_UNSUP, f"option {opt} is not supported".encode())

    def _info_go(self, opt: int, data: bytes, events: list[Event]) -> None:
        if len(data) < 6:
            self._opt_reply(opt, spec.REP_ERR_INVALID, b"option data too short")
            return
        (nlen,) = struct.unpack_from(">I", data, 0)
        if 4 + nlen + 2 > len(data):
            self._opt_reply(opt, spec.REP_ERR_INVALID, b"name length beyond the option data")
            return
        name = data[4:4 + nlen].decode(errors="replace")
        (nreq,) = struct.unpack_from(">H", data, 4 + nlen)
        if 4 + nlen + 2 + 2 * nreq != len(data):
            self._opt_reply(opt, spec.REP_ERR_INVALID, b"information request count does not match the length")
            return
        reqs = struct.unpack_from(f">{nreq}H", data, 6 + nlen)
        exp = self.lookup(name)
        if exp is None:
            self._opt_reply(opt, spec.REP_ERR_UNKNOWN, f"export {name!r} does not exist".encode())
            return
        self._opt_reply(opt, spec.REP_INFO, spec.INFO_EXPORT_DATA.pack(spec.INFO_EXPORT, exp.size, exp.tflags))
        if spec.INFO_NAME in reqs:
            self._opt_reply(opt, spec.REP_INFO, struct.pack(">H", spec.INFO_NAME) + exp.name.encode())
        if spec.INFO_DESCRIPTION in reqs and exp.description:
            self._opt_reply(opt, spec.REP_INFO, struct.pack(">H", spec.INFO_DESCRIPTION) + exp.description.encode())
        if spec.INFO_BLOCK_SIZE in reqs:
            self._opt_reply(opt, spec.REP_INFO, spec.INFO_BLOCK_SIZE_DATA.pack(
                spec.INFO_BLOCK_SIZE, exp.block_size, max(exp.block_size, 4096), exp.max_payload))
        self._opt_reply(opt, spec.REP_ACK)
        if opt == spec.OPT_GO:
            self._start(exp, events)

    def _start(self, exp: Export, events: list[Event]) -> None:
        self.export = exp
        self.state = State.TRANSMISSION
        events.append(TransmissionStarted(exp, self.structured))

    # -- transmission ----------------------------------------------------------------------------

    def _request(self, events: list[Event]) -> None:
        rx = self.rx
        magic, flags, typ, cookie, offset, length = _REQ_UNPACK(rx.buf, rx.r)
        if magic != spec.REQUEST_MAGIC:
            self._fail(events, f"request magic {magic:#x} is wrong")
            return
        rx.r += 28
        exp = self.export
        assert exp is not None
        if typ == spec.CMD_DISC:
            self.state = State.CLOSED
            events.append(Disconnect("client disconnected"))
            return
        err = 0
        if typ not in _KNOWN_CMDS:
            err = spec.EINVAL
        elif typ in (spec.CMD_READ, spec.CMD_WRITE) and length > exp.max_payload:
            err = spec.EINVAL
        elif typ != spec.CMD_FLUSH and (offset + length > exp.size):
            err = spec.ENOSPC if typ == spec.CMD_WRITE else spec.EINVAL
        elif typ != spec.CMD_FLUSH and (offset % exp.block_size or length % exp.block_size):
            err = spec.EINVAL
        elif exp.read_only and typ in (spec.CMD_WRITE, spec.CMD_TRIM, spec.CMD_WRITE_ZEROES):
            err = spec.EPERM
        if typ == spec.CMD_WRITE:
            if err:
                if length:
                    self.skip = length      # read past the payload without keeping it
                    self.skip_reply = (cookie, err)
                else:
                    self.reply_error(cookie, err, "request refused")
                return
            req = Request(typ, flags, cookie, offset, length, bytearray(length))
            self.payload = req
            self.payload_got = 0
            self._payload_fill()
            self._payload_progress(events)
            return
        if err:
            self.reply_error(cookie, err, "request refused")
            return
        events.append(Request(typ, flags, cookie, offset, length))

    def _payload_fill(self) -> None:
        """Move payload bytes already in the ring into the request's buffer."""
        req = self.payload
        assert req is not None and req.data is not None
        rx = self.rx
        n = min(req.length - self.payload_got, rx.w - rx.r)
        if n:
            req.data[self.payload_got:self.payload_got + n] = rx.buf[rx.r:rx.r + n]
            rx.r += n
            self.payload_got += n

    def _payload_progress(self, events: list[Event]) -> None:
        req = self.payload
        assert req is not None
        if self.payload_got >= req.length:
            self.payload = None
            events.append(req)

    # -- replies -------------------------------------------------------------------------------

    def reply(self, cookie: int, error: int = 0) -> None:
        """Finish a non-read request (error: an NBD error value, 0 for success)."""
        if error:
            self.reply_error(cookie, error)
        elif self.structured:
            self.out.append(_STRUCT_PACK(spec.STRUCTURED_REPLY_MAGIC, spec.REPLY_FLAG_DONE,
                                         spec.REPLY_TYPE_NONE, cookie, 0))
        else:
            self.out.append(_SIMPLE_PACK(spec.SIMPLE_REPLY_MAGIC, 0, cookie))

    def reply_read(self, cookie: int, offset: int, data: Buffer) -> None:
        if self.structured:
            self.out.append(_STRUCT_PACK(spec.STRUCTURED_REPLY_MAGIC, spec.REPLY_FLAG_DONE,
                                         spec.REPLY_TYPE_OFFSET_DATA, cookie, 8 + len(data)) + _U64.pack(offset))
        else:
            self.out.append(_SIMPLE_PACK(spec.SIMPLE_REPLY_MAGIC, 0, cookie))
        self.out.append(data)

    def reply_error(self, cookie: int, error: int, message: str = "") -> None:
        if self.structured:
            msg = message.encode()[:4096]
            self.out.append(_STRUCT_PACK(spec.STRUCTURED_REPLY_MAGIC, spec.REPLY_FLAG_DONE,
                                         spec.REPLY_TYPE_ERROR, cookie, 6 + len(msg))
                            + struct.pack(">IH", error, len(msg)) + msg)
        else:
            self.out.append(_SIMPLE_PACK(spec.SIMPLE_REPLY_MAGIC, error, cookie))

    def info(self) -> dict[str, Any]:
        return {"state": self.state.value, "export": self.export.name if self.export else None,
                "structured_replies": self.structured}
