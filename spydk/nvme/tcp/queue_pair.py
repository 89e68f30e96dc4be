"""Sans-IO NVMe/TCP queue pair: PDU codec plus the per-connection state machine.

One ``TcpQueuePair`` object serves either end (``Role.CONTROLLER`` for a target, ``Role.HOST``
for an initiator), in the manner of h11's ``Connection``. It is assembled from one file per job:

    events.py      the events it returns, Role, LocalProtocolError
    receive.py     bytes in: the receive ring, PDU parsing and checks (PduReceiver)
    controller.py  what a controller sends: ICResp, CapsuleResp, C2HData, R2T (ControllerSide)
    host.py        what a host sends: ICReq, CapsuleCmd, H2CData (HostSide)
    pdu.py         packing helpers and per-connection records shared by the above
    queue_pair.py  this class: initial state, negotiation, TermReq

The API (stable: spydk.nvmf's target and the NVMe host driver are built on it)

In (one way)
    The transport receives into ``get_buffer(sizehint)`` and reports ``buffer_updated(nbytes)``
    (asyncio.BufferedProtocol's pair); ``eof_received()`` at EOF. Parsing is eager: every
    complete PDU is parsed and its event queued, so payloads can be steered as soon as their
    header is in. ``receive_data(data)`` is the same for callers that hold bytes (it copies them
    through get_buffer/buffer_updated; b"" means EOF).

Events (one way)
    In order, in the ``pending_events`` deque: ``popleft()`` them. ``next_event()`` (one event or
    None) and ``events()`` (all, as a list) are shorthands for that deque.

Out (one way)
    Each ``send_*`` method returns the buffers of its PDU(s) for one ``sendmsg``/``writelines``;
    payload buffers are passed through, never copied; digests are computed incrementally. The two
    per-I/O completions also come as ``append_response``/``append_c2h_data``, which append the
    same bytes to the caller's list (no list per PDU; ``send_response`` is built on it).

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

Errors
    Peer protocol violations never raise: the qpair returns a ``ProtocolError`` event carrying
    the H2C/C2H TermReq to send, then refuses further input. Local misuse raises
    ``LocalProtocolError``. A data digest mismatch is not fatal (framing is intact): it yields
    ``DataDigestError`` and the command should complete with Transient Transport Error.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from spydk.nvme.spec.tcp import (
    CAPSULE_CMD_HLEN,
    DATA_HLEN,
    DDGSTF,
    DIGEST_LEN,
    HDGSTF,
    data_offset,
    pda_alignment,
)
from spydk.nvme.tcp.controller import ControllerSide
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
    Role,
    TermReqReceived,
)
from spydk.nvme.tcp.host import HostSide
from spydk.nvme.tcp.pdu import (
    _CONTROLLER_RX,
    _HOST_RX,
    _SPARE_RINGS,
    AWAIT_IC,
    CLOSED,
    DEFAULT_MAX_INCAPSULE,
    DEFAULT_MAXH2CDATA,
    DEFAULT_RING_SIZE,
    IC_PENDING,
    READY,
    HostCmd,
    Pending,
    R2TState,
)
from spydk.nvme.tcp.receive import PduReceiver

__all__ = [
    "Buffer",
    "C2HData",
    "CapsuleCommand",
    "CapsuleResponse",
    "ConnectionClosed",
    "DataDigestError",
    "Event",
    "H2CData",
    "ICReqReceived",
    "ICRespReceived",
    "LocalProtocolError",
    "MovedState",
    "ProtocolError",
    "R2TReceived",
    "Role",
    "TermReqReceived",
    "TcpQueuePair",
]


@dataclass
class MovedState:
    """What a controller-role queue pair needs to continue in another process: the negotiated
    parameters and the bytes received and not yet parsed (``TcpQueuePair.export_state`` /
    ``TcpQueuePair.resume``). Plain values only, so it crosses a process boundary as JSON."""

    header_digest: bool
    data_digest: bool
    hpda: int
    cpda: int
    maxr2t: int
    maxh2cdata: int
    max_incapsule_data: int
    unparsed: bytes = b""


class TcpQueuePair(PduReceiver, ControllerSide, HostSide):
    """NVMe/TCP connection state for one queue pair, either role. See the module docstring."""

    def __init__(self, role: Role, *, ring_size: int = DEFAULT_RING_SIZE,
                 max_incapsule_data: int = DEFAULT_MAX_INCAPSULE) -> None:
        if ring_size < 4096:
            raise ValueError("ring_size must be at least 4096")
        self.role = role
        self._controller = role is Role.CONTROLLER
        self._rx_types = _CONTROLLER_RX if self._controller else _HOST_RX
        # Controller waits for the ICReq; host must send its ICReq before anything arrives.
        self._state = AWAIT_IC if self._controller else IC_PENDING
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
        self._pending: Pending | None = None
        self._ddgst_wait = False  # pending payload complete, waiting for its 4-byte digest
        self._eof = False
        self._events: deque[Event] = deque()
        self.pending_events = self._events  # parsed, not yet taken; popleft() = next_event()
        # Controller: ttag -> R2T; cccid -> outstanding R2T count.
        self._r2ts: dict[int, R2TState] = {}
        self._r2t_count: dict[int, int] = {}
        # Host: cid -> command.
        self._cmds: dict[int, HostCmd] = {}

    def _negotiated(self) -> None:
        """Connection initialization done: derive the per-PDU constants."""
        hd = self._hd = DIGEST_LEN if self.header_digest else 0
        self._state = READY
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

    def export_state(self) -> MovedState:
        """The state to continue this connection elsewhere. Only between PDUs: negotiated, no
        event waiting, no payload being received and no R2T outstanding (LocalProtocolError
        otherwise; the caller then keeps the connection where it is)."""
        if not self._controller or self._state != READY:
            raise LocalProtocolError("only a negotiated controller queue pair can move")
        if self._events or self._pending is not None or self._r2ts:
            raise LocalProtocolError("the queue pair is in the middle of a transfer")
        return MovedState(self.header_digest, self.data_digest, self.hpda, self.cpda, self.maxr2t,
                          self.maxh2cdata, self.max_incapsule_data,
                          bytes(self._rview[self._rpos:self._rend]))

    @classmethod
    def resume(cls, st: MovedState, *, ring_size: int = DEFAULT_RING_SIZE) -> TcpQueuePair:
        """A controller queue pair continuing one exported with ``export_state``: negotiated,
        and the unparsed bytes already parsed (their events are in ``pending_events``)."""
        tq = cls(Role.CONTROLLER, ring_size=ring_size, max_incapsule_data=st.max_incapsule_data)
        tq.header_digest = st.header_digest
        tq.data_digest = st.data_digest
        tq.hpda = st.hpda
        tq.cpda = st.cpda
        tq.maxr2t = st.maxr2t
        tq.maxh2cdata = st.maxh2cdata
        tq._negotiated()
        if st.unparsed:
            tq.receive_data(st.unparsed)
        return tq

    def send_term_req(self, fes: int, fei: int = 0, pdu_header: Buffer = b"") -> list[Buffer]:
        """Terminate the connection (C2HTermReq or H2CTermReq by role); close it after sending."""
        out = self._term_req(fes, fei, pdu_header)
        self._state = CLOSED
        return out

