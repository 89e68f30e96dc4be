"""A direct-access logical unit: executes SPC-4/SBC-3 CDBs against a BlockBackend.

Every task handed to ``execute`` completes exactly once through ``task.on_complete``, possibly
synchronously. Command failures become CHECK CONDITION with sense data (fixed format, or
descriptor format once the initiator sets D_SENSE in the control mode page).

Aborted tasks (task management, PREEMPT AND ABORT, I_T nexus loss) still complete through
``on_complete``, once the backend has let go of their buffers, with ``task.aborted`` set and
status TASK ABORTED. Whether anything is sent for them is the transport's choice (iSCSI sends
no response for a task aborted by a TMF on its own session).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backend import BlockBackend
from .errors import CheckCondition, ReservationConflict, illegal, invalid_field_in_cdb
from .inquiry import (
    BlockLimits,
    Identity,
    block_device_characteristics,
    block_limits,
    device_identification,
    extended_inquiry,
    logical_block_provisioning,
    standard_inquiry,
    supported_pages,
    unit_serial,
)
from .mode import ModePages
from .opcodes import BY_KEY, SA_OPCODES, report_all, report_one
from .reservations import Nexus, Reservations
from .spec import (
    BLOCK_DESCRIPTOR_LONG,
    BLOCK_DESCRIPTOR_SHORT,
    CDB6_RW,
    CDB10,
    CDB12,
    CDB16,
    CDB_CAW,
    CDB_INQUIRY,
    CDB_MAINT_IN,
    CDB_MODE_SELECT6,
    CDB_MODE_SELECT10,
    CDB_MODE_SENSE6,
    CDB_MODE_SENSE10,
    CDB_PRIN,
    CDB_PROUT,
    CDB_READ_CAPACITY10,
    CDB_SAI16,
    CDB_UNMAP,
    LBA_STATUS_DESCRIPTOR,
    MODE_HEADER6,
    MODE_HEADER10,
    PROUT_PARAMS,
    READ_CAPACITY10_DATA,
    READ_CAPACITY16_DATA,
    UNMAP_DESCRIPTOR,
    UNMAP_HEADER,
    UNMAP_MAX_DESCRIPTORS,
    Asc,
    MaintenanceIn,
    ModePc,
    Op,
    PrIn,
    PrOut,
    PrType,
    SaIn16,
    SenseKey,
    Vpd,
    sense,
)
from .task import ScsiStatus, ScsiTask, TmfFunction, TmfResponse

if TYPE_CHECKING:  # avoids an import cycle
    from .device import ScsiDevice

TmfCallback = Callable[[TmfResponse], None]
Cdb = bytes | memoryview

_GOOD = ScsiStatus.GOOD
_CHECK = ScsiStatus.CHECK_CONDITION
_ILLEGAL = SenseKey.ILLEGAL_REQUEST

# Commands that neither report nor clear a pending UNIT ATTENTION.
_UA_EXEMPT = frozenset((Op.INQUIRY, Op.REPORT_LUNS, Op.REQUEST_SENSE))
# Commands never blocked by a persistent reservation (PROUT checks its own rules).
_PR_ALLOWED = frozenset((Op.INQUIRY, Op.REPORT_LUNS, Op.REQUEST_SENSE, Op.PERSISTENT_RESERVE_IN,
                         Op.PERSISTENT_RESERVE_OUT, Op.MAINTENANCE_IN, Op.TEST_UNIT_READY,
                         Op.READ_CAPACITY_10, Op.LOG_SENSE, Op.RELEASE_6, Op.RELEASE_10))
# Read-class commands: allowed for non-holders of WRITE EXCLUSIVE reservations.
_PR_READ = frozenset((Op.READ_6, Op.READ_10, Op.READ_12, Op.READ_16, Op.VERIFY_10, Op.VERIFY_12,
                      Op.VERIFY_16, Op.PRE_FETCH_10, Op.PRE_FETCH_16, Op.MODE_SENSE_6,
                      Op.MODE_SENSE_10, Op.SERVICE_ACTION_IN_16))
# Commands allowed through an SPC-2 reservation held by another nexus.
_SPC2_ALLOWED = frozenset((Op.INQUIRY, Op.REPORT_LUNS, Op.REQUEST_SENSE, Op.RELEASE_6,
                           Op.RELEASE_10, Op.MAINTENANCE_IN, Op.PERSISTENT_RESERVE_IN))
# Commands that need the medium (removable logical units with the medium ejected).
_MEDIUM_OPS = frozenset((Op.TEST_UNIT_READY, Op.READ_6, Op.READ_10, Op.READ_12, Op.READ_16,
                         Op.WRITE_6, Op.WRITE_10, Op.WRITE_12, Op.WRITE_16, Op.WRITE_AND_VERIFY_10,
                         Op.WRITE_AND_VERIFY_12, Op.WRITE_AND_VERIFY_16, Op.VERIFY_10,
                         Op.VERIFY_12, Op.VERIFY_16, Op.SYNCHRONIZE_CACHE_10,
                         Op.SYNCHRONIZE_CACHE_16, Op.WRITE_SAME_10, Op.WRITE_SAME_16, Op.UNMAP,
                         Op.COMPARE_AND_WRITE, Op.PRE_FETCH_10, Op.PRE_FETCH_16,
                         Op.SERVICE_ACTION_IN_16, Op.READ_CAPACITY_10))

MAX_COMPARE_AND_WRITE_BLOCKS = 255
WRITE_SAME_CHUNK_BYTES = 1 << 20  # pattern buffer for WRITE SAME replication
DEFAULT_MAX_TRANSFER_BYTES = 32 << 20
MAX_LBA_STATUS_DESCRIPTORS = 64
MAX_UA_PER_NEXUS = 8

_MEDIUM_NOT_PRESENT = CheckCondition(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)


def _lba_out_of_range() -> CheckCondition:
    return CheckCondition(_ILLEGAL, Asc.LBA_OUT_OF_RANGE)


def _short_data() -> CheckCondition:
    return CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_INFORMATION_UNIT)


def _param_len_error() -> CheckCondition:
    return CheckCondition(_ILLEGAL, Asc.PARAMETER_LIST_LENGTH_ERROR)


def _data_out_len(iovs: list[memoryview]) -> int:
    if len(iovs) == 1:
        return len(iovs[0])
    return sum(map(len, iovs))


def _trim_iovs(iovs: list[memoryview], nbytes: int) -> list[memoryview]:
    """The first nbytes of a buffer list (callers made sure there are that many)."""
    if len(iovs) == 1:
        v = iovs[0]
        return iovs if len(v) == nbytes else [memoryview(v)[:nbytes]]
    out: list[memoryview] = []
    left = nbytes
    for v in iovs:
        if left <= 0:
            break
        n = len(v)
        out.append(v if n <= left else memoryview(v)[:left])
        left -= n
    return out


def _gather(iovs: list[memoryview], nbytes: int) -> bytes | memoryview | None:
    """nbytes of contiguous parameter data, or None if the initiator sent fewer."""
    if len(iovs) == 1 and len(iovs[0]) >= nbytes:
        return memoryview(iovs[0])[:nbytes]
    data = b"".join(iovs)
    return data[:nbytes] if len(data) >= nbytes else None


def _first_difference(a: bytes | memoryview, b: bytes | memoryview) -> int:
    """Offset of the first differing byte (a and b of equal length, known to differ)."""
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect with slice compares, then scan the small rest
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return hi


class _Loop:
    """Runs a sequence of asynchronous steps without growing the stack when the backend
    completes synchronously. ``step(cb)`` issues the next operation, or returns False when
    there is none left; ``finish(ok)`` runs once at the end (after the first failure)."""

    __slots__ = ("step", "finish", "task", "_in_step", "_sync_done", "_ok")

    def __init__(self, task: ScsiTask, step: Callable[[Callable[[bool], None]], bool],
                 finish: Callable[[bool], None]) -> None:
        self.task = task
        self.step = step
        self.finish = finish
        self._in_step = False
        self._sync_done = False
        self._ok = True

    def run(self) -> None:
        while True:
            if not self._ok or self.task.aborted:
                self.finish(self._ok)
                return
            self._in_step = True
            self._sync_done = False
            issued = self.step(self._cb)
            self._in_step = False
            if not issued:
                self.finish(self._ok)
                return
            if not self._sync_done:
                return  # resumes from _cb

    def _cb(self, ok: bool) -> None:
        if not ok:
            self._ok = False
        if self._in_step:
            self._sync_done = True
        else:
            self.run()


@dataclass(slots=True)
class _TmfWait:
    tasks: set[ScsiTask]
    cb: TmfCallback
    resetting: bool = False
    reset_ok: bool = True


@dataclass(slots=True)
class _LockWaiter:
    task: ScsiTask
    lba: int
    num: int
    resume: Callable[[], None]


@dataclass(slots=True)
class LunStats:
    read_ops: int = 0
    write_ops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    errors: int = 0
    aborted: int = 0


class ScsiLun:
    """One logical unit. Created by ``ScsiDevice.add_lun``."""

    def __init__(self, device: ScsiDevice, lun_id: int, backend: BlockBackend, *,
                 read_only: bool = False, removable: bool = False, vendor: str = "SPYDK",
                 product: str | None = None, revision: str = "0001",
                 serial: str | None = None) -> None:
        self.device = device
        self.id = lun_id
        self.backend = backend
        self.read_only = read_only
        self.identity = Identity(vendor=vendor, product=product or backend.name,
                                 revision=revision,
                                 serial=serial or backend.uuid.hex[:20],
                                 uuid=backend.uuid, removable=removable)
        self.mode = ModePages(backend.write_cache)
        self.reservations = Reservations()
        self.stats = LunStats()
        self._bs = backend.block_size
        self._num_blocks = backend.num_blocks
        mtb = backend.max_transfer_blocks
        self.max_transfer_blocks = mtb if mtb > 0 else max(1, DEFAULT_MAX_TRANSFER_BYTES // self._bs)
        # Advertised in the Block Limits page and enforced on UNMAP; larger requests are
        # split to the backend's own limits.
        self.max_unmap_descriptors = UNMAP_MAX_DESCRIPTORS
        self.max_unmap_lbas = 0xFFFFFFFF
        self._tasks: set[ScsiTask] = set()
        self._nexuses: set[str] = set()
        self._ua: dict[str, list[int]] = {}
        self._locks: list[tuple[int, int]] = []
        self._lock_waiters: list[_LockWaiter] = []
        self._tmf_waits: list[_TmfWait] = []
        self._prevent: set[str] = set()
        self._ejected = False
        self._write_protected = read_only

    # ------------------------------------------------------------------ public API

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    @property
    def outstanding(self) -> int:
        return len(self._tasks)

    def capacity_changed(self) -> None:
        """The backend's num_blocks changed: pick it up and tell every initiator."""
        self._num_blocks = self.backend.num_blocks
        for port in self._nexuses:
            self.establish_ua(port, Asc.CAPACITY_DATA_HAS_CHANGED)

    def establish_ua(self, initiator_port: str, asc: int) -> None:
        q = self._ua.setdefault(initiator_port, [])
        if asc not in q and len(q) < MAX_UA_PER_NEXUS:
            q.append(asc)

    def clear_ua(self, initiator_port: str, asc: int) -> None:
        q = self._ua.get(initiator_port)
        if q and asc in q:
            q.remove(asc)
            if not q:
                del self._ua[initiator_port]

    def pending_unit_attentions(self, initiator_port: str) -> list[int]:
        return list(self._ua.get(initiator_port, ()))

    def execute(self, task: ScsiTask) -> None:
        cdb = task.cdb
        port = task.initiator_port
        self._tasks.add(task)
        if port not in self._nexuses:
            self._nexuses.add(port)
        try:
            if not cdb:
                raise illegal(Asc.INVALID_COMMAND_OPERATION_CODE)
            op = cdb[0]
            if self._ua and port in self._ua and op not in _UA_EXEMPT:
                raise CheckCondition(SenseKey.UNIT_ATTENTION, self._pop_ua(port))
            handler = _HANDLERS[op]
            if handler is None:
                raise illegal(Asc.INVALID_COMMAND_OPERATION_CODE)
            if len(cdb) < _CDB_LEN[op]:
                raise invalid_field_in_cdb()
            if self.reservations.active and self._conflicts(task, op, cdb):
                raise ReservationConflict()
            if self._ejected and op in _MEDIUM_OPS:
                raise _MEDIUM_NOT_PRESENT
            handler(self, task, cdb)
        except CheckCondition as e:
            self._fail(task, e)
        except ReservationConflict:
            task.status = ScsiStatus.RESERVATION_CONFLICT
            self._done(task)

    def task_mgmt(self, function: TmfFunction, ref_tag: int, initiator_port: str,
                  cb: TmfCallback) -> None:
        """Task management on this LUN; ``cb`` runs once every affected task has completed."""
        if function == TmfFunction.ABORT_TASK:
            victims = {t for t in self._tasks
                       if t.tag == ref_tag and t.initiator_port == initiator_port}
            if not victims:
                cb(TmfResponse.TASK_DOES_NOT_EXIST)
                return
            self._abort_and_wait(victims, cb)
        elif function == TmfFunction.ABORT_TASK_SET:
            self._abort_and_wait({t for t in self._tasks if t.initiator_port == initiator_port},
                                 cb)
        elif function == TmfFunction.CLEAR_TASK_SET:
            victims = set(self._tasks)
            for port in {t.initiator_port for t in victims} - {initiator_port}:
                self.establish_ua(port, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)
            self._abort_and_wait(victims, cb)
        elif function in (TmfFunction.LOGICAL_UNIT_RESET, TmfFunction.TARGET_WARM_RESET,
                          TmfFunction.TARGET_COLD_RESET):
            self._reset(initiator_port, cb)
        elif function == TmfFunction.TASK_REASSIGN:
            cb(TmfResponse.REASSIGNMENT_NOT_SUPPORTED)
        else:
            cb(TmfResponse.NOT_SUPPORTED)

    def nexus_lost(self, initiator_port: str) -> None:
        """The I_T nexus is gone (session closed): abort its tasks, drop its SPC-2
        reservation, PREVENT state and unit attentions. Registrations survive."""
        for task in [t for t in self._tasks if t.initiator_port == initiator_port]:
            self._abort(task)
        self.reservations.nexus_lost(initiator_port)
        self._prevent.discard(initiator_port)
        self._ua.pop(initiator_port, None)
        self._nexuses.discard(initiator_port)

    # ------------------------------------------------------------------ completion

    def _done(self, task: ScsiTask) -> None:
        self._tasks.discard(task)
        if task.aborted:
            task.status = ScsiStatus.TASK_ABORTED
            task.sense = b""
            task.data_in = []
            task.data_in_length = 0
            self.stats.aborted += 1
        cb = task.on_complete
        if cb is not None:
            cb(task)
        if self._tmf_waits:
            self._tmf_progress(task)

    def _fail(self, task: ScsiTask, e: CheckCondition) -> None:
        task.status = _CHECK
        task.sense = sense(e.key, e.asc, descriptor=self.mode.d_sense, info=e.info, sks=e.sks)
        task.data_in = []
        task.data_in_length = 0
        self.stats.errors += 1
        self._done(task)

    def _fail_now(self, task: ScsiTask, key: int, asc: int, info: int | None = None) -> None:
        self._fail(task, CheckCondition(key, asc, info))

    def _respond(self, task: ScsiTask, data: bytes | bytearray | memoryview, alloc: int) -> None:
        # Truncated to the allocation length only: the transport clips to its expected transfer
        # length and reports the difference as residual overflow.
        n = min(len(data), alloc)
        if n:
            task.data_in = [memoryview(data)[:n]]
        task.data_in_length = n
        self._done(task)

    def _pop_ua(self, port: str) -> int:
        q = self._ua[port]
        asc = q.pop(0)
        if not q:
            del self._ua[port]
        return asc

    def _ua_others(self, port: str, asc: int) -> None:
        for p in self._nexuses:
            if p != port:
                self.establish_ua(p, asc)

    # ------------------------------------------------------------------ task management

    def _abort(self, task: ScsiTask) -> None:
        task.aborted = True
        for i, w in enumerate(self._lock_waiters):
            if w.task is task:  # never reached the backend: complete now
                del self._lock_waiters[i]
                self._done(task)
                return

    def _abort_and_wait(self, victims: set[ScsiTask], cb: TmfCallback,
                        resetting: bool = False) -> _TmfWait:
        wait = _TmfWait(set(victims), cb, resetting)
        self._tmf_waits.append(wait)
        for task in list(victims):
            self._abort(task)
        self._tmf_check(wait)
        return wait

    def _tmf_progress(self, task: ScsiTask) -> None:
        for wait in list(self._tmf_waits):
            if task in wait.tasks:
                wait.tasks.discard(task)
                self._tmf_check(wait)

    def _tmf_check(self, wait: _TmfWait) -> None:
        if wait.tasks or wait.resetting or wait not in self._tmf_waits:
            return
        self._tmf_waits.remove(wait)
        wait.cb(TmfResponse.COMPLETE if wait.reset_ok else TmfResponse.REJECTED)

    def _reset(self, initiator_port: str, cb: TmfCallback) -> None:
        wait = self._abort_and_wait(set(self._tasks), cb, resetting=True)
        self.reservations.reset()
        self._prevent.clear()
        self._ua_others(initiator_port, Asc.POWER_ON_RESET_OCCURRED)

        def reset_done(ok: bool) -> None:
            wait.resetting = False
            wait.reset_ok = ok
            self._tmf_check(wait)
        self.backend.reset(reset_done)

    # ------------------------------------------------------------------ reservations

    def _conflicts(self, task: ScsiTask, op: int, cdb: Cdb) -> bool:
        res = self.reservations
        nexus = (task.initiator_port, task.target_port)
        if res.spc2_holder is not None:
            return op not in _SPC2_ALLOWED and res.spc2_conflicts(nexus)
        if op in _PR_ALLOWED:
            return False
        if op == Op.SERVICE_ACTION_IN_16 and cdb[1] & 0x1F == SaIn16.READ_CAPACITY_16:
            return False
        if op in (Op.RESERVE_6, Op.RESERVE_10):
            return True
        return res.pr_conflicts(nexus, op in _PR_READ)

    # ------------------------------------------------------------------ range locks

    def _locked(self, lba: int, num: int) -> bool:
        end = lba + num
        for start, n in self._locks:
            if lba < start + n and start < end:
                return True
        return False

    def _unlock(self, lba: int, num: int) -> None:
        self._locks.remove((lba, num))
        waiters, self._lock_waiters = self._lock_waiters, []
        for w in waiters:
            if self._locked(w.lba, w.num):
                self._lock_waiters.append(w)
            else:
                w.resume()

    # ------------------------------------------------------------------ checks

    def _check_range(self, lba: int, num: int) -> None:
        if lba + num > self._num_blocks:
            raise _lba_out_of_range()

    def _check_writable(self) -> None:
        if self._write_protected or self.mode.swp:
            raise CheckCondition(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)

    # ------------------------------------------------------------------ READ

    def _read(self, task: ScsiTask, lba: int, num: int) -> None:
        if lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        buf = memoryview(bytearray(num * self._bs))
        self.backend.read(lba, num, [buf], lambda ok: self._read_done(task, buf, ok))

    def _read_done(self, task: ScsiTask, buf: memoryview, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            return
        n = len(buf)
        task.data_in = [buf]
        task.data_in_length = n
        stats = self.stats
        stats.read_ops += 1
        stats.read_bytes += n
        self._done(task)

    def _cmd_read6(self, task: ScsiTask, cdb: Cdb) -> None:
        v, num = CDB6_RW.unpack_from(cdb)
        self._read(task, v & 0x1FFFFF, num or 256)

    def _cmd_read10(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB10.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    def _cmd_read12(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB12.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    def _cmd_read16(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB16.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    # ------------------------------------------------------------------ WRITE

    def _write(self, task: ScsiTask, lba: int, num: int, fua: int) -> None:
        if self._write_protected or self.mode.swp:
            self._check_writable()
        if lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        nbytes = num * self._bs
        task.write_length = nbytes
        iovs = task.data_out
        have = _data_out_len(iovs)
        if have < nbytes:
            # The initiator's expected length was short (iSCSI residual overflow): write the
            # whole blocks that came and let the transport report the rest as a residual;
            # a partial block is refused.
            if have % self._bs:
                raise _short_data()
            num = have // self._bs
            nbytes = have
            if num == 0:
                self._done(task)
                return
        iovs = _trim_iovs(iovs, nbytes)
        if self._locks and self._locked(lba, num):
            self._lock_waiters.append(_LockWaiter(
                task, lba, num, lambda: self._write_issue(task, lba, num, iovs, fua)))
            return
        self._write_issue(task, lba, num, iovs, fua)

    def _write_issue(self, task: ScsiTask, lba: int, num: int, iovs: list[memoryview],
                     fua: int) -> None:
        if not fua and not self.mode.wce and self.backend.write_cache:
            fua = 1  # write cache disabled through MODE SELECT: make every write durable
        self.backend.write(lba, num, iovs, lambda ok: self._write_done(task, lba, num, fua, ok))

    def _write_done(self, task: ScsiTask, lba: int, num: int, fua: int, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
            return
        stats = self.stats
        stats.write_ops += 1
        stats.write_bytes += num * self._bs
        if fua and self.backend.write_cache:
            self.backend.flush(lba, num, lambda ok: self._flush_done(task, ok))
            return
        self._done(task)

    def _flush_done(self, task: ScsiTask, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
            return
        self._done(task)

    def _cmd_write6(self, task: ScsiTask, cdb: Cdb) -> None:
        v, num = CDB6_RW.unpack_from(cdb)
        self._write(task, v & 0x1FFFFF, num or 256, 0)

    def _cmd_write10(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB10.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write12(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB12.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write16(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB16.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write_verify(self, task: ScsiTask, cdb: Cdb) -> None:
        op = cdb[0]
        layout = CDB10 if op == Op.WRITE_AND_VERIFY_10 else (
            CDB12 if op == Op.WRITE_AND_VERIFY_12 else CDB16)
        flags, lba, num = layout.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        # The data must be on the medium before it can be verified: write through.
        self._write(task, lba, num, 1)

    # ------------------------------------------------------------------ VERIFY / PRE-FETCH

    def _cmd_verify(self, task: ScsiTask, cdb: Cdb) -> None:
        op = cdb[0]
        layout = CDB10 if op == Op.VERIFY_10 else (CDB12 if op == Op.VERIFY_12 else CDB16)
        flags, lba, num = layout.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        bytchk = (flags >> 1) & 0x03
        if bytchk == 2:
            raise invalid_field_in_cdb(1, 2)
        self._check_range(lba, num)
        if num == 0 or bytchk == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        bs = self._bs
        expect_len = num * bs if bytchk == 1 else bs
        expected = _gather(task.data_out, expect_len)
        if expected is None:
            raise _short_data()
        if bytchk == 3:
            expected = bytes(expected) * num
        buf = memoryview(bytearray(num * bs))

        def read_done(ok: bool) -> None:
            if not ok:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            elif buf != expected:
                self._fail_now(task, SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY,
                               _first_difference(buf, expected))  # type: ignore[arg-type]
            else:
                self._done(task)
        self.backend.read(lba, num, [buf], read_done)

    def _cmd_prefetch(self, task: ScsiTask, cdb: Cdb) -> None:
        layout = CDB10 if cdb[0] == Op.PRE_FETCH_10 else CDB16
        _, lba, num = layout.unpack_from(cdb)
        self._check_range(lba, num)
        self._done(task)

    # ------------------------------------------------------------------ SYNCHRONIZE CACHE

    def _cmd_sync_cache(self, task: ScsiTask, cdb: Cdb) -> None:
        layout = CDB10 if cdb[0] == Op.SYNCHRONIZE_CACHE_10 else CDB16
        _, lba, num = layout.unpack_from(cdb)
        if lba > self._num_blocks or lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            num = self._num_blocks - lba
        self.backend.flush(lba, num, lambda ok: self._flush_done(task, ok))

    # ------------------------------------------------------------------ WRITE SAME

    def _cmd_write_same(self, task: ScsiTask, cdb: Cdb) -> None:
        sixteen = cdb[0] == Op.WRITE_SAME_16
        flags, lba, num = (CDB16 if sixteen else CDB10).unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        if flags & 0x10:  # ANCHOR: anchored state not supported
            raise invalid_field_in_cdb(1, 4)
        if flags & (0x06 if sixteen else 0x07):  # obsolete PBDATA/LBDATA, reserved
            raise invalid_field_in_cdb(1, 1)
        unmap = flags & 0x08
        ndob = sixteen and flags & 0x01
        self._check_writable()
        if lba > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            num = self._num_blocks - lba
        self._check_range(lba, num)
        backend = self.backend
        if unmap and not backend.supports_unmap:
            raise invalid_field_in_cdb(1, 3)
        bs = self._bs
        pattern: bytes | memoryview | None = None
        if not ndob:
            if _data_out_len(task.data_out) != bs:
                raise _short_data()
            pattern = _gather(task.data_out, bs)
            assert pattern is not None
        zero = pattern is None or not any(pattern)
        if num == 0:
            self._done(task)
            return

        def finish(ok: bool) -> None:
            if ok:
                self._done(task)
            else:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)

        if unmap and zero:
            self._unmap_ranges(task, [(lba, num)], finish)
            return
        if zero and backend.supports_write_zeroes:
            backend.write_zeroes(lba, num, finish)
            return
        per_chunk = max(1, min(num, WRITE_SAME_CHUNK_BYTES // bs))
        block = bytes(bs) if pattern is None else bytes(pattern)
        buf = memoryview(block * per_chunk)
        pos = [lba, num]

        def step(cb: Callable[[bool], None]) -> bool:
            start, left = pos
            if left == 0:
                return False
            n = min(left, per_chunk)
            pos[0] = start + n
            pos[1] = left - n
            backend.write(start, n, [buf[:n * bs]], cb)
            return True
        _Loop(task, step, finish).run()

    # ------------------------------------------------------------------ UNMAP

    def _unmap_ranges(self, task: ScsiTask, ranges: list[tuple[int, int]],
                      finish: Callable[[bool], None]) -> None:
        """Split ranges to the backend's per-range block limit and per-call range count."""
        backend = self.backend
        max_blocks = backend.max_unmap_blocks
        if max_blocks > 0:
            split: list[tuple[int, int]] = []
            for lba, num in ranges:
                while num > max_blocks:
                    split.append((lba, max_blocks))
                    lba += max_blocks
                    num -= max_blocks
                split.append((lba, num))
            ranges = split
        per_call = backend.max_unmap_descriptors or len(ranges)
        if len(ranges) <= per_call:
            backend.unmap(ranges, finish)
            return
        idx = [0]

        def step(cb: Callable[[bool], None]) -> bool:
            i = idx[0]
            if i >= len(ranges):
                return False
            idx[0] = i + per_call
            backend.unmap(ranges[i:i + per_call], cb)
            return True
        _Loop(task, step, finish).run()

    def _cmd_unmap(self, task: ScsiTask, cdb: Cdb) -> None:
        if not self.backend.supports_unmap:
            raise illegal(Asc.INVALID_COMMAND_OPERATION_CODE)
        anchor, plen = CDB_UNMAP.unpack_from(cdb)
        if anchor & 0x01:
            raise invalid_field_in_cdb(1, 0)
        self._check_writable()
        if plen == 0:
            self._done(task)
            return
        if plen < UNMAP_HEADER.size:
            raise _param_len_error()
        data = _gather(task.data_out, plen)
        if data is None:
            raise _param_len_error()
        _, bddl = UNMAP_HEADER.unpack_from(data)
        count = min(bddl, plen - UNMAP_HEADER.size) // UNMAP_DESCRIPTOR.size
        if count > self.max_unmap_descriptors:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        ranges: list[tuple[int, int]] = []
        total = 0
        nb = self._num_blocks
        for i in range(count):
            lba, num = UNMAP_DESCRIPTOR.unpack_from(data, UNMAP_HEADER.size + 16 * i)
            if lba + num > nb:
                raise _lba_out_of_range()
            if num:
                ranges.append((lba, num))
                total += num
        if total > self.max_unmap_lbas:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        if not ranges:
            self._done(task)
            return

        def finish(ok: bool) -> None:
            if ok:
                self._done(task)
            else:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
        self._unmap_ranges(task, ranges, finish)

    # ------------------------------------------------------------------ COMPARE AND WRITE

    def _cmd_compare_and_write(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB_CAW.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._check_writable()
        self._check_range(lba, num)
        if num == 0:
            if _data_out_len(task.data_out):
                # Data for a 0-block command: the initiator meant a length the one-byte
                # field cannot hold (e.g. 256 wrapped to 0), which is above our maximum.
                raise invalid_field_in_cdb(13)
            self._done(task)
            return
        if num > MAX_COMPARE_AND_WRITE_BLOCKS:
            raise invalid_field_in_cdb(13)
        half = num * self._bs
        if _data_out_len(task.data_out) != 2 * half:
            raise _short_data()
        data = _gather(task.data_out, 2 * half)
        assert data is not None
        if self._locked(lba, num):
            self._lock_waiters.append(_LockWaiter(
                task, lba, num, lambda: self._caw_locked(task, lba, num, data, flags & 0x08)))
            return
        self._caw_locked(task, lba, num, data, flags & 0x08)

    def _caw_locked(self, task: ScsiTask, lba: int, num: int, data: bytes | memoryview,
                    fua: int) -> None:
        self._locks.append((lba, num))
        half = num * self._bs
        buf = memoryview(bytearray(half))
        verify = memoryview(data)[:half]

        def finish(fail: tuple[int, int, int | None] | None) -> None:
            self._unlock(lba, num)
            if fail is None:
                self._done(task)
            else:
                self._fail_now(task, *fail)

        def write_done(ok: bool) -> None:
            if not ok:
                finish((SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, None))
            elif fua and self.backend.write_cache:
                self.backend.flush(lba, num, lambda ok: finish(
                    None if ok else (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, None)))
            else:
                finish(None)

        def read_done(ok: bool) -> None:
            if not ok:
                finish((SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, None))
            elif task.aborted:
                finish(None)
            elif buf != verify:
                finish((SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY,
                        _first_difference(buf, verify)))
            else:
                self.backend.write(lba, num, [memoryview(data)[half:]], write_done)
        self.backend.read(lba, num, [buf], read_done)

    # ------------------------------------------------------------------ capacity / status

    def _cmd_read_capacity10(self, task: ScsiTask, cdb: Cdb) -> None:
        lba, pmi = CDB_READ_CAPACITY10.unpack_from(cdb)
        if not pmi & 0x01 and lba:
            raise invalid_field_in_cdb(2)
        last = self._num_blocks - 1
        self._respond(task, READ_CAPACITY10_DATA.pack(min(last, 0xFFFFFFFF), self._bs), 8)

    def _cmd_service_action_in16(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, lba, alloc, _ = CDB_SAI16.unpack_from(cdb)
        sa &= 0x1F
        if sa == SaIn16.READ_CAPACITY_16:
            b = self.backend
            lbp = (0x8000 if b.supports_unmap else 0) | \
                (0x4000 if b.supports_unmap and b.unmap_reads_zeroes else 0)
            data = READ_CAPACITY16_DATA.pack(self._num_blocks - 1, self._bs, 0,
                                             b.physical_block_exp & 0x0F, lbp)
            self._respond(task, data, alloc)
        elif sa == SaIn16.GET_LBA_STATUS:
            self._get_lba_status(task, lba, alloc)
        else:
            raise invalid_field_in_cdb(1, 4)

    def _get_lba_status(self, task: ScsiTask, lba: int, alloc: int) -> None:
        nb = self._num_blocks
        if lba >= nb:
            raise _lba_out_of_range()
        backend = self.backend
        if not backend.supports_seek:
            self._lba_status_reply(task, [(lba, nb - lba, 0)], alloc)
            return
        limit = max(1, min(MAX_LBA_STATUS_DESCRIPTORS, (alloc - 8) // 16))
        descs: list[tuple[int, int, int]] = []
        state = {"pos": lba, "hole": -1}

        def add(start: int, end: int, status: int) -> None:
            while end > start:
                n = min(end - start, 0xFFFFFFFF)
                descs.append((start, n, status))
                start += n

        def step(cb: Callable[[bool], None]) -> bool:
            pos = state["pos"]
            if pos >= nb or len(descs) >= limit:
                return False

            def got_hole(hole: int) -> None:
                if hole < 0:
                    cb(False)
                    return
                hole = min(hole, nb)
                if hole > pos:
                    add(pos, hole, 0)
                    state["pos"] = hole
                    cb(True)
                    return
                backend.seek_data(pos, got_data)

            def got_data(data: int) -> None:
                if data < 0:
                    cb(False)
                    return
                data = min(max(data, pos + 1), nb)
                add(pos, data, 1)
                state["pos"] = data
                cb(True)
            backend.seek_hole(pos, got_hole)
            return True

        def finish(ok: bool) -> None:
            if not ok:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            else:
                self._lba_status_reply(task, descs[:limit], alloc)
        _Loop(task, step, finish).run()

    def _lba_status_reply(self, task: ScsiTask, descs: list[tuple[int, int, int]],
                          alloc: int) -> None:
        body = b"".join(LBA_STATUS_DESCRIPTOR.pack(lba, n, st) for lba, n, st in descs)
        data = (len(body) + 4).to_bytes(4, "big") + bytes(4) + body
        self._respond(task, data, alloc)

    # ------------------------------------------------------------------ SPC: simple commands

    def _cmd_test_unit_ready(self, task: ScsiTask, cdb: Cdb) -> None:
        self._done(task)

    def _cmd_request_sense(self, task: ScsiTask, cdb: Cdb) -> None:
        desc = bool(cdb[1] & 0x01)
        alloc = cdb[4]
        port = task.initiator_port
        if port in self._ua:
            data = sense(SenseKey.UNIT_ATTENTION, self._pop_ua(port), descriptor=desc)
        else:
            data = sense(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, descriptor=desc)
        self._respond(task, data, alloc)

    def _cmd_inquiry(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, page, alloc = CDB_INQUIRY.unpack_from(cdb)
        if flags & 0xFE:
            raise invalid_field_in_cdb(1, 1)
        if not flags & 0x01:
            if page:
                raise invalid_field_in_cdb(2)
            self._respond(task, standard_inquiry(self.identity), alloc)
            return
        self._respond(task, self._vpd(page, task.target_port), alloc)

    def _vpd(self, page: int, target_port: str) -> bytes:
        b = self.backend
        if page == Vpd.SUPPORTED_PAGES:
            return supported_pages()
        if page == Vpd.UNIT_SERIAL_NUMBER:
            return unit_serial(self.identity)
        if page == Vpd.DEVICE_IDENTIFICATION:
            dev = self.device
            return device_identification(self.identity, dev.name, target_port,
                                         dev.relative_port_id(target_port) if target_port else 0)
        if page == Vpd.EXTENDED_INQUIRY:
            return extended_inquiry()
        if page == Vpd.BLOCK_LIMITS:
            unmap = b.supports_unmap
            return block_limits(BlockLimits(
                max_compare_write=MAX_COMPARE_AND_WRITE_BLOCKS,
                optimal_granularity=min(1 << b.physical_block_exp, 0xFFFF),
                max_transfer=self.max_transfer_blocks,
                optimal_transfer=b.optimal_io_boundary,
                max_unmap_lbas=self.max_unmap_lbas if unmap else 0,
                max_unmap_descriptors=self.max_unmap_descriptors if unmap else 0,
                unmap_granularity=(1 << b.physical_block_exp) if unmap else 0,
                max_write_same=0,
            ))
        if page == Vpd.BLOCK_DEVICE_CHARACTERISTICS:
            return block_device_characteristics()
        if page == Vpd.LOGICAL_BLOCK_PROVISIONING:
            return logical_block_provisioning(b.supports_unmap, b.unmap_reads_zeroes)
        raise invalid_field_in_cdb(2)

    # ------------------------------------------------------------------ MODE SENSE / SELECT

    def _device_specific(self) -> int:
        wp = self._write_protected or self.mode.swp
        return (0x80 if wp else 0) | 0x10  # WP, DPOFUA

    def _cmd_mode_sense(self, task: ScsiTask, cdb: Cdb) -> None:
        ten = cdb[0] == Op.MODE_SENSE_10
        if ten:
            flags, pcpage, subpage, alloc = CDB_MODE_SENSE10.unpack_from(cdb)
        else:
            flags, pcpage, subpage, alloc = CDB_MODE_SENSE6.unpack_from(cdb)
        pc, page = pcpage >> 6, pcpage & 0x3F
        if pc == ModePc.SAVED:
            raise CheckCondition(_ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
        pages = self.mode.sense(page, subpage, pc)
        bd = b""
        long_lba = ten and bool(flags & 0x10)
        if not flags & 0x08:
            if long_lba:
                bd = BLOCK_DESCRIPTOR_LONG.pack(self._num_blocks, self._bs)
            else:
                bd = BLOCK_DESCRIPTOR_SHORT.pack(min(self._num_blocks, 0xFFFFFFFF),
                                                 self._bs.to_bytes(3, "big"))
        dsp = self._device_specific()
        if ten:
            total = MODE_HEADER10.size + len(bd) + len(pages)
            header = MODE_HEADER10.pack(total - 2, 0, dsp, 1 if long_lba else 0, len(bd))
        else:
            total = MODE_HEADER6.size + len(bd) + len(pages)
            header = MODE_HEADER6.pack(min(total - 1, 0xFF), 0, dsp, len(bd))
        self._respond(task, header + bd + pages, alloc)

    def _cmd_mode_select(self, task: ScsiTask, cdb: Cdb) -> None:
        ten = cdb[0] == Op.MODE_SELECT_10
        if ten:
            flags, plen = CDB_MODE_SELECT10.unpack_from(cdb)
            hdr = MODE_HEADER10.size
        else:
            flags, plen = CDB_MODE_SELECT6.unpack_from(cdb)
            hdr = MODE_HEADER6.size
        if flags & 0x01:
            raise CheckCondition(_ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
        if flags & 0xEE:
            raise invalid_field_in_cdb(1)
        if plen == 0:
            self._done(task)
            return
        if plen < hdr:
            raise _param_len_error()
        data = _gather(task.data_out, plen)
        if data is None:
            raise _param_len_error()
        if ten:
            bdlen = int.from_bytes(data[6:8], "big")
            long_lba = bool(data[4] & 0x01)
        else:
            bdlen = data[3]
            long_lba = False
        if hdr + bdlen > plen:
            raise _param_len_error()
        bd_size = BLOCK_DESCRIPTOR_LONG.size if long_lba else BLOCK_DESCRIPTOR_SHORT.size
        if bdlen % bd_size:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        for off in range(hdr, hdr + bdlen, bd_size):
            if long_lba:
                _, blen = BLOCK_DESCRIPTOR_LONG.unpack_from(data, off)
            else:
                blen = int.from_bytes(data[off + 5:off + 8], "big")
            if blen != self._bs:
                raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        if self.mode.select(data[hdr + bdlen:plen]):
            self._ua_others(task.initiator_port, Asc.MODE_PARAMETERS_CHANGED)
        self._done(task)

    # ------------------------------------------------------------------ START STOP / PREVENT

    def _cmd_start_stop_unit(self, task: ScsiTask, cdb: Cdb) -> None:
        power = cdb[4] >> 4
        if power not in (0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB):
            raise invalid_field_in_cdb(4, 7)
        start, loej, no_flush = cdb[4] & 0x01, cdb[4] & 0x02, cdb[4] & 0x04
        if power == 0 and loej and self.identity.removable:
            if self._prevent:
                raise CheckCondition(_ILLEGAL, Asc.MEDIUM_REMOVAL_PREVENTED)
            self._ejected = not start
        if power == 0 and not start and not no_flush and self.backend.write_cache \
                and not self._ejected:
            self.backend.flush(0, self._num_blocks, lambda ok: self._flush_done(task, ok))
            return
        self._done(task)

    def _cmd_prevent_allow(self, task: ScsiTask, cdb: Cdb) -> None:
        prevent = cdb[4] & 0x03
        if prevent > 1:
            raise invalid_field_in_cdb(4, 1)
        if prevent:
            self._prevent.add(task.initiator_port)
        else:
            self._prevent.discard(task.initiator_port)
        self._done(task)

    # ------------------------------------------------------------------ reservations

    def _cmd_reserve(self, task: ScsiTask, cdb: Cdb) -> None:
        if cdb[1] & (0x13 if cdb[0] == Op.RESERVE_10 else 0x11):
            raise invalid_field_in_cdb(1)
        self.reservations.reserve6((task.initiator_port, task.target_port))
        self._done(task)

    def _cmd_release(self, task: ScsiTask, cdb: Cdb) -> None:
        if cdb[1] & (0x13 if cdb[0] == Op.RELEASE_10 else 0x11):
            raise invalid_field_in_cdb(1)
        self.reservations.release6((task.initiator_port, task.target_port))
        self._done(task)

    def _cmd_prin(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, alloc = CDB_PRIN.unpack_from(cdb)
        sa &= 0x1F
        res = self.reservations
        gen = res.generation.to_bytes(4, "big")
        if sa == PrIn.READ_KEYS:
            keys = b"".join(k.to_bytes(8, "big") for k in res.registrations.values())
            data = gen + len(keys).to_bytes(4, "big") + keys
        elif sa == PrIn.READ_RESERVATION:
            if res.holder is None:
                data = gen + bytes(4)
            else:
                key = 0 if res.type in (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
                                        PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS) \
                    else res.registrations.get(res.holder, 0)
                data = gen + (16).to_bytes(4, "big") + key.to_bytes(8, "big") + bytes(5) + \
                    bytes((res.type & 0x0F,)) + bytes(2)
        elif sa == PrIn.REPORT_CAPABILITIES:
            data = bytes((0, 8, 0x10 | 0x04, 0x80, 0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01, 0, 0))
        elif sa == PrIn.READ_FULL_STATUS:
            data = self._read_full_status()
        else:
            raise invalid_field_in_cdb(1, 4)
        self._respond(task, data, alloc)

    def _read_full_status(self) -> bytes:
        res = self.reservations
        descs = []
        for nexus, key in res.registrations.items():
            initiator, tport = nexus
            all_tg = tport == "*"
            holder = res.holder is not None and (
                res.type in (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
                             PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS) or res.holder == nexus)
            tid = _transport_id(initiator)
            rel = 0 if all_tg else self.device.relative_port_id(tport)
            descs.append(key.to_bytes(8, "big") + bytes(4) +
                         bytes(((0x02 if all_tg else 0) | (0x01 if holder else 0),
                                res.type & 0x0F if holder else 0)) +
                         bytes(4) + rel.to_bytes(2, "big") + len(tid).to_bytes(4, "big") + tid)
        body = b"".join(descs)
        return res.generation.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body

    def _cmd_prout(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, scope_type, plen = CDB_PROUT.unpack_from(cdb)
        sa &= 0x1F
        if sa > PrOut.REGISTER_AND_IGNORE_EXISTING_KEY:
            raise invalid_field_in_cdb(1, 4)
        if plen != PROUT_PARAMS.size:
            raise _param_len_error()
        data = _gather(task.data_out, plen)
        if data is None:
            raise _param_len_error()
        key, sa_key, flags = PROUT_PARAMS.unpack_from(data)
        nexus: Nexus = (task.initiator_port, task.target_port)
        outcome = self.reservations.prout(nexus, sa, scope_type, key, sa_key, flags)
        for port, asc in outcome.unit_attentions:
            self.establish_ua(port, asc)
        for victim in outcome.abort_nexuses:
            for t in list(self._tasks):
                if t is not task and t.initiator_port == victim[0]:
                    self._abort(t)
        self._done(task)

    # ------------------------------------------------------------------ MAINTENANCE IN

    def _cmd_maintenance_in(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, options, req_op, req_sa, alloc = CDB_MAINT_IN.unpack_from(cdb)
        sa &= 0x1F
        if sa == MaintenanceIn.REPORT_SUPPORTED_OPCODES:
            rctd = bool(options & 0x80)
            ro = options & 0x07
            if ro == 0:
                data = report_all(rctd)
            elif ro in (1, 2, 3):
                has_sa = req_op in SA_OPCODES
                if ro == 1 and has_sa:
                    raise invalid_field_in_cdb(2)
                if ro == 2 and not has_sa and BY_KEY.get((req_op, None)) is not None:
                    raise invalid_field_in_cdb(2)
                info = BY_KEY.get((req_op, req_sa if has_sa else None))
                data = report_one(info, rctd)
            else:
                raise invalid_field_in_cdb(2, 2)
            self._respond(task, data, alloc)
        elif sa == MaintenanceIn.REPORT_SUPPORTED_TMFS:
            # ATS, ATSS, CTSS, LURS, TRS; with REPD the 16-byte extended format.
            data = bytes((0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0))
            if options & 0x80:
                data = data[:3] + b"\x0c" + bytes(12)
            self._respond(task, data, alloc)
        else:
            raise invalid_field_in_cdb(1, 4)


def _transport_id(initiator_port: str) -> bytes:
    """iSCSI TransportID: format 01b (name + ISID) when the port name carries ",i,0x"."""
    fmt = 0x40 if ",i,0x" in initiator_port else 0x00
    name = initiator_port.encode("utf-8") + b"\x00"
    name = name.ljust(max(20, (len(name) + 3) & ~3), b"\x00")
    return bytes((fmt | 0x05, 0)) + len(name).to_bytes(2, "big") + name


_Handler = Callable[[ScsiLun, ScsiTask, Cdb], None]
_HANDLERS: list[_Handler | None] = [None] * 256
_CDB_LEN = [0] * 256


def _register() -> None:
    table: dict[int, _Handler] = {
        Op.TEST_UNIT_READY: ScsiLun._cmd_test_unit_ready,
        Op.REQUEST_SENSE: ScsiLun._cmd_request_sense,
        Op.READ_6: ScsiLun._cmd_read6,
        Op.WRITE_6: ScsiLun._cmd_write6,
        Op.INQUIRY: ScsiLun._cmd_inquiry,
        Op.MODE_SELECT_6: ScsiLun._cmd_mode_select,
        Op.RESERVE_6: ScsiLun._cmd_reserve,
        Op.RELEASE_6: ScsiLun._cmd_release,
        Op.MODE_SENSE_6: ScsiLun._cmd_mode_sense,
        Op.START_STOP_UNIT: ScsiLun._cmd_start_stop_unit,
        Op.PREVENT_ALLOW_MEDIUM_REMOVAL: ScsiLun._cmd_prevent_allow,
        Op.READ_CAPACITY_10: ScsiLun._cmd_read_capacity10,
        Op.READ_10: ScsiLun._cmd_read10,
        Op.WRITE_10: ScsiLun._cmd_write10,
        Op.WRITE_AND_VERIFY_10: ScsiLun._cmd_write_verify,
        Op.VERIFY_10: ScsiLun._cmd_verify,
        Op.PRE_FETCH_10: ScsiLun._cmd_prefetch,
        Op.SYNCHRONIZE_CACHE_10: ScsiLun._cmd_sync_cache,
        Op.WRITE_SAME_10: ScsiLun._cmd_write_same,
        Op.UNMAP: ScsiLun._cmd_unmap,
        Op.MODE_SELECT_10: ScsiLun._cmd_mode_select,
        Op.RESERVE_10: ScsiLun._cmd_reserve,
        Op.RELEASE_10: ScsiLun._cmd_release,
        Op.MODE_SENSE_10: ScsiLun._cmd_mode_sense,
        Op.PERSISTENT_RESERVE_IN: ScsiLun._cmd_prin,
        Op.PERSISTENT_RESERVE_OUT: ScsiLun._cmd_prout,
        Op.READ_16: ScsiLun._cmd_read16,
        Op.COMPARE_AND_WRITE: ScsiLun._cmd_compare_and_write,
        Op.WRITE_16: ScsiLun._cmd_write16,
        Op.WRITE_AND_VERIFY_16: ScsiLun._cmd_write_verify,
        Op.VERIFY_16: ScsiLun._cmd_verify,
        Op.PRE_FETCH_16: ScsiLun._cmd_prefetch,
        Op.SYNCHRONIZE_CACHE_16: ScsiLun._cmd_sync_cache,
        Op.WRITE_SAME_16: ScsiLun._cmd_write_same,
        Op.SERVICE_ACTION_IN_16: ScsiLun._cmd_service_action_in16,
        Op.MAINTENANCE_IN: ScsiLun._cmd_maintenance_in,
        Op.READ_12: ScsiLun._cmd_read12,
        Op.WRITE_12: ScsiLun._cmd_write12,
        Op.WRITE_AND_VERIFY_12: ScsiLun._cmd_write_verify,
        Op.VERIFY_12: ScsiLun._cmd_verify,
    }
    from .spec import cdb_length
    for op, fn in table.items():
        _HANDLERS[op] = fn
        _CDB_LEN[op] = cdb_length(op)


_register()
