"""Reservation commands of a LUN: PERSISTENT RESERVE IN/OUT, RESERVE/RELEASE(6/10), and which
commands a reservation holder's peers may run (the reservation state is reservations.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from spydk.scsi.errors import invalid_field_in_cdb
from spydk.scsi.reservations import Nexus
from spydk.scsi.spec import (
    CDB_PRIN,
    CDB_PROUT,
    PROUT_PARAMS,
    Op,
    PrIn,
    PrOut,
    PrType,
    SaIn16,
)
from spydk.scsi.task import ScsiTask

if TYPE_CHECKING:  # avoids an import cycle
    pass

from spydk.scsi.lun_core import (
    _PR_ALLOWED,
    _PR_READ,
    _SPC2_ALLOWED,
    Cdb,
    LunCore,
    _gather,
    _param_len_error,
)


class ReservationCommands(LunCore):
    """Mixin of ScsiLun: reservation commands and conflict checks."""

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


def _transport_id(initiator_port: str) -> bytes:
    """iSCSI TransportID: format 01b (name + ISID) when the port name carries ",i,0x"."""
    fmt = 0x40 if ",i,0x" in initiator_port else 0x00
    name = initiator_port.encode("utf-8") + b"\x00"
    name = name.ljust(max(20, (len(name) + 3) & ~3), b"\x00")
    return bytes((fmt | 0x05, 0)) + len(name).to_bytes(2, "big") + name
