"""NVMe/TCP transport of the host driver: one ``TcpQpair`` = one connection.

Each connection's ``asyncio.BufferedProtocol`` (``_Link``) receives straight into the codec's ring; one
receive batch is parsed into events, each completes its tracker's callback, and whatever those
callbacks submitted goes out in one ``writelines`` at the end of the batch. Commands
submitted outside a batch are flushed by one ``call_soon``.

Any protocol violation by the target (malformed PDU, a CID it was not given, a read answered
with less data than asked, a TermReq, EOF) fails the qpair: its commands complete with
ABORTED - SQ DELETION, and ``on_failure(qpair, reason)`` tells the controller.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from spydk.nvme.host import codec as cd
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION, ST_TRANSIENT, Qpair, Tracker
from spydk.nvme.tls_psk import TlsKey
from spydk.thread import Thread, set_thread

_CQE_HEAD = struct.Struct("<IIHHHH")  # dw0, dw1, sqhd, sqid, cid, status
_CapsuleResponse = cd.CapsuleResponse
_C2HData = cd.C2HData
_R2TReceived = cd.R2TReceived
_SGL_INCAPSULE = 0x01  # DATA_BLOCK, OFFSET
_SGL_TRANSPORT = 0x5A  # TRANSPORT_DATA_BLOCK, TRANSPORT
_SGL_TYPE_OFF = 24 + 15
_STEER_MIN = 16384  # reads above this size are received straight into the caller's buffer

Connector = Callable[[asyncio.BaseProtocol], Awaitable[None]]


class _Link(asyncio.BufferedProtocol):
    """The asyncio protocol of one connection. The qpair object outlives its connections (a
    reset reconnects it), so callbacks of a connection it has closed must not reach it."""

    __slots__ = ("qp",)

    def __init__(self, qp: TcpQpair) -> None:
        self.qp: TcpQpair | None = qp

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.qp.transport if self.qp is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.qp is None:
            transport.close()
            return
        self.qp.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        qp = self.qp
        if qp is None:
            return memoryview(bytearray(65536))
        return qp.codec.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        qp = self.qp
        if qp is not None:
            qp.codec.buffer_updated(nbytes)
            qp._process()

    def eof_received(self) -> bool:
        if self.qp is not None:
            self.qp.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        qp = self.qp
        self.qp = None
        if qp is not None:
            qp.connection_lost(exc)


class TcpQpair(Qpair):
    def __init__(self, qid: int, depth: int, *, max_xfer: int = 128 * 1024,
                 incapsule_data: int = 4096, header_digest: bool = False,
                 data_digest: bool = False, track_time: bool = False,
                 on_failure: Callable[[TcpQpair, str], None] | None = None) -> None:
        Qpair.__init__(self, qid, depth, max_xfer=max_xfer, track_time=track_time)
        self.icd = incapsule_data
        self.header_digest = header_digest
        self.data_digest = data_digest
        self.on_failure = on_failure
        self.codec = cd.new_host_codec(max(incapsule_data, 1024))
        self.transport: asyncio.Transport | None = None
        self.out: list[cd.Buffer] = []
        self.in_batch = False
        self.flush_scheduled = False
        self._ic: asyncio.Future[None] | None = None
        self._link: _Link | None = None
        self.last_dw1 = 0  # DW1 of the latest CapsuleResp (8-byte Property Get)
        self.small_out = True  # self.out holds no large payload (joining it is cheap)
        # A spydk Thread to run completion callbacks on (bdev_nvme sets it); None = none.
        self.thread: Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection -----------------------------------------------------------------------------

    async def connect(self, traddr: str, trsvcid: str, *, adrfam: str = "IPv4", timeout: float = 10.0,
                      connector: Connector | None = None, tls: TlsKey | None = None) -> None:
        """Open the connection (TLS 1.3 with this PSK first when ``tls`` is given) and exchange
        ICReq/ICResp."""
        loop = self._loop = asyncio.get_running_loop()
        self._ic = loop.create_future()
        link = self._link = _Link(self)
        proto: asyncio.BufferedProtocol = link
        handshake: asyncio.Future[str | None] | None = None
        if tls is not None:
            # Imported here: OpenSSL's bindings cost a target that never dials TLS ~30 ms at start-up.
            from spydk.nvme.tls import TlsSession
            from spydk.nvme.tls_io import TlsProtocol
            hs = handshake = loop.create_future()

            def done(err: str | None) -> None:
                if not hs.done():
                    hs.set_result(err)
            proto = TlsProtocol(link, TlsSession(server=False, key=tls), on_done=done)
        try:
            if connector is not None:
                await asyncio.wait_for(connector(proto), timeout)
            else:
                fam = socket.AF_INET6 if adrfam == "IPv6" else socket.AF_INET
                await asyncio.wait_for(loop.create_connection(lambda: proto, traddr, int(trsvcid),
                                                              family=fam), timeout)
            if handshake is not None:
                err = await asyncio.wait_for(handshake, timeout)
                if err is not None:
                    raise ConnectionError(f"TLS with {traddr}:{trsvcid} failed: {err} (check the PSK, "
                                          "the host NQN and the target's secure-channel listener)")
        except (TimeoutError, OSError) as e:
            msg = e.strerror if isinstance(e, OSError) and e.strerror else (str(e) or "timed out")
            raise ConnectionError(f"cannot connect to {traddr}:{trsvcid}: {msg}") from None
        self.out += self.codec.send_icreq(header_digest=self.header_digest, data_digest=self.data_digest)
        self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._ic), timeout)
        except TimeoutError:
            self.fail(f"no ICResp from {traddr}:{trsvcid} within {timeout} s")
            raise ConnectionError(f"no ICResp from {traddr}:{trsvcid} within {timeout} s") from None
        if self.failed is not None:
            raise ConnectionError(self.failed)
        self.connected = True

    def renew(self) -> None:
        """A fresh codec and empty trackers, so the same qpair object can connect again."""
        if self.transport is not None:
            self._close()
        self._abort_all()
        self.reset_state()
        self.codec = cd.new_host_codec(max(self.icd, 1024))
        self.out = []
        self.flush_scheduled = False

    def set_incapsule_data(self, icd: int) -> None:
        """After Connect: the controller's in-capsule data size for this queue (IOCCSZ)."""
        self.icd = icd
        self.codec.max_incapsule_data = icd

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def eof_received(self) -> bool:
        self.codec.eof_received()
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.failed is None:
            self.fail(f"connection lost{': ' + str(exc) if exc else ''}")

    def disconnect(self) -> None:
        """Close on purpose: outstanding commands complete as aborted; no failure report."""
        if self.failed is None:
            self.failed = "disconnected"
        self._close()
        self._abort_all()

    def _abort_all(self) -> None:
        """Complete every command as aborted, on the qpair's Thread when it has one."""
        th = self.thread
        prev = set_thread(th) if th is not None else None
        try:
            self.fail_outstanding(ST_ABORTED_SQ_DELETION)
        finally:
            if th is not None:
                set_thread(prev)

    def _close(self) -> None:
        t = self.transport
        self.transport = None
        if self._link is not None:
            self._link.qp = None  # later callbacks of this connection are dropped
            self._link = None
        self.connected = False
        if t is not None:
            if self.out:
                t.writelines(self.out)
                self.out = []
            t.close()

    def fail(self, reason: str) -> None:
        """The connection is unusable: close it, abort its commands, tell the controller once."""
        if self.failed is not None:
            return
        self.failed = reason
        self._close()
        if self._ic is not None and not self._ic.done():
            self._ic.set_result(None)
        self._abort_all()
        if self.on_failure is not None:
            self.on_failure(self, reason)

    # -- send -----------------------------------------------------------------------------------

    def _send(self, tr: Tracker, sqe: bytearray) -> None:
        n = tr.length
        codec = self.codec
        if codec.closed:
            # The codec closed in this receive batch (its error event is still queued): the
            # command stays outstanding and that event's failure aborts it.
            return
        dest = tr.dest
        if dest is not None:
            # Small reads are copied out of the receive ring (cheaper than steering the
            # payload); large ones land in dest directly.
            sqe[_SGL_TYPE_OFF] = _SGL_TRANSPORT
            steer = tr.steer = n > _STEER_MIN
            self.out.append(codec.send_read_cmd(sqe, tr.cid, n, dest if steer else None))
        elif tr.data is not None and n <= self.icd:
            sqe[_SGL_TYPE_OFF] = _SGL_INCAPSULE
            self.out += codec.send_capsule_cmd(sqe, tr.data)
            if n > 512:
                self.small_out = False
        else:
            if n:
                sqe[_SGL_TYPE_OFF] = _SGL_TRANSPORT
            self.out += codec.send_capsule_cmd(sqe)
        if not self.in_batch and not self.flush_scheduled:
            self.flush_scheduled = True
            loop = self._loop or asyncio.get_event_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.out:
            t = self.transport
            if t is None:
                self.out = []
                return
            out = self.out
            self.out = []
            if len(out) > 1 and self.small_out:
                # Only command headers (reads, small writes): one join is far cheaper than a
                # scatter list of many 72-byte buffers.
                t.write(b"".join(out))
            else:
                t.writelines(out)
            self.small_out = True

    # -- receive --------------------------------------------------------------------------------

    def _process(self) -> None:
        evs = self.codec.pending_events
        pop = evs.popleft
        trackers = self.trackers
        unpack = _CQE_HEAD.unpack_from
        self.in_batch = True
        th = self.thread
        prev = set_thread(th) if th is not None else None
        try:
            while evs and self.failed is None:
                ev = pop()
                t = type(ev)
                if t is _CapsuleResponse:
                    dw0, self.last_dw1, _sqhd, _sqid, cid, status = unpack(ev.cqe)  # type: ignore[union-attr]
                    tr = trackers[cid] if cid < self.depth else None
                    if tr is None or not tr.busy:
                        self.fail(f"target answered CID {cid}, which is not outstanding on qpair {self.qid}")
                        return
                    status &= 0xFFFE
                    if not status:
                        if tr.dest is not None and tr.received != tr.length:
                            self._short(tr)
                            return
                        status = tr.status
                    self._complete(tr, status, dw0)
                elif t is _C2HData:
                    cid = ev.cccid  # type: ignore[union-attr]
                    tr = trackers[cid] if cid < self.depth else None
                    if tr is None or not tr.busy:
                        self.fail(f"target sent data for CID {cid}, which is not outstanding")
                        return
                    payload: memoryview = ev.data  # type: ignore[union-attr,assignment]
                    if not tr.steer:
                        dest = tr.dest
                        off = ev.offset  # type: ignore[union-attr]
                        if dest is None or off + len(payload) > len(dest):
                            self.fail(f"target sent more data than CID {cid} asked for")
                            return
                        dest[off:off + len(payload)] = payload
                    tr.received += len(payload)
                    if ev.success:  # type: ignore[union-attr]
                        if tr.received != tr.length:
                            self._short(tr)
                            return
                        self._complete(tr, tr.status, 0)
                elif t is _R2TReceived:
                    tr = trackers[ev.cccid]  # type: ignore[union-attr]
                    data = tr.data
                    if data is None:
                        self.fail(f"target sent an R2T for CID {tr.cid}, which has no data to send")
                        return
                    off = ev.offset  # type: ignore[union-attr]
                    self.small_out = False
                    self.out += self.codec.send_h2c_data(tr.cid, ev.ttag, off,  # type: ignore[union-attr]
                                                         data[off:off + ev.length])  # type: ignore[union-attr]
                else:
                    self._other(ev)
        finally:
            self.in_batch = False
            if th is not None:
                set_thread(prev)
        if self.out:
            self._flush()

    def _short(self, tr: Tracker) -> None:
        self.fail(f"target completed a read (CID {tr.cid}) with {tr.received} of {tr.length} bytes")

    def _other(self, ev: Any) -> None:
        if isinstance(ev, cd.ICRespReceived):
            if self._ic is not None and not self._ic.done():
                self._ic.set_result(None)
        elif isinstance(ev, cd.DataDigestError):
            tr = self.trackers[ev.cccid] if ev.cccid < self.depth else None
            if tr is not None and tr.busy:
                tr.status = ST_TRANSIENT
                tr.received += ev.length
                if not cd.is_outstanding(self.codec, tr.cid):  # it carried SUCCESS
                    self._complete(tr, ST_TRANSIENT, 0)
        elif isinstance(ev, cd.ProtocolError):
            if ev.term_req and self.transport is not None:
                self.transport.writelines(ev.term_req)
            self.fail(f"protocol error from the target: {ev.reason} (FES {ev.fes:#x})")
        elif isinstance(ev, cd.TermReqReceived):
            self.fail(f"target terminated the connection (TermReq FES {ev.fes:#x})")
        elif isinstance(ev, cd.ConnectionClosed):
            self.fail("connection closed by the target")
