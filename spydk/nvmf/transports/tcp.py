"""The NVMe/TCP transport: asyncio listeners, one connection = one queue pair.

Each connection is an ``asyncio.BufferedProtocol`` that receives straight into the sans-IO
codec's ring (spydk.nvme.tcp), turns its events into Requests for the controller, and
writes what the codec returns with one ``writelines`` per batch. Everything runs on the
app thread (the protocol enters it while it processes a batch).

Fast path: on a connected I/O queue, a Read (transport SGL) or an in-capsule Write of a
namespace backed by a zero-copy-capable bdev goes from the capsule straight to the bdev
(one unpack of the SQE, no Request object) and its completion straight to the codec's
``append_c2h_data``/``append_response``. It takes only commands that pass the general path's
range and length check (``nvmf.io.rw_status``, the one definition; the loop evaluates it
inline, and a test checks both agree) and need none of its other cases (other SGL forms,
fused, ANA); every other command, and any error, goes through ``exec_request``, so the result
on the wire is the same. Consecutive fast-path commands of one receive batch with the same
namespace, direction and length form a run, submitted with one ``desc.rw_batch`` (on a
channel taken once) when the next command or event is not of it; its completion is one call
that appends every C2HData/CapsuleResp. What rw_batch does not take goes one by one through
``read_blocks``/``write_blocks``, so each command keeps its exact status. Completions queued
during the batch are delivered by ``Thread.poll_if_messages`` before the one write.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from spydk import trace as _trace
from spydk.bdev import iobuf
from spydk.bdev.io import SUCCESS as _IO_SUCCESS
from spydk.log import NOTICE, get_logger
from spydk.nvme import spec, tcp
from spydk.nvme.spec import GenericStatus, SglSubtype, SglType
from spydk.nvme.spec.tcp import Fes
from spydk.nvme.tcp import pdu as _pdu
from spydk.nvme.tls_psk import TlsKey
from spydk.nvmf import ctrlr as nvmf_ctrlr
from spydk.nvmf.bdev_ns import BdevBackend, io_status, rc_status
from spydk.nvmf.request import Qpair, Request
from spydk.nvmf.subsystem import ListenAddress, NvmfConfigError
from spydk.nvmf.transport import Transport, TransportOptions, register_transport
from spydk.thread.thread import get_thread, set_thread
from spydk.trace import tpoints as _tp

if TYPE_CHECKING:
    from spydk.nvmf.tgt import Target
    from spydk.thread import Thread

log = get_logger("nvmf")

MAXH2CDATA = 131072
# Limits a peer cannot negotiate (docs/reliability.md). Connections past the cap are closed
# at accept; a connection has ADMISSION_TIMEOUT seconds to send its ICReq and a Connect that
# succeeds (a client that connects and sends nothing, or half a PDU, is closed then).
MAX_CONNECTIONS_PER_LISTENER = 1024
ADMISSION_TIMEOUT = 10.0
_ST_TRANSIENT = (GenericStatus.TRANSIENT_TRANSPORT_ERROR << 1)
_ST_SGL_LENGTH = (GenericStatus.DATA_SGL_LENGTH_INVALID << 1) | (1 << 15)
_ST_SGL_TYPE = (GenericStatus.SGL_DESCRIPTOR_TYPE_INVALID << 1) | (1 << 15)
_ST_SGL_OFFSET = (GenericStatus.INVALID_SGL_OFFSET << 1) | (1 << 15)
_ST_INVALID_FIELD = (GenericStatus.INVALID_FIELD << 1) | (1 << 15)
_SGL_INCAPSULE = (SglType.DATA_BLOCK << 4) | SglSubtype.OFFSET
_SGL_TRANSPORT = (SglType.TRANSPORT_DATA_BLOCK << 4) | SglSubtype.TRANSPORT
_SGL_UNPACK = spec.SGL_DESC.unpack_from
_HDR_UNPACK = spec.SQE_HEAD.unpack_from
# SQE fields of the I/O fast path in one unpack: OPC, FLAGS, CID, NSID, SGL1 address, length,
# type/subtype, SLBA (CDW10-11), CDW12.
_IO_SQE = struct.Struct("<BBHI16xQI3xBQI")
assert _IO_SQE.size == 52
_IO_UNPACK = _IO_SQE.unpack_from
_FLAGS_SGL = 0x40  # PSDT 01b (SGL, contiguous MPTR), not fused
_OPC_READ, _OPC_WRITE = 0x02, 0x01
_CapsuleCommand = tcp.CapsuleCommand
_FES_HEADER_DIGEST = 0x03  # NVMe/TCP FES: header digest error
_H2CData = tcp.H2CData
# The codec's own packers for the two completion PDUs the fast path appends inline.
_C2H_PACK = _pdu._C2H_PACK
_RESP_PACK = _pdu._RESP_PACK
_LAST_SUCCESS = _pdu._LAST_SUCCESS
_READY = _pdu.READY
_CLOSED = _pdu.CLOSED
FABRICS = spec.FABRICS_OPCODE
_FCTYPE_CONNECT = 0x01
CONNECT_DATA_LEN = 1024  # the Connect command's data is exactly this (NVMe over Fabrics 1.1)
_ST_ABORTED = GenericStatus.ABORTED_BY_REQUEST << 1
_CAPSULE_HDR = struct.Struct("<BBBBI")
_now = time.monotonic_ns
_NO_RUN: list[Any] = []  # _process's run lists before a run starts (never appended to)

# Trace points. _TRACE_TCP: the nvmf_tcp group is on. _TRACE_PATH: nvmf_tcp or nvmf_ctrlr is
# on, so commands leave the fast path for the general one, where every layer records them.
# Both are tested once per receive batch on the fast path, per command on the general path.
_TRACE_TCP = False
_TRACE_PATH = False
_trace.bind_flag(globals(), "_TRACE_TCP", _tp.GROUP_NVMF_TCP)


def _trace_changed() -> None:
    global _TRACE_PATH
    _TRACE_PATH = _trace.group_on(_tp.GROUP_NVMF_TCP) or _trace.group_on(_tp.GROUP_NVMF_CTRLR)


_trace.on_change(_trace_changed)
_trace_changed()


@register_transport
class TcpTransport(Transport):
    trtype = "TCP"

    def __init__(self, tgt: Target, opts: TransportOptions):
        super().__init__(tgt, opts)
        self.servers: dict[ListenAddress, asyncio.AbstractServer] = {}
        self.connections: set[TcpConnection] = set()
        self.pool = iobuf.pool
        self.thread: Thread | None = None
        self.max_connections_per_listener = MAX_CONNECTIONS_PER_LISTENER
        self.admission_timeout = ADMISSION_TIMEOUT
        self.per_listener: dict[ListenAddress, int] = {}
        self.refused = 0  # connections closed at accept (over the cap)
        # Multi-core: decides, after each I/O queue's Connect, whether another reactor takes
        # the connection (spydk.nvmf.spread.Spreader); None = every queue stays here.
        from spydk.nvmf.spread_ops import spreader_for
        self.spreader: Any = spreader_for(self)

    async def listen(self, addr: ListenAddress) -> None:
        loop = asyncio.get_running_loop()
        fam = socket.AF_INET6 if addr.adrfam == "IPv6" else socket.AF_INET
        try:
            server = await loop.create_server(lambda: self._protocol(addr), addr.traddr,
                                              int(addr.trsvcid), family=fam, reuse_address=True,
                                              backlog=self.opts.acceptor_backlog)
        except OSError as e:
            raise NvmfConfigError(f"cannot listen on {addr}: {e.strerror or e}", e.errno or 5) from None
        self.servers[addr] = server
        log.log(NOTICE, "NVMe/TCP target listening on %s", addr)

    def _protocol(self, addr: ListenAddress) -> asyncio.BufferedProtocol:
        """A new connection's protocol: TLS first when the address is a secure channel."""
        conn = TcpConnection(self, addr)
        if not self.tgt.secure_address(addr):
            return conn
        # Imported at the first secure channel: OpenSSL's bindings are not start-up work.
        from spydk.nvme.tls import TlsSession
        from spydk.nvme.tls_io import TlsProtocol
        session = TlsSession(server=True, lookup=lambda ident: self._psk(conn, ident))
        return TlsProtocol(conn, session)

    def _psk(self, conn: TcpConnection, identity: bytes) -> TlsKey | None:
        found = self.tgt.tls_key(conn.listen_address, identity)
        if found is not None:
            conn.qp.tls_identity = (found[1], found[2])
            return found[0]
        return None

    async def stop_listen(self, addr: ListenAddress) -> None:
        server = self.servers.pop(addr, None)
        if server is None:
            return
        server.close()
        for c in list(self.connections):
            if c.listen_address == addr:
                c.disconnect(f"listener {addr} removed")
        await server.wait_closed()

    def listening(self) -> list[ListenAddress]:
        return list(self.servers)

    async def close(self) -> None:
        for addr in list(self.servers):
            await self.stop_listen(addr)
        for c in list(self.connections):
            c.disconnect("transport closed")

    def stats(self) -> dict[str, Any]:
        return {"trtype": "TCP", "pending_data_buffer": 0,
                "connections": len(self.connections)}


