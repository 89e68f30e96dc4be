"""An lvol over NVMe/TCP to the Linux kernel in a QEMU guest: fio verify, ext4, a snapshot
taken while the file system is mounted, its clone exported as a new namespace, both
checked (tests/interop/guest/lvol-nvme.sh)."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from .expect import guest_passed
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop


def test_lvol_snapshot_while_mounted(run_guest, spydk_target, free_port) -> None:
    port = free_port()
    cfg = nvmf_tcp_config(port)
    cfg["subsystems"][0]["config"] = [
        {"method": "bdev_malloc_create", "params": {"name": "LvBase", "num_blocks": 262144, "block_size": 512}},
        {"method": "bdev_lvol_create_lvstore", "params": {"bdev_name": "LvBase", "lvs_name": "lvs",
                                                           "cluster_sz": 1048576}},
        {"method": "bdev_lvol_create", "params": {"lvol_name": "vol", "size_in_mib": 64, "lvs_name": "lvs",
                                                  "thin_provision": True}},
        {"method": "bdev_malloc_create", "params": {"name": "Sig", "num_blocks": 2048, "block_size": 512}},
    ]
    nvmf = cfg["subsystems"][1]["config"]
    for e in nvmf:
        if e["method"] == "nvmf_subsystem_add_ns":
            e["params"]["namespace"]["bdev_name"] = "lvs/vol"
    nvmf.insert(3, {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NVMF_NQN,
                                                                  "namespace": {"bdev_name": "Sig"}}})
    tgt = spydk_target(cfg)
    errors: list[str] = []
    stop = threading.Event()

    def call(method: str, params: dict[str, Any]) -> Any:
        resp = tgt.rpc(method, params)
        if "result" not in resp:
            raise AssertionError(f"{method}: {resp}")
        return resp["result"]

    def host_side() -> None:
        # the guest writes one block to Sig once its file is synced: snapshot then
        try:
            while not stop.is_set():
                st = call("bdev_get_iostat", {"name": "Sig"})["bdevs"][0]
                if st["num_write_ops"] >= 1:
                    call("bdev_lvol_snapshot", {"lvol_name": "lvs/vol", "snapshot_name": "snap"})
                    call("bdev_lvol_clone", {"snapshot_name": "lvs/snap", "clone_name": "clone"})
                    call("nvmf_subsystem_add_ns", {"nqn": NVMF_NQN, "namespace": {"bdev_name": "lvs/clone"}})
                    return
                time.sleep(0.2)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))

    th = threading.Thread(target=host_side, daemon=True)
    th.start()
    try:
        res = run_guest("lvol-nvme.sh", {"NVME_NQN": NVMF_NQN, "NVME_PORT": str(port)}, timeout=900)
    finally:
        stop.set()
        th.join(10)
    assert not errors, errors
    guest_passed(res, "LVOL NVME PASSED")
    lvols = {x["name"]: x for x in call("bdev_lvol_get_lvols", {})}
    assert lvols["vol"]["is_clone"] and lvols["snap"]["is_snapshot"] and lvols["clone"]["is_clone"]
