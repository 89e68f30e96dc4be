"""Linux open-iscsi in the QEMU guest against spydk's iSCSI target: discovery, login
without and with CHAP (a wrong secret refused), the disk, a file system, fio verify,
logout. The same guest script passes against Debian's tgt (test_iscsi_tgt.py)."""
from __future__ import annotations

import time

import pytest

from .expect import guest_passed
from .targets import iscsi_config

pytestmark = pytest.mark.interop

IQN = "iqn.2016-06.io.spdk:disk1"


def _ready(target, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    # RPCs answer before the config's runtime part (portals, nodes) is applied.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.rpc("iscsi_get_target_nodes").get("result"):
            return
        time.sleep(0.1)
    raise AssertionError("the iSCSI target node did not appear")


def test_iscsi_guest_against_spydk(run_guest, spydk_target, free_port) -> None:
    port = free_port()
    t = spydk_target(iscsi_config(port, num_blocks=131072))
    _ready(t)
    res = run_guest("iscsi.sh", {"ISCSI_IQN": IQN, "ISCSI_PORT": str(port), "ISCSI_LUN_MB": "64",
                                 "FIO_SECONDS": "3"})
    guest_passed(res, "ISCSI CHECK PASSED")
    # the guest's session went through the target and is gone after logout
    assert t.rpc("iscsi_get_connections")["result"] == []


def test_iscsi_guest_chap_against_spydk(run_guest, spydk_target, free_port) -> None:
    port = free_port()
    t = spydk_target(iscsi_config(port, chap=("spydkuser", "spydk-secret-12")))
    _ready(t)
    res = run_guest("iscsi.sh", {"ISCSI_IQN": IQN, "ISCSI_PORT": str(port),
                                 "ISCSI_CHAP_USER": "spydkuser",
                                 "ISCSI_CHAP_SECRET": "spydk-secret-12",
                                 "ISCSI_CHAP_BAD_SECRET": "wrong-secret-99"})
    guest_passed(res, "ISCSI CHECK PASSED")
    assert "must be refused" in res.console
