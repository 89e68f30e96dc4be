"""The guest's nbd-client (the Linux nbd driver) against spydk's NBD server, reached as
10.0.2.2: pattern, fio verify, ext4 + fsck, on a raid1 of two malloc bdevs."""
from __future__ import annotations

import pytest

from . import guest_run
from .expect import guest_passed

pytestmark = pytest.mark.interop


def test_nbd_client_in_guest_on_a_raid1(run_guest, spydk_target, free_port) -> None:
    cfg = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": f"M{i}", "num_blocks": 131072, "block_size": 512}}
        for i in range(2)]}]}
    t = spydk_target(cfg)
    r = t.rpc("bdev_raid_create", {"name": "Mirror", "raid_level": "raid1", "base_bdevs": ["M0", "M1"]})
    assert r.get("result") is True, r
    port = free_port()
    # QEMU's user network turns the guest's 10.0.2.2:port into 127.0.0.1:port on the host
    assert t.rpc("nbd_server_listen", {"host": "127.0.0.1", "port": port}).get("result") == port
    assert t.rpc("nbd_server_start_export", {"bdev_name": "Mirror", "name": "mirror"}).get("result") == "mirror"
    res = run_guest("nbd.sh", {"NBD_PORT": str(port), "NBD_NAME": "mirror", "NBD_MB": "64"})
    guest_passed(res, "NBD CHECK PASSED")
    st = t.rpc("bdev_get_iostat", {"name": "M1"})["result"]["bdevs"][0]
    assert st["num_write_ops"] > 0 and st["num_read_ops"] > 0     # both mirrors served the guest


def test_nbd_start_disk_against_the_guest_kernel(run_guest) -> None:
    """SPDK's nbd_start_disk / nbd_get_disks / nbd_stop_disk with spydk running in the guest
    (the host has no nbd module): the Linux nbd driver attached through generic netlink."""
    shares, env = guest_run.spydk_shares()
    res = run_guest("nbd-kernel.sh", env, shares=shares, timeout=600)
    guest_passed(res, "NBD KERNEL CHECK PASSED")
