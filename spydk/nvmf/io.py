"""NVMe I/O commands -> namespace backend calls, and backend results -> NVMe status.

A backend (``NamespaceBackend``) is a block device seen from the controller: bdev.py
adapts a bdev to it; tests use an in-memory one. Backend methods complete the request
later or at once through ``req.io_done(status)``, status being the CQE status field
(0 on success); a read also sets ``req.data`` to the bytes read.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol

from spydk.nvme.spec import AnaState, GenericStatus, MediaStatus, PathStatus, StatusCodeType
from spydk.nvmf import reservation_cmds as resv

if TYPE_CHECKING:
    from spydk.nvmf.ctrlr import Controller
    from spydk.nvmf.request import Buffer, Request


class NamespaceBackend(Protocol):
    block_size: int
    num_blocks: int
    uuid: bytes  # 16 bytes, or all zeroes when the device has none

    def read(self, req: Request, offset_blocks: int, num_blocks: int) -> None: ...

    def write(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None: ...

    def flush(self, req: Request) -> None: ...

    def write_zeroes(self, req: Request, offset_blocks: int, num_blocks: int) -> None: ...

    def unmap(self, req: Request, ranges: list[tuple[int, int]]) -> None: ...

    def compare(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None: ...

    def compare_and_write(self, req: Request, offset_blocks: int, num_blocks: int,
                          compare_data: Buffer, write_data: Buffer) -> None: ...

    def close(self) -> None: ...


def _st(sc: int, sct: int = 0, dnr: bool = True) -> int:
    return (sc << 1) | (sct << 9) | (int(dnr) << 15)


ST_INVALID_OPCODE = _st(GenericStatus.INVALID_OPCODE)
ST_INVALID_FIELD = _st(GenericStatus.INVALID_FIELD)
ST_INVALID_NS = _st(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
ST_LBA_OUT_OF_RANGE = _st(GenericStatus.LBA_OUT_OF_RANGE)
ST_SGL_LENGTH = _st(GenericStatus.DATA_SGL_LENGTH_INVALID)
ST_INTERNAL = _st(GenericStatus.INTERNAL_DEVICE_ERROR, dnr=False)
ST_COMPARE_FAILURE = _st(MediaStatus.COMPARE_FAILURE, StatusCodeType.MEDIA_ERROR)
ST_MISSING_FUSED = _st(GenericStatus.ABORTED_MISSING_FUSED)
ST_FAILED_FUSED = _st(GenericStatus.ABORTED_FAILED_FUSED)
ST_ANA_INACCESSIBLE = _st(PathStatus.ANA_INACCESSIBLE, StatusCodeType.PATH, dnr=False)
ST_ANA_PERSISTENT_LOSS = _st(PathStatus.ANA_PERSISTENT_LOSS, StatusCodeType.PATH, dnr=False)
ST_ANA_TRANSITION = _st(PathStatus.ANA_TRANSITION, StatusCodeType.PATH, dnr=False)
ST_TRANSIENT_TRANSPORT = _st(GenericStatus.TRANSIENT_TRANSPORT_ERROR, dnr=False)
ST_RESERVATION_CONFLICT = _st(GenericStatus.RESERVATION_CONFLICT)

_RW = struct.Struct("<QI")  # cdw10-11 (SLBA), cdw12 (NLB 15:0, flags)
_OFF_CDW10 = 40
_DSM_RANGE = struct.Struct("<IIQ")  # context attributes, length in blocks, SLBA
OPC_FLUSH, OPC_WRITE, OPC_READ, OPC_COMPARE, OPC_WRITE_ZEROES, OPC_DSM = 0x00, 0x01, 0x02, 0x05, 0x08, 0x09
FUSE_FIRST, FUSE_SECOND = 1, 2


def rw_status(b: NamespaceBackend, slba: int, nlb: int, length: int) -> int:
    """The checks of a Read, Write or Compare against its namespace: 0 when it may go to the
    backend, else its CQE status. Transports' fast paths call this too (one copy)."""
    if slba + nlb > b.num_blocks:
        return ST_LBA_OUT_OF_RANGE
    if nlb * b.block_size != length:
        return ST_SGL_LENGTH
    return 0


