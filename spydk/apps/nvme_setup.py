"""`spydk setup`: prepare a machine for the user-space NVMe driver, as SPDK's scripts/setup.sh.

    spydk setup            reserve hugepages, bind NVMe devices to uio_pci_generic
    spydk setup status     hugepages and every NVMe device with its driver
    spydk setup reset      give the devices back to the kernel nvme driver

Environment (setup.sh's names): HUGEMEM (MiB, default 2048) or NRHUGE (2 MiB pages),
PCI_ALLOWED / PCI_BLOCKED (space-separated PCI addresses), DRIVER_OVERRIDE (uio_pci_generic,
the default, or vfio-pci).

A device is bound with sysfs ``driver_override`` (unbind, set the override, drivers_probe).
A device whose namespaces (or their partitions) are mounted, or held by another block device
(device mapper, MD RAID), is left alone with a message, as setup.sh does. Everything goes
through one ``Sysfs`` object whose root is a parameter, so tests run it on a fake tree.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

NVME_CLASS = 0x010802
KERNEL_DRIVER = "nvme"
USER_DRIVERS = ("uio_pci_generic", "vfio-pci")
HUGEPAGE_KB = 2048
_NS_NODE = re.compile(r"nvme(\d+)(?:c\d+)?n(\d+)")


class SetupError(Exception):
    pass


@dataclass(slots=True)
class NvmeDevice:
    bdf: str
    vendor: int
    device: int
    numa: int
    driver: str | None
    blocks: list[str] = field(default_factory=list)  # nvme0n1, ... (when the kernel has it)


class Sysfs:
    """The files setup reads and writes, under ``root`` (``/`` on a real machine). ``write``
    and ``modprobe`` are the only side effects; tests replace them to play the kernel."""

    def __init__(self, root: Path = Path("/"), *,
                 modprobe: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.sys = root / "sys"
        self._modprobe = modprobe

    def read(self, rel: str) -> str:
        return (self.sys / rel).read_text()

    def write(self, rel: str, text: str) -> None:
        with open(self.sys / rel, "w") as f:
            f.write(text)

    def modprobe(self, module: str) -> None:
        if self._modprobe is not None:
            self._modprobe(module)
            return
        r = subprocess.run(["modprobe", module], capture_output=True, text=True)
        if r.returncode:
            raise SetupError(f"modprobe {module} failed: {r.stderr.strip() or r.returncode}")

    def mounts(self) -> str:
        try:
            return (self.root / "proc/mounts").read_text()
        except OSError:
            return ""

    def driver_of(self, bdf: str) -> str | None:
        link = self.sys / "bus/pci/devices" / bdf / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def devices(self) -> list[NvmeDevice]:
        out = []
        base = self.sys / "bus/pci/devices"
        for d in sorted(base.iterdir()) if base.exists() else []:
            try:
                cls = int((d / "class").read_text(), 16)
            except (OSError, ValueError):
                continue
            if cls != NVME_CLASS:
                continue
            num = (d / "numa_node").read_text().strip() if (d / "numa_node").exists() else "-1"
            blocks: set[str] = set()
            nvme = d / "nvme"
            for c in sorted(nvme.iterdir()) if nvme.is_dir() else []:
                for p in c.iterdir():
                    m = _NS_NODE.fullmatch(p.name)
                    if m:  # nvme0n1, or nvme0c0n1 (a path of the multipath head nvme0n1)
                        blocks.add(f"nvme{m.group(1)}n{m.group(2)}")
            out.append(NvmeDevice(d.name, int((d / "vendor").read_text(), 16),
                                  int((d / "device").read_text(), 16), int(num),
                                  self.driver_of(d.name), sorted(blocks)))
        return out

    def in_use(self, dev: NvmeDevice) -> str | None:
        """Why the device must not be taken from the kernel, or None."""
        mounted = {ln.split()[0] for ln in self.mounts().splitlines() if ln.strip()}
        for blk in dev.blocks:
            names = [blk]
            bdir = self.sys / "block" / blk
            if bdir.is_dir():
                names += [p.name for p in bdir.iterdir() if p.name.startswith(blk + "p")]
            for n in names:
                if f"/dev/{n}" in mounted:
                    return f"/dev/{n} is mounted"
                holders = self.sys / "block" / blk / (n if n != blk else "") / "holders"
                if holders.is_dir() and any(holders.iterdir()):
                    return f"/dev/{n} is held by {', '.join(p.name for p in holders.iterdir())}"
        return None

    def bind(self, bdf: str, driver: str) -> None:
        cur = self.driver_of(bdf)
        if cur == driver:
            return
        if not (self.sys / "bus/pci/drivers" / driver).exists():
            self.modprobe(driver.replace("-", "_"))
        if not (self.sys / "bus/pci/drivers" / driver).exists():
            raise SetupError(f"driver {driver} is not available (modprobe did not load it)")
        dev = f"bus/pci/devices/{bdf}"
        if cur is not None:
            self.write(f"{dev}/driver/unbind", bdf)
        self.write(f"{dev}/driver_override", driver)
        self.write("bus/pci/drivers_probe", bdf)
        got = self.driver_of(bdf)
        if got != driver:
            raise SetupError(f"{bdf}: binding to {driver} failed (now {got or 'no driver'})")

    def unbind_to_kernel(self, bdf: str) -> None:
        cur = self.driver_of(bdf)
        dev = f"bus/pci/devices/{bdf}"
        if cur == KERNEL_DRIVER:
            self.write(f"{dev}/driver_override", "\n")
            return
        if not (self.sys / "bus/pci/drivers" / KERNEL_DRIVER).exists():
            self.modprobe(KERNEL_DRIVER)
        if cur is not None:
            self.write(f"{dev}/driver/unbind", bdf)
        self.write(f"{dev}/driver_override", KERNEL_DRIVER)
        self.write("bus/pci/drivers_probe", bdf)
        self.write(f"{dev}/driver_override", "\n")
        got = self.driver_of(bdf)
        if got != KERNEL_DRIVER:
            raise SetupError(f"{bdf}: giving it back to the kernel nvme driver failed "
                             f"(now {got or 'no driver'})")

    def hugepages(self) -> tuple[int, int]:
        """(total, free) 2 MiB pages."""
        d = f"kernel/mm/hugepages/hugepages-{HUGEPAGE_KB}kB"
        return int(self.read(f"{d}/nr_hugepages")), int(self.read(f"{d}/free_hugepages"))

    def set_hugepages(self, n: int) -> int:
        self.write(f"kernel/mm/hugepages/hugepages-{HUGEPAGE_KB}kB/nr_hugepages", str(n))
        return self.hugepages()[0]


def wanted_hugepages(env: Mapping[str, str]) -> int:
    if env.get("NRHUGE"):
        try:
            n = int(env["NRHUGE"])
        except ValueError:
            raise SetupError(f"NRHUGE={env['NRHUGE']!r} is not a number of 2 MiB pages") from None
    else:
        try:
            mib = int(env.get("HUGEMEM", "2048"))
        except ValueError:
            raise SetupError(f"HUGEMEM={env['HUGEMEM']!r} is not a size in MiB") from None
        n = -(-mib // (HUGEPAGE_KB // 1024))
    if n < 0:
        raise SetupError("the number of hugepages cannot be negative")
    return n


def _selected(devs: list[NvmeDevice], env: Mapping[str, str]) -> list[NvmeDevice]:
    allowed = env.get("PCI_ALLOWED", "").split()
    blocked = env.get("PCI_BLOCKED", "").split()
    return [d for d in devs if (not allowed or d.bdf in allowed) and d.bdf not in blocked]


def configure(fs: Sysfs, env: Mapping[str, str], out: TextIO) -> int:
    driver = env.get("DRIVER_OVERRIDE", "uio_pci_generic")
    if driver not in USER_DRIVERS:
        raise SetupError(f"DRIVER_OVERRIDE={driver!r}: use one of {', '.join(USER_DRIVERS)}")
    rc = 0
    for d in _selected(fs.devices(), env):
        if d.driver == driver:
            print(f"{d.bdf} ({d.vendor:04x} {d.device:04x}): already bound to {driver}", file=out)
            continue
        why = fs.in_use(d) if d.driver == KERNEL_DRIVER else None
        if why:
            print(f"{d.bdf} ({d.vendor:04x} {d.device:04x}): Active devices: {why}, "
                  "so not binding PCI dev", file=out)
            continue
        try:
            fs.bind(d.bdf, driver)
        except SetupError as e:
            print(f"spydk setup: {e}", file=sys.stderr)
            rc = 1
            continue
        print(f"{d.bdf} ({d.vendor:04x} {d.device:04x}): {d.driver or 'no driver'} -> {driver}",
              file=out)
    n = wanted_hugepages(env)
    got = fs.set_hugepages(n)
    if got < n:
        print(f"spydk setup: asked for {n} hugepages of 2 MiB, the kernel gave {got} "
              "(not enough free memory)", file=sys.stderr)
        rc = 1
    return rc


def reset(fs: Sysfs, env: Mapping[str, str], out: TextIO) -> int:
    rc = 0
    for d in _selected(fs.devices(), env):
        if d.driver == KERNEL_DRIVER:
            continue
        try:
            fs.unbind_to_kernel(d.bdf)
        except SetupError as e:
            print(f"spydk setup: {e}", file=sys.stderr)
            rc = 1
            continue
        print(f"{d.bdf} ({d.vendor:04x} {d.device:04x}): {d.driver or 'no driver'} -> "
              f"{KERNEL_DRIVER}", file=out)
    return rc


def status(fs: Sysfs, out: TextIO) -> int:
    try:
        total, free = fs.hugepages()
        print(f"Hugepages\nsize: {HUGEPAGE_KB}kB  total: {total}  free: {free}\n", file=out)
    except OSError:
        print("Hugepages\n(no 2 MiB hugepage support)\n", file=out)
    print(f"{'Type':<5} {'BDF':<13} {'Vendor':<7} {'Device':<7} {'NUMA':<5} {'Driver':<16} "
          "Block devices", file=out)
    for d in fs.devices():
        print(f"{'NVMe':<5} {d.bdf:<13} {d.vendor:<#7x} {d.device:<#7x} {d.numa:<5} "
              f"{d.driver or '-':<16} {' '.join(d.blocks) or '-'}", file=out)
    return 0


def main(argv: Sequence[str] | None = None, *, fs: Sysfs | None = None,
         env: Mapping[str, str] | None = None, euid: int | None = None,
         out: TextIO | None = None) -> int:
    ap = argparse.ArgumentParser(prog="spydk setup", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", nargs="?", default="config", choices=["config", "status", "reset"],
                    help="config (default): hugepages and bind; status; reset: back to the kernel")
    args = ap.parse_args(argv)
    fs = fs or Sysfs()
    env = os.environ if env is None else env
    out = out or sys.stdout
    if args.action == "status":
        return status(fs, out)
    if (os.geteuid() if euid is None else euid) != 0:
        print(f"spydk setup {args.action}: must be run as root (it writes to /sys)", file=sys.stderr)
        return 1
    try:
        return configure(fs, env, out) if args.action == "config" else reset(fs, env, out)
    except (SetupError, OSError) as e:
        print(f"spydk setup: {e}", file=sys.stderr)
        return 1
