"""A direct-access logical unit: executes SPC-4/SBC-3 CDBs against a BlockBackend.

``ScsiLun`` is made of one file per job: lun_core.py (state, dispatch, completion, checks),
sbc.py (block commands), spc.py (device commands), pr_commands.py (reservations), tmf.py
(task management).

Every task handed to ``execute`` completes exactly once through ``task.on_complete``, possibly
synchronously. Command failures become CHECK CONDITION with sense data (fixed format, or
descriptor format once the initiator sets D_SENSE in the control mode page).

Aborted tasks (task management, PREEMPT AND ABORT, I_T nexus loss) still complete through
``on_complete``, once the backend has let go of their buffers, with ``task.aborted`` set and
status TASK ABORTED. Whether anything is sent for them is the transport's choice (iSCSI sends
no response for a task aborted by a TMF on its own session).
"""
from __future__ import annotations

from spydk.scsi.lun_core import _CDB_LEN, _HANDLERS, LunCore, LunStats, TmfCallback, _Handler
from spydk.scsi.pr_commands import ReservationCommands
from spydk.scsi.sbc import BlockCommands
from spydk.scsi.spc import DeviceCommands
from spydk.scsi.spec import Op
from spydk.scsi.tmf import TaskManagement

__all__ = ["LunCore", "LunStats", "ScsiLun", "TmfCallback"]


class ScsiLun(BlockCommands, DeviceCommands, ReservationCommands, TaskManagement):
    """One logical unit (see the module docstring)."""




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
    from spydk.scsi.spec import cdb_length
    for op, fn in table.items():
        _HANDLERS[op] = fn
        _CDB_LEN[op] = cdb_length(op)


_register()