def exec_io(ctrlr: Controller, req: Request) -> None:
    qp = req.qpair
    fuse = req.flags & 0x3
    first = qp.fused_first
    if first is not None and fuse != FUSE_SECOND:
        qp.fused_first = None
        first.io_done(ST_MISSING_FUSED)
    ns = ctrlr.ns(req.nsid)
    opc = req.opcode
    if ns is None:
        if opc == OPC_FLUSH and req.nsid == 0xFFFFFFFF:
            req.complete()  # broadcast flush: every backend writes through
            return
        req.io_done(ST_INVALID_NS)
        return
    if ctrlr.subsys.ana_reporting:
        st = _ana_status(ctrlr, ns.anagrpid)
        if st:
            req.io_done(st)
            return
    if opc in resv.RESERVATION_OPCODES:
        resv.exec_reservation(ctrlr, req, ns)
        return
    if ns.resv.active and not resv.io_allowed(ctrlr, ns, opc):
        req.io_done(ST_RESERVATION_CONFLICT)
        return
    b = ns.backend
    if opc == OPC_READ or opc == OPC_WRITE or opc == OPC_COMPARE:
        slba, cdw12 = _RW.unpack_from(req.sqe, _OFF_CDW10)
        nlb = (cdw12 & 0xFFFF) + 1
        st = rw_status(b, slba, nlb, req.length)
        if st:
            req.io_done(st)
            return
        if opc == OPC_READ:
            if fuse:
                req.io_done(ST_INVALID_FIELD)
                return
            ctrlr.reads += 1
            ctrlr.read_units += nlb * b.block_size >> 9
            b.read(req, slba, nlb)
            return
        data = req.data
        if data is None:
            req.io_done(ST_SGL_LENGTH)
            return
        if opc == OPC_WRITE:
            ctrlr.writes += 1
            ctrlr.write_units += nlb * b.block_size >> 9
            if fuse == FUSE_SECOND:
                _fused_write(ctrlr, req, b, slba, nlb, first)
                return
            if fuse:
                req.io_done(ST_INVALID_FIELD)
                return
            b.write(req, slba, nlb, data)
            return
        # COMPARE
        if fuse == FUSE_FIRST:
            qp.fused_first = req  # waits for its write
            return
        if fuse:
            req.io_done(ST_INVALID_FIELD)
            return
        b.compare(req, slba, nlb, data)
        return
    if fuse:
        req.io_done(ST_INVALID_FIELD)
        return
    if opc == OPC_FLUSH:
        b.flush(req)
    elif opc == OPC_WRITE_ZEROES:
        slba, cdw12 = _RW.unpack_from(req.sqe, _OFF_CDW10)
        nlb = (cdw12 & 0xFFFF) + 1
        if slba + nlb > b.num_blocks:
            req.io_done(ST_LBA_OUT_OF_RANGE)
            return
        b.write_zeroes(req, slba, nlb)
    elif opc == OPC_DSM:
        _dataset_management(req, b)
    else:
        req.io_done(ST_INVALID_OPCODE)


def _ana_status(ctrlr: Controller, anagrpid: int) -> int:
    addr = ctrlr.listen_address
    if addr is None:
        return 0
    lst = ctrlr.subsys.find_listener(addr)
    if lst is None:
        return 0
    state = lst.ana_state(anagrpid)
    if state == AnaState.OPTIMIZED or state == AnaState.NON_OPTIMIZED:
        return 0
    if state == AnaState.INACCESSIBLE:
        return ST_ANA_INACCESSIBLE
    if state == AnaState.PERSISTENT_LOSS:
        return ST_ANA_PERSISTENT_LOSS
    return ST_ANA_TRANSITION


def _fused_write(ctrlr: Controller, req: Request, b: NamespaceBackend, slba: int, nlb: int,
                 first: Request | None) -> None:
    qp = req.qpair
    qp.fused_first = None
    if first is None:
        req.io_done(ST_MISSING_FUSED)
        return
    fslba, fcdw12 = _RW.unpack_from(first.sqe, _OFF_CDW10)
    if first.nsid != req.nsid or fslba != slba or (fcdw12 & 0xFFFF) + 1 != nlb \
            or first.data is None or req.data is None:
        first.io_done(ST_INVALID_FIELD)
        req.io_done(ST_FAILED_FUSED)
        return
    req.fused = first
    first.fused = req
    b.compare_and_write(req, slba, nlb, first.data, req.data)


def complete_fused(req: Request, status: int) -> None:
    """Backends call this for a compare-and-write: finishes the compare, then the write."""
    first = req.fused
    req.fused = None
    if first is not None:
        first.fused = None
        first.io_done(status)
        req.io_done(ST_FAILED_FUSED if status else 0)
    else:
        req.io_done(status)


def _dataset_management(req: Request, b: NamespaceBackend) -> None:
    cdw10, cdw11 = struct.unpack_from("<II", req.sqe, _OFF_CDW10)
    nr = (cdw10 & 0xFF) + 1
    data = req.data
    if data is None or len(data) < nr * 16:
        req.io_done(ST_SGL_LENGTH)
        return
    if not cdw11 & 0x4:  # no deallocate attribute: integral read/write hints only
        req.complete()
        return
    ranges: list[tuple[int, int]] = []
    for i in range(nr):
        _, length, slba = _DSM_RANGE.unpack_from(data, 16 * i)
        if length == 0:
            continue
        if slba + length > b.num_blocks:
            req.io_done(ST_LBA_OUT_OF_RANGE)
            return
        ranges.append((slba, length))
    if not ranges:
        req.complete()
        return
    b.unmap(req, ranges)
