"""spydk's vhost-user-blk target against QEMU's vhost-user-blk-pci and the guest's
virtio-blk driver."""
from __future__ import annotations

import time

import pytest

from .expect import guest_passed
from .targets import vhost_blk_config

pytestmark = [
    pytest.mark.interop,
    pytest.mark.xfail(strict=False, reason="waits for a vhost-user-blk target (no issue yet)"),
]


def test_vhost_user_blk_virtio(run_guest, spydk_target) -> None:
    tgt = spydk_target(vhost_blk_config("vhost.0"))
    sock = tgt.workdir / "vhost.0"   # as in SPDK: the socket goes in the working directory
    deadline = time.monotonic() + 10
    while not sock.is_socket():
        assert time.monotonic() < deadline, f"no vhost-user socket at {sock}"
        time.sleep(0.1)
    res = run_guest("vhost-user-blk.sh", {"VHOST_MB": "64"}, vhost_user_blk=[sock])
    guest_passed(res, "VHOST-USER-BLK CHECK PASSED")
