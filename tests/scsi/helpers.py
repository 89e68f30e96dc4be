from __future__ import annotations

import struct

from spydk.scsi.device import ScsiDevice
from spydk.scsi.spec import parse_sense
from spydk.scsi.task import DataDir, ScsiTask
from tests.scsi.memory_backend import MemoryBackend

I1 = "iqn.1994-05.com.example:host1,i,0x00023d000001"
I2 = "iqn.1994-05.com.example:host2,i,0x00023d000002"
TPORT = "iqn.2016-06.io.spdk:disk1,t,0x0001"


class Harness:
    def __init__(self, backend: MemoryBackend | None = None, **lun_kw: object) -> None:
        self.backend = backend or MemoryBackend()
        self.dev = ScsiDevice("iqn.2016-06.io.spdk:disk1")
        self.lun = self.dev.add_lun(0, self.backend, **lun_kw)  # type: ignore[arg-type]
        self.completed: list[ScsiTask] = []

    def submit(self, cdb: bytes, data_out: bytes | list[bytes] = b"", *, lun: int = 0,
               port: str = I1, transfer_length: int | None = None, tag: int = 0) -> ScsiTask:
        if isinstance(data_out, bytes):
            iovs = [memoryview(data_out)] if data_out else []
        else:
            iovs = [memoryview(b) for b in data_out]
        out_len = sum(len(v) for v in iovs)
        task = ScsiTask(lun=lun, cdb=cdb, initiator_port=port, target_port=TPORT, tag=tag)
        task.data_out = iovs
        task.dxfer_dir = DataDir.TO_DEVICE if iovs else DataDir.FROM_DEVICE
        task.transfer_length = transfer_length if transfer_length is not None else (
            out_len if iovs else 1 << 20)
        task.on_complete = self.completed.append
        self.dev.execute(task)
        return task

    def run(self, cdb: bytes, data_out: bytes | list[bytes] = b"", **kw: object) -> ScsiTask:
        task = self.submit(cdb, data_out, **kw)  # type: ignore[arg-type]
        assert self.completed and self.completed[-1] is task, "task did not complete"
        assert self.completed.count(task) == 1
        return task


def data(task: ScsiTask) -> bytes:
    out = b"".join(bytes(v) for v in task.data_in)
    assert len(out) == task.data_in_length
    return out


def check(task: ScsiTask) -> tuple[int, int]:
    """(sense key, ASC<<8|ASCQ) of a CHECK CONDITION."""
    assert task.status == 0x02, f"status {task.status:#x}"
    key, asc, _ = parse_sense(task.sense)
    return key, asc


def good(task: ScsiTask) -> ScsiTask:
    assert task.status == 0, (f"status {task.status:#x} sense "
                              f"{parse_sense(task.sense) if task.sense else None}")
    return task


def cdb10(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, flags, lba, 0, n, 0)


def cdb12(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIIBB", op, flags, lba, n, 0, 0)


def cdb16(op: int, lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, flags, lba, n, 0, 0)
