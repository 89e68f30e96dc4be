"""bdev_nvme_attach_controller with trtype PCIe: a local controller (here the register-level
fake of tests/nvme_host/fake_pcie.py, put in place of the uio device) becomes a bdev; I/O and a
bdevperf verify job through the bdev layer, get_controllers / get_io_paths / save_config in
SPDK's PCIe form, reset, detach (the controller is shut down); bad PCIe addresses are refused."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from spydk.modules.bdev.nvme import bdev_nvme as bn
from spydk.nvme.host import Controller, ControllerOpts, TransportId
from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness

from .fake_pcie import FakeDma, FakeNvme
from .test_bdev_nvme import _rw, wait_until
from .test_bdev_nvme_midrun import VerifyJob

BDF = "0000:00:04.0"


@pytest.fixture
def fake_device() -> Iterator[FakeNvme]:
    dma = FakeDma()
    dev = FakeNvme(dma, nblocks=8192, serial="FAKEPCIE42")

    def new_controller(trid: TransportId, opts: ControllerOpts) -> Controller:
        if trid.trtype == "PCIE" and trid.traddr == BDF:
            return Controller(trid, opts, bar=dev, dma=dma)  # type: ignore[call-arg]
        return Controller(trid, opts)
    saved = bn.module.new_controller
    bn.module.new_controller = new_controller
    try:
        yield dev
    finally:
        bn.module.new_controller = saved


@pytest.fixture
def app(fake_device: FakeNvme) -> Iterator[AppHarness]:
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        yield h
    finally:
        h.stop()


def test_pcie_controller_as_a_bdev(app: AppHarness, fake_device: FakeNvme) -> None:
    h = app
    # the short BDF form, as SPDK's rpc.py passes whatever the user typed
    assert h.client.call("bdev_nvme_attach_controller",
                         {"name": "Nvme0", "trtype": "pcie", "traddr": "00:04.0"}) == ["Nvme0n1"]
    b = h.client.call("bdev_get_bdevs", {"name": "Nvme0n1"})[0]
    assert b["num_blocks"] == 8192 and b["block_size"] == 512
    nv = b["driver_specific"]["nvme"][0]
    assert nv["trid"] == {"trtype": "PCIe", "traddr": BDF}
    assert nv["ctrlr_data"]["serial_number"] == "FAKEPCIE42"
    data = os.urandom(128 * 1024 + 4096)  # more than the fake's MDTS: split by the driver
    assert h.run(_rw("Nvme0n1", 4096, data)) == data
    assert bytes(fake_device.data[4096:4096 + len(data)]) == data
    c = h.client.call("bdev_nvme_get_controllers", {"name": "Nvme0"})[0]["ctrlrs"][0]
    assert c["state"] == "enabled" and c["trid"] == {"trtype": "PCIe", "traddr": BDF}
    paths = h.client.call("bdev_nvme_get_io_paths")["poll_groups"][0]["io_paths"]
    assert [(p["bdev_name"], p["transport"], p["current"]) for p in paths] == [
        ("Nvme0n1", {"trtype": "PCIe", "traddr": BDF}, True)]
    job = VerifyJob(h, "Nvme0n1", qd=16)
    job.progress(300, "verify I/O on the PCIe bdev")
    assert h.client.call("bdev_nvme_reset_controller", {"name": "Nvme0"}) is True
    assert fake_device.disable_seen
    job.progress(300, "verify I/O after the reset")
    res = job.stop()
    assert res["io_failed"] == 0 and res["miscompares"] == 0, res
    cfg = h.client.call("framework_get_config", {"name": "bdev"})
    entry: dict[str, Any] = next(e for e in cfg if e["method"] == "bdev_nvme_attach_controller")
    assert entry["params"]["trtype"] == "PCIe" and entry["params"]["traddr"] == BDF
    assert "subnqn" not in entry["params"] and "trsvcid" not in entry["params"]
    assert h.client.call("bdev_nvme_detach_controller", {"name": "Nvme0"}) is True
    assert h.client.call("bdev_get_bdevs") == []
    assert fake_device.csts & 0xC == 0x8  # CC.SHN: shutdown complete


def test_bad_pcie_attach_is_a_clear_error(app: AppHarness) -> None:
    h = app
    with pytest.raises(RpcError, match="domain:bus:device.function"):
        h.client.call("bdev_nvme_attach_controller", {"name": "Nvme0", "trtype": "PCIe", "traddr": "04.0"})
    # an address with no device bound to uio_pci_generic (not the fake)
    with pytest.raises(RpcError, match=r"cannot attach controller 'Nvme0' at trtype:PCIe traddr:0000:63:00.0"):
        h.client.call("bdev_nvme_attach_controller",
                      {"name": "Nvme0", "trtype": "PCIe", "traddr": "0000:63:00.0"})
    with pytest.raises(RpcError, match="not PCIe"):
        h.client.call("bdev_nvme_start_discovery", {"name": "d", "trtype": "PCIe", "traddr": BDF})
    assert h.client.call("bdev_nvme_get_controllers") == []


def test_hot_removed_pcie_controller_goes_with_its_bdev(app: AppHarness, fake_device: FakeNvme) -> None:
    """A device that stops answering (registers read all ones, as after hot removal) fails its
    controller; with ctrlr_loss_timeout_sec 0 the one reconnect attempt fails and the controller
    and its bdev are deleted; the app goes on."""
    h = app
    assert h.client.call("bdev_nvme_attach_controller",
                         {"name": "Nvme0", "trtype": "PCIe", "traddr": BDF}) == ["Nvme0n1"]
    fake_device.read32 = lambda off: 0xFFFFFFFF  # type: ignore[method-assign]  # every register
    wait_until(lambda: h.client.call("bdev_nvme_get_controllers") == [], what="the controller to go")
    assert h.client.call("bdev_get_bdevs") == []
    assert h.client.call("spdk_get_version")["version"]
