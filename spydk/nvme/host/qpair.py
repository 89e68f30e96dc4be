"""Transport-independent queue pair: preallocated trackers (CID -> tracker), splitting at the
controller's maximum transfer size, software queueing beyond the queue depth, timeouts.

A command completes by calling ``cb(arg, status, dw0)``; ``status`` is the CQE status field
without the phase bit (0 = success). Transports (tcp.py, later pcie.py) subclass ``Qpair``
and implement ``_send(tracker, sqe)`` and ``_close()``; they call ``_complete`` from their
receive path.
"""
from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from spydk.nvme import spec
from spydk.nvme.spec import GenericStatus, NvmOpcode

Callback = Callable[[Any, int, int], None]  # (arg, status, dw0)

ST_ABORTED_SQ_DELETION = GenericStatus.ABORTED_SQ_DELETION << 1
ST_TRANSIENT = GenericStatus.TRANSIENT_TRANSPORT_ERROR << 1
ST_ABORTED_BY_REQUEST = GenericStatus.ABORTED_BY_REQUEST << 1
ST_INVALID_FIELD = (GenericStatus.INVALID_FIELD << 1) | (1 << 15)

# An I/O SQE in one pack: OPC, FLAGS, CID, NSID, (CDW2-3, MPTR), SGL1 address, length,
# type/subtype, CDW10-15.
IO_SQE = struct.Struct("<BBHI16xQI3xB6I")
assert IO_SQE.size == spec.SQE_SIZE
_FLAGS_SGL = 0x40  # PSDT 01b: SGL for the data pointer
_now = time.monotonic_ns


class Tracker:
    """One command slot; its index is its CID. Allocated once with the qpair."""

    __slots__ = ("cid", "cb", "arg", "data", "dest", "length", "received", "status", "t_submit",
                 "busy", "opc", "steer")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.cb: Callback | None = None
        self.arg: Any = None
        self.data: memoryview | None = None  # write payload (sent in-capsule or on R2T)
        self.dest: memoryview | None = None  # read destination
        self.length = 0
        self.received = 0  # bytes of C2H data seen
        self.status = 0  # an error noticed before the completion (e.g. data digest)
        self.t_submit = 0
        self.busy = False
        self.opc = 0
        self.steer = False  # the transport receives read data straight into dest


class _Split:
    """A request cut at the maximum transfer size: completes once every child has."""

    __slots__ = ("left", "status", "cb", "arg")

    def __init__(self, left: int, cb: Callback, arg: Any) -> None:
        self.left = left
        self.status = 0
        self.cb = cb
        self.arg = arg

    def child_done(self, _arg: Any, status: int, dw0: int) -> None:
        if status and not self.status:
            self.status = status
        self.left -= 1
        if self.left == 0:
            self.cb(self.arg, self.status, 0)


class QpairError(Exception):
    """The qpair cannot take commands (not connected, or failed)."""


