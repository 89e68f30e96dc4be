"""Reservations on a controller: the four I/O commands, the I/O check, the Reservation
Notification log page and its event, and the two reservation features (NVMe Base 2.0, 8.19).

The state lives in each namespace's ``NsReservation`` (reservation.py); this module turns a
request into a call on it, completes the request, and hands the notices to every controller
of the host they are for.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from spydk.log import get_logger
from spydk.nvme.spec import GenericStatus
from spydk.nvme.spec import NvmOpcode as Op
from spydk.nvmf.reservation import (
    RESCAP_ALL_TYPES,
    RESCAP_IEKEY,
    RESCAP_PTPL,
    Notice,
    PtplError,
    Result,
    notice_log_page,
)

if TYPE_CHECKING:
    from spydk.nvmf.ctrlr import Controller
    from spydk.nvmf.request import Request
    from spydk.nvmf.subsystem import Namespace

log = get_logger("nvmf")

RESERVATION_OPCODES = frozenset({Op.RESERVATION_REGISTER, Op.RESERVATION_REPORT,
                                 Op.RESERVATION_ACQUIRE, Op.RESERVATION_RELEASE})
# Commands that read or modify the medium, for the access check while a reservation exists.
READ_OPCODES = frozenset({Op.READ, Op.COMPARE, Op.VERIFY})
WRITE_OPCODES = frozenset({Op.WRITE, Op.WRITE_ZEROES, Op.DATASET_MANAGEMENT, Op.WRITE_UNCORRECTABLE, Op.COPY})

AER_IO_COMMAND_SPECIFIC = 6
AEI_RESERVATION_LOG = 0
LOG_RESERVATION_NOTIFICATION = 0x80
MAX_NOTICES = 255  # the log page's "number of available log pages" is one byte
MASK_BITS = 0xE  # REGPRE, RESREL, RESPRE (bits 1-3)


class ControllerNotices:
    """A controller's queue of reservation notices and its log page counter."""

    def __init__(self) -> None:
        self.queue: deque[tuple[int, int, int]] = deque()  # (count, type, nsid)
        self.count = 0
        self.masks: dict[int, int] = {}  # nsid -> Reservation Notification Mask
        self.event_outstanding = False

    def add(self, ntype: int, nsid: int) -> bool:
        """Queue a notice; True when an event should tell the host."""
        if self.masks.get(nsid, 0) & (1 << ntype):
            return False
        self.count = self.count + 1 if self.count < 0xFFFFFFFFFFFFFFFF else 1
        if len(self.queue) >= MAX_NOTICES:
            self.queue.popleft()  # the host lost track; the counter shows the gap
        self.queue.append((self.count, ntype, nsid))
        return not self.event_outstanding

    def page(self, rae: bool) -> bytes:
        if not self.queue:
            page = notice_log_page(0, 0, 0, 0)
        else:
            count, ntype, nsid = self.queue.popleft()
            page = notice_log_page(count, ntype, len(self.queue), nsid)
        if not rae:
            self.event_outstanding = False
        return page


def exec_reservation(ctrlr: Controller, req: Request, ns: Namespace) -> None:
    opc = req.opcode
    cdw10, cdw11 = _cdw(req, 10), _cdw(req, 11)
    r = ns.resv
    hostid = ctrlr.hostid
    data = bytes(req.data) if req.data is not None else b""
    try:
        if opc == Op.RESERVATION_REGISTER:
            res = r.register(hostid, cdw10, data)
        elif opc == Op.RESERVATION_ACQUIRE:
            res = r.acquire(hostid, cdw10, data)
        elif opc == Op.RESERVATION_RELEASE:
            res = r.release(hostid, cdw10, data)
        else:
            numd = cdw10 + 1
            res = r.report(cdw11, min(numd * 4, max(req.length, 0)))
    except PtplError as e:
        log.error("namespace %d of %s: %s", ns.nsid, ctrlr.subsys.nqn, e)
        res = Result(GenericStatus.INTERNAL_DEVICE_ERROR)
    ctrlr.subsys.reservations_changed()
    _deliver(ctrlr, ns.nsid, res.notices)
    if res.status:
        req.fail(res.status)
        return
    if opc == Op.RESERVATION_REPORT:
        from spydk.nvmf.ctrlr import _c2h  # the controller's C2H helper (truncates to the buffer)
        _c2h(req, res.data)
        return
    req.complete()


def io_allowed(ctrlr: Controller, ns: Namespace, opc: int) -> bool:
    """The reservation check for an I/O command (call only while ns.resv.active)."""
    if opc in READ_OPCODES:
        return ns.resv.io_allowed(ctrlr.hostid, write=False)
    if opc in WRITE_OPCODES:
        return ns.resv.io_allowed(ctrlr.hostid, write=True)
    return True  # flush and the reservation commands themselves


def _deliver(ctrlr: Controller, nsid: int, notices: list[Notice]) -> None:
    for n in notices:
        for other in list(ctrlr.subsys.controllers.values()):
            if other.hostid == n.hostid and not other.dead:
                if other.resv_notices.add(int(n.type), nsid):
                    other.resv_notices.event_outstanding = True
                    other.post_event(AER_IO_COMMAND_SPECIFIC, AEI_RESERVATION_LOG, LOG_RESERVATION_NOTIFICATION)


def rescap(ns: Namespace) -> int:
    return RESCAP_ALL_TYPES | RESCAP_IEKEY | (RESCAP_PTPL if ns.resv.ptpl_file else 0)


def get_feature(ctrlr: Controller, req: Request, fid: int) -> int | None:
    """dw0 of Get Features for the reservation features, or None with the request failed."""
    ns = ctrlr.ns(req.nsid)
    if ns is None:
        req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
        return None
    if fid == 0x82:
        return ctrlr.resv_notices.masks.get(ns.nsid, 0)
    return int(ns.resv.ptpl)


def set_feature(ctrlr: Controller, req: Request, fid: int, cdw11: int) -> bool:
    """Set Features for the reservation features; False with the request failed."""
    s = ctrlr.subsys
    if fid == 0x82:
        if req.nsid == 0xFFFFFFFF:
            targets = ctrlr.active_nsids()
        elif ctrlr.ns(req.nsid) is not None:
            targets = [req.nsid]
        else:
            req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
            return False
        for nsid in targets:
            ctrlr.resv_notices.masks[nsid] = cdw11 & MASK_BITS
        return True
    ns = ctrlr.ns(req.nsid)
    if ns is None:
        req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
        return False
    if ns.resv.ptpl_file is None:
        req.fail(GenericStatus.INVALID_FIELD)  # nowhere to persist: add the namespace with ptpl_file
        return False
    ns.resv.ptpl = bool(cdw11 & 1)
    try:
        ns.resv.save()
    except PtplError as e:
        log.error("namespace %d of %s: %s", ns.nsid, s.nqn, e)
        req.fail(GenericStatus.INTERNAL_DEVICE_ERROR)
        return False
    return True


def _cdw(req: Request, n: int) -> int:
    off = 4 * n
    return int.from_bytes(req.sqe[off:off + 4], "little")
