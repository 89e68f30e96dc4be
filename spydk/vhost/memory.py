"""The guest's memory as the front end shares it: mmap'ed regions and address translation.

Two address spaces reach us: guest-physical addresses (GPAs, in descriptors) and the
front end's own virtual addresses (in SET_VRING_ADDR). Both translate to memoryviews into
the mappings; a range that is not wholly inside one region raises ``MemoryFault`` and never
yields a view, so nothing outside the guest's memory is ever read or written.

Views keep their mmap alive (Python refuses to close an mmap with exported buffers), so a
memory table replaced while I/O is in flight stays mapped until that I/O completes.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

from spydk.vhost.spec import MAX_MEM_REGIONS, MEM_HDR, MEM_REGION


class MemoryFault(Exception):
    """An address range outside the guest's memory (or a bad memory table)."""


@dataclass(frozen=True)
class RegionDesc:
    gpa: int
    size: int
    uva: int
    mmap_offset: int


@dataclass
class Region:
    gpa: int
    size: int
    uva: int
    view: memoryview      # exactly ``size`` bytes, at guest address gpa
    mm: mmap.mmap | None = None


def parse_mem_table(payload: bytes, nfds: int) -> list[RegionDesc]:
    if len(payload) < MEM_HDR.size:
        raise MemoryFault(f"memory table of {len(payload)} bytes is shorter than its header")
    n, _pad = MEM_HDR.unpack_from(payload, 0)
    if not 1 <= n <= MAX_MEM_REGIONS:
        raise MemoryFault(f"memory table with {n} regions (1 to {MAX_MEM_REGIONS} allowed)")
    if len(payload) < MEM_HDR.size + n * MEM_REGION.size:
        raise MemoryFault(f"memory table says {n} regions but has {len(payload)} bytes")
    if nfds != n:
        raise MemoryFault(f"memory table has {n} regions but came with {nfds} file descriptors")
    out = [RegionDesc(*MEM_REGION.unpack_from(payload, MEM_HDR.size + i * MEM_REGION.size))
           for i in range(n)]
    check_layout(out)
    return out


def check_layout(regions: list[RegionDesc]) -> None:
    """Refuse empty, wrapping or overlapping regions (in either address space)."""
    for r in regions:
        if r.size == 0:
            raise MemoryFault(f"memory region at GPA {r.gpa:#x} has size 0")
        if r.gpa + r.size > 1 << 64 or r.uva + r.size > 1 << 64:
            raise MemoryFault(f"memory region at GPA {r.gpa:#x} wraps around the address space")
    for attr in ("gpa", "uva"):
        rs = sorted(regions, key=lambda r: getattr(r, attr))
        for a, b in zip(rs, rs[1:], strict=False):
            if getattr(a, attr) + a.size > getattr(b, attr):
                raise MemoryFault(f"memory regions at {attr.upper()} {getattr(a, attr):#x} and "
                                  f"{getattr(b, attr):#x} overlap")


class GuestMemory:
    """Translation of guest-physical and front-end-virtual ranges into views."""

    def __init__(self, regions: list[Region]):
        self.regions = sorted(regions, key=lambda r: r.gpa)
        self._last = self.regions[0] if self.regions else None

    @classmethod
    def map_fds(cls, descs: list[RegionDesc], fds: list[int]) -> GuestMemory:
        """mmap each region (shared, read-write). The caller still owns and closes fds."""
        regions = []
        for d, fd in zip(descs, fds, strict=True):
            try:
                mm = mmap.mmap(fd, d.mmap_offset + d.size, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE)
            except (OSError, ValueError, OverflowError) as e:
                raise MemoryFault(f"cannot map memory region at GPA {d.gpa:#x} "
                                  f"({d.size} bytes at offset {d.mmap_offset}): {e}") from None
            view = memoryview(mm)[d.mmap_offset:d.mmap_offset + d.size]
            regions.append(Region(d.gpa, d.size, d.uva, view, mm))
        return cls(regions)

    def close(self) -> None:
        for r in self.regions:
            r.view.release()
            if r.mm is not None:
                try:
                    r.mm.close()
                except BufferError:
                    pass  # a view is still in use (I/O in flight): it unmaps when released
        self.regions = []
        self._last = None

    def gpa(self, addr: int, length: int) -> memoryview:
        """View of guest-physical [addr, addr+length), or MemoryFault."""
        r = self._last
        if r is not None and r.gpa <= addr and addr + length <= r.gpa + r.size:
            off = addr - r.gpa
            return r.view[off:off + length]
        for r in self.regions:
            if r.gpa <= addr < r.gpa + r.size:
                if addr + length > r.gpa + r.size:
                    break
                self._last = r
                off = addr - r.gpa
                return r.view[off:off + length]
        raise MemoryFault(f"guest address range {addr:#x}+{length:#x} is outside guest memory")

    def gpa_split(self, addr: int, length: int) -> list[memoryview]:
        """Views of guest-physical [addr, addr+length), one per region it crosses.

        A buffer contiguous in guest-physical space may span regions that are adjacent
        there but mapped separately (QEMU splits RAM around holes and hot-plugged DIMMs):
        each piece is a view into its own mapping. MemoryFault if any byte is unmapped.
        """
        out: list[memoryview] = []
        end = addr + length
        cur = addr
        for r in self.regions:     # sorted by gpa
            if cur >= end:
                break
            rend = r.gpa + r.size
            if rend <= cur:
                continue
            if r.gpa > cur:
                break              # a hole at cur
            take = min(end, rend) - cur
            off = cur - r.gpa
            out.append(r.view[off:off + take])
            cur += take
        if cur < end:
            raise MemoryFault(f"guest address range {addr:#x}+{length:#x} is outside guest memory")
        return out

    def uva(self, addr: int, length: int) -> memoryview:
        """View of the front end's virtual range [addr, addr+length), or MemoryFault."""
        for r in self.regions:
            if r.uva <= addr and addr + length <= r.uva + r.size:
                off = addr - r.uva
                return r.view[off:off + length]
        raise MemoryFault(f"front-end address range {addr:#x}+{length:#x} is outside guest memory")

    def uva_to_gpa(self, addr: int) -> int:
        for r in self.regions:
            if r.uva <= addr < r.uva + r.size:
                return r.gpa + (addr - r.uva)
        raise MemoryFault(f"front-end address {addr:#x} is outside guest memory")
