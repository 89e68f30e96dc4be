"""spydk's vhost-user-blk target against QEMU's vhost-user-blk-pci and the guest's
virtio-blk driver: data pattern, fio verify, discard, ext4 mkfs/mount/fsck, and a marker
the host finds in the backing file afterwards."""
from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest

from .expect import guest_passed

pytestmark = pytest.mark.interop

MB = 64


def _aio_vhost_config(backing: Path, ctrlr: str) -> dict:
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_aio_create",
             "params": {"filename": str(backing), "name": "Aio0", "block_size": 512,
                        "fallocate": True}}]},
        {"subsystem": "vhost_blk", "config": [
            {"method": "vhost_create_blk_controller",
             "params": {"ctrlr": ctrlr, "dev_name": "Aio0"}}]},
    ]}


def test_vhost_user_blk_virtio(run_guest, spydk_target, tmp_path: Path) -> None:
    backing = tmp_path / "vhost-disk.img"
    with open(backing, "wb") as f:
        f.truncate(MB << 20)
    tgt = spydk_target(_aio_vhost_config(backing, "vhost.0"))
    sock = tgt.workdir / "vhost.0"   # as in SPDK: the socket goes in the working directory
    deadline = time.monotonic() + 10
    while not sock.is_socket():
        assert time.monotonic() < deadline, f"no vhost-user socket at {sock}"
        time.sleep(0.1)
    ctrl = tgt.rpc("vhost_get_controllers")["result"]
    assert [c["ctrlr"] for c in ctrl] == ["vhost.0"]
    assert ctrl[0]["backend_specific"]["block"]["bdev"] == "Aio0"
    marker = "spydk vhost marker " + secrets.token_hex(8)
    res = run_guest("vhost-user-blk.sh", {"VHOST_MB": str(MB), "VHOST_DISCARD": "1",
                                          "VHOST_MARKER": marker},
                    vhost_user_blk=[sock])
    guest_passed(res, "VHOST-USER-BLK CHECK PASSED")
    assert "discard: 1 MiB at 40 MiB discarded" in res.console
    with open(backing, "rb") as f:
        f.seek(98304 * 512)
        assert f.read(512).startswith(marker.encode() + b"\n")
    # the guest powered off: the controller is idle again and can be deleted
    assert tgt.rpc("vhost_delete_controller", {"ctrlr": "vhost.0"}).get("result") is True
    assert not sock.exists()


def test_vhost_user_scsi_virtio(run_guest, spydk_target) -> None:
    """vhost-user-scsi-pci on a spydk vhost-scsi controller with one target (a malloc LU):
    sg3-utils INQUIRY/READ CAPACITY/VPD, then 40 SCSI conformance checks through the guest's
    sg driver (VPD pages, mode pages, REPORT LUNS, READ/WRITE 10/16 data, VERIFY, WRITE
    SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE and its MISCOMPARE, sense data for an
    LBA out of range and an unknown opcode, persistent reservations), fio verify, discard
    (the file system check is the blk test's: it would only repeat the same LU path at TCG
    speed)."""
    config = {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": MB * 2048, "block_size": 512}}]},
        {"subsystem": "vhost_scsi", "config": [
            {"method": "vhost_create_scsi_controller", "params": {"ctrlr": "vhost.1"}},
            {"method": "vhost_scsi_controller_add_target",
             "params": {"ctrlr": "vhost.1", "scsi_target_num": 0, "bdev_name": "Malloc0"}}]},
    ]}
    tgt = spydk_target(config)
    sock = tgt.workdir / "vhost.1"
    deadline = time.monotonic() + 10
    while not sock.is_socket():
        assert time.monotonic() < deadline, f"no vhost-user socket at {sock}"
        time.sleep(0.1)
    (ctrl,) = tgt.rpc("vhost_get_controllers", {"name": "vhost.1"})["result"]
    assert ctrl["backend_specific"]["scsi"][0]["luns"] == [{"id": 0, "bdev_name": "Malloc0"}]
    res = run_guest("vhost-user-scsi.sh", {"VHOST_MB": str(MB), "VHOST_VENDOR": "SPYDK"},
                    vhost_user_scsi=[sock])
    guest_passed(res, "VHOST-USER-SCSI CHECK PASSED")
    m = re.search(r"SCSI conformance: (\d+)/(\d+) passed", res.console)
    assert m and m.group(1) == m.group(2) and int(m.group(2)) >= 40, m and m.group(0)
    assert "discard: 1 MiB at 40 MiB discarded" in res.console


def test_vhost_user_blk_target_restart(run_guest, spydk_target, tmp_path: Path) -> None:
    """spydk killed (SIGKILL) and started again while the guest's fio verify runs: QEMU
    reconnects (chardev reconnect=1), re-sends the memory table and rings, and requests
    that were in flight are fetched again from the avail ring (QEMU resets the ring's
    last-avail index to the used index when the back end vanished). Nothing is lost."""
    import signal
    import threading

    from .targets import start_spydk
    backing = tmp_path / "vhost-disk.img"
    with open(backing, "wb") as f:
        f.truncate(MB << 20)
    config = _aio_vhost_config(backing, "vhost.0")
    tgt = spydk_target(config)
    sock = tgt.workdir / "vhost.0"
    marker = ("restart me " + secrets.token_hex(8)).encode()
    restarted: list = []
    stop = threading.Event()

    def restarter() -> None:
        while not stop.is_set():
            with open(backing, "rb") as f:
                f.seek(60 << 20)
                if f.read(len(marker)) == marker:
                    break
            time.sleep(0.05)
        else:
            return
        time.sleep(1.0)          # fio is under way
        tgt.proc.send_signal(signal.SIGKILL)
        tgt.proc.wait()
        restarted.append(start_spydk(config, tgt.workdir))
    th = threading.Thread(target=restarter)
    th.start()
    try:
        res = run_guest("vhost-reconnect.sh", {"VHOST_MARKER": marker.decode()},
                        vhost_user_blk=[sock], vhost_reconnect=1)
    finally:
        stop.set()
        th.join()
        for t in restarted:
            t.stop()
    assert restarted, "the guest never wrote its marker: the target was not restarted"
    guest_passed(res, "VHOST-RECONNECT CHECK PASSED")
    # the restart happened while fio ran (not before or after it)
    console = res.console
    assert console.index("fio verify while the target restarts") < console.index("ring restore failed") \
        < console.index("verify: (groupid=0")
