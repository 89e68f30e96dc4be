"""Internal signalling of command failures inside the SCSI layer.

A handler raises ``CheckCondition`` for anything the initiator got wrong (or a medium failure);
the logical unit turns it into CHECK CONDITION status with sense data in the format the
initiator selected (D_SENSE). These never escape ``ScsiDevice.execute``.
"""
from __future__ import annotations

from .spec import Asc, SenseKey, sense_key_specific_field


class CheckCondition(Exception):
    __slots__ = ("key", "asc", "info", "sks")

    def __init__(self, key: int, asc: int, info: int | None = None, sks: bytes | None = None):
        self.key = key
        self.asc = asc
        self.info = info
        self.sks = sks


class ReservationConflict(Exception):
    """The command conflicts with a reservation held through another I_T nexus."""


def invalid_field_in_cdb(byte: int = -1, bit: int = -1) -> CheckCondition:
    sks = sense_key_specific_field(byte, bit) if byte >= 0 else None
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, sks=sks)


def invalid_field_in_param(byte: int = -1, bit: int = -1) -> CheckCondition:
    sks = sense_key_specific_field(byte, bit, in_cdb=False) if byte >= 0 else None
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST, sks=sks)


def illegal(asc: int) -> CheckCondition:
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, asc)

