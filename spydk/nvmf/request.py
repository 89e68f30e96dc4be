"""Requests and queue pairs as the controller sees them, independent of the transport.

A transport turns each received command capsule into a Request (SQE plus, for writes,
its data), hands it to ``exec_request`` (ctrlr.py), and gets it back through
``QpairOwner.send_completion`` once ``status``/``dw0`` (and, for reads, ``data``) are set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from spydk import trace as _trace
from spydk.trace import tpoints as _tp

if TYPE_CHECKING:
    from spydk.nvmf.ctrlr import Controller
    from spydk.nvmf.subsystem import ListenAddress

Buffer = bytes | bytearray | memoryview

# Status field values (CQE DW3 bits 31:17 shifted down, phase bit 0 left clear).
STATUS_SUCCESS = 0
_TRACE_CTRLR = False
_trace.bind_flag(globals(), "_TRACE_CTRLR", _tp.GROUP_NVMF_CTRLR)


class QpairOwner(Protocol):
    """What a transport connection provides to its queue pair."""

    def send_completion(self, req: Request) -> None: ...

    def disconnect(self, reason: str) -> None: ...


class Request:
    """One command: SQE fields decoded once, data in or out, completion status."""

    __slots__ = ("qpair", "sqe", "cid", "opcode", "flags", "nsid", "xfer", "length", "data",
                 "status", "dw0", "dw1", "pool_buf", "ctx", "fused")

    def __init__(self, qpair: Qpair, sqe: bytes | memoryview, cid: int, opcode: int, flags: int, nsid: int,
                 xfer: int, length: int, data: Buffer | None = None):
        self.qpair = qpair
        self.sqe = sqe
        self.cid = cid
        self.opcode = opcode
        self.flags = flags
        self.nsid = nsid
        self.xfer = xfer  # DataTransfer direction: 1 host->controller, 2 controller->host
        self.length = length  # SGL1 length: bytes the host sends or expects
        self.data: Buffer | None = data  # write data (in), or read data to send (out)
        self.status = STATUS_SUCCESS
        self.dw0 = 0
        self.dw1 = 0
        self.pool_buf: Any = None  # transport buffer to give back after completion
        self.ctx: Any = None  # per-command state of the executing layer
        self.fused: Request | None = None  # the other half of a fused pair

    def complete(self) -> None:
        """Send the completion (and read data) for this request."""
        qp = self.qpair
        qp.outstanding.pop(self.cid, None)
        if _TRACE_CTRLR:
            _trace.record(_tp.NVMF_CTRLR_IO_DONE, 0, id(self), 0, self.status)
        if self.status and qp.ctrlr is not None:
            qp.ctrlr.record_error(self)
        qp.owner.send_completion(self)

    def fail(self, sc: int, sct: int = 0, dnr: bool = True) -> None:
        self.status = (sc << 1) | (sct << 9) | (int(dnr) << 15)
        self.complete()

    def io_done(self, status: int) -> None:
        """Backend completion: status is the 16-bit CQE status field (0 = success)."""
        self.status = status
        self.complete()


class Qpair:
    """A queue pair: admin (qid 0) or I/O, attached to a controller after Connect."""

    __slots__ = ("owner", "qid", "sqsize", "ctrlr", "outstanding", "listen_address",
                 "peer_address", "fused_first", "sq_head", "connected", "state", "kato_ms",
                 "hostnqn", "auth", "tls_identity")

    def __init__(self, owner: QpairOwner, listen_address: ListenAddress | None = None,
                 peer_address: dict[str, str] | None = None):
        self.owner = owner
        self.qid = -1  # unknown until Connect
        self.sqsize = 0
        self.ctrlr: Controller | None = None
        self.outstanding: dict[int, Request] = {}
        self.listen_address = listen_address
        self.peer_address = peer_address or {}
        self.fused_first: Request | None = None
        self.sq_head = 0
        self.connected = False
        self.state = "uninitialized"
        self.kato_ms = 0
        self.hostnqn = ""
        self.auth: Any = None  # nvmf.auth.QpairAuth while (and after) DH-HMAC-CHAP runs
        # (hostnqn, subnqn) of the TLS PSK identity the connection proved (secure channel only)
        self.tls_identity: tuple[str, str] | None = None
