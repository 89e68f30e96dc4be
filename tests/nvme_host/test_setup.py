"""`spydk setup` against a fake sysfs tree in a temp folder, with a fake kernel that acts on
unbind / driver_override / drivers_probe / nr_hugepages writes as Linux does."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from spydk.apps.nvme_setup import SetupError, Sysfs, main, wanted_hugepages

A, B, C = "0000:00:04.0", "0000:00:05.0", "0000:00:06.0"


class FakeKernel(Sysfs):
    def __init__(self, root: Path, hugepages_limit: int = 1 << 30) -> None:
        super().__init__(root, modprobe=self._load)
        self.loaded: list[str] = []
        self.limit = hugepages_limit
        self.writes: list[tuple[str, str]] = []

    def _load(self, mod: str) -> None:
        self.loaded.append(mod)
        name = {"vfio_pci": "vfio-pci"}.get(mod, mod)  # the driver name the module registers
        (self.sys / "bus/pci/drivers" / name).mkdir(parents=True, exist_ok=True)

    def write(self, rel: str, text: str) -> None:
        self.writes.append((rel, text))
        p = self.sys / rel
        if rel.endswith("/driver/unbind"):
            (self.sys / "bus/pci/devices" / text / "driver").unlink()
        elif rel == "bus/pci/drivers_probe":
            dev = self.sys / "bus/pci/devices" / text
            override = (dev / "driver_override").read_text().strip()
            drv = override or "nvme"
            if not (dev / "driver").exists() and (self.sys / "bus/pci/drivers" / drv).exists():
                (dev / "driver").symlink_to(self.sys / "bus/pci/drivers" / drv)
        elif rel.endswith("nr_hugepages"):
            p.write_text(str(min(int(text), self.limit)))
            p.with_name("free_hugepages").write_text(str(min(int(text), self.limit)))
        else:
            p.write_text(text)


def make_tree(root: Path) -> None:
    sys_ = root / "sys"
    drivers = sys_ / "bus/pci/drivers"
    (drivers / "nvme").mkdir(parents=True)
    hp = sys_ / "kernel/mm/hugepages/hugepages-2048kB"
    hp.mkdir(parents=True)
    (hp / "nr_hugepages").write_text("0\n")
    (hp / "free_hugepages").write_text("0\n")
    for i, bdf in enumerate((A, B, C)):
        d = sys_ / "bus/pci/devices" / bdf
        d.mkdir(parents=True)
        (d / "class").write_text("0x010802\n")
        (d / "vendor").write_text("0x1b36\n")
        (d / "device").write_text("0x0010\n")
        (d / "numa_node").write_text("-1\n")
        (d / "driver_override").write_text("(null)\n")
        (d / "driver").symlink_to(drivers / "nvme")
        (d / f"nvme/nvme{i}/nvme{i}c{i}n1").mkdir(parents=True)
        blk = sys_ / "block" / f"nvme{i}n1"
        (blk / "holders").mkdir(parents=True)
        (blk / f"nvme{i}n1p1/holders").mkdir(parents=True)
    other = sys_ / "bus/pci/devices/0000:00:02.0"  # a NIC: not touched
    other.mkdir(parents=True)
    (other / "class").write_text("0x020000\n")
    (root / "proc").mkdir()
    # B has a mounted partition; C's namespace is held by device mapper
    (root / "proc/mounts").write_text("/dev/nvme1n1p1 /mnt ext4 rw 0 0\nproc /proc proc rw 0 0\n")
    (sys_ / "block/nvme2n1/holders/dm-0").mkdir()


def _run(fs: Sysfs, *argv: str, env: dict[str, str] | None = None, euid: int = 0) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(list(argv), fs=fs, env=env or {}, euid=euid, out=out)
    return rc, out.getvalue()


def test_setup_binds_free_devices_skips_busy_ones_and_resets(tmp_path: Path) -> None:
    make_tree(tmp_path)
    fs = FakeKernel(tmp_path)
    rc, out = _run(fs, env={"HUGEMEM": "64"})
    assert rc == 0, out
    assert fs.driver_of(A) == "uio_pci_generic" and fs.loaded == ["uio_pci_generic"]
    assert fs.driver_of(B) == "nvme" and "/dev/nvme1n1p1 is mounted" in out
    assert fs.driver_of(C) == "nvme" and "held by dm-0" in out
    assert fs.hugepages() == (32, 32)
    rc, out = _run(fs, "status")
    assert rc == 0
    lines = {ln.split()[1]: ln.split() for ln in out.splitlines() if ln.startswith("NVMe")}
    assert lines[A][5] == "uio_pci_generic" and lines[B][5:] == ["nvme", "nvme1n1"]
    assert "total: 32" in out and "0000:00:02.0" not in out
    rc, out = _run(fs, "reset")
    assert rc == 0 and f"{A} (1b36 0010): uio_pci_generic -> nvme" in out
    assert fs.driver_of(A) == "nvme"
    assert (tmp_path / f"sys/bus/pci/devices/{A}/driver_override").read_text() == "\n"


def test_allowed_blocked_nrhuge_and_vfio(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "proc/mounts").write_text("")
    (tmp_path / "sys/block/nvme2n1/holders/dm-0").rmdir()
    fs = FakeKernel(tmp_path, hugepages_limit=3)
    rc, out = _run(fs, env={"PCI_BLOCKED": B, "NRHUGE": "8", "DRIVER_OVERRIDE": "vfio-pci"})
    assert rc == 1  # the kernel gave 3 of the 8 hugepages asked for
    assert fs.driver_of(A) == fs.driver_of(C) == "vfio-pci" and fs.driver_of(B) == "nvme"
    assert fs.loaded == ["vfio_pci"]
    rc, _ = _run(fs, "reset", env={"PCI_ALLOWED": C})
    assert rc == 0 and fs.driver_of(C) == "nvme" and fs.driver_of(A) == "vfio-pci"


def test_refuses_when_not_root_and_on_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(tmp_path)
    fs = FakeKernel(tmp_path)
    rc, _ = _run(fs, euid=1000)
    assert rc == 1 and "must be run as root" in capsys.readouterr().err
    assert fs.writes == [] and fs.driver_of(A) == "nvme"
    rc, _ = _run(fs, "reset", euid=1000)
    assert rc == 1 and fs.writes == []
    rc, _ = _run(fs, env={"DRIVER_OVERRIDE": "igb_uio"})
    assert rc == 1 and "DRIVER_OVERRIDE='igb_uio'" in capsys.readouterr().err
    with pytest.raises(SetupError, match="HUGEMEM='lots'"):
        wanted_hugepages({"HUGEMEM": "lots"})
    assert wanted_hugepages({}) == 1024 and wanted_hugepages({"HUGEMEM": "3"}) == 2


def test_a_driver_that_will_not_bind_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(tmp_path)
    fs = FakeKernel(tmp_path)
    fs._modprobe = lambda mod: None  # the module does not exist on this kernel
    rc, _ = _run(fs, env={"HUGEMEM": "2"})
    assert rc == 1
    assert "driver uio_pci_generic is not available" in capsys.readouterr().err
    assert fs.driver_of(A) == "nvme"
    assert os.path.islink(tmp_path / f"sys/bus/pci/devices/{A}/driver")


def test_tools_without_r_take_the_devices_setup_bound(tmp_path: Path) -> None:
    from spydk.apps.nvme_common import local_trids
    make_tree(tmp_path)
    assert local_trids(tmp_path) == []
    fs = FakeKernel(tmp_path)
    assert _run(fs, env={"HUGEMEM": "2"})[0] == 0
    got = local_trids(tmp_path)
    assert [(t.trtype, t.traddr) for t in got] == [("PCIE", A)]
