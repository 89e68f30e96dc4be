"""`spydk tgt` in a subprocess: an lvstore on an aio bdev from the JSON config is found by
examine at start-up, and SIGTERM unloads it cleanly (the super block's clean flag is 1)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from spydk.testing import start_target

MIB = 1024 * 1024


def _clean_flag(img: Path) -> int:
    r = subprocess.run([sys.executable, "-m", "spydk.apps.main", "blobcli", str(img), "super"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["clean"])


def test_target_finds_lvstore_at_start_and_unloads_it_cleanly(tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"")
    os.truncate(img, 32 * MIB)
    config = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_aio_create", "params": {"name": "aio0", "filename": str(img), "block_size": 512}}]}]}
    t = start_target(tmp_path / "a", config)
    try:
        c = t.client
        c.call("bdev_lvol_create_lvstore", {"bdev_name": "aio0", "lvs_name": "lvs", "cluster_sz": MIB})
        name = c.call("bdev_lvol_create", {"lvol_name": "v", "size_in_mib": 4, "lvs_name": "lvs",
                                           "thin_provision": True})
        assert _clean_flag(img) == 0                        # in use
        cfg = c.call("framework_get_config", {"name": "bdev"})
        assert all(not e["method"].startswith("bdev_lvol") for e in cfg)
    finally:
        t.proc.send_signal(signal.SIGTERM)
        t.proc.wait(30)
    assert _clean_flag(img) == 1
    t = start_target(tmp_path / "b", config)
    try:
        t.client.call("bdev_wait_for_examine", {})
        [b] = t.client.call("bdev_get_bdevs", {"name": "lvs/v"})
        assert b["name"] == name and b["driver_specific"]["lvol"]["thin_provision"]
    finally:
        t.stop()
