"""Transport IDs: SPDK's 'trtype:TCP adrfam:IPv4 traddr:10.0.0.1 trsvcid:4420 subnqn:...' strings."""
from __future__ import annotations

from dataclasses import dataclass

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
_KEYS = {"trtype", "adrfam", "traddr", "trsvcid", "subnqn", "hostnqn", "priority", "ns",
         "alt_traddr", "hostaddr", "hostsvcid"}


class TridError(ValueError):
    pass


@dataclass(slots=True)
class TransportId:
    trtype: str = "TCP"
    adrfam: str = "IPv4"
    traddr: str = ""
    trsvcid: str = "4420"
    subnqn: str = DISCOVERY_NQN
    hostnqn: str = ""
    ns: int = 0

    def __str__(self) -> str:
        if self.trtype == "PCIE":
            return f"trtype:PCIe traddr:{self.traddr}"
        return (f"trtype:{self.trtype} adrfam:{self.adrfam} traddr:{self.traddr} "
                f"trsvcid:{self.trsvcid} subnqn:{self.subnqn}")

    def as_dict(self) -> dict[str, str]:
        return {"trtype": self.trtype, "adrfam": self.adrfam, "traddr": self.traddr,
                "trsvcid": self.trsvcid, "subnqn": self.subnqn}


def parse_trid(text: str) -> TransportId:
    """Parse key:value pairs separated by spaces (keys case-insensitive, like SPDK)."""
    t = TransportId()
    seen = set()
    for part in text.split():
        if ":" not in part and "=" not in part:
            raise TridError(f"transport ID part {part!r} is not key:value "
                            "(example: 'trtype:TCP traddr:127.0.0.1 trsvcid:4420 subnqn:nqn...')")
        sep = ":" if ":" in part and ("=" not in part or part.index(":") < part.index("=")) else "="
        key, value = part.split(sep, 1)
        key = key.lower()
        if key not in _KEYS:
            raise TridError(f"unknown transport ID key {key!r}; known: {', '.join(sorted(_KEYS))}")
        seen.add(key)
        if key == "trtype":
            t.trtype = value.upper()
        elif key == "adrfam":
            fam = value.upper()
            if fam not in ("IPV4", "IPV6"):
                raise TridError(f"adrfam {value!r} is neither IPv4 nor IPv6")
            t.adrfam = "IPv4" if fam == "IPV4" else "IPv6"
        elif key == "traddr":
            t.traddr = value
        elif key == "trsvcid":
            t.trsvcid = value
        elif key == "subnqn":
            t.subnqn = value
        elif key == "hostnqn":
            t.hostnqn = value
        elif key == "ns":
            t.ns = int(value, 0)
    if t.trtype not in ("TCP", "PCIE"):
        raise TridError(f"trtype {t.trtype!r} is not supported (TCP)")
    if t.trtype == "TCP":
        if not t.traddr:
            raise TridError("transport ID needs traddr: for trtype TCP")
        if not t.trsvcid.isdigit() or not 0 < int(t.trsvcid) < 65536:
            raise TridError(f"trsvcid {t.trsvcid!r} is not a TCP port")
    return t
