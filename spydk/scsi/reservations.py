"""Reservation state of one logical unit: SPC-4 persistent reservations and SPC-2
RESERVE/RELEASE. Pure state machine: no I/O; returns what the logical unit must do
(unit attentions to establish, nexuses whose tasks to abort)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CheckCondition, ReservationConflict, invalid_field_in_cdb, invalid_field_in_param
from .spec import Asc, PrOut, PrType, SenseKey

# An I_T nexus: (initiator port, target port). ALL_TG_PT registrations use target port "*".
Nexus = tuple[str, str]
ALL_PORTS = "*"

_ALL_REGISTRANTS = (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
_REGISTRANTS_ONLY = (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                     PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY)
_EXCLUSIVE_ACCESS = (PrType.EXCLUSIVE_ACCESS, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
                     PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
VALID_TYPES = frozenset(int(t) for t in PrType)


@dataclass(slots=True)
class PrOutcome:
    """Side effects of a PERSISTENT RESERVE OUT for the logical unit to carry out."""

    unit_attentions: list[tuple[str, int]] = field(default_factory=list)  # (initiator, ASC)
    abort_nexuses: list[Nexus] = field(default_factory=list)


class Reservations:
    def __init__(self) -> None:
        self.generation = 0
        self.registrations: dict[Nexus, int] = {}
        self.holder: Nexus | None = None  # persistent reservation holder (any for *_AR types)
        self.type = 0
        # SPC-2 RESERVE(6)/(10) holder.
        self.spc2_holder: Nexus | None = None

    # --- queries ---

    @property
    def active(self) -> bool:
        """Whether any reservation may make a command conflict (cheap hot-path test)."""
        return self.holder is not None or self.spc2_holder is not None

    def key_of(self, nexus: Nexus) -> int | None:
        key = self.registrations.get(nexus)
        if key is None:
            key = self.registrations.get((nexus[0], ALL_PORTS))
        return key

    def _reg_nexus(self, nexus: Nexus) -> Nexus | None:
        if nexus in self.registrations:
            return nexus
        alt = (nexus[0], ALL_PORTS)
        return alt if alt in self.registrations else None

    def is_holder(self, nexus: Nexus) -> bool:
        if self.holder is None:
            return False
        if self.type in _ALL_REGISTRANTS:
            return self.key_of(nexus) is not None
        return self._reg_nexus(nexus) == self.holder

    def pr_conflicts(self, nexus: Nexus, is_read: bool) -> bool:
        """Whether a medium access command (read or write class) through nexus conflicts with
        the persistent reservation (SPC-4 table of commands allowed per reservation type)."""
        if self.holder is None or self.is_holder(nexus):
            return False
        t = self.type
        if t in _REGISTRANTS_ONLY and self.key_of(nexus) is not None:
            return False
        if t in _EXCLUSIVE_ACCESS:
            return True
        return not is_read

    def spc2_conflicts(self, nexus: Nexus) -> bool:
        return self.spc2_holder is not None and self.spc2_holder != nexus

    # --- SPC-2 ---

    def reserve6(self, nexus: Nexus) -> None:
        if self.registrations or self.holder is not None:
            raise ReservationConflict()
        if self.spc2_holder is not None and self.spc2_holder != nexus:
            raise ReservationConflict()
        self.spc2_holder = nexus

    def release6(self, nexus: Nexus) -> None:
        if self.spc2_holder == nexus:
            self.spc2_holder = None

    def reset(self) -> None:
        """LUN reset / I_T nexus loss semantics for SPC-2: the reservation is released.
        Persistent reservations survive resets."""
        self.spc2_holder = None

    def nexus_lost(self, initiator_port: str) -> None:
        if self.spc2_holder is not None and self.spc2_holder[0] == initiator_port:
            self.spc2_holder = None

    # --- PERSISTENT RESERVE OUT ---

    def _others(self, nexus: Nexus) -> list[str]:
        return sorted({n[0] for n in self.registrations if n[0] != nexus[0]})

    def _release(self, notify_from: Nexus | None, out: PrOutcome) -> None:
        t = self.type
        self.holder = None
        self.type = 0
        if notify_from is not None and t not in (PrType.WRITE_EXCLUSIVE, PrType.EXCLUSIVE_ACCESS):
            for port in self._others(notify_from):
                out.unit_attentions.append((port, Asc.RESERVATIONS_RELEASED))

    def _unregister(self, reg: Nexus, out: PrOutcome) -> None:
        del self.registrations[reg]
        if self.holder is None:
            return
        if self.type in _ALL_REGISTRANTS:
            if not self.registrations:
                self.holder = None
                self.type = 0
        elif self.holder == reg:
            self._release(reg, out)

    def prout(self, nexus: Nexus, sa: int, scope_type: int, key: int, sa_key: int,
              flags: int) -> PrOutcome:
        """Execute one PROUT service action. Raises ReservationConflict or CheckCondition."""
        out = PrOutcome()
        spec_i_pt, all_tg_pt, aptpl = flags & 0x08, flags & 0x04, flags & 0x01
        if self.spc2_holder is not None and self.spc2_holder != nexus:
            raise ReservationConflict()
        if sa in (PrOut.REGISTER, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY):
            if spec_i_pt:
                raise invalid_field_in_param(20, 3)
            if aptpl:
                raise invalid_field_in_param(20, 0)
            reg = self._reg_nexus(nexus)
            if reg is None:
                if sa == PrOut.REGISTER and key != 0:
                    raise ReservationConflict()
                if sa_key != 0:
                    self.registrations[(nexus[0], ALL_PORTS) if all_tg_pt else nexus] = sa_key
                self.generation += 1
                return out
            if sa == PrOut.REGISTER and key != self.registrations[reg]:
                raise ReservationConflict()
            if sa_key == 0:
                self._unregister(reg, out)
            else:
                self.registrations[reg] = sa_key
            self.generation += 1
            return out

        reg = self._reg_nexus(nexus)
        if reg is None or self.registrations[reg] != key:
            raise ReservationConflict()
        scope, rtype = scope_type >> 4, scope_type & 0x0F

        if sa == PrOut.RESERVE:
            if scope != 0:
                raise invalid_field_in_cdb(2, 4)
            if rtype not in VALID_TYPES:
                raise invalid_field_in_cdb(2, 0)
            if self.holder is not None:
                if self.is_holder(nexus) and self.type == rtype:
                    return out
                raise ReservationConflict()
            self.holder = reg
            self.type = rtype
            return out

        if sa == PrOut.RELEASE:
            if self.holder is None or not self.is_holder(nexus):
                return out
            if scope != 0 or rtype != self.type:
                raise CheckCondition(SenseKey.ILLEGAL_REQUEST,
                                     Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
            self._release(nexus, out)
            return out

        if sa == PrOut.CLEAR:
            for port in self._others(nexus):
                out.unit_attentions.append((port, Asc.RESERVATIONS_PREEMPTED))
            self.registrations.clear()
            self.holder = None
            self.type = 0
            self.generation += 1
            return out

        if sa in (PrOut.PREEMPT, PrOut.PREEMPT_AND_ABORT):
            abort = sa == PrOut.PREEMPT_AND_ABORT
            if self.holder is not None:
                if scope != 0:
                    raise invalid_field_in_cdb(2, 4)
                if rtype not in VALID_TYPES:
                    raise invalid_field_in_cdb(2, 0)
            if self.holder is not None and self.type in _ALL_REGISTRANTS and sa_key == 0:
                victims = [n for n in self.registrations if n != reg]
                self._drop(victims, out, abort)
                self.holder = reg
                self.type = rtype
            elif self.holder is not None and self.type not in _ALL_REGISTRANTS and \
                    self.registrations.get(self.holder) == sa_key:
                victims = [n for n, k in self.registrations.items() if k == sa_key and n != reg]
                self._drop(victims, out, abort)
                if rtype != self.type:
                    for port in self._others(nexus):
                        out.unit_attentions.append((port, Asc.RESERVATIONS_RELEASED))
                self.holder = reg
                self.type = rtype
            else:
                if sa_key == 0:
                    raise invalid_field_in_param(8)
                victims = [n for n, k in self.registrations.items() if k == sa_key and n != reg]
                if not victims and sa_key != key:
                    raise ReservationConflict()
                self._drop(victims, out, abort)
            self.generation += 1
            return out

        raise invalid_field_in_cdb(1, 4)

    def _drop(self, victims: list[Nexus], out: PrOutcome, abort: bool) -> None:
        for n in victims:
            del self.registrations[n]
            out.unit_attentions.append((n[0], Asc.REGISTRATIONS_PREEMPTED))
            if abort:
                out.abort_nexuses.append(n)
