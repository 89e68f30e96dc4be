"""A register-level fake NVMe PCIe controller and fake DMA memory, for the PCIe transport's tests.

``FakeDma`` hands out page-aligned pieces of one bytearray with made-up bus addresses;
``FakeNvme`` is BAR0: 32-bit register reads/writes (64-bit ones are two halves, as on the
real bus), CC.EN/CSTS.RDY/shutdown, and doorbells. A submission doorbell write executes
the new commands at once (reading SQEs and PRPs from FakeDma, like a device doing DMA) and
posts completions with the phase bit. Commands: the admin set the driver uses (identify,
features, create/delete queues, log pages, AER held) and NVM read/write/flush/write zeroes.
"""
from __future__ import annotations

import struct

from spydk.nvme import spec
from spydk.nvme.spec import AdminOpcode, NvmOpcode

PAGE = 4096
_SQE = struct.Struct("<BBHI")
_CQE = struct.Struct("<IIHHHH")


class FakeDma:
    BASE = 0x1_0000_0000

    def __init__(self, size: int = 64 << 20) -> None:
        self.mem = bytearray(size)
        self.used = 0
        self.allocated = 0

    def alloc(self, size: int):  # -> DmaBuffer
        from spydk.nvme.host.pcie_dev import DmaBuffer
        size = -(-size // PAGE) * PAGE
        off = self.used
        if off + size > len(self.mem):
            raise MemoryError("fake DMA memory exhausted")
        self.used += size
        self.allocated += size
        return DmaBuffer(memoryview(self.mem)[off:off + size], self.BASE + off)

    def view(self, iova: int, n: int) -> memoryview:
        off = iova - self.BASE
        assert 0 <= off and off + n <= len(self.mem), f"DMA outside memory: {iova:#x}+{n}"
        return memoryview(self.mem)[off:off + n]

    def close(self) -> None:
        pass


class FakeNvme:
    def __init__(self, dma: FakeDma, *, nblocks: int = 2048, block_size: int = 512,
                 mqes: int = 63, to: int = 2, mdts: int = 5, start_enabled: bool = False,
                 never_ready: bool = False, serial: str = "FAKE0001") -> None:
        self.dma = dma
        self.cap = mqes | (1 << 16) | (to << 24) | (1 << 37)  # CQR, CAP.TO, CSS NVM; DSTRD 0
        self.vs = spec.nvme_version(1, 4)
        self.cc = 0
        self.csts = 0
        self.aqa = self.asq = self.acq = 0
        self.never_ready = never_ready
        self.block_size = block_size
        self.data = bytearray(nblocks * block_size)
        self.nblocks = nblocks
        self.mdts = mdts
        self.serial = serial
        self.sqs: dict[int, list[int]] = {}  # qid -> [base, entries, head, cqid]
        self.cqs: dict[int, list[int]] = {}  # qid -> [base, entries, tail, phase]
        self.held_aers: list[tuple[int, int]] = []
        self.commands: list[tuple[int, int]] = []  # (qid, opcode) executed
        self.reg_log: list[tuple[str, int, int]] = []
        self.disable_seen = False
        if start_enabled:
            self.cc = 1 | (6 << 16) | (4 << 20)
            self.csts = 1

    # -- registers ----------------------------------------------------------------------------

    def read32(self, off: int) -> int:
        assert off % 4 == 0, f"unaligned register read at {off:#x}"
        regs = {0x0: self.cap & 0xFFFFFFFF, 0x4: self.cap >> 32, 0x8: self.vs, 0x14: self.cc,
                0x1C: self.csts, 0x24: self.aqa, 0x28: self.asq & 0xFFFFFFFF, 0x2C: self.asq >> 32,
                0x30: self.acq & 0xFFFFFFFF, 0x34: self.acq >> 32}
        return regs.get(off, 0)

    def write32(self, off: int, value: int) -> None:
        assert off % 4 == 0 and 0 <= value < 1 << 32
        self.reg_log.append(("w", off, value))
        if off == 0x14:
            self._set_cc(value)
        elif off == 0x24:
            self.aqa = value
        elif off == 0x28:
            self.asq = (self.asq & ~0xFFFFFFFF) | value
        elif off == 0x2C:
            self.asq = (self.asq & 0xFFFFFFFF) | (value << 32)
        elif off == 0x30:
            self.acq = (self.acq & ~0xFFFFFFFF) | value
        elif off == 0x34:
            self.acq = (self.acq & 0xFFFFFFFF) | (value << 32)
        elif off >= 0x1000:
            idx = (off - 0x1000) // 4
            qid, is_cq = divmod(idx, 2)
            if not is_cq:
                self._sq_doorbell(qid, value)

    def _set_cc(self, value: int) -> None:
        was = self.cc & 1
        self.cc = value
        if value & 1 and not was:
            if self.never_ready:
                return
            assert self.csts & 1 == 0
            self.sqs = {0: [self.asq, (self.aqa & 0xFFF) + 1, 0, 0]}
            self.cqs = {0: [self.acq, ((self.aqa >> 16) & 0xFFF) + 1, 0, 1]}
            self.csts = 1
        elif not value & 1 and was:
            self.disable_seen = True
            self.sqs, self.cqs, self.held_aers = {}, {}, []
            self.csts = 0
        if (value >> 14) & 3:
            self.csts = (self.csts & ~0xC) | 0x8

    # -- command execution ----------------------------------------------------------------------

    def _sq_doorbell(self, qid: int, tail: int) -> None:
        sq = self.sqs[qid]
        base, entries, head, cqid = sq
        while head != tail:
            sqe = bytes(self.dma.view(base + head * 64, 64))
            head = (head + 1) % entries
            sq[2] = head
            opc, _flags, cid, nsid = _SQE.unpack_from(sqe)
            self.commands.append((qid, opc))
            if qid == 0 and opc == AdminOpcode.ASYNC_EVENT_REQUEST:
                self.held_aers.append((cid, head))
                continue
            st, dw0 = (self._admin if qid == 0 else self._io)(sqe, opc, nsid)
            self._post(cqid, cid, qid, head, st, dw0)

    def _post(self, cqid: int, cid: int, sqid: int, sqhd: int, st: int, dw0: int) -> None:
        cq = self.cqs[cqid]
        base, entries, tail, phase = cq
        _CQE.pack_into(self.dma.view(base + tail * 16, 16), 0, dw0, 0, sqhd, sqid, cid,
                       (st & 0xFFFE) | phase)
        tail += 1
        if tail == entries:
            tail, phase = 0, phase ^ 1
        cq[2], cq[3] = tail, phase

    def _xfer(self, sqe: bytes, n: int) -> list[memoryview]:
        """The memory PRP1/PRP2 describe for n bytes (page-aligned buffers)."""
        prp1, prp2 = spec.sqe_prp(sqe)
        first = PAGE - prp1 % PAGE
        out = [self.dma.view(prp1, min(n, first))]
        left = n - len(out[0])
        if left <= 0:
            return out
        if left <= PAGE:
            return out + [self.dma.view(prp2, left)]
        npages = -(-left // PAGE)
        lst = struct.unpack_from(f"<{npages}Q", self.dma.view(prp2, 8 * npages))
        for addr in lst:
            k = min(PAGE, left)
            out.append(self.dma.view(addr, k))
            left -= k
        return out

    def _to_host(self, sqe: bytes, data: bytes) -> None:
        off = 0
        for v in self._xfer(sqe, len(data)):
            v[:] = data[off:off + len(v)]
            off += len(v)

    def _from_host(self, sqe: bytes, n: int) -> bytes:
        return b"".join(bytes(v) for v in self._xfer(sqe, n))

    def _admin(self, sqe: bytes, opc: int, nsid: int) -> tuple[int, int]:
        cdw10, cdw11, cdw12, *_ = spec.sqe_cdw10_15(sqe)
        if opc == AdminOpcode.IDENTIFY:
            cns = cdw10 & 0xFF
            if cns == 1:
                page = spec.build_identify_controller(spec.ControllerData(
                    serial=self.serial, model="spydk fake PCIe", mdts=self.mdts, nn=1, cmic=0,
                    oaes=spec.Oaes.NS_ATTRIBUTE_NOTICES, vid=0x1B36, ssvid=0x1AF4, kas=0))
            elif cns == 0:
                if nsid != 1:
                    return spec.GenericStatus.INVALID_NAMESPACE_OR_FORMAT << 1, 0
                page = spec.build_identify_namespace(spec.NamespaceData(
                    nsze=self.nblocks, block_size=self.block_size))
            elif cns == 2:
                page = spec.build_ns_list([1])
            else:
                page = bytes(4096)
            self._to_host(sqe, page)
            return 0, 0
        if opc == AdminOpcode.SET_FEATURES:
            if cdw10 & 0xFF == 0x07:
                return 0, (min(cdw11 & 0xFFFF, 7)) | (min(cdw11 >> 16, 7) << 16)
            return 0, 0
        if opc in (AdminOpcode.GET_FEATURES, AdminOpcode.KEEP_ALIVE):
            return 0, 0
        if opc == AdminOpcode.GET_LOG_PAGE:
            numd = ((cdw10 >> 16) | (cdw11 << 16)) + 1
            self._to_host(sqe, bytes(4 * numd))
            return 0, 0
        if opc == AdminOpcode.CREATE_IO_CQ:
            prp1, _ = spec.sqe_prp(sqe)
            self.cqs[cdw10 & 0xFFFF] = [prp1, (cdw10 >> 16) + 1, 0, 1]
            return 0, 0
        if opc == AdminOpcode.CREATE_IO_SQ:
            prp1, _ = spec.sqe_prp(sqe)
            cqid = cdw11 >> 16
            if cqid not in self.cqs:
                return (0x00 << 1) | (1 << 9), 0
            self.sqs[cdw10 & 0xFFFF] = [prp1, (cdw10 >> 16) + 1, 0, cqid]
            return 0, 0
        if opc == AdminOpcode.DELETE_IO_SQ:
            self.sqs.pop(cdw10 & 0xFFFF, None)
            return 0, 0
        if opc == AdminOpcode.DELETE_IO_CQ:
            self.cqs.pop(cdw10 & 0xFFFF, None)
            return 0, 0
        return spec.GenericStatus.INVALID_OPCODE << 1, 0

    def _io(self, sqe: bytes, opc: int, nsid: int) -> tuple[int, int]:
        cdw10, cdw11, cdw12, *_ = spec.sqe_cdw10_15(sqe)
        if nsid != 1:
            return spec.GenericStatus.INVALID_NAMESPACE_OR_FORMAT << 1, 0
        slba = cdw10 | (cdw11 << 32)
        nlb = (cdw12 & 0xFFFF) + 1
        if opc == NvmOpcode.FLUSH:
            return 0, 0
        if slba + nlb > self.nblocks:
            return spec.GenericStatus.LBA_OUT_OF_RANGE << 1, 0
        bs = self.block_size
        a, b = slba * bs, (slba + nlb) * bs
        if opc == NvmOpcode.READ:
            self._to_host(sqe, bytes(self.data[a:b]))
        elif opc == NvmOpcode.WRITE:
            self.data[a:b] = self._from_host(sqe, b - a)
        elif opc == NvmOpcode.WRITE_ZEROES:
            self.data[a:b] = bytes(b - a)
        else:
            return spec.GenericStatus.INVALID_OPCODE << 1, 0
        return 0, 0
