"""The vhost-user-blk guest script against qemu-storage-daemon (a target we did not
write): proves the harness and the script before they judge spydk's vhost target."""
from __future__ import annotations

import secrets

import pytest

from .expect import guest_passed

pytestmark = pytest.mark.interop


def test_vhost_user_blk_guest_against_qsd(run_guest, qsd_target) -> None:
    qsd = qsd_target(size_mb=64)
    marker = "spydk vhost marker " + secrets.token_hex(8)
    res = run_guest("vhost-user-blk.sh", {"VHOST_MB": "64", "VHOST_MARKER": marker},
                    vhost_user_blk=[qsd.socket_path])
    guest_passed(res, "VHOST-USER-BLK CHECK PASSED")
    # the guest's write reached the backing file through the export
    with open(qsd.backing, "rb") as f:
        f.seek(98304 * 512)
        assert f.read(512).startswith(marker.encode() + b"\n")
