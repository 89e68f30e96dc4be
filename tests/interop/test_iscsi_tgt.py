"""The iSCSI guest script against Debian's tgt (a C target we did not write): proves the
harness and the script before they judge spydk's iSCSI target."""
from __future__ import annotations

import pytest

from .expect import guest_passed

pytestmark = pytest.mark.interop


def test_iscsi_guest_against_tgt(run_guest, tgt_target) -> None:
    tgt = tgt_target(lun_mb=64)
    res = run_guest("iscsi.sh", {"ISCSI_IQN": tgt.iqn, "ISCSI_PORT": str(tgt.port),
                                 "ISCSI_VENDOR": "IET", "ISCSI_PRODUCT": "VIRTUAL-DISK",
                                 "ISCSI_LUN_MB": "64", "FIO_SECONDS": "3"})
    guest_passed(res, "ISCSI CHECK PASSED")
    # the data went through tgtd into its backing file (fs_check left an ext4 there)
    with open(tgt.backing, "rb") as f:
        f.seek(1024 + 0x38)
        assert f.read(2) == b"\x53\xef", "no ext4 superblock in tgtd's backing file"


def test_iscsi_guest_chap_against_tgt(run_guest, tgt_target) -> None:
    tgt = tgt_target(chap=("spydkuser", "spydk-secret-12"))
    res = run_guest("iscsi.sh", {"ISCSI_IQN": tgt.iqn, "ISCSI_PORT": str(tgt.port),
                                 "ISCSI_CHAP_USER": "spydkuser",
                                 "ISCSI_CHAP_SECRET": "spydk-secret-12",
                                 "ISCSI_CHAP_BAD_SECRET": "wrong-secret-99"})
    guest_passed(res, "ISCSI CHECK PASSED")
    assert "must be refused" in res.console
