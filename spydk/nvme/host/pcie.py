"""NVMe over PCIe in user space: submission and completion rings in DMA memory, doorbells,
PRPs, completion polling by phase bit, and the controller bring-up through BAR0 registers.

The queue pair reuses the transport-independent ``Qpair`` (trackers, splitting, software
queue); the controller reuses ``Controller`` (admin commands, identify, namespaces, AER,
timeouts) and replaces what Fabrics does with Connect and Property Get/Set by register
accesses and Create I/O Completion/Submission Queue commands.

Data goes through one preallocated DMA buffer per tracker (the caller's buffers have no
known bus address): a write is copied in before the doorbell, a read copied out on its
completion. Each buffer's PRP list is filled once, so a command only sets PRP1/PRP2.

Completions are polled: while a queue has commands outstanding it polls on every event
loop iteration (``call_soon``); the admin queue, whose Asynchronous Event Requests stay
outstanding for ever, polls every few milliseconds instead.
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

from spydk.nvme import spec
from spydk.nvme.host.ctrlr import Controller, ControllerOpts, NvmeError, status_str
from spydk.nvme.host.identify import parse_identify_controller
from spydk.nvme.host.pcie_dev import (
    PAGE,
    Bar,
    DmaAllocator,
    DmaBuffer,
    PcieDeviceError,
    open_uio_device,
    read64,
    write64,
)
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION, Qpair, Tracker
from spydk.nvme.host.trid import TransportId
from spydk.nvme.spec import AdminOpcode, FeatureId, IdentifyCns
from spydk.nvme.spec import fabrics as fab

# Controller registers (NVMe base specification 3.1).
REG_CAP, REG_VS, REG_CC, REG_CSTS, REG_AQA, REG_ASQ, REG_ACQ = 0x00, 0x08, 0x14, 0x1C, 0x24, 0x28, 0x30
DOORBELL_BASE = 0x1000
CC_EN = 1
CSTS_RDY, CSTS_CFS = 1, 2
CSTS_SHST_MASK, CSTS_SHST_DONE = 0xC, 0x8

_PRP = struct.Struct("<QQ")
_CQE = struct.Struct("<IIHHHH")  # dw0, dw1, sqhd, sqid, cid, status|phase
_Q = struct.Struct("<Q")
_STATUS = struct.Struct("<H")
_SQES, _CQES = 64, 16
ADMIN_MAX_XFER = 8192
ADMIN_POLL_S = 0.002
HEALTH_S = 0.1  # how often a ready controller's CSTS (and its device's presence) is checked
MAX_XFER = 128 * 1024  # per-tracker DMA buffer; larger requests are split by Qpair
MAX_DEPTH = 256  # I/O queue depth cap (more is queued in software): bounds DMA memory
ST_INTERNAL = spec.GenericStatus.INTERNAL_DEVICE_ERROR << 1


class PcieQpair(Qpair):
    """One submission/completion queue pair in DMA memory. ``depth`` trackers; the rings have
    depth + 1 slots (a ring is full one entry before it wraps)."""

    def __init__(self, qid: int, depth: int, bar: Bar, dma: DmaAllocator, *, dstrd: int = 0,
                 max_xfer: int = MAX_XFER, track_time: bool = False,
                 on_failure: Callable[[PcieQpair, str], None] | None = None) -> None:
        super().__init__(qid, depth, max_xfer=max_xfer, track_time=track_time)
        self.bar = bar
        self.entries = depth + 1
        self.sq = dma.alloc(self.entries * _SQES)
        self.cq = dma.alloc(self.entries * _CQES)
        stride = 4 << dstrd
        self.sq_db = DOORBELL_BASE + 2 * qid * stride
        self.cq_db = self.sq_db + stride
        self.on_failure = on_failure
        self.last_dw1 = 0
        # per tracker, made on its first data transfer (trackers are reused lowest first, so
        # about queue-depth of them ever get one): a DMA buffer and its PRP2 value
        self.dma = dma
        self.bufs: list[DmaBuffer | None] = [None] * depth
        self.prp2: list[int] = [0] * depth
        self._poll_handle: asyncio.Handle | None = None
        self.reset_rings()

    def reset_rings(self) -> None:
        self.sq_tail = 0
        self.cq_head = 0
        self.phase = 1
        self.cq.mem[:] = bytes(len(self.cq.mem))

    # -- Controller's view of a queue (as TcpQpair offers) ----------------------------------------

    def disconnect(self) -> None:
        """The queue is gone (controller disabled or failed): complete everything as aborted."""
        self.connected = False
        if self.failed is None:
            self.failed = "disconnected"
        self._stop_polling()
        self.fail_outstanding(ST_ABORTED_SQ_DELETION)

    def renew(self) -> None:
        self.reset_state()

    def fail(self, reason: str) -> None:
        self.disconnect()
        if self.on_failure is not None:
            self.on_failure(self, reason)

    def _close(self) -> None:
        self._stop_polling()
        self.reset_rings()

    def _stop_polling(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None

    # -- submission ---------------------------------------------------------------------------

    def _send(self, tr: Tracker, sqe: bytearray) -> None:
        n = tr.length
        if n:
            cid = tr.cid
            b = self.bufs[cid]
            if b is None:
                try:
                    b = self._alloc_buf(cid)
                except PcieDeviceError:
                    self._complete(tr, ST_INTERNAL, 0)
                    return
            data = tr.data
            if data is not None:
                b.mem[:n] = data
            sqe[1] &= 0x3F  # PSDT 00b: PRPs
            _PRP.pack_into(sqe, spec.SQE_OFF_DPTR, b.iova,
                           0 if n <= PAGE else (b.iova + PAGE if n <= 2 * PAGE else self.prp2[cid]))
        tail = self.sq_tail
        self.sq.mem[tail * _SQES:(tail + 1) * _SQES] = sqe
        tail += 1
        if tail == self.entries:
            tail = 0
        self.sq_tail = tail
        self.bar.write32(self.sq_db, tail)
        if self._poll_handle is None:
            self._schedule()

    def _alloc_buf(self, cid: int) -> DmaBuffer:
        b = self.dma.alloc(self.max_xfer)
        if self.max_xfer > 2 * PAGE:
            lst = self.dma.alloc(PAGE)
            for i in range(1, self.max_xfer // PAGE):
                _Q.pack_into(lst.mem, 8 * (i - 1), b.iova + i * PAGE)
            self.prp2[cid] = lst.iova
        else:
            self.prp2[cid] = b.iova + PAGE
        self.bufs[cid] = b
        return b

    def _schedule(self) -> None:
        loop = asyncio.get_event_loop()
        if self.qid == 0:
            self._poll_handle = loop.call_later(ADMIN_POLL_S, self._poll)
        else:
            self._poll_handle = loop.call_soon(self._poll)

    def _poll(self) -> None:
        self._poll_handle = None
        self.process_completions()
        # a callback that submitted has scheduled the next poll already: one poll per queue
        # per loop iteration (two would double every iteration while completions keep coming)
        if self._poll_handle is None and self.outstanding and self.failed is None:
            self._schedule()

    def process_completions(self, max_completions: int = 0) -> int:
        """Complete the new entries of the completion queue (phase bit = expected), at most
        ``max_completions`` (0: one ring's worth); returns how many. Called by the poller;
        callable directly by a caller that polls itself. The cap keeps a fast device, whose
        completions of commands resubmitted by the callbacks keep coming, from holding the
        event loop in one call."""
        if not max_completions:
            max_completions = self.entries
        cq = self.cq.mem
        head = self.cq_head
        phase = self.phase
        entries = self.entries
        trackers = self.trackers
        unpack = _CQE.unpack_from
        done = 0
        status_of = _STATUS.unpack_from
        while True:
            # The phase bit first, the rest after: the device may be writing this entry right
            # now, and a whole-entry read could pair a new phase with a stale CID.
            if status_of(cq, head * _CQES + 14)[0] & 1 != phase:
                break
            dw0, dw1, _sqhd, _sqid, cid, st = unpack(cq, head * _CQES)
            head += 1
            if head == entries:
                head = 0
                phase ^= 1
            if cid >= len(trackers) or not trackers[cid].busy:
                self.cq_head, self.phase = head, phase
                self.bar.write32(self.cq_db, head)
                self.fail(f"completion for CID {cid}, which has no command outstanding")
                return done
            tr = trackers[cid]
            dest = tr.dest
            if dest is not None:
                n = tr.length
                dest[:n] = self.bufs[cid].mem[:n]  # type: ignore[union-attr]
            self.last_dw1 = dw1
            done += 1
            self._complete(tr, st & 0xFFFE, dw0)
            if done >= max_completions:
                break
        if done:
            self.cq_head, self.phase = head, phase
            self.bar.write32(self.cq_db, head)
        return done


class PcieController(Controller):
    """A local NVMe controller reached through BAR0 (trtype:PCIe traddr:<BDF>)."""

    TRTYPES = ("PCIE",)

    def __init__(self, trid: TransportId, opts: ControllerOpts | None = None, *,
                 bar: Bar | None = None, dma: DmaAllocator | None = None, **_kw: Any) -> None:
        super().__init__(trid, opts)
        self.opts.keep_alive_timeout_ms = 0  # no keep-alive over PCIe
        self.bar = bar
        self.dma = dma
        self._device: Any = None
        self.dstrd = 0
        self.io_qpairs: list[PcieQpair] = []  # type: ignore[assignment]
        self.admin_q: PcieQpair | None = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return f"PCIe {self.trid.traddr}"

    # -- registers instead of Fabrics properties ------------------------------------------------

    async def property_get(self, prop: int, size: int = 4) -> int:
        assert self.bar is not None
        return read64(self.bar, prop) if size == 8 else self.bar.read32(prop)

    async def property_set(self, prop: int, value: int, size: int = 4) -> None:
        assert self.bar is not None
        if size == 8:
            write64(self.bar, prop, value)
        else:
            self.bar.write32(prop, value)

    def _open(self) -> None:
        if self.bar is None or self.dma is None:
            try:
                self._device = open_uio_device(self.trid.traddr)
            except PcieDeviceError as e:
                raise NvmeError(f"controller {self.name}: {e}") from None
            self.bar, self.dma = self._device.bar, self._device.dma

    def _present(self) -> bool:
        return self._device is None or self._device.present()

    def _start_keep_alive(self) -> None:
        super()._start_keep_alive()  # the command-timeout checker (no keep-alive over PCIe)
        self._timers["health"] = asyncio.get_running_loop().call_later(HEALTH_S, self._health)

    def _health(self) -> None:
        """Hot removal and fatal controller status are not announced: look for them. A removed
        device is noticed by its sysfs directory going away (its BAR is not touched then), or
        by registers reading all ones; CSTS.CFS is the controller's own fatal error."""
        if self.state != "ready" or self.bar is None:
            return
        if not self._present():
            self.fail(f"device {self.trid.traddr} was removed from the PCI bus")
            return
        csts = self.bar.read32(REG_CSTS)
        if csts == 0xFFFFFFFF:
            self.fail("registers read all ones: the device is gone (hot removal?)")
            return
        if csts & CSTS_CFS:
            self.fail("controller fatal status (CSTS.CFS): it needs a reset")
            return
        self._timers["health"] = asyncio.get_running_loop().call_later(HEALTH_S, self._health)

    def _timeout_s(self) -> float:
        return max(0.5, ((self.cap >> 24) & 0xFF) * 0.5)

    async def _wait_csts(self, mask: int, want: int, what: str) -> None:
        assert self.bar is not None
        deadline = time.monotonic() + self._timeout_s()
        while True:
            csts = self.bar.read32(REG_CSTS)
            if csts == 0xFFFFFFFF:
                raise NvmeError(f"controller {self.name}: registers read all ones (device gone "
                                "or bus mastering/memory space off)")
            if csts & mask == want:
                return
            if csts & CSTS_CFS and want != 0:
                raise NvmeError(f"controller {self.name}: fatal status (CSTS.CFS) while waiting "
                                f"for {what}")
            if time.monotonic() > deadline:
                raise NvmeError(f"controller {self.name} never reached {what} within "
                                f"{self._timeout_s():g} s (CAP.TO); CSTS={csts:#x}")
            await asyncio.sleep(0.001)

    def _new_qpair(self, qid: int, depth: int, icd: int = 0) -> PcieQpair:  # type: ignore[override]
        assert self.bar is not None and self.dma is not None
        return PcieQpair(qid, depth, self.bar, self.dma, dstrd=self.dstrd,
                         max_xfer=ADMIN_MAX_XFER if qid == 0 else MAX_XFER,
                         track_time=bool(self.opts.command_timeout_ms) and qid > 0,
                         on_failure=self._qpair_failed)  # type: ignore[arg-type]

    async def _init(self) -> None:
        self._open()
        if not self._present():
            raise NvmeError(f"controller {self.name}: the device was removed from the PCI bus")
        bar = self.bar
        assert bar is not None
        self.cap = read64(bar, REG_CAP)
        if self.cap == 0xFFFFFFFFFFFFFFFF:
            raise NvmeError(f"controller {self.name}: CAP reads all ones (device not reachable)")
        self.vs = bar.read32(REG_VS)
        self.dstrd = (self.cap >> 32) & 0xF
        if not (self.cap >> 37) & 1:
            raise NvmeError(f"controller {self.name} does not support the NVM command set (CAP.CSS)")
        mpsmin = 4096 << ((self.cap >> 48) & 0xF)
        if mpsmin != PAGE:
            raise NvmeError(f"controller {self.name}: minimum page size {mpsmin} is not 4096")
        # A controller left enabled (by firmware or the kernel driver) is disabled first.
        cc = bar.read32(REG_CC)
        if cc & CC_EN:
            if not bar.read32(REG_CSTS) & CSTS_RDY:
                await self._wait_csts(CSTS_RDY, CSTS_RDY, "CSTS.RDY=1 (found enabling)")
            bar.write32(REG_CC, cc & ~CC_EN)
        await self._wait_csts(CSTS_RDY, 0, "CSTS.RDY=0 after CC.EN=0")
        mqes = (self.cap & 0xFFFF) + 1
        adepth = min(self.opts.admin_queue_size, mqes, 4096) - 1
        aq = self.admin_q
        if aq is None:
            aq = self.admin_q = self._new_qpair(0, adepth)
        else:
            aq.reset_state()
        aq.connected = True
        bar.write32(REG_AQA, ((aq.entries - 1) << 16) | (aq.entries - 1))
        write64(bar, REG_ASQ, aq.sq.iova)
        write64(bar, REG_ACQ, aq.cq.iova)
        bar.write32(REG_CC, fab.make_cc(en=True, iosqes=6, iocqes=4))
        await self._wait_csts(CSTS_RDY, CSTS_RDY, "CSTS.RDY=1 after CC.EN=1")
        self.cdata = parse_identify_controller(await self.identify(IdentifyCns.CONTROLLER))
        self.cntlid = self.cdata.cntlid
        mdts = self.cdata.mdts
        self.max_xfer = min(mpsmin << mdts, MAX_XFER) if mdts else MAX_XFER
        want = self.opts.num_io_queues
        dw0 = await self.set_features(FeatureId.NUMBER_OF_QUEUES, ((want - 1) << 16) | (want - 1))
        self.num_io_queues_granted = min((dw0 & 0xFFFF) + 1, (dw0 >> 16) + 1)
        await self.scan_namespaces()
        if self.opts.arm_aer:
            await self._arm_aer()
        self._start_keep_alive()  # only the command-timeout checker: keep-alive is 0
        n = min(want if self.opts.connect_io_queues is None else self.opts.connect_io_queues,
                self.num_io_queues_granted)
        depth = min(self.opts.io_queue_size, mqes - 1, MAX_DEPTH)
        if not self.io_qpairs:
            self.io_qpairs = [self._new_qpair(i + 1, depth) for i in range(n)]
        for q in self.io_qpairs:
            await self._connect_io(q)  # type: ignore[arg-type]

    async def _connect_io(self, q: PcieQpair) -> None:  # type: ignore[override]
        # the trackers' DMA buffers are sized on first use: max_xfer is fixed from here
        q.max_xfer = min(self.max_xfer, q.max_xfer)
        q.reset_rings()
        qsize = (q.entries - 1) << 16
        # Create I/O Completion Queue: physically contiguous, interrupts off (we poll).
        await self._create(AdminOpcode.CREATE_IO_CQ, q.cq.iova, q.qid | qsize, 1, q.qid)
        await self._create(AdminOpcode.CREATE_IO_SQ, q.sq.iova, q.qid | qsize, 1 | (q.qid << 16), q.qid)
        q.connected = True

    async def _create(self, opc: int, prp1: int, cdw10: int, cdw11: int, qid: int) -> None:
        assert self.admin_q is not None
        sqe = spec.build_sqe(opc, 0, 0, dptr=_PRP.pack(prp1, 0), cdw10=cdw10, cdw11=cdw11)
        st, _, _ = await self._cmd(self.admin_q, opc=opc, sqe=sqe, what=f"{AdminOpcode(opc).name} "
                                   f"{qid}", check=False)
        if st:
            raise NvmeError(f"controller {self.name}: creating I/O queue {qid} failed: "
                            f"{status_str(st)}", st)

    async def alloc_io_qpair(self, depth: int | None = None) -> PcieQpair:  # type: ignore[override]
        qid = max((q.qid for q in self.io_qpairs), default=0) + 1
        if qid > self.num_io_queues_granted:
            raise NvmeError(f"controller {self.name} granted {self.num_io_queues_granted} I/O "
                            "queues; ask for more with num_io_queues")
        q = self._new_qpair(qid, depth or min(self.opts.io_queue_size, self.cap & 0xFFFF, MAX_DEPTH))
        await self._connect_io(q)
        self.io_qpairs.append(q)
        return q

    async def reset(self) -> None:
        """Controller reset: disable (CC.EN=0), then the whole bring-up again on the same
        queue objects and DMA memory; commands outstanding complete as aborted."""
        self._stop_timers()
        self.state = "resetting"
        qs: list[PcieQpair | None] = [self.admin_q, *self.io_qpairs]
        for q in qs:
            if q is not None:
                q.disconnect()
                q.renew()
        await self.connect()

    async def detach(self) -> None:
        """Delete the I/O queues, shut the controller down (CC.SHN normal), release the device."""
        self._stop_timers()
        bar = self.bar
        if self.state == "ready" and bar is not None and self.admin_q is not None:
            self.state = "detaching"
            try:
                for q in self.io_qpairs:
                    q.disconnect()
                    await self.admin(AdminOpcode.DELETE_IO_SQ, cdw10=q.qid, check=False)
                    await self.admin(AdminOpcode.DELETE_IO_CQ, cdw10=q.qid, check=False)
                self.admin_q.disconnect()
                cc = bar.read32(REG_CC)
                bar.write32(REG_CC, (cc & ~(3 << 14)) | (1 << 14))
                await self._wait_csts(CSTS_SHST_MASK, CSTS_SHST_DONE, "shutdown complete (CSTS.SHST)")
            except NvmeError:
                pass
        self.state = "detached"
        qs: list[PcieQpair | None] = [self.admin_q, *self.io_qpairs]
        for dq in qs:
            if dq is not None:
                dq.disconnect()
        if self._device is not None:
            self._device.close()
            self._device = None
