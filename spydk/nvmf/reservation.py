"""NVMe reservations of one namespace (NVMe Base 2.0, 8.19): registrants, the holder, the
Register / Acquire / Release / Report commands, which I/O a host may issue, the notices the
other hosts get, and persistence through power loss (PTPL) in SPDK's ``ptpl_file`` format.

Hosts are told apart by their Host Identifier (the 16-byte HOSTID of Connect), so all the
controllers of one host share its registration, as the specification asks. The state
machine is sans-IO: commands come in as their dwords and data, results go out as a status
and a list of notices; the controller sends the completions, log pages and events. The only
I/O is the PTPL file, written (temporary file, fsync, rename) before the command completes,
because an acknowledged registration must survive a power loss.
"""
from __future__ import annotations

import enum
import json
import os
import struct
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any

from spydk.nvme.spec import GenericStatus

RESERVATION_CONFLICT = GenericStatus.RESERVATION_CONFLICT
INVALID_FIELD = GenericStatus.INVALID_FIELD
HOSTID_INCONSISTENT_FORMAT = GenericStatus.HOSTID_INCONSISTENT_FORMAT
SUCCESS = GenericStatus.SUCCESS


class ResvType(enum.IntEnum):
    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 2
    WRITE_EXCLUSIVE_REG_ONLY = 3
    EXCLUSIVE_ACCESS_REG_ONLY = 4
    WRITE_EXCLUSIVE_ALL_REGS = 5
    EXCLUSIVE_ACCESS_ALL_REGS = 6


ALL_REGS = (ResvType.WRITE_EXCLUSIVE_ALL_REGS, ResvType.EXCLUSIVE_ACCESS_ALL_REGS)
REG_ONLY = (ResvType.WRITE_EXCLUSIVE_REG_ONLY, ResvType.EXCLUSIVE_ACCESS_REG_ONLY)
EXCLUSIVE_ACCESS = (ResvType.EXCLUSIVE_ACCESS, ResvType.EXCLUSIVE_ACCESS_REG_ONLY,
                    ResvType.EXCLUSIVE_ACCESS_ALL_REGS)


class NoticeType(enum.IntEnum):
    """Reservation Notification log page types."""
    REGISTRATION_PREEMPTED = 1
    RESERVATION_RELEASED = 2
    RESERVATION_PREEMPTED = 3


# Identify Namespace RESCAP: PTPL, the six types, Ignore Existing Key.
RESCAP_ALL_TYPES = 0x7E
RESCAP_PTPL = 0x01
RESCAP_IEKEY = 0x80

# Register (cdw10): RREGA 2:0, IEKEY 3, CPTPL 31:30.  Acquire: RACQA 2:0, IEKEY 3, RTYPE 15:8.
# Release: RRELA 2:0, IEKEY 3, RTYPE 15:8.  Data: CRKEY, then NRKEY or PRKEY (8 bytes each).
_KEYS = struct.Struct("<QQ")
_KEY = struct.Struct("<Q")
REGISTER_DATA, ACQUIRE_DATA, RELEASE_DATA = 16, 16, 8

# Reservation Status, extended data structure (EDS=1): a 64-byte header (GEN, RTYPE, REGCTL,
# PTPLS) and a 64-byte Registrant Extended Data Structure per registrant.
_REPORT_HEADER = struct.Struct("<IBH2xB14x40x")
_REGISTRANT_EXT = struct.Struct("<HB5xQ16s32x")
assert _REPORT_HEADER.size == 64 and _REGISTRANT_EXT.size == 64
NO_CNTLID = 0xFFFF  # registrant entries do not name a controller (a host may have several)

# The Reservation Notification log page (64 bytes).
_NOTICE_LOG = struct.Struct("<QBBxxI48x")
assert _NOTICE_LOG.size == 64


@dataclass
class Registrant:
    hostid: bytes
    rkey: int


@dataclass(frozen=True)
class Notice:
    """A notice for every controller of ``hostid`` about this namespace."""
    hostid: bytes
    type: NoticeType


