"""spydk's user-space NVMe PCIe driver in a QEMU guest with an emulated NVMe controller:
spydk setup, hello_world, identify (compared with nvme-cli's id-ctrl under the kernel driver),
perf with --verify, bdevperf verify on a bdev_nvme PCIe controller, spydk setup reset (the
kernel driver takes the controller back)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from . import guest_run
from .expect import guest_passed

pytestmark = pytest.mark.interop

SERIAL = "SPYDKPCIE0001"


def _between(text: str, begin: str, end: str) -> str:
    m = re.search(rf"^=== {begin}\n(.*?)^=== {end}$", text, re.S | re.M)
    assert m, f"{begin} .. {end} missing from the guest console"
    return m.group(1)


def _field(identify: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}:\s+(.*?)\s*$", identify, re.M)
    assert m, f"spydk identify printed no {label!r}"
    return m.group(1)


def test_pcie_driver_in_guest(run_guest, tmp_path: Path) -> None:
    img = tmp_path / "nvme.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)  # small: perf --verify reads back many of the blocks it wrote
    shares, env = guest_run.spydk_shares()
    res = run_guest("nvme-pcie.sh", {**env, "NVME_SERIAL": SERIAL, "PERF_SECONDS": "4"},
                    nvme=[(img, SERIAL)], shares=shares, timeout=480)
    guest_passed(res, "NVME PCIE CHECK PASSED")
    out = res.console.replace("\r", "")
    idc = json.loads(_between(out, "ID-CTRL-BEGIN", "ID-CTRL-END"))
    ident = _between(out, "IDENTIFY-BEGIN", "IDENTIFY-END")
    assert "NVMe Controller at " in ident
    assert int(_field(ident, "Vendor ID"), 16) == idc["vid"]
    assert int(_field(ident, "Subsystem Vendor ID"), 16) == idc["ssvid"]
    assert _field(ident, "Serial Number") == idc["sn"].strip() == SERIAL
    assert _field(ident, "Model Number") == idc["mn"].strip()
    assert _field(ident, "Firmware Version") == idc["fr"].strip()
    assert int(_field(ident, "Recommended Arb Burst")) == idc["rab"]
    oui = _field(ident, "IEEE OUI Identifier").split()
    assert int(oui[2] + oui[1] + oui[0], 16) == idc["ieee"]
    assert int(_field(ident, "Max Number of Namespaces")) == idc["nn"]
    mdts = _field(ident, "Max Data Transfer Size")
    assert mdts == (str(4096 << idc["mdts"]) if idc["mdts"] else "Unlimited")
    # perf: a verified mixed run that did I/O and found no miscompares
    m = re.search(r"^Total\s*:\s*([\d.]+)\s+([\d.]+)", out, re.M)
    assert m and float(m.group(1)) > 0, "perf printed no Total line with IOPS"
    assert "miscompared" not in out and "I/Os failed" not in out
    # bdevperf verify on the bdev of bdev_nvme_attach_controller -t PCIe
    m = re.search(r"^\s+Nvme0n1\s+:\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+([\d.]+)", out, re.M)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) == 0, "no bdevperf verify row for Nvme0n1"
