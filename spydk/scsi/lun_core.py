"""The core of a logical unit: state, command dispatch, completion, checks and range locks."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spydk import trace as _trace
from spydk.scsi.backend import BlockBackend
from spydk.scsi.errors import CheckCondition, ReservationConflict, illegal, invalid_field_in_cdb
from spydk.scsi.inquiry import (
    Identity,
)
from spydk.scsi.mode import ModePages
from spydk.scsi.reservations import Reservations
from spydk.scsi.spec import (
    UNMAP_MAX_DESCRIPTORS,
    Asc,
    Op,
    SenseKey,
    sense,
)
from spydk.scsi.task import ScsiStatus, ScsiTask, TmfResponse
from spydk.trace import tpoints as _tp

_TRACE_SCSI = False
_trace.bind_flag(globals(), "_TRACE_SCSI", _tp.GROUP_SCSI)

if TYPE_CHECKING:  # avoids an import cycle
    from spydk.scsi.device import ScsiDevice

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


_Handler = Callable[[Any, ScsiTask, Cdb], None]  # an unbound method of lun.ScsiLun
_HANDLERS: list[_Handler | None] = [None] * 256  # filled by lun.py from the assembled class
_CDB_LEN = [0] * 256


class LunCore:
    """The LUN's state, dispatch, completion and checks; the command sets are mixins (sbc.py,
    spc.py, pr_commands.py, tmf.py) and lun.ScsiLun assembles them."""

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
        if _TRACE_SCSI:
            _trace.record(_tp.SCSI_TASK_START, self.id, id(task))
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

    # ------------------------------------------------------------------ completion

    def _done(self, task: ScsiTask) -> None:
        if _TRACE_SCSI:
            _trace.record(_tp.SCSI_TASK_DONE, self.id, id(task), 0, task.status)
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

    # -- provided by the command-set mixins (sbc.py, spc.py, pr_commands.py, tmf.py) ----------

    def _conflicts(self, task: ScsiTask, op: int, cdb: Cdb) -> bool:
        raise NotImplementedError

    def _tmf_progress(self, task: ScsiTask) -> None:
        raise NotImplementedError

    def _flush_done(self, task: ScsiTask, ok: bool) -> None:
        raise NotImplementedError

    def _abort(self, task: ScsiTask) -> None:
        raise NotImplementedError