class _ClosedOwner:
    """The owner of a closed connection's queue pair: a completion that comes after the close
    gives its buffer back and sends nothing (the queue pair no longer refers to its connection,
    so a closed connection is freed by reference counting, without the cyclic collector)."""

    __slots__ = ("pool",)

    def __init__(self, pool: Any):
        self.pool = pool

    def send_completion(self, req: Request) -> None:
        if req.pool_buf is not None:
            self.pool.put(req.pool_buf)
            req.pool_buf = None

    def disconnect(self, reason: str) -> None:
        return None  # already closed: there is nothing left to disconnect


class TcpConnection(asyncio.BufferedProtocol):
    """One NVMe/TCP connection: codec events in, Requests to the controller, PDUs out."""

    def __init__(self, tr: TcpTransport, listen_address: ListenAddress,
                 tq: tcp.TcpQueuePair | None = None):
        self.tr = tr
        self.tgt = tr.tgt
        self.opts = tr.opts
        self.listen_address = listen_address
        # tq: a codec resumed from another reactor (spread.py), else a new connection's
        self.tq = tq or tcp.TcpQueuePair(tcp.Role.CONTROLLER, max_incapsule_data=nvmf_ctrlr.ADMIN_ICD)
        self.qp = Qpair(self, listen_address)
        self.transport: asyncio.Transport | None = None
        self.out: list[tcp.Buffer] = []
        self.pool_bufs: list[memoryview] = []  # given back once their data is on the wire
        self.r2t_reqs: dict[int, Request] = {}
        self.r2t_bad: set[int] = set()
        self.r2t_aborted: set[int] = set()  # ttags whose command was aborted while its data came
        self.next_ttag = 0
        # Commands received and not yet answered; a host may have at most its SQ's entries
        # outstanding (the transport's queue depth until Connect says how many).
        self.inflight = 0
        self.max_inflight = max(tr.opts.max_queue_depth, tr.opts.max_aq_depth)
        # Commands waiting for a pooled receive buffer: cid -> (request, pool waiter).
        self.buf_wait: dict[int, tuple[Request, Any]] = {}
        self.closing = False
        self.in_batch = False
        # Counted where they happen (error paths only): read by the metrics exporter.
        self.digest_errors = 0
        self.protocol_errors = 0
        self.flush_scheduled = False
        self.c2h_success = self.opts.c2h_success
        self.max_io = self.opts.max_io_size
        self.thread: Thread | None = None
        self.peer: dict[str, str] = {}
        self.counted = False  # counted in the listener's connections
        self.admission_timer: asyncio.TimerHandle | None = None
        self._read_cb = self._read_done  # bound once: the bdev callbacks of the fast path
        self._write_cb = self._write_done
        self._read_batch_cb = self._read_batch_done
        self._write_batch_cb = self._write_batch_done

    # -- asyncio protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        if peer:
            fam = "IPv6" if ":" in str(peer[0]) else "IPv4"
            self.peer = {"trtype": "TCP", "adrfam": fam, "traddr": str(peer[0]),
                         "trsvcid": str(peer[1])}
        self.qp.peer_address = self.peer
        tr = self.tr
        n = tr.per_listener.get(self.listen_address, 0)
        if n >= tr.max_connections_per_listener:
            tr.refused += 1
            if tr.refused == 1 or tr.refused % 1000 == 0:
                log.warning("NVMe/TCP listener %s: %d connections open (limit %d); refusing %s "
                            "(%d refused so far)", self.listen_address, n, tr.max_connections_per_listener,
                            self.peer.get("traddr", "?"), tr.refused)
            self.closing = True
            transport.close()
            return
        tr.per_listener[self.listen_address] = n + 1
        self.counted = True
        tr.connections.add(self)
        self.tgt.qpair_opened(self.qp)
        self.thread = self.tgt.thread
        if _TRACE_TCP:
            _trace.record(_tp.TCP_QP_CREATE, id(self))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without an event loop (tests)
            return
        self.admission_timer = loop.call_later(tr.admission_timeout, self._admission_expired)

    def _admission_expired(self) -> None:
        self.admission_timer = None
        if self.qp.ctrlr is None and not self.closing:
            log.error("NVMe/TCP connection from %s: no successful Connect within %.0f s; closing it",
                      self.peer.get("traddr", "?"), self.tr.admission_timeout)
            self.disconnect("admission timeout")
            if self.transport is not None:
                self.transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.tq.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.tq.buffer_updated(nbytes)
        try:
            self._process()
        except Exception:  # a bug of ours: this connection goes, the target stays
            log.exception("NVMe/TCP connection from %s: internal error; closing it",
                          self.peer.get("traddr", "?"))
            self.disconnect("internal error")
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool:
        self.tq.eof_received()
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        if self.admission_timer is not None:
            self.admission_timer.cancel()
            self.admission_timer = None
        # Break the reference cycles (the queue pair's owner, our bound callbacks) so that the
        # connection and its receive buffers go now, not at the next cyclic collection. I/O still
        # in flight holds what it needs; its completion finds the connection closed.
        for cb in ("_read_cb", "_write_cb", "_read_batch_cb", "_write_batch_cb"):
            self.__dict__.pop(cb, None)
        if not self.counted:
            self.qp.owner = _ClosedOwner(self.tr.pool)
            return  # refused at accept: nothing was set up
        self.counted = False
        tr = self.tr
        left = tr.per_listener.get(self.listen_address, 1) - 1
        if left > 0:
            tr.per_listener[self.listen_address] = left
        else:
            tr.per_listener.pop(self.listen_address, None)
        self.tr.connections.discard(self)
        if _TRACE_TCP:
            _trace.record(_tp.TCP_QP_DESTROY, id(self))
        prev = set_thread(self.thread) if self.thread is not None else get_thread()
        try:
            self.tgt.qpair_closed(self.qp)
        finally:
            set_thread(prev)
        put = self.tr.pool.put
        for req in self.r2t_reqs.values():
            if req.pool_buf is not None:
                put(req.pool_buf)
                req.pool_buf = None
        self.r2t_reqs.clear()
        self.out.clear()
        for b in self.pool_bufs:
            put(b)
        self.pool_bufs.clear()
        for _req, waiter in self.buf_wait.values():
            self.tr.pool.cancel(waiter)
        self.buf_wait.clear()
        self.qp.owner = _ClosedOwner(self.tr.pool)

    def pause_writing(self) -> None:
        # The host does not read what we send: stop reading its commands until it does, so
        # what we queue for it stays bounded by its queue depth.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -- receive path ----------------------------------------------------------------------------

    def _process(self) -> None:
        tq = self.tq
        prev = set_thread(self.thread)
        self.in_batch = True
        try:
            evs = tq.pending_events
            if tq._state == _CLOSED and evs:  # tq.closed without the property call
                # The codec met a fatal error (or the end) further on in what arrived: the
                # commands before it are not started, only the error is answered.
                keep = [e for e in evs if type(e) is not _CapsuleCommand and type(e) is not _H2CData]
                evs.clear()
                evs.extend(keep)
            pop = evs.popleft
            qp = self.qp
            ctrlr = qp.ctrlr
            # Namespaces of an I/O queue's subsystem, when the fast path may be taken at all.
            nss = None
            if ctrlr is not None and qp.qid > 0 and not ctrlr.subsys.ana_reporting \
                    and not ctrlr.subsys.reservations_active and not ctrlr.subsys.masking:
                nss = ctrlr.subsys.namespaces
            if _TRACE_PATH:
                nss = None
                if _TRACE_TCP:
                    _trace.record(_tp.TCP_READ_DONE, id(self), 0, 0, id(qp))
            max_io = self.max_io
            # Per-command bookkeeping of the fast path, summed here and stored before anything
            # else can look at it (the general path, a failed submit, the completions below).
            heads = reads = read_bytes = writes = write_bytes = 0
            # The current run of fast-path commands for one rw_batch: same backend, direction
            # and length, in arrival order; submitted when the next command or event is not
            # of it, before anything else runs (so I/O is issued in the host's order).
            # (The lists are made when a run starts: a lone command, as at queue depth 1,
            # is submitted on its own.)
            run_b: Any = None
            run_w = False
            run_nlb = 0
            run_offs: list[int] = _NO_RUN
            run_bufs: list[Any] = _NO_RUN
            run_args: list[int] = _NO_RUN
            read_cb = self._read_cb
            write_cb = self._write_cb
            while evs and not self.closing:
                ev = pop()
                t = type(ev)
                if t is _CapsuleCommand:
                    self.inflight += 1
                    if self.inflight > self.max_inflight:
                        self._too_many(ev)  # type: ignore[arg-type]
                        break
                    if nss is not None:
                        opc, flags, cid, nsid, addr, length, ts, slba, cdw12 = _IO_UNPACK(ev.sqe)  # type: ignore[union-attr]
                        ns = nss.get(nsid) if flags == _FLAGS_SGL else None
                        if ns is not None and qp.fused_first is None:
                            b = ns.backend
                            nlb = (cdw12 & 0xFFFF) + 1
                            # rw_status(b, slba, nlb, length) == 0, inlined (a call here costs
                            # ~1.7 % of a read's instructions): tests/nvmf/test_fast_path.py
                            # checks the two agree; anything else takes the general path.
                            if (type(b) is BdevBackend and length <= max_io and b.zcopy
                                    and nlb * b.block_size == length and slba + nlb <= b.num_blocks):
                                data = ev.data  # type: ignore[union-attr]
                                if opc == _OPC_READ:
                                    if data is None and ts == _SGL_TRANSPORT:
                                        if run_b is None and not evs:  # alone: the single call
                                            heads += 1
                                            reads += 1
                                            read_bytes += length
                                            rc = b.desc.read_blocks(b.io_channel or b.channel(), None, slba, nlb,
                                                                    read_cb, nsid << 16 | cid)
                                            if rc:
                                                qp.sq_head += heads
                                                heads = 0
                                                self._fast_fail(opc, nsid << 16 | cid, rc_status(rc))
                                            continue
                                        if run_b is not b or run_w or run_nlb != nlb:
                                            if run_b is not None:
                                                qp.sq_head += heads
                                                heads = 0
                                                self._submit_run(run_b, run_w, run_nlb, run_offs, run_bufs,
                                                                 run_args)
                                            run_b = b
                                            run_w = False
                                            run_nlb = nlb
                                            run_offs = []
                                            run_args = []
                                        heads += 1
                                        reads += 1
                                        read_bytes += length
                                        run_offs.append(slba)
                                        run_args.append(nsid << 16 | cid)
                                        continue
                                elif opc == _OPC_WRITE:
                                    if data is not None and ts == _SGL_INCAPSULE and not addr \
                                            and len(data) == length:
                                        if run_b is None and not evs:  # alone: the single call
                                            heads += 1
                                            writes += 1
                                            write_bytes += length
                                            rc = b.desc.write_blocks(b.io_channel or b.channel(), data, slba, nlb,
                                                                     write_cb, nsid << 16 | cid)
                                            if rc:
                                                qp.sq_head += heads
                                                heads = 0
                                                self._fast_fail(opc, nsid << 16 | cid, rc_status(rc))
                                            continue
                                        if run_b is not b or not run_w or run_nlb != nlb:
                                            if run_b is not None:
                                                qp.sq_head += heads
                                                heads = 0
                                                self._submit_run(run_b, run_w, run_nlb, run_offs, run_bufs,
                                                                 run_args)
                                            run_b = b
                                            run_w = True
                                            run_nlb = nlb
                                            run_offs = []
                                            run_bufs = []
                                            run_args = []
                                        heads += 1
                                        writes += 1
                                        write_bytes += length
                                        run_offs.append(slba)
                                        run_bufs.append(data)
                                        run_args.append(nsid << 16 | cid)
                                        continue
                    if heads:
                        qp.sq_head += heads
                        heads = 0
                    if run_b is not None:
                        self._submit_run(run_b, run_w, run_nlb, run_offs, run_bufs, run_args)
                        run_b = None
                    self._capsule(ev)  # type: ignore[arg-type]
                    if qp.ctrlr is not ctrlr:  # a Connect (or a disconnect) changed the queue
                        if qp.ctrlr is not None:
                            self.max_inflight = qp.sqsize + 1
                            if qp.qid > 0 and self.tr.spreader is not None:
                                self.tr.spreader.place(self)  # may move it (closing: loop ends)
                        if reads or writes:
                            self._count_io(ctrlr, reads, read_bytes, writes, write_bytes)
                            reads = read_bytes = writes = write_bytes = 0
                        ctrlr = qp.ctrlr
                        nss = None
                else:
                    if heads:
                        qp.sq_head += heads
                        heads = 0
                    if run_b is not None:
                        self._submit_run(run_b, run_w, run_nlb, run_offs, run_bufs, run_args)
                        run_b = None
                    if t is _H2CData:
                        if ev.last:  # type: ignore[union-attr]
                            self._h2c_done(ev.ttag)  # type: ignore[union-attr]
                    else:
                        self._other_event(ev)  # type: ignore[arg-type]
            if heads:
                qp.sq_head += heads
            if run_b is not None:
                self._submit_run(run_b, run_w, run_nlb, run_offs, run_bufs, run_args)
            # SMART counters of the batch (_count_io, inline): only the fast path counts here,
            # and it runs on a connected queue, so ctrlr is set when these are non-zero.
            if reads:
                ctrlr.reads += reads  # type: ignore[union-attr]
                ctrlr.read_units += read_bytes >> 9  # type: ignore[union-attr]
            if writes:
                ctrlr.writes += writes  # type: ignore[union-attr]
                ctrlr.write_units += write_bytes >> 9  # type: ignore[union-attr]
            # Deliver the completions this batch caused (bdev I/O completed during submit is
            # queued as a message) now, so that one write carries them: without this each
            # I/O costs two more event-loop iterations.
            th = self.thread
            if th is not None:
                th.poll_if_messages()
        finally:
            self.in_batch = False
            set_thread(prev)
        if self.out:
            self._flush()

    @staticmethod
    def _count_io(ctrlr: Any, reads: int, read_bytes: int, writes: int, write_bytes: int) -> None:
        """Add a batch's fast-path commands to the controller's SMART counters."""
        ctrlr.reads += reads
        ctrlr.read_units += read_bytes >> 9
        ctrlr.writes += writes
        ctrlr.write_units += write_bytes >> 9

    def _submit_run(self, b: BdevBackend, write: bool, nlb: int, offs: list[int], bufs: list[Any],
                    args: list[int]) -> None:
        """Submit a run of fast-path commands (see _process) with one rw_batch; what it did not
        take (no free BdevIO, a read-only descriptor) goes one by one, so that each command
        fails with its own exact status."""
        ch = b.io_channel or b.channel()
        desc = b.desc
        if len(offs) == 1:  # one command (queue depth 1): the single call costs less
            if write:
                rc = desc.write_blocks(ch, bufs[0], offs[0], nlb, self._write_cb, args[0])
            else:
                rc = desc.read_blocks(ch, None, offs[0], nlb, self._read_cb, args[0])
            if rc:
                self._fast_fail(_OPC_WRITE if write else _OPC_READ, args[0], rc_status(rc))
            return
        if not write:
            bufs = [None] * len(offs)  # zero-copy reads: the bdev hands out its memory
        n = desc.rw_batch(ch, write, bufs, offs, nlb, self._write_batch_cb if write else self._read_batch_cb, args)
        if n < len(offs):
            rw = desc.write_blocks if write else desc.read_blocks
            cb = self._write_cb if write else self._read_cb
            opc = _OPC_WRITE if write else _OPC_READ
            for i in range(n, len(offs)):
                rc = rw(ch, bufs[i], offs[i], nlb, cb, args[i])
                if rc:
                    self._fast_fail(opc, args[i], rc_status(rc))

    # -- fast path completions (bdev callbacks; arg is nsid << 16 | cid) --------------------------

    def _read_batch_done(self, ios: list[Any]) -> None:
        """rw_batch's completion of a run of reads: every C2HData (or error) appended at once."""
        if self.closing:
            for io in ios:
                if io.status != _IO_SUCCESS:
                    self._fast_fail(_OPC_READ, io.cb_arg, io_status(io))
            return
        tq = self.tq
        inline = self.c2h_success and tq._c2h_fast and tq._state == _READY
        out = self.out
        n = 0
        for io in ios:
            arg = io.cb_arg
            if io.status != _IO_SUCCESS:
                self._fast_fail(_OPC_READ, arg, io_status(io))
                out = self.out  # a completion may have flushed (no event loop: tests)
                continue
            n += 1
            iovs = io.iovs
            pb = io.pool_buf
            if pb is not None:  # not zero-copy after all (e.g. a split read): keep it until sent
                io.pool_buf = None
                self.pool_bufs.append(pb)
            if inline and len(iovs) == 1:
                data = iovs[0]
                dlen = len(data)
                if dlen:  # tq.append_c2h_data's one-PDU case, inline
                    out.append(_C2H_PACK(7, _LAST_SUCCESS, 24, 24, 24 + dlen, arg & 0xFFFF, 0, dlen))
                    out.append(data)
                    continue
            self._c2h(iovs, arg)
        self.inflight -= n
        self.tgt.completed_nvme_io += n
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def _write_batch_done(self, ios: list[Any]) -> None:
        """rw_batch's completion of a run of in-capsule writes: every CapsuleResp at once."""
        if self.closing:
            for io in ios:
                if io.status != _IO_SUCCESS:
                    self._fast_fail(_OPC_WRITE, io.cb_arg, io_status(io))
            return
        qp = self.qp
        tq = self.tq
        inline = not tq._hd and tq._state == _READY
        n = 0
        for io in ios:
            arg = io.cb_arg
            if io.status != _IO_SUCCESS:
                self._fast_fail(_OPC_WRITE, arg, io_status(io))
                continue
            n += 1
            if inline:  # tq.append_response without digest, inline
                self.out.append(_RESP_PACK(5, 0, 24, 0, 24, 0, 0, qp.sq_head % (qp.sqsize + 1), qp.qid,
                                           arg & 0xFFFF, 0))
            else:
                tq.append_response(self.out, arg & 0xFFFF, 0, 0, 0, qp.sq_head % (qp.sqsize + 1), qp.qid)
        self.inflight -= n
        self.tgt.completed_nvme_io += n
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def _c2h(self, iovs: Any, arg: int) -> None:
        """A read's data with the codec's general calls (digests, several buffers, no
        success flag in the last C2HData: then a CapsuleResp too)."""
        tq = self.tq
        cid = arg & 0xFFFF
        if self.c2h_success and len(iovs) == 1:
            tq.append_c2h_data(self.out, cid, iovs[0])
            return
        qp = self.qp
        success = self.c2h_success
        self.out += tq.send_c2h_data(cid, 0, list(iovs), last=True, success=success)
        if not success:
            tq.append_response(self.out, cid, 0, 0, 0, qp.sq_head % (qp.sqsize + 1), qp.qid)

    def _read_done(self, io: Any, success: bool, arg: int) -> None:
        if not success:
            self._fast_fail(_OPC_READ, arg, io_status(io))
            return
        if self.closing:
            return
        iovs = io.iovs
        pb = io.pool_buf
        if pb is not None:  # not zero-copy after all (e.g. a split read): keep it until sent
            io.pool_buf = None
            self.pool_bufs.append(pb)
        self.inflight -= 1
        tq = self.tq
        if self.c2h_success and len(iovs) == 1:
            data = iovs[0]
            dlen = len(data)
            if tq._c2h_fast and tq._state == _READY and dlen:
                # tq.append_c2h_data's one-PDU case, inline (the call is ~2 % of a read)
                out = self.out
                out.append(_C2H_PACK(7, _LAST_SUCCESS, 24, 24, 24 + dlen, arg & 0xFFFF, 0, dlen))
                out.append(data)
            else:
                tq.append_c2h_data(self.out, arg & 0xFFFF, data)
        else:
            self._c2h(iovs, arg)
        self.tgt.completed_nvme_io += 1
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def _write_done(self, io: Any, success: bool, arg: int) -> None:
        if not success:
            self._fast_fail(_OPC_WRITE, arg, io_status(io))
            return
        if self.closing:
            return
        qp = self.qp
        self.inflight -= 1
        tq = self.tq
        if not tq._hd and tq._state == _READY:  # tq.append_response without digest, inline
            self.out.append(_RESP_PACK(5, 0, 24, 0, 24, 0, 0, qp.sq_head % (qp.sqsize + 1), qp.qid,
                                       arg & 0xFFFF, 0))
        else:
            tq.append_response(self.out, arg & 0xFFFF, 0, 0, 0, qp.sq_head % (qp.sqsize + 1), qp.qid)
        self.tgt.completed_nvme_io += 1
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def _fast_fail(self, opc: int, arg: int, status: int) -> None:
        """A fast-path command failed: complete it like the general path (error log entry)."""
        req = Request(self.qp, b"", arg & 0xFFFF, opc, _FLAGS_SGL, arg >> 16, 0, 0)
        req.io_done(status)

    def _other_event(self, ev: tcp.Event) -> None:
        if isinstance(ev, tcp.ICReqReceived):
            if not self.tq.closed:  # bytes after the ICReq may already have ended the connection
                self.out += self.tq.send_icresp(cpda=0, maxh2cdata=MAXH2CDATA)
        elif isinstance(ev, tcp.DataDigestError):
            self.digest_errors += 1
            if ev.pdu_type == 4:
                self.inflight += 1  # a command that arrived damaged: answered all the same
                self._fail_cid(ev.cccid, _ST_TRANSIENT)
            elif ev.last:
                self.r2t_bad.discard(ev.ttag)
                req = self.r2t_reqs.pop(ev.ttag, None)
                if req is not None:
                    req.io_done(_ST_TRANSIENT)
            else:
                self.r2t_bad.add(ev.ttag)
        elif isinstance(ev, tcp.ProtocolError):
            self.protocol_errors += 1
            if ev.fes == _FES_HEADER_DIGEST:
                self.digest_errors += 1
            log.error("NVMe/TCP connection from %s: %s (FES %d); terminating it",
                      self.peer.get("traddr", "?"), ev.reason, ev.fes)
            self.out += ev.term_req
            self.disconnect(ev.reason)
        elif isinstance(ev, tcp.TermReqReceived):
            log.error("NVMe/TCP host %s terminated the connection (FES %d)",
                      self.peer.get("traddr", "?"), ev.fes)
            self.disconnect("host sent H2CTermReq")
        elif isinstance(ev, tcp.ConnectionClosed):
            self.disconnect("connection closed by the host")

    def _fail_cid(self, cid: int, status: int) -> None:
        self.inflight -= 1
        if not self.tq.closed:
            self.out += self.tq.send_response(cid, status, sqid=max(self.qp.qid, 0))

    def _host_error(self, fes: int, fei: int, reason: str, header: bytes) -> None:
        """The host broke the protocol: C2HTermReq carrying the offending header, one log
        line, close this connection (and only it)."""
        log.error("NVMe/TCP connection from %s: %s (FES %d); terminating it",
                  self.peer.get("traddr", "?"), reason, fes)
        self.out += self.tq.send_term_req(fes, fei, header)
        self.disconnect(reason)

    def _too_many(self, ev: tcp.CapsuleCommand) -> None:
        self._host_error(Fes.PDU_SEQUENCE_ERROR, 0,
                         f"{self.inflight} commands outstanding on a queue of {self.max_inflight} entries",
                         _capsule_header(ev))

    def _capsule(self, ev: tcp.CapsuleCommand) -> None:
        sqe = ev.sqe
        opc, flags, cid, nsid = _HDR_UNPACK(sqe, 0)
        qp = self.qp
        qp.sq_head += 1
        xfer = (sqe[4] if opc == FABRICS else opc) & 3
        length = 0
        data = ev.data
        if flags & 0xC0 == 0:  # PRPs cannot describe fabrics data: only data-less commands
            if data is not None:
                self._fail_cid(cid, _ST_INVALID_FIELD)
                return
            xfer = 0
        if xfer:
            addr, length, ts = _SGL_UNPACK(sqe, 24)
            if data is not None:
                if ts != _SGL_INCAPSULE:
                    self._fail_cid(cid, _ST_SGL_TYPE)
                    return
                if addr != 0:
                    self._fail_cid(cid, _ST_SGL_OFFSET)
                    return
                if len(data) != length or xfer != 1:
                    self._fail_cid(cid, _ST_SGL_LENGTH)
                    return
            elif ts == _SGL_INCAPSULE and length == 0:
                xfer = 0  # no data: SPDK's host describes it as an empty in-capsule block
            elif ts != _SGL_TRANSPORT:
                self._fail_cid(cid, _ST_SGL_TYPE)
                return
            if length > self.max_io:
                self._fail_cid(cid, _ST_SGL_LENGTH)
                if opc == FABRICS and sqe[4] == _FCTYPE_CONNECT:
                    self._refuse_connect(length)
                return
            if xfer == 3:
                self._fail_cid(cid, _ST_INVALID_FIELD)
                return
        if opc == FABRICS and sqe[4] == _FCTYPE_CONNECT and length != CONNECT_DATA_LEN:
            # Refused before anything is allocated for it; the host is not admitted.
            self._fail_cid(cid, _ST_SGL_LENGTH)
            self._refuse_connect(length)
            return
        if cid in qp.outstanding and qp.qid == 0 and qp.ctrlr is not None:
            qp.ctrlr.withdraw_aer(qp.outstanding[cid])  # the host dropped it (see withdraw_aer)
        if cid in qp.outstanding or cid in self.buf_wait:
            prior = qp.outstanding.get(cid) or self.buf_wait[cid][0]
            self._host_error(Fes.INVALID_HEADER_FIELD, 10,
                             f"CID {cid} (opcode {opc:#04x}) reused on queue {qp.qid} while the command "
                             f"with that CID (opcode {prior.opcode:#04x}) is outstanding", _capsule_header(ev))
            return
        req = Request(qp, sqe, cid, opc, flags, nsid, xfer, length, data)
        if _TRACE_TCP:
            _trace.record(_tp.TCP_REQ_NEW, id(self), id(req), length, id(qp))
        if xfer == 1 and data is None and length:
            # Ask for the data, received straight into a pooled buffer (once one is free).
            qp.outstanding[cid] = req
            if _TRACE_TCP:
                _trace.record(_tp.TCP_REQ_TX_H_TO_C, id(self), id(req), 0, id(qp))
            buf = self.tr.pool.get(length)
            if buf is None:
                def got(b: memoryview, req: Request = req) -> None:
                    self._got_buffer(req, b)
                self.buf_wait[cid] = (req, got)
                self.tr.pool.wait(length, got)
                return
            self._send_r2t(req, buf)
            return
        if _TRACE_TCP:
            self._trace_execute(req)
        nvmf_ctrlr.exec_request(self.tgt, req)
        if opc == FABRICS and qp.qid > 0 and self.tq.max_incapsule_data != self.opts.in_capsule_data_size:
            self.tq.max_incapsule_data = self.opts.in_capsule_data_size

    def _refuse_connect(self, length: int) -> None:
        log.error("NVMe/TCP connection from %s: Connect with %d bytes of data (must be %d); "
                  "refused and closed", self.peer.get("traddr", "?"), length, CONNECT_DATA_LEN)
        self.disconnect("Connect data of the wrong size")

    def _send_r2t(self, req: Request, buf: memoryview) -> None:
        length = req.length
        req.pool_buf = buf
        dest = buf[:length]
        req.data = dest
        ttag = self.next_ttag
        r2ts = self.r2t_reqs
        while ttag in r2ts:  # after a wrap: skip tags still waiting for their data
            ttag = (ttag + 1) & 0xFFFF
        self.next_ttag = (ttag + 1) & 0xFFFF
        r2ts[ttag] = req
        self.out += self.tq.send_r2t(req.cid, ttag, 0, length, dest=dest)

    def _got_buffer(self, req: Request, buf: memoryview) -> None:
        """The pool had no buffer when req arrived; this one was just given back."""
        if self.closing or self.buf_wait.pop(req.cid, (None,))[0] is not req:
            self.tr.pool.put(buf)
            return
        self._send_r2t(req, buf)
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def abort_request(self, req: Request) -> bool:
        """Abort a command that has not started executing: one waiting for a buffer completes
        at once; one waiting for its data completes, as aborted, when the data is in (the host
        may already be sending it). Commands executing in the bdev cannot be aborted."""
        w = self.buf_wait.get(req.cid)
        if w is not None and w[0] is req:
            del self.buf_wait[req.cid]
            self.tr.pool.cancel(w[1])
            req.io_done(_ST_ABORTED)
            return True
        for ttag, r in self.r2t_reqs.items():
            if r is req:
                self.r2t_aborted.add(ttag)
                return True
        return False

    def _h2c_done(self, ttag: int) -> None:
        req = self.r2t_reqs.pop(ttag, None)
        if req is None:
            return
        if self.r2t_aborted and ttag in self.r2t_aborted:
            self.r2t_aborted.discard(ttag)
            self.r2t_bad.discard(ttag)
            req.io_done(_ST_ABORTED)
            return
        if ttag in self.r2t_bad:
            self.r2t_bad.discard(ttag)
            req.io_done(_ST_TRANSIENT)
            return
        if _TRACE_TCP:
            self._trace_execute(req)
        nvmf_ctrlr.exec_request(self.tgt, req)

    def _trace_execute(self, req: Request) -> None:
        me, r, q = id(self), id(req), id(self.qp)
        _trace.record(_tp.TCP_REQ_RDY_TO_EXECUTE, me, r, 0, q)
        _trace.record(_tp.TCP_REQ_EXECUTING, me, r, 0, q)

    # -- send path -------------------------------------------------------------------------------

    def send_completion(self, req: Request) -> None:
        if self.closing or self.tq.closed:
            if req.pool_buf is not None:  # nothing will be sent: the buffer is free now
                self.tr.pool.put(req.pool_buf)
                req.pool_buf = None
            return
        self.inflight -= 1
        tq = self.tq
        qp = self.qp
        data = req.data
        c2h = req.xfer == 2 and data is not None and req.length and not req.status
        if _TRACE_TCP:
            me, r, q = id(self), id(req), id(qp)
            _trace.record(_tp.TCP_REQ_EXECUTED, me, r, 0, q)
            _trace.record(_tp.TCP_REQ_TRANSFER_C2H if c2h else _tp.TCP_REQ_RDY_TO_COMPLETE, me, r, 0, q)
        if c2h and data is not None:
            if self.c2h_success and not req.dw0 and not req.dw1:
                self.out += tq.send_c2h_data(req.cid, 0, data, last=True, success=True)
            else:
                self.out += tq.send_c2h_data(req.cid, 0, data, last=True)
                self.out += tq.send_response(req.cid, 0, req.dw0, req.dw1,
                                             qp.sq_head % (qp.sqsize + 1), max(qp.qid, 0))
        else:
            self.out += tq.send_response(req.cid, req.status, req.dw0, req.dw1,
                                         qp.sq_head % (qp.sqsize + 1), max(qp.qid, 0))
        if req.pool_buf is not None:
            self.pool_bufs.append(req.pool_buf)
            req.pool_buf = None
        ctx = req.ctx
        if ctx is not None:
            req.ctx = None
            ctx.release()
        self.tgt.completed_nvme_io += 1
        if _TRACE_TCP:
            _trace.record(_tp.TCP_REQ_COMPLETED, id(self), id(req), 0, id(qp))
        if not self.in_batch and not self.flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """A completion outside a receive batch: write at the end of this loop iteration."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without an event loop (tests): write now
            self._flush()
            return
        self.flush_scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_scheduled = False
        out = self.out
        if not out:
            return
        self.out = []
        t = self.transport
        if t is None:
            return
        t.writelines(out)
        bufs = self.pool_bufs
        if bufs:
            self.pool_bufs = []
            # Buffers still queued in the transport are left to the garbage collector
            # rather than reused under the socket's feet (they stop counting in the pool).
            put = self.tr.pool.put if not t.get_write_buffer_size() else self.tr.pool.forget
            for b in bufs:
                put(b)
        if self.closing:
            t.close()

    def moved(self) -> None:
        """The connection now lives on another reactor (its socket was duplicated for it):
        forget it here without a word on the wire. Its queue pair leaves its controller."""
        self.closing = True
        self.out = []
        self.qp.ctrlr = None
        if self.admission_timer is not None:
            self.admission_timer.cancel()
            self.admission_timer = None
        t = self.transport
        if t is not None:
            t.close()  # closes this reactor's descriptor only: the socket stays open

    def resumed(self) -> None:
        """Start a connection moved here (codec resumed, queue pair attached, transport made):
        send what the previous reactor left to send, run what it had received."""
        self._process()

    def disconnect(self, reason: str) -> None:
        """Close the connection (after sending what is queued); idempotent."""
        if self.closing:
            return
        self.closing = True
        if _TRACE_TCP:
            _trace.record(_tp.TCP_QP_DISCONNECT, id(self))
        if self.transport is None:
            return
        if self.out:
            if self.in_batch:
                return  # _process flushes, then closes
            self._flush()
        else:
            self.transport.close()


def _capsule_header(ev: tcp.CapsuleCommand) -> bytes:
    """The header of a received CapsuleCmd PDU (undigested form), for a TermReq."""
    dlen = len(ev.data) if ev.data is not None else 0
    return _CAPSULE_HDR.pack(4, 0, 72, 72 if dlen else 0, 72 + dlen) + bytes(ev.sqe)
