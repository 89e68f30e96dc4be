"""The contract between a SCSI transport (iSCSI, vhost-scsi) and the SCSI layer.

A transport builds a ScsiTask from a command PDU, hands it to ``ScsiDevice.execute``
and gets it back through ``task.on_complete`` with status, sense and data filled in.
"""
from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class DataDir(enum.IntEnum):
    NONE = 0
    TO_DEVICE = 1    # write: data flows initiator -> target (Data-Out)
    FROM_DEVICE = 2  # read: data flows target -> initiator (Data-In)


class ScsiStatus(enum.IntEnum):
    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


@dataclass(slots=True, eq=False)
class ScsiTask:
    """One SCSI command. Preallocated and reused by transports; reset() before reuse."""

    lun: int = 0
    cdb: bytes | memoryview = b""
    dxfer_dir: DataDir = DataDir.NONE
    # Bytes the initiator expects to move (iSCSI Expected Data Transfer Length).
    transfer_length: int = 0
    # Write data, once all of it has arrived: buffers in order, summing to transfer_length
    # (or less when the initiator sent less).
    data_out: list[memoryview] = field(default_factory=list)
    # Identity of the I_T nexus, for reservations and UNIT ATTENTIONs.
    initiator_port: str = ""
    target_port: str = ""
    tag: int = 0
    # Filled in by the SCSI layer.
    status: int = ScsiStatus.GOOD
    sense: bytes = b""
    data_in: list[memoryview] = field(default_factory=list)
    # Bytes the command produced (after allocation-length truncation). May exceed
    # transfer_length: the transport clips to it and reports the overflow as a residual.
    data_in_length: int = 0
    # Writes: bytes the CDB asks to move (-1: not known), so the transport can report a
    # residual when the initiator's expected length differs.
    write_length: int = -1
    aborted: bool = False
    on_complete: Callable[[ScsiTask], None] | None = None
    ctx: object = None  # transport's own per-task context

    def reset(self) -> None:
        self.lun = 0
        self.cdb = b""
        self.dxfer_dir = DataDir.NONE
        self.transfer_length = 0
        self.data_out = []
        self.tag = 0
        self.status = ScsiStatus.GOOD
        self.sense = b""
        self.data_in = []
        self.data_in_length = 0
        self.write_length = -1
        self.aborted = False
        self.on_complete = None
        self.ctx = None


class TmfFunction(enum.IntEnum):
    """Task management functions (values as in iSCSI's Function field)."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResponse(enum.IntEnum):
    """Responses (values as in iSCSI's Task Management Function Response)."""

    COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    REASSIGNMENT_NOT_SUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    REJECTED = 255
