"""A SCSI target device: a set of logical units behind one name, as a transport sees it."""
from __future__ import annotations

from collections.abc import Callable

from .backend import BlockBackend
from .errors import CheckCondition, invalid_field_in_cdb
from .inquiry import missing_lun_inquiry
from .lun import ScsiLun
from .spec import CDB_INQUIRY, CDB_REPORT_LUNS, Asc, Op, SenseKey, sense
from .task import ScsiStatus, ScsiTask, TmfFunction, TmfResponse

MAX_LUN_ID = 16383  # flat space addressing limit

_LUN_NOT_SUPPORTED = (SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED)


def encode_lun(lun_id: int) -> bytes:
    """SAM-5 8-byte LUN: peripheral device addressing below 256, flat space above."""
    if lun_id < 256:
        return bytes((0, lun_id)) + bytes(6)
    return bytes((0x40 | (lun_id >> 8), lun_id & 0xFF)) + bytes(6)


def decode_lun(raw: bytes) -> int:
    """Inverse of encode_lun for the first level (peripheral or flat space addressing)."""
    method = raw[0] >> 6
    if method in (0, 1):
        return ((raw[0] & 0x3F) << 8) | raw[1]
    return -1


class ScsiDevice:
    """Transports call ``execute`` for commands and ``task_mgmt`` for TMFs.

    Tasks for LUNs that do not exist complete with CHECK CONDITION, ILLEGAL REQUEST /
    LOGICAL UNIT NOT SUPPORTED, except INQUIRY (peripheral qualifier 011b), REPORT LUNS and
    REQUEST SENSE (GOOD with that sense as parameter data).
    """

    def __init__(self, name: str, target_id: int = 0, *, vendor: str = "SPYDK") -> None:
        self.name = name
        self.target_id = target_id
        self.vendor = vendor
        self.luns: dict[int, ScsiLun] = {}
        self._port_ids: dict[str, int] = {}

    # --- configuration ---

    def add_lun(self, lun_id: int, backend: BlockBackend, *, read_only: bool = False,
                removable: bool = False, product: str | None = None, revision: str = "0001",
                serial: str | None = None) -> ScsiLun:
        if not 0 <= lun_id <= MAX_LUN_ID:
            raise ValueError(f"LUN id {lun_id} out of range 0..{MAX_LUN_ID}")
        if lun_id in self.luns:
            raise ValueError(f"LUN {lun_id} already exists on {self.name}")
        lun = ScsiLun(self, lun_id, backend, read_only=read_only, removable=removable,
                      vendor=self.vendor, product=product, revision=revision, serial=serial)
        self._luns_changed()
        self.luns[lun_id] = lun
        return lun

    def remove_lun(self, lun_id: int) -> ScsiLun:
        """Detach a LUN. Tasks already on it still complete; new ones see it missing."""
        lun = self.luns.pop(lun_id, None)
        if lun is None:
            raise KeyError(f"LUN {lun_id} does not exist on {self.name}")
        self._luns_changed()
        return lun

    def get_lun(self, lun_id: int) -> ScsiLun | None:
        return self.luns.get(lun_id)

    def relative_port_id(self, target_port: str) -> int:
        """Relative target port identifier (1-based), assigned on first use."""
        rel = self._port_ids.get(target_port)
        if rel is None:
            rel = self._port_ids[target_port] = len(self._port_ids) + 1
        return rel

    def set_relative_port_id(self, target_port: str, rel_id: int) -> None:
        if not 1 <= rel_id <= 0xFFFF:
            raise ValueError("relative port id must be 1..65535")
        self._port_ids[target_port] = rel_id

    def _luns_changed(self) -> None:
        for lun in self.luns.values():
            for port in lun._nexuses:
                lun.establish_ua(port, Asc.REPORTED_LUNS_DATA_HAS_CHANGED)

    # --- commands ---

    def execute(self, task: ScsiTask) -> None:
        """Run one command; ``task.on_complete`` is called exactly once (maybe before this
        returns)."""
        if task.on_complete is None:
            raise ValueError("task.on_complete must be set")
        lun = self.luns.get(task.lun)
        cdb = task.cdb
        if lun is not None and (not cdb or cdb[0] != Op.REPORT_LUNS):
            lun.execute(task)
            return
        try:
            self._execute_without_lun(task)
        except CheckCondition as e:
            task.status = ScsiStatus.CHECK_CONDITION
            task.sense = sense(e.key, e.asc, sks=e.sks)
            task.data_in = []
            task.data_in_length = 0
            task.on_complete(task)

    def _execute_without_lun(self, task: ScsiTask) -> None:
        cdb = task.cdb
        op = cdb[0] if cdb else -1
        if op == Op.REPORT_LUNS:
            if len(cdb) < 12:
                raise invalid_field_in_cdb()
            select, alloc = CDB_REPORT_LUNS.unpack_from(cdb)
            if select not in (0, 1, 2):
                raise invalid_field_in_cdb(2)
            if alloc < 16:
                raise invalid_field_in_cdb(6)
            luns = b"".join(encode_lun(i) for i in sorted(self.luns)) if select != 1 else b""
            lun = self.luns.get(task.lun)
            if lun is not None:  # the initiator has now seen the new inventory
                lun.clear_ua(task.initiator_port, Asc.REPORTED_LUNS_DATA_HAS_CHANGED)
            self._reply(task, len(luns).to_bytes(4, "big") + bytes(4) + luns, alloc)
        elif op == Op.INQUIRY and len(cdb) >= 6:
            flags, page, alloc = CDB_INQUIRY.unpack_from(cdb)
            if flags & 0xFE or (not flags & 1 and page):
                raise invalid_field_in_cdb(1 if flags & 0xFE else 2)
            if flags & 1:
                raise CheckCondition(*_LUN_NOT_SUPPORTED)
            self._reply(task, missing_lun_inquiry(), alloc)
        elif op == Op.REQUEST_SENSE and len(cdb) >= 6:
            data = sense(*_LUN_NOT_SUPPORTED, descriptor=bool(cdb[1] & 0x01))
            self._reply(task, data, cdb[4])
        elif op < 0:
            raise CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)
        else:
            raise CheckCondition(*_LUN_NOT_SUPPORTED)

    @staticmethod
    def _reply(task: ScsiTask, data: bytes, alloc: int) -> None:
        n = min(len(data), alloc)
        task.status = ScsiStatus.GOOD
        task.data_in = [memoryview(data)[:n]] if n else []
        task.data_in_length = n
        assert task.on_complete is not None
        task.on_complete(task)

    # --- task management ---

    def task_mgmt(self, function: TmfFunction, lun: int, ref_tag: int, initiator_port: str,
                  cb: Callable[[TmfResponse], None]) -> None:
        """Run a task management function; ``cb(response)`` once every affected task has
        completed (aborted tasks complete first, with status TASK ABORTED)."""
        if function in (TmfFunction.TARGET_WARM_RESET, TmfFunction.TARGET_COLD_RESET):
            luns = list(self.luns.values())
            if not luns:
                cb(TmfResponse.COMPLETE)
                return
            left = [len(luns)]
            result = [TmfResponse.COMPLETE]

            def one_done(resp: TmfResponse) -> None:
                if resp != TmfResponse.COMPLETE:
                    result[0] = resp
                left[0] -= 1
                if left[0] == 0:
                    cb(result[0])
            for target_lun in luns:
                target_lun.task_mgmt(function, ref_tag, initiator_port, one_done)
            return
        target = self.luns.get(lun)
        if target is None:
            cb(TmfResponse.LUN_DOES_NOT_EXIST)
            return
        target.task_mgmt(function, ref_tag, initiator_port, cb)

    def nexus_lost(self, initiator_port: str) -> None:
        """The initiator's session ended: see ScsiLun.nexus_lost."""
        for lun in self.luns.values():
            lun.nexus_lost(initiator_port)
