"""What the PCIe transport needs from the machine: BAR0 registers and DMA memory.

``Bar`` and ``DmaAllocator`` are the two seams: the real ones map a device bound to
uio_pci_generic (``open_uio_device``) and hugepages whose bus addresses come from
``/proc/self/pagemap``; tests pass a register-level fake controller and plain memory.

BAR0 is read and written only with aligned 32-bit accesses: under QEMU TCG byte loads of
NVMe registers return garbage, and 64-bit registers (CAP, ASQ, ACQ) are two 32-bit halves.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SYSFS = Path("/sys")
PAGE = 4096
HUGEPAGE = 2 << 20
MAP_HUGETLB = 0x40000  # Linux x86-64 (not exported by Python's mmap module)
PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 1 << 1
PCI_COMMAND_MASTER = 1 << 2  # bus mastering: uio_pci_generic leaves it off
_PAGEMAP_PFN = (1 << 55) - 1
_PAGEMAP_PRESENT = 1 << 63


class PcieDeviceError(Exception):
    """The device or its memory cannot be used; the message names the fix."""


class Bar(Protocol):
    def read32(self, off: int) -> int: ...
    def write32(self, off: int, value: int) -> None: ...


def read64(bar: Bar, off: int) -> int:
    return bar.read32(off) | (bar.read32(off + 4) << 32)


def write64(bar: Bar, off: int, value: int) -> None:
    bar.write32(off, value & 0xFFFFFFFF)
    bar.write32(off + 4, value >> 32)


@dataclass(slots=True)
class DmaBuffer:
    mem: memoryview  # CPU view of the memory
    iova: int  # the address the device uses (bus address)


class DmaAllocator(Protocol):
    def alloc(self, size: int) -> DmaBuffer: ...
    def close(self) -> None: ...


class MmioBar:
    """BAR0 of a PCI device mapped from sysfs ``resource0``."""

    def __init__(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
        except OSError as e:
            raise PcieDeviceError(f"cannot open {path}: {e.strerror} (run as root after "
                                  "'spydk setup')") from None
        try:
            size = os.fstat(fd).st_size or 0x4000
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._regs = memoryview(self._mm).cast("I")

    def read32(self, off: int) -> int:
        return self._regs[off >> 2]

    def write32(self, off: int, value: int) -> None:
        self._regs[off >> 2] = value

    def close(self) -> None:
        self._regs.release()
        self._mm.close()


def virt_to_phys(addr: int, pagemap: str = "/proc/self/pagemap") -> int:
    """The physical (bus) address of a locked, present page of this process."""
    with open(pagemap, "rb") as f:
        f.seek((addr // PAGE) * 8)
        (entry,) = struct.unpack("<Q", f.read(8))
    pfn = entry & _PAGEMAP_PFN
    if not entry & _PAGEMAP_PRESENT or pfn == 0:
        raise PcieDeviceError("/proc/self/pagemap gives no physical address (needs root: "
                              "CAP_SYS_ADMIN)")
    return pfn * PAGE + addr % PAGE


class HugepageAllocator:
    """DMA memory from 2 MiB hugepages (anonymous MAP_HUGETLB): each hugepage is physically
    contiguous, so a buffer that stays inside one has one bus address range. Hugepages are
    never swapped or moved, so the address from pagemap stays valid while mapped."""

    def __init__(self, pagemap: str = "/proc/self/pagemap") -> None:
        self.pagemap = pagemap
        self._maps: list[mmap.mmap] = []
        self._cur: tuple[memoryview, int, int] | None = None  # (view, iova base, used)
        self.allocated = 0

    def _new_hugepage(self) -> tuple[memoryview, int, int]:
        try:
            mm = mmap.mmap(-1, HUGEPAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB,
                           mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            raise PcieDeviceError(f"no free 2 MiB hugepage ({e.strerror}): reserve more with "
                                  "'HUGEMEM=<MiB> spydk setup'") from None
        mm[0:1] = b"\0"  # fault the page in before asking for its address
        self._maps.append(mm)
        mv = memoryview(mm)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        return mv, virt_to_phys(addr, self.pagemap), 0

    def alloc(self, size: int) -> DmaBuffer:
        """Page-aligned, zeroed; at most one hugepage."""
        size = -(-size // PAGE) * PAGE
        if size > HUGEPAGE:
            raise PcieDeviceError(f"DMA buffer of {size} bytes is larger than a 2 MiB hugepage")
        if self._cur is None or self._cur[2] + size > HUGEPAGE:
            self._cur = self._new_hugepage()
        mv, base, used = self._cur
        self._cur = (mv, base, used + size)
        self.allocated += size
        return DmaBuffer(mv[used:used + size], base + used)

    def close(self) -> None:
        # Views into the maps may still exist (trackers); mmap.close would then fail, so the
        # maps are dropped and closed by the garbage collector.
        self._maps.clear()
        self._cur = None


@dataclass(slots=True)
class PciFunction:
    """A PCI function bound to uio_pci_generic: BAR0 mapped, bus mastering on."""

    bdf: str
    bar: MmioBar
    dma: HugepageAllocator
    sysfs_dir: Path | None = None

    def present(self) -> bool:
        """False once the device has left the bus (hot removal takes its sysfs directory)."""
        return self.sysfs_dir is None or self.sysfs_dir.exists()

    def close(self) -> None:
        self.bar.close()
        self.dma.close()


def normalize_bdf(bdf: str) -> str:
    """'0000:00:04.0' from '00:04.0', '0000.00.04.0' or '0000:00:04.0'."""
    parts = bdf.replace(".", ":").split(":")
    if len(parts) == 3:
        parts.insert(0, "0000")
    if len(parts) != 4:
        raise PcieDeviceError(f"PCI address {bdf!r} is not domain:bus:device.function "
                              "(example 0000:00:04.0)")
    d, b, s, f = parts
    try:
        return f"{int(d, 16):04x}:{int(b, 16):02x}:{int(s, 16):02x}.{int(f, 16):x}"
    except ValueError:
        raise PcieDeviceError(f"PCI address {bdf!r} is not hexadecimal "
                              "domain:bus:device.function") from None


def enable_bus_master(dev: Path) -> None:
    """Set PCI command bits memory space and bus master through sysfs config space."""
    with open(dev / "config", "r+b", buffering=0) as f:
        f.seek(PCI_COMMAND)
        (cmd,) = struct.unpack("<H", f.read(2))
        want = cmd | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY
        if want != cmd:
            f.seek(PCI_COMMAND)
            f.write(struct.pack("<H", want))


def open_uio_device(bdf: str, sysfs: Path = SYSFS) -> PciFunction:
    bdf = normalize_bdf(bdf)
    dev = sysfs / "bus/pci/devices" / bdf
    if not dev.exists():
        raise PcieDeviceError(f"no PCI device {bdf} (see 'spydk setup status')")
    drv = dev / "driver"
    driver = os.path.basename(os.readlink(drv)) if drv.is_symlink() else None
    if driver != "uio_pci_generic":
        raise PcieDeviceError(f"PCI device {bdf} is bound to {driver or 'no driver'}, not "
                              "uio_pci_generic: run 'spydk setup' first")
    if os.geteuid() != 0:
        raise PcieDeviceError(f"PCI device {bdf}: user-space NVMe needs root")
    enable_bus_master(dev)
    return PciFunction(bdf, MmioBar(dev / "resource0"), HugepageAllocator(), dev)
