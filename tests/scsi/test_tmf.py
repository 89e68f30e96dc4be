"""Task management with tasks held in flight by a deferred-completion backend."""
from __future__ import annotations

from spydk.scsi.spec import Asc, SenseKey
from spydk.scsi.task import ScsiStatus, TmfFunction, TmfResponse
from tests.scsi.memory_backend import MemoryBackend

from .helpers import I1, I2, Harness, cdb10, check, good

BS = 512


def deferred() -> Harness:
    return Harness(MemoryBackend(deferred=True))


def test_abort_task_waits_for_backend() -> None:
    h = deferred()
    t1 = h.submit(cdb10(0x28, 0, 1), tag=1)
    t2 = h.submit(cdb10(0x28, 1, 1), tag=2)
    assert h.lun.outstanding == 2
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.ABORT_TASK, 0, 1, I1, resp.append)
    assert resp == [] and t1.aborted
    h.backend.complete_next()
    assert resp == [TmfResponse.COMPLETE]
    assert t1.status == ScsiStatus.TASK_ABORTED and t1.data_in == []
    assert h.completed == [t1]
    h.backend.complete_next()
    good(t2)
    assert h.lun.outstanding == 0


def test_abort_task_unknown_tag_and_lun() -> None:
    h = deferred()
    h.submit(cdb10(0x28, 0, 1), tag=1)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.ABORT_TASK, 0, 99, I1, resp.append)
    h.dev.task_mgmt(TmfFunction.ABORT_TASK, 0, 1, I2, resp.append)  # other nexus's tag space
    h.dev.task_mgmt(TmfFunction.LOGICAL_UNIT_RESET, 4, 0, I1, resp.append)
    h.dev.task_mgmt(TmfFunction.CLEAR_ACA, 0, 0, I1, resp.append)
    assert resp == [TmfResponse.TASK_DOES_NOT_EXIST, TmfResponse.TASK_DOES_NOT_EXIST,
                    TmfResponse.LUN_DOES_NOT_EXIST, TmfResponse.NOT_SUPPORTED]


def test_abort_task_set_only_that_initiator() -> None:
    h = deferred()
    a = h.submit(cdb10(0x28, 0, 1), port=I1, tag=1)
    b = h.submit(cdb10(0x2A, 0, 1), bytes(BS), port=I2, tag=1)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.ABORT_TASK_SET, 0, 0, I1, resp.append)
    h.backend.complete_all()
    assert resp == [TmfResponse.COMPLETE]
    assert a.status == ScsiStatus.TASK_ABORTED and good(b)


def test_clear_task_set_notifies_other_initiators() -> None:
    h = deferred()
    h.submit(cdb10(0x28, 0, 1), port=I1)
    b = h.submit(cdb10(0x28, 0, 1), port=I2)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.CLEAR_TASK_SET, 0, 0, I1, resp.append)
    h.backend.complete_all()
    assert resp == [TmfResponse.COMPLETE] and b.aborted
    t = h.submit(bytes(6), port=I2)
    assert check(t) == (SenseKey.UNIT_ATTENTION, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)


def test_lun_reset_drains_resets_and_sets_unit_attention() -> None:
    h = deferred()
    good(h.submit(bytes(6), port=I2))  # I2 is a known nexus
    tasks = [h.submit(cdb10(0x28, i, 1), tag=i) for i in range(3)]
    tasks.append(h.submit(cdb10(0x2A, 9, 1), bytes(BS), port=I2, tag=7))
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.LOGICAL_UNIT_RESET, 0, 0, I1, resp.append)
    # MemoryBackend.reset completes what it holds, then reports the reset done
    assert resp == [TmfResponse.COMPLETE]
    assert all(t.status == ScsiStatus.TASK_ABORTED for t in tasks)
    assert ("reset", 0, 0) in h.backend.calls
    assert h.lun.outstanding == 0
    t = h.submit(bytes(6), port=I2)
    assert check(t) == (SenseKey.UNIT_ATTENTION, Asc.POWER_ON_RESET_OCCURRED)
    good(h.submit(bytes(6), port=I2))
    good(h.submit(bytes(6), port=I1))  # the resetting nexus gets none


def test_target_reset_covers_all_luns() -> None:
    h = deferred()
    b2 = MemoryBackend("m2", deferred=True)
    h.dev.add_lun(1, b2)
    t0 = h.submit(cdb10(0x28, 0, 1))
    t1 = h.submit(cdb10(0x28, 0, 1), lun=1)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.TARGET_WARM_RESET, 0, 0, I1, resp.append)
    assert resp == [TmfResponse.COMPLETE]
    assert t0.aborted and t1.aborted


def test_reset_failure_is_reported() -> None:
    h = deferred()
    h.backend.inject("reset")
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.LOGICAL_UNIT_RESET, 0, 0, I1, resp.append)
    assert resp == [TmfResponse.REJECTED]


def test_abort_of_task_waiting_for_range_lock() -> None:
    h = deferred()
    caw = bytes((0x89, 0)) + bytes(8) + bytes(3) + b"\x01\x00\x00"
    h.submit(caw, bytes(2 * BS), tag=1)
    w = h.submit(cdb10(0x2A, 0, 1), bytes(BS), tag=2)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.ABORT_TASK, 0, 2, I1, resp.append)
    assert resp == [TmfResponse.COMPLETE] and w.status == ScsiStatus.TASK_ABORTED
    h.backend.complete_all()
    assert h.lun.outstanding == 0


def test_nexus_loss_aborts_tasks() -> None:
    h = deferred()
    t = h.submit(cdb10(0x28, 0, 1), port=I2)
    h.dev.nexus_lost(I2)
    h.backend.complete_all()
    assert t.aborted and t.status == ScsiStatus.TASK_ABORTED


def test_write_same_stops_when_aborted() -> None:
    h = Harness(MemoryBackend(num_blocks=8192, deferred=True))
    pattern = b"\x01" * BS
    t = h.submit(bytes((0x93, 0)) + (0).to_bytes(8, "big") + (8192).to_bytes(4, "big") + b"\x00\x00",
                 pattern, tag=3)
    resp: list[TmfResponse] = []
    h.dev.task_mgmt(TmfFunction.ABORT_TASK, 0, 3, I1, resp.append)
    h.backend.complete_all()
    assert resp == [TmfResponse.COMPLETE] and t.aborted
    assert len([c for c in h.backend.calls if c[0] == "write"]) == 1
