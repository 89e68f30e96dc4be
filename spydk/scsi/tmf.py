"""Task management of a LUN: ABORT TASK (SET), CLEAR TASK SET, LOGICAL UNIT RESET, I_T nexus loss;
waiting until aborted tasks have let go of their buffers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from spydk.scsi.spec import (
    Asc,
)
from spydk.scsi.task import ScsiTask, TmfFunction, TmfResponse

if TYPE_CHECKING:  # avoids an import cycle
    pass

from spydk.scsi.lun_core import (
    LunCore,
    TmfCallback,
    _TmfWait,
)


class TaskManagement(LunCore):
    """Mixin of ScsiLun: task management and nexus loss."""

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