class Qpair:
    """Trackers, software queue and the NVM command builders; subclasses move the bytes."""

    def __init__(self, qid: int, depth: int, *, max_xfer: int = 128 * 1024,
                 track_time: bool = False) -> None:
        if not 2 <= depth <= 65535:
            raise ValueError(f"queue depth {depth} must be 2..65535")
        self.qid = qid
        self.depth = depth
        self.max_xfer = max_xfer
        self.trackers = [Tracker(cid) for cid in range(depth)]
        self.free: list[Tracker] = self.trackers[::-1]
        self.queued: deque[tuple[Any, ...]] = deque()  # waiting for a free tracker
        self.track_time = track_time
        self.failed: str | None = None
        self.connected = False
        self.outstanding = 0
        self.submitted = 0
        self.completed = 0
        self._sqe = bytearray(spec.SQE_SIZE)  # scratch SQE: the transport copies it out

    # -- transport hooks ------------------------------------------------------------------------

    def _send(self, tr: Tracker, sqe: bytearray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # -- NVM I/O --------------------------------------------------------------------------------

    def read(self, nsid: int, buf: memoryview, slba: int, nlb: int, cb: Callback, arg: Any = None,
             cdw12_flags: int = 0) -> None:
        """Read nlb blocks at slba into buf (exactly nlb blocks long)."""
        n = len(buf)
        if (n <= self.max_xfer and nlb <= 65536 and self.free and not self.queued
                and self.failed is None and self.connected):
            self._start(2, nsid, buf, n, slba, nlb, cdw12_flags, cb, arg)
            return
        self._rw(NvmOpcode.READ, nsid, buf, slba, nlb, cb, arg, cdw12_flags)

    def write(self, nsid: int, buf: memoryview, slba: int, nlb: int, cb: Callback, arg: Any = None,
              cdw12_flags: int = 0) -> None:
        self._rw(NvmOpcode.WRITE, nsid, buf, slba, nlb, cb, arg, cdw12_flags)

    def _rw(self, opc: int, nsid: int, buf: memoryview, slba: int, nlb: int, cb: Callback,
            arg: Any, flags: int) -> None:
        n = len(buf)
        if n <= self.max_xfer and nlb <= 65536:
            self._io(opc, nsid, buf, n, slba, nlb, flags, cb, arg)
            return
        bs = n // nlb
        per = min(self.max_xfer // bs, 65536)
        if per < 1 or bs * nlb != n:
            cb(arg, ST_INVALID_FIELD, 0)
            return
        chunks = -(-nlb // per)
        parent = _Split(chunks, cb, arg)
        done = parent.child_done
        for i in range(chunks):
            k = min(per, nlb - i * per)
            self._io(opc, nsid, buf[i * per * bs:(i * per + k) * bs], k * bs, slba + i * per, k, flags,
                     done, None)

    def flush(self, nsid: int, cb: Callback, arg: Any = None) -> None:
        self._io(NvmOpcode.FLUSH, nsid, None, 0, 0, 1, 0, cb, arg)

    def write_zeroes(self, nsid: int, slba: int, nlb: int, cb: Callback, arg: Any = None,
                     deallocate: bool = False) -> None:
        while nlb > 65536:  # NLB is 16 bits: issue the head now, the rest as one more command
            parent = _Split(2, cb, arg)
            self._io(NvmOpcode.WRITE_ZEROES, nsid, None, 0, slba, 65536,
                     (1 << 25) if deallocate else 0, parent.child_done, None)
            slba += 65536
            nlb -= 65536
            cb, arg = parent.child_done, None
        self._io(NvmOpcode.WRITE_ZEROES, nsid, None, 0, slba, nlb, (1 << 25) if deallocate else 0,
                 cb, arg)

    def dataset_management(self, nsid: int, ranges: list[tuple[int, int]], cb: Callback,
                           arg: Any = None, deallocate: bool = True) -> None:
        """DSM with up to 256 (slba, nlb) ranges; AD (deallocate) by default."""
        if not 1 <= len(ranges) <= 256:
            cb(arg, ST_INVALID_FIELD, 0)
            return
        data = bytearray(16 * len(ranges))
        for i, (slba, nlb) in enumerate(ranges):
            struct.pack_into("<IIQ", data, 16 * i, 0, nlb, slba)
        self._submit(NvmOpcode.DATASET_MANAGEMENT, nsid, memoryview(data), None, len(data),
                     (len(ranges) - 1, 4 if deallocate else 0, 0, 0, 0, 0), cb, arg)

    def _io(self, opc: int, nsid: int, buf: memoryview | None, n: int, slba: int, nlb: int,
            flags: int, cb: Callback, arg: Any) -> None:
        if self.failed is not None or not self.connected:
            cb(arg, ST_ABORTED_SQ_DELETION, 0)
            return
        free = self.free
        if not free or self.queued:
            self.queued.append((opc, nsid, buf, n, slba, nlb, flags, cb, arg))
            return
        self._start(opc, nsid, buf, n, slba, nlb, flags, cb, arg)

    def _start(self, opc: int, nsid: int, buf: memoryview | None, n: int, slba: int, nlb: int,
               flags: int, cb: Callback, arg: Any) -> None:
        tr = self.free.pop()
        tr.busy = True
        tr.cb = cb
        tr.arg = arg
        tr.opc = opc
        tr.length = n
        tr.received = 0
        tr.status = 0
        if opc == 2:
            tr.dest = buf
            tr.data = None
        else:
            tr.data = buf
            tr.dest = None
        if self.track_time:
            tr.t_submit = _now()
        sqe = self._sqe
        IO_SQE.pack_into(sqe, 0, opc, _FLAGS_SGL, tr.cid, nsid, 0, n, 0, slba & 0xFFFFFFFF,
                         slba >> 32, ((nlb - 1) & 0xFFFF) | flags, 0, 0, 0)
        self.outstanding += 1
        self.submitted += 1
        self._send(tr, sqe)

    # -- generic commands (admin, fabrics, anything not above) ---------------------------------

    def _submit(self, opc: int, nsid: int, data: memoryview | None, dest: memoryview | None,
                length: int, cdw10_15: tuple[int, ...], cb: Callback, arg: Any,
                sqe: bytes | None = None) -> None:
        """Submit one command; sqe (64 bytes) overrides the SQE built from opc/nsid/cdws (its CID
        and, with data, its SGL1 are filled in)."""
        if self.failed is not None:
            cb(arg, ST_ABORTED_SQ_DELETION, 0)
            return
        if not self.free:
            self.queued.append(("raw", opc, nsid, data, dest, length, cdw10_15, cb, arg, sqe))
            return
        if length > self.max_xfer and opc != spec.FABRICS_OPCODE:
            cb(arg, ST_INVALID_FIELD, 0)
            return
        tr = self.free.pop()
        tr.busy = True
        tr.cb = cb
        tr.arg = arg
        tr.opc = opc
        tr.length = length
        tr.received = 0
        tr.status = 0
        tr.data = data
        tr.dest = dest
        if self.track_time:
            tr.t_submit = _now()
        buf = self._sqe
        if sqe is not None:
            buf[:] = sqe
            struct.pack_into("<H", buf, 2, tr.cid)
            if length:
                buf[1] = (buf[1] & 0x3F) | _FLAGS_SGL
                struct.pack_into("<QI3xB", buf, spec.SQE_OFF_DPTR, 0, length, 0)
        else:
            IO_SQE.pack_into(buf, 0, opc, _FLAGS_SGL if length else 0, tr.cid, nsid, 0, length, 0,
                             *cdw10_15)
        self.outstanding += 1
        self.submitted += 1
        self._send(tr, buf)

    # -- completion -----------------------------------------------------------------------------

    def _complete(self, tr: Tracker, status: int, dw0: int) -> None:
        cb = tr.cb
        arg = tr.arg
        tr.busy = False
        tr.cb = tr.arg = tr.data = tr.dest = None
        self.free.append(tr)
        self.outstanding -= 1
        self.completed += 1
        if self.queued and self.failed is None:
            self._resubmit_one()
        if cb is not None:
            cb(arg, status, dw0)

    def _resubmit_one(self) -> None:
        q = self.queued.popleft()
        if q[0] == "raw":
            self._submit(*q[1:])
        else:
            self._start(*q)

    def fail_outstanding(self, status: int = ST_ABORTED_SQ_DELETION) -> None:
        """Complete every outstanding and queued command with status (the qpair is gone)."""
        queued = list(self.queued)
        self.queued.clear()
        for tr in self.trackers:
            if tr.busy:
                self._complete(tr, status, 0)
        for q in queued:
            cb, arg = (q[7], q[8]) if q[0] == "raw" else (q[7], q[8])
            cb(arg, status, 0)

    def expired(self, now_ns: int, timeout_ns: int) -> Tracker | None:
        """The oldest outstanding command older than timeout_ns, if any."""
        if not self.track_time or not self.outstanding:
            return None
        limit = now_ns - timeout_ns
        for tr in self.trackers:
            if tr.busy and tr.t_submit < limit:
                return tr
        return None

    def reset_state(self) -> None:
        """Forget everything (after fail_outstanding), ready to be connected again."""
        self.failed = None
        self.connected = False
        self.outstanding = 0
        self.free = [t for t in self.trackers[::-1]]
        for t in self.trackers:
            t.busy = False
