"""Parsers for what a controller returns: Identify Controller/Namespace, namespace lists,
the discovery log, CAP/VS. The builders live in spydk.nvme.spec; these read the same layout."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from spydk.nvme import spec
from spydk.nvme.spec import IdCtrlOff as C
from spydk.nvme.spec import IdNsOff as N

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_NSID_LIST = struct.Struct("<1024I")
_DISC_HDR = struct.Struct("<QQH")
_NS_MSSRL, _NS_MCL, _NS_MSRC = 74, 76, 80  # Identify Namespace copy limits (NVM command set)
_CTRL_FWUG = 319


def _ascii(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("ascii", "replace").rstrip(" \0")


def _cstr(raw: bytes | memoryview) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(slots=True)
class IdentifyController:
    vid: int
    ssvid: int
    sn: str
    mn: str
    fr: str
    rab: int
    ieee: int
    cmic: int
    mdts: int
    cntlid: int
    ver: int
    oaes: int
    ctratt: int
    cntrltype: int
    oacs: int
    acl: int
    aerl: int
    frmw: int
    lpa: int
    elpe: int
    npss: int
    kas: int
    anatt: int
    anacap: int
    anagrpmax: int
    nanagrpid: int
    sqes: int
    cqes: int
    maxcmd: int
    nn: int
    oncs: int
    fuses: int
    fna: int
    vwc: int
    awun: int
    awupf: int
    acwu: int
    sgls: int
    subnqn: str
    ioccsz: int
    iorcsz: int
    icdoff: int
    msdbd: int
    fwug: int = 0
    raw: bytes = field(repr=False, default=b"")

    @property
    def incapsule_data_size(self) -> int:
        """Bytes of data an I/O command capsule may carry (IOCCSZ counts 16-byte units)."""
        return max(0, self.ioccsz * 16 - spec.SQE_SIZE)


def parse_identify_controller(buf: bytes | memoryview) -> IdentifyController:
    b = bytes(buf)
    if len(b) < spec.IDENTIFY_SIZE:
        raise ValueError(f"Identify Controller data is {len(b)} bytes, expected 4096")
    u8 = lambda o: b[o]  # noqa: E731
    u16 = lambda o: _U16.unpack_from(b, o)[0]  # noqa: E731
    u32 = lambda o: _U32.unpack_from(b, o)[0]  # noqa: E731
    return IdentifyController(
        vid=u16(C.VID), ssvid=u16(C.SSVID), sn=_ascii(b[C.SN:C.SN + 20]), mn=_ascii(b[C.MN:C.MN + 40]),
        fr=_ascii(b[C.FR:C.FR + 8]), rab=u8(C.RAB), ieee=int.from_bytes(b[C.IEEE:C.IEEE + 3], "little"),
        cmic=u8(C.CMIC), mdts=u8(C.MDTS), cntlid=u16(C.CNTLID), ver=u32(C.VER), oaes=u32(C.OAES),
        ctratt=u32(C.CTRATT), cntrltype=u8(C.CNTRLTYPE), oacs=u16(C.OACS), acl=u8(C.ACL),
        aerl=u8(C.AERL), frmw=u8(C.FRMW), lpa=u8(C.LPA), elpe=u8(C.ELPE), npss=u8(C.NPSS),
        kas=u16(C.KAS), anatt=u8(C.ANATT), anacap=u8(C.ANACAP), anagrpmax=u32(C.ANAGRPMAX),
        nanagrpid=u32(C.NANAGRPID), sqes=u8(C.SQES), cqes=u8(C.CQES), maxcmd=u16(C.MAXCMD),
        nn=u32(C.NN), oncs=u16(C.ONCS), fuses=u16(C.FUSES), fna=u8(C.FNA), vwc=u8(C.VWC),
        awun=u16(C.AWUN), awupf=u16(C.AWUPF), acwu=u16(C.ACWU), sgls=u32(C.SGLS),
        subnqn=_cstr(b[C.SUBNQN:C.SUBNQN + 256]), ioccsz=u32(C.IOCCSZ), iorcsz=u32(C.IORCSZ),
        icdoff=u16(C.ICDOFF), msdbd=u8(C.MSDBD), fwug=u8(_CTRL_FWUG), raw=b)


@dataclass(slots=True)
class IdentifyNamespace:
    nsze: int
    ncap: int
    nuse: int
    nsfeat: int
    nlbaf: int
    flbas: int
    nmic: int
    dlfeat: int
    anagrpid: int
    nguid: bytes
    eui64: bytes
    lba_formats: list[tuple[int, int]]  # (metadata size, block size)
    nawun: int = 0
    nawupf: int = 0
    nacwu: int = 0
    nabsn: int = 0
    nabo: int = 0
    nabspf: int = 0
    npwg: int = 0
    mssrl: int = 0
    mcl: int = 0
    msrc: int = 0
    nsattr: int = 0

    @property
    def block_size(self) -> int:
        return self.lba_formats[self.flbas & 0xF][1]

    @property
    def md_size(self) -> int:
        return self.lba_formats[self.flbas & 0xF][0]


def parse_identify_namespace(buf: bytes | memoryview) -> IdentifyNamespace:
    b = bytes(buf)
    if len(b) < spec.IDENTIFY_SIZE:
        raise ValueError(f"Identify Namespace data is {len(b)} bytes, expected 4096")
    nlbaf = b[N.NLBAF]
    if nlbaf > 63:
        raise ValueError(f"Identify Namespace NLBAF {nlbaf} is over 63")
    formats = []
    for i in range(nlbaf + 1):
        ms, lbads, _rp = spec.LBAF.unpack_from(b, N.LBAF0 + 4 * i)
        formats.append((ms, 1 << lbads if 9 <= lbads < 32 else 0))
    flbas = b[N.FLBAS]
    if (flbas & 0xF) > nlbaf:
        raise ValueError(f"Identify Namespace FLBAS {flbas & 0xF} names no LBA format (NLBAF {nlbaf})")
    return IdentifyNamespace(
        nsze=_U64.unpack_from(b, N.NSZE)[0], ncap=_U64.unpack_from(b, N.NCAP)[0],
        nuse=_U64.unpack_from(b, N.NUSE)[0], nsfeat=b[N.NSFEAT], nlbaf=nlbaf, flbas=flbas,
        nmic=b[N.NMIC], dlfeat=b[N.DLFEAT], anagrpid=_U32.unpack_from(b, N.ANAGRPID)[0],
        nguid=b[N.NGUID:N.NGUID + 16], eui64=b[N.EUI64:N.EUI64 + 8], lba_formats=formats,
        nawun=_U16.unpack_from(b, N.NAWUN)[0], nawupf=_U16.unpack_from(b, N.NAWUPF)[0],
        nacwu=_U16.unpack_from(b, N.NACWU)[0], nabsn=_U16.unpack_from(b, N.NABSN)[0],
        nabo=_U16.unpack_from(b, N.NABO)[0], nabspf=_U16.unpack_from(b, N.NABSPF)[0],
        npwg=_U16.unpack_from(b, N.NPWG)[0], mssrl=_U16.unpack_from(b, _NS_MSSRL)[0],
        mcl=_U32.unpack_from(b, _NS_MCL)[0], msrc=b[_NS_MSRC], nsattr=b[N.NSATTR])


def parse_ns_list(buf: bytes | memoryview) -> list[int]:
    """Active namespace list: ascending NSIDs, terminated by 0."""
    out = []
    for nsid in _NSID_LIST.unpack_from(bytes(buf[:4096]).ljust(4096, b"\0")):
        if nsid == 0:
            break
        out.append(nsid)
    return out


@dataclass(slots=True)
class DiscoveryLogEntry:
    trtype: int
    adrfam: int
    subtype: int
    treq: int
    portid: int
    cntlid: int
    asqsz: int
    trsvcid: str
    subnqn: str
    traddr: str


def discovery_log_header(buf: bytes | memoryview) -> tuple[int, int, int]:
    """(GENCTR, NUMREC, RECFMT)."""
    return _DISC_HDR.unpack_from(buf, 0)


def parse_discovery_log(buf: bytes | memoryview, numrec: int) -> list[DiscoveryLogEntry]:
    out = []
    for i in range(numrec):
        off = 1024 * (i + 1)
        if off + 1024 > len(buf):
            break
        (trtype, adrfam, subtype, treq, portid, cntlid, asqsz, _eflags, trsvcid, subnqn, traddr,
         _tsas) = spec.DISC_LOG_ENTRY.unpack_from(buf, off)
        out.append(DiscoveryLogEntry(trtype, adrfam, subtype, treq, portid, cntlid, asqsz,
                                     _cstr(trsvcid).strip(), _cstr(subnqn), _cstr(traddr).strip()))
    return out


def version_str(vs: int) -> str:
    return f"{vs >> 16}.{(vs >> 8) & 0xFF}" + (f".{vs & 0xFF}" if vs & 0xFF else "")