@dataclass
class Result:
    status: int = SUCCESS
    notices: list[Notice] = field(default_factory=list)
    data: bytes = b""  # Report's payload


class PtplError(Exception):
    """The ptpl_file could not be read or written; the message names the file and why."""


class NsReservation:
    """The reservation state of one namespace."""

    def __init__(self, ptpl_file: str | None = None, bdev_uuid: str = ""):
        self.registrants: dict[bytes, Registrant] = {}
        self.holder: bytes | None = None
        self.rtype = 0
        self.gen = 0
        self.ptpl_file = ptpl_file
        self.ptpl = False
        self.bdev_uuid = bdev_uuid

    # -- what a host may do --------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True when any registration exists (I/O must then be checked)."""
        return bool(self.registrants)

    def is_holder(self, hostid: bytes) -> bool:
        if not self.rtype:
            return False
        if self.rtype in ALL_REGS:
            return hostid in self.registrants
        return self.holder == hostid

    def io_allowed(self, hostid: bytes, write: bool) -> bool:
        """May ``hostid`` issue a read (write=False) or write command now?"""
        t = self.rtype
        if not t or self.is_holder(hostid):
            return True
        if (t in REG_ONLY or t in ALL_REGS) and hostid in self.registrants:
            return True  # registrants have full access under these types
        return not write and t not in EXCLUSIVE_ACCESS  # the write-exclusive kinds leave reads open

    # -- commands --------------------------------------------------------------------------

    def register(self, hostid: bytes, cdw10: int, data: bytes) -> Result:
        if len(data) < REGISTER_DATA:
            return Result(INVALID_FIELD)
        action, iekey, cptpl = cdw10 & 0x7, bool(cdw10 & 0x8), cdw10 >> 30
        crkey, nrkey = _KEYS.unpack_from(data)
        if cptpl == 1 or (cptpl and self.ptpl_file is None):
            return Result(INVALID_FIELD)  # reserved value, or no place to persist to
        reg = self.registrants.get(hostid)
        notices: list[Notice] = []
        changed = True
        if action == 0:  # register
            if reg is not None:
                if reg.rkey != nrkey:
                    return Result(RESERVATION_CONFLICT)
                changed = False  # the same registration again: only CPTPL may change
            else:
                self.registrants[hostid] = Registrant(hostid, nrkey)
        elif action == 1:  # unregister
            if reg is None or (not iekey and reg.rkey != crkey):
                return Result(RESERVATION_CONFLICT)
            notices = self._unregister(hostid)
        elif action == 2:  # replace
            if reg is None:
                if not iekey and crkey != 0:
                    return Result(RESERVATION_CONFLICT)
                self.registrants[hostid] = Registrant(hostid, nrkey)
            else:
                if not iekey and reg.rkey != crkey:
                    return Result(RESERVATION_CONFLICT)
                reg.rkey = nrkey
        else:
            return Result(INVALID_FIELD)
        if cptpl:
            self.ptpl = cptpl == 3
        elif not changed:
            return Result()
        self.gen += changed
        return self._committed(Result(SUCCESS, notices))

    def _unregister(self, hostid: bytes) -> list[Notice]:
        del self.registrants[hostid]
        if self.rtype in ALL_REGS:
            if not self.registrants:
                self._clear_reservation()
            elif self.holder == hostid:
                self.holder = next(iter(self.registrants))
            return []
        if self.holder == hostid:
            t = self.rtype
            self._clear_reservation()
            if t in REG_ONLY:  # the others lose their access: tell them
                return [Notice(h, NoticeType.RESERVATION_RELEASED) for h in self.registrants]
        return []

    def acquire(self, hostid: bytes, cdw10: int, data: bytes) -> Result:
        if len(data) < ACQUIRE_DATA:
            return Result(INVALID_FIELD)
        action, iekey, rtype = cdw10 & 0x7, bool(cdw10 & 0x8), (cdw10 >> 8) & 0xFF
        crkey, prkey = _KEYS.unpack_from(data)
        if rtype not in ResvType.__members__.values() or action > 2:
            return Result(INVALID_FIELD)
        reg = self.registrants.get(hostid)
        if reg is None or (not iekey and reg.rkey != crkey):
            return Result(RESERVATION_CONFLICT)
        if action == 0:  # acquire
            if not self.rtype:
                self.holder, self.rtype = hostid, rtype
                return self._committed(Result())
            if self.is_holder(hostid) and self.rtype == rtype:
                return Result()
            return Result(RESERVATION_CONFLICT)
        # preempt (1) and preempt-and-abort (2): commands of preempted hosts are not queued
        # here (each completes or fails on its own), so both act the same.
        notices: list[Notice] = []
        if not self.rtype:
            if not self._preempt_keys(hostid, prkey, notices):
                return Result(RESERVATION_CONFLICT)
        elif self.rtype in ALL_REGS:
            if prkey == 0:
                for h in [h for h in self.registrants if h != hostid]:
                    self._preempted(h, notices)
                self.holder, self.rtype = hostid, rtype
            elif not self._preempt_keys(hostid, prkey, notices):
                return Result(RESERVATION_CONFLICT)
        else:
            assert self.holder is not None
            holder_key = self.registrants[self.holder].rkey
            if prkey == holder_key:
                old_holder = self.holder
                self._preempt_keys(hostid, prkey, notices)
                if old_holder != hostid and old_holder in self.registrants:
                    pass  # the old holder used the same key as the preemptor: still registered
                self.holder, self.rtype = hostid, rtype
            else:
                if prkey == 0:
                    return Result(INVALID_FIELD)
                if not self._preempt_keys(hostid, prkey, notices):
                    return Result(RESERVATION_CONFLICT)
        self.gen += 1
        return self._committed(Result(SUCCESS, notices))

    def _preempt_keys(self, hostid: bytes, prkey: int, notices: list[Notice]) -> bool:
        """Unregister every other host registered with ``prkey``; False when there is none."""
        victims = [h for h, r in self.registrants.items() if r.rkey == prkey and h != hostid]
        for h in victims:
            self._preempted(h, notices)
        return bool(victims) or (hostid in self.registrants and self.registrants[hostid].rkey == prkey)

    def _preempted(self, hostid: bytes, notices: list[Notice]) -> None:
        del self.registrants[hostid]
        if self.holder == hostid:
            self.holder = None
        notices.append(Notice(hostid, NoticeType.REGISTRATION_PREEMPTED))

    def release(self, hostid: bytes, cdw10: int, data: bytes) -> Result:
        if len(data) < RELEASE_DATA:
            return Result(INVALID_FIELD)
        action, iekey, rtype = cdw10 & 0x7, bool(cdw10 & 0x8), (cdw10 >> 8) & 0xFF
        (crkey,) = _KEY.unpack_from(data)
        reg = self.registrants.get(hostid)
        if reg is None or (not iekey and reg.rkey != crkey):
            return Result(RESERVATION_CONFLICT)
        if action == 0:  # release
            if not self.rtype or not self.is_holder(hostid):
                return Result()  # nothing held by this host: no effect, as the spec says
            if rtype != self.rtype:
                return Result(INVALID_FIELD)
            t = self.rtype
            self._clear_reservation()
            notices = []
            if t in REG_ONLY or t in ALL_REGS:
                notices = [Notice(h, NoticeType.RESERVATION_RELEASED) for h in self.registrants if h != hostid]
            return self._committed(Result(SUCCESS, notices))
        if action == 1:  # clear
            others = [h for h in self.registrants if h != hostid]
            self.registrants.clear()
            self._clear_reservation()
            self.gen += 1
            return self._committed(Result(SUCCESS, [Notice(h, NoticeType.RESERVATION_PREEMPTED) for h in others]))
        return Result(INVALID_FIELD)

    def report(self, cdw11: int, length: int) -> Result:
        """Reservation Report; only the extended data structure: hosts identify themselves
        with 128-bit host IDs over NVMe-oF, which the 64-bit form cannot carry."""
        if not cdw11 & 1:
            return Result(HOSTID_INCONSISTENT_FORMAT)
        regctl = len(self.registrants)
        out = bytearray(_REPORT_HEADER.pack(self.gen, self.rtype, regctl, int(self.ptpl)))
        for h, r in self.registrants.items():
            out += _REGISTRANT_EXT.pack(NO_CNTLID, int(self.is_holder(h)), r.rkey, h.ljust(16, b"\0"))
        return Result(SUCCESS, data=bytes(out[:length]))

    def _clear_reservation(self) -> None:
        self.holder, self.rtype = None, 0

    # -- persistence (ptpl_file, in SPDK's format) --------------------------------------

    def _committed(self, res: Result) -> Result:
        if res.status == SUCCESS and self.ptpl_file is not None:
            self.save()
        return res

    def to_json(self) -> dict[str, Any]:
        holder = self.holder
        if holder is None and self.rtype in ALL_REGS and self.registrants:
            holder = next(iter(self.registrants))
        d: dict[str, Any] = {"ptpl": self.ptpl, "rtype": self.rtype,
                             "crkey": self.registrants[holder].rkey if holder in self.registrants else 0,
                             "bdev_uuid": self.bdev_uuid,
                             "holder_uuid": str(_uuid.UUID(bytes=holder.ljust(16, b"\0"))) if holder else "",
                             "registrants": [{"rkey": r.rkey, "host_uuid": str(_uuid.UUID(bytes=h.ljust(16, b"\0")))}
                                             for h, r in self.registrants.items()]}
        return d

    def save(self) -> None:
        assert self.ptpl_file is not None
        if not self.ptpl:
            # Without PTPL the state must not outlive a restart: leave no file behind.
            try:
                os.unlink(self.ptpl_file)
            except FileNotFoundError:
                pass
            return
        tmp = f"{self.ptpl_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(self.to_json(), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.ptpl_file)
        except OSError as e:
            raise PtplError(f"cannot write ptpl_file {self.ptpl_file!r}: {e.strerror}") from None

    def load(self) -> None:
        """Restore from ptpl_file (a missing file is an empty state, as in SPDK)."""
        if self.ptpl_file is None:
            return
        try:
            with open(self.ptpl_file) as f:
                d = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise PtplError(f"cannot read ptpl_file {self.ptpl_file!r}: {e}") from None
        try:
            if not isinstance(d, dict):
                raise TypeError("not an object")
            regs = {_uuid.UUID(r["host_uuid"]).bytes: Registrant(_uuid.UUID(r["host_uuid"]).bytes, int(r["rkey"]))
                    for r in d.get("registrants", [])}
            rtype = int(d.get("rtype", 0))
            holder = _uuid.UUID(d["holder_uuid"]).bytes if d.get("holder_uuid") else None
            if rtype and (rtype not in ResvType.__members__.values() or holder not in regs):
                raise ValueError(f"reservation type {rtype} without a registered holder")
            if d.get("bdev_uuid") and self.bdev_uuid and d["bdev_uuid"] != self.bdev_uuid:
                raise ValueError(f"it belongs to bdev {d['bdev_uuid']}, this namespace is bdev {self.bdev_uuid}")
        except (KeyError, TypeError, ValueError) as e:
            raise PtplError(f"ptpl_file {self.ptpl_file!r} is not a reservation state: {e}") from None
        self.registrants = regs
        self.rtype = rtype
        self.holder = holder if rtype else None
        self.ptpl = bool(d.get("ptpl", True))


def notice_log_page(count: int, ntype: int, available: int, nsid: int) -> bytes:
    """One Reservation Notification log page (64 bytes); count 0 means 'no notice'."""
    return _NOTICE_LOG.pack(count, ntype, min(available, 255), nsid)
