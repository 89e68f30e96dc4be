"""The discovery log: what a host may connect to, as seen through one listener.

Entries: every NVM subsystem the host is allowed into (one entry per listener of that
subsystem, narrowed by the target's discovery filter), the discovery subsystem's own
listeners ("current discovery subsystem"), and referrals to other discovery services.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spydk.nvme import spec
from spydk.nvmf.subsystem import DISCOVERY_NQN, ListenAddress

if TYPE_CHECKING:
    from spydk.nvmf.tgt import Target

FILTERS = ("match_any", "transport", "address", "svcid")


@dataclass(frozen=True)
class Referral:
    address: ListenAddress
    subnqn: str = DISCOVERY_NQN
    secure_channel: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address.to_json(), "secure_channel": self.secure_channel,
                "subnqn": self.subnqn}


def _adrfam(addr: ListenAddress) -> int:
    return spec.AddressFamily.IPV6 if addr.adrfam == "IPv6" else spec.AddressFamily.IPV4


def _entry(nqn: str, addr: ListenAddress, subtype: int, portid: int,
           secure: bool = False) -> spec.DiscoveryEntry:
    treq = spec.Treq.SECURE_CHANNEL_REQUIRED if secure else spec.Treq.SECURE_CHANNEL_NOT_REQUIRED
    return spec.DiscoveryEntry(subnqn=nqn, traddr=addr.traddr, trsvcid=addr.trsvcid,
                               trtype=spec.TransportType.TCP, adrfam=_adrfam(addr),
                               subtype=subtype, treq=treq, portid=portid, cntlid=0xFFFF,
                               asqsz=128)


def _passes(filters: tuple[str, ...], lst: ListenAddress, via: ListenAddress | None) -> bool:
    if via is None:
        return True
    if "transport" in filters and lst.trtype != via.trtype:
        return False
    if "address" in filters and (lst.traddr != via.traddr or lst.adrfam != via.adrfam):
        return False
    return not ("svcid" in filters and lst.trsvcid != via.trsvcid)


def discovery_entries(tgt: Target, hostnqn: str, via: ListenAddress | None) -> list[spec.DiscoveryEntry]:
    filters = tgt.discovery_filters
    out: list[spec.DiscoveryEntry] = []
    for s in tgt.subsystems.values():
        if s.discovery:
            for lst in s.listeners:
                if _passes(filters, lst.address, via):
                    out.append(_entry(s.nqn, lst.address, spec.SubsystemType.CURRENT_DISCOVERY,
                                      tgt.port_id(lst.address), lst.secure_channel))
            continue
        if not s.host_allowed(hostnqn):
            continue
        for lst in s.listeners:
            if _passes(filters, lst.address, via):
                out.append(_entry(s.nqn, lst.address, spec.SubsystemType.NVME,
                                  tgt.port_id(lst.address), lst.secure_channel))
    for r in tgt.referrals:
        subtype = spec.SubsystemType.DISCOVERY_REFERRAL if r.subnqn == DISCOVERY_NQN \
            else spec.SubsystemType.NVME
        out.append(_entry(r.subnqn, r.address, subtype, tgt.port_id(r.address), r.secure_channel))
    return out


def build_log(tgt: Target, hostnqn: str, via: ListenAddress | None) -> bytes:
    return spec.build_discovery_log(tgt.generation, discovery_entries(tgt, hostnqn, via))
