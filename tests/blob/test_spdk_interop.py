"""Lvol stores made by SPDK v24.01 (C) load in spydk with every volume, flag and byte.

The images in tests/blob/data were made with SPDK's spdk_tgt, rpc.py and spdk_dd; the
commands are in tests/blob/data/README.md. spdk-v24.01-lvs.json holds what SPDK itself
reported for them (bdev_lvol_get_lvols, bdev_get_bdevs)."""
from __future__ import annotations

import json
import lzma
from pathlib import Path
from typing import Any

from spydk.testing import AppHarness

from .helpers import read_bdev as _read

DATA = Path(__file__).with_name("data")
MIB = 1024 * 1024
KEYS = ("alias", "uuid", "name", "is_thin_provisioned", "is_snapshot", "is_clone")


def pattern(k: int, n: int) -> bytes:
    """The README's mkpat.py: byte i = (i * 31 + k * 17 + i // 4096) & 0xff."""
    return bytes((i * 31 + k * 17 + i // 4096) & 0xFF for i in range(n))


def expected_clean() -> dict[str, bytes]:
    a, b, c, d = pattern(1, 4 * MIB), pattern(2, MIB), pattern(3, 65536), pattern(4, 65536)
    snap = bytearray(8 * MIB)
    snap[2 * MIB:3 * MIB] = b
    thin = bytearray(snap)
    thin[2 * MIB:2 * MIB + 65536] = c
    clone = bytearray(snap)
    clone[5 * MIB:5 * MIB + 65536] = d
    thick2 = bytearray(a)
    thick2[MIB:MIB + 65536] = c
    return {"lvs/tsnap": a, "lvs/thick2": bytes(thick2), "lvs/snap": bytes(snap), "lvs/thin": bytes(thin),
            "lvs/clone": bytes(clone), "lvs/ro": bytes(2 * MIB)}


def _attach(h: AppHarness, tmp: Path, name: str) -> None:
    img = tmp / name.removesuffix(".xz")
    img.write_bytes(lzma.decompress((DATA / name).read_bytes()))
    h.client.call("bdev_aio_create", {"filename": str(img), "name": "aio0", "block_size": 512})
    h.client.call("bdev_wait_for_examine", {})


def _lvols(h: AppHarness) -> list[dict[str, Any]]:
    got = h.client.call("bdev_lvol_get_lvols", {})
    return sorted(({k: x[k] for k in KEYS} for x in got), key=lambda x: x["name"])


def test_spdk_made_clean_lvstore_loads(tmp_path: Path) -> None:
    ref = json.loads((DATA / "spdk-v24.01-lvs.json").read_text())
    with AppHarness() as h:
        _attach(h, tmp_path, "spdk-v24.01-lvs-clean.img.xz")
        [st] = h.client.call("bdev_lvol_get_lvstores", {})
        assert st["name"] == "lvs" and st["cluster_size"] == MIB and st["block_size"] == 512
        assert _lvols(h) == ref["lvols"]
        for alias, want in ref["bdevs"].items():
            [b] = h.client.call("bdev_get_bdevs", {"name": alias})
            assert b["num_blocks"] == want["num_blocks"] and b["block_size"] == want["block_size"]
            got = b["driver_specific"]["lvol"]
            if "clones" in got:
                got["clones"] = sorted(got["clones"])
                want["lvol"]["clones"] = sorted(want["lvol"]["clones"])
            assert got == want["lvol"], alias
        for alias, data in expected_clean().items():
            assert _read(h, alias, 0, len(data)) == data, alias
        [ro] = h.client.call("bdev_get_bdevs", {"name": "lvs/ro"})
        assert not ro["supported_io_types"]["write"]


def test_spdk_made_dirty_lvstore_recovers(tmp_path: Path) -> None:
    """spdk_tgt killed with SIGKILL after creating, snapshotting and deleting volumes."""
    ref = json.loads((DATA / "spdk-v24.01-lvs.json").read_text())
    with AppHarness() as h:
        _attach(h, tmp_path, "spdk-v24.01-lvs-dirty.img.xz")
        assert _lvols(h) == ref["lvols_dirty"]
        exp = expected_clean()
        exp.pop("lvs/tsnap")                  # deleted: merged into thick2
        exp["lvs/csnap"] = exp["lvs/clone"]   # the snapshot of clone
        exp["lvs/late"] = bytes(3 * MIB)
        for alias, data in exp.items():
            assert _read(h, alias, 0, len(data)) == data, alias
