"""An RBD image of the real single-node Ceph cluster (tests/rbd/conftest.py), through
spydk's rbd bdev, exported over NVMe/TCP to the Linux kernel in the QEMU guest: a written
pattern read back, fio verify, ext4 + fsck (tests/interop/guest/nvme-tcp.sh, one pass)."""
from __future__ import annotations

import pytest

from tests.rbd.conftest import Ceph, ceph  # noqa: F401  (the cluster fixture)

from .expect import guest_passed
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop


def test_rbd_image_over_nvme_tcp_to_the_guest(run_guest, spydk_target, free_port, ceph: Ceph) -> None:  # noqa: F811
    ceph.run("rbd", "create", "--size", "128", "rbd/nvmf")
    port = free_port()
    cfg = nvmf_tcp_config(port, discovery=False)
    cfg["subsystems"][0]["config"] = [
        {"method": "bdev_rbd_register_cluster", "params": {"name": "c0", "config_file": ceph.conf,
                                                           "key_file": ceph.keyring}},
        {"method": "bdev_rbd_create", "params": {"name": "Rbd0", "pool_name": "rbd", "rbd_name": "nvmf",
                                                 "block_size": 512, "cluster_name": "c0"}},
    ]
    for e in cfg["subsystems"][1]["config"]:
        if e["method"] == "nvmf_subsystem_add_ns":
            e["params"]["namespace"]["bdev_name"] = "Rbd0"
    tgt = spydk_target(cfg)
    res = run_guest("nvme-tcp.sh", {"NVME_NQN": NVMF_NQN, "NVME_PORT": str(port), "NVME_DIGEST": "off",
                                    "NVME_DISCOVERY": "0"}, timeout=600)
    guest_passed(res, "NVME-TCP CHECK PASSED")
    st = tgt.rpc("bdev_get_iostat", {"name": "Rbd0"})["result"]["bdevs"][0]
    assert st["num_write_ops"] > 1000 and st["num_read_ops"] > 1000, st   # it went through librbd
    # and the data is in Ceph: the image holds the guest's ext4 (magic 0xEF53 at byte 1080)
    out = ceph.dir / "head.bin"
    ceph.run("rbd", "export", "rbd/nvmf", str(out))
    assert out.read_bytes()[1080:1082] == b"\x53\xef"
