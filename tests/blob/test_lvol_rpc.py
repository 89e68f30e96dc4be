"""The bdev_lvol_* RPCs on a running app (in process), and the lvstore found again by
examine when its base bdev reappears."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spydk.bdev import BdevError
from spydk.rpc.errors import RpcError as RpcClientError
from spydk.testing import AppHarness

from .helpers import read_bdev as _read
from .helpers import write_bdev as _write

MIB = 1024 * 1024
SPDK_RPC = os.path.join(os.path.dirname(sys.executable), "spdk-rpc")


def test_lvol_rpcs_end_to_end(tmp_path: Path) -> None:
    img = tmp_path / "base.img"
    img.write_bytes(b"")
    os.truncate(img, 64 * MIB)
    with AppHarness() as h:
        c = h.client
        c.call("bdev_aio_create", {"filename": str(img), "name": "aio0", "block_size": 512})
        lvs_uuid = c.call("bdev_lvol_create_lvstore", {"bdev_name": "aio0", "lvs_name": "lvs0",
                                                       "cluster_sz": 1 * MIB})
        [st] = c.call("bdev_lvol_get_lvstores", {})
        assert st["uuid"] == lvs_uuid and st["name"] == "lvs0" and st["base_bdev"] == "aio0"
        assert st["cluster_size"] == MIB and st["block_size"] == 512
        total = st["total_data_clusters"]
        thick = c.call("bdev_lvol_create", {"lvol_name": "thick", "size_in_mib": 4, "lvs_name": "lvs0"})
        thin = c.call("bdev_lvol_create", {"lvol_name": "thin", "size_in_mib": 8, "lvs_name": "lvs0",
                                           "thin_provision": True})
        assert c.call("bdev_lvol_get_lvstores", {"lvs_name": "lvs0"})[0]["free_clusters"] == total - 4
        with pytest.raises(RpcClientError) as ei:
            c.call("bdev_lvol_create", {"lvol_name": "thin", "size_in_mib": 1, "lvs_name": "lvs0"})
        assert "already exists" in str(ei.value)
        with pytest.raises(RpcClientError) as ei:
            c.call("bdev_lvol_create", {"lvol_name": "huge", "size_in_mib": 1000, "lvs_name": "lvs0"})
        assert "thin" in str(ei.value)
        _write(h, "lvs0/thick", 0, b"T" * 4096)
        _write(h, "lvs0/thin", 3 * MIB, b"A" * 8192)
        snap = c.call("bdev_lvol_snapshot", {"lvol_name": "lvs0/thin", "snapshot_name": "snap"})
        clone = c.call("bdev_lvol_clone", {"snapshot_name": "lvs0/snap", "clone_name": "clone"})
        _write(h, "lvs0/thin", 3 * MIB, b"B" * 512)
        assert _read(h, "lvs0/thin", 3 * MIB, 1024) == b"B" * 512 + b"A" * 512
        assert _read(h, "lvs0/clone", 3 * MIB, 1024) == b"A" * 1024
        [b] = c.call("bdev_get_bdevs", {"name": snap})
        lv = b["driver_specific"]["lvol"]
        assert lv["snapshot"] and not lv["clone"] and sorted(lv["clones"]) == ["clone", "thin"]
        assert lv["base_bdev"] == "aio0" and lv["lvol_store_uuid"] == lvs_uuid
        assert b["aliases"] == ["lvs0/snap"] and b["product_name"] == "Logical Volume"
        [b] = c.call("bdev_get_bdevs", {"name": clone})
        assert b["driver_specific"]["lvol"]["base_snapshot"] == "snap"
        with pytest.raises(RpcClientError) as ei:
            c.call("bdev_lvol_delete", {"name": "lvs0/snap"})
        assert "2 clones" in str(ei.value)
        c.call("bdev_lvol_rename", {"old_name": "lvs0/clone", "new_name": "clone2"})
        c.call("bdev_lvol_resize", {"name": "lvs0/thick", "size_in_mib": 6})
        c.call("bdev_lvol_inflate", {"name": "lvs0/clone2"})
        c.call("bdev_lvol_delete", {"name": "lvs0/thin"})     # snapshot now has one clone...
        c.call("bdev_lvol_delete", {"name": "lvs0/snap"})     # ...and is merged into it
        lvols = {x["name"]: x for x in c.call("bdev_lvol_get_lvols", {})}
        assert set(lvols) == {"thick", "clone2"}
        assert not lvols["clone2"]["is_clone"] and not lvols["clone2"]["is_thin_provisioned"]
        assert lvols["thick"]["alias"] == "lvs0/thick" and lvols["thick"]["lvs"]["uuid"] == lvs_uuid
        c.call("bdev_lvol_rename_lvstore", {"old_name": "lvs0", "new_name": "lvsX"})
        assert _read(h, "lvsX/clone2", 3 * MIB, 1024) == b"A" * 1024
        # the base goes away (clean unload) and comes back: examine finds the store
        c.call("bdev_aio_delete", {"name": "aio0"})
        assert c.call("bdev_lvol_get_lvstores", {}) == []
        c.call("bdev_aio_create", {"filename": str(img), "name": "aio0", "block_size": 512})
        c.call("bdev_wait_for_examine", {})
        [st] = c.call("bdev_lvol_get_lvstores", {})
        assert st["name"] == "lvsX" and st["uuid"] == lvs_uuid
        assert _read(h, "lvsX/thick", 0, 4096) == b"T" * 4096
        assert _read(h, "lvsX/clone2", 3 * MIB, 1024) == b"A" * 1024
        [b] = c.call("bdev_get_bdevs", {"name": "lvsX/thick"})
        assert b["num_blocks"] == 6 * MIB // 512 and b["name"] == thick
        config = c.call("framework_get_config", {"name": "bdev"})
        text = str(config)
        assert "bdev_lvol" not in text    # found by examine, never replayed
        c.call("bdev_lvol_delete_lvstore", {"lvs_name": "lvsX"})
        assert c.call("bdev_lvol_get_lvstores", {}) == []
        del thin


def test_spdk_rpc_client_drives_lvols(tmp_path: Path) -> None:
    """SPDK's own rpc.py (spdk-rpc from PyPI) with rpc.py's flags."""
    def run(sock: str, *args: str) -> str:
        r = subprocess.run([SPDK_RPC, "-s", sock, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout.strip()
    with AppHarness() as h:
        s = h.sock
        run(s, "bdev_malloc_create", "-b", "M0", "32", "512")
        u = run(s, "bdev_lvol_create_lvstore", "M0", "lvs", "-c", str(MIB))
        run(s, "bdev_lvol_create", "-l", "lvs", "-t", "v1", "4")
        run(s, "bdev_lvol_snapshot", "lvs/v1", "s1")
        run(s, "bdev_lvol_clone", "lvs/s1", "c1")
        run(s, "bdev_lvol_resize", "lvs/c1", "8")
        run(s, "bdev_lvol_set_read_only", "lvs/c1")
        out = run(s, "bdev_lvol_get_lvols", "-l", "lvs")
        import json
        names = sorted(x["name"] for x in json.loads(out))
        assert names == ["c1", "s1", "v1"]
        assert json.loads(run(s, "bdev_lvol_get_lvstores", "-u", u.strip('"')))[0]["name"] == "lvs"
        run(s, "bdev_lvol_delete", "lvs/c1")
        run(s, "bdev_lvol_delete_lvstore", "-l", "lvs")


def test_esnap_clones(tmp_path: Path) -> None:
    """bdev_lvol_clone_bdev / set_parent_bdev: volumes over an external snapshot, which
    survive a reload, go degraded while it is missing and recover when it returns."""
    img = tmp_path / "base.img"
    img.write_bytes(b"")
    os.truncate(img, 64 * MIB)
    ext_uuid = "11111111-2222-3333-4444-555555555555"
    pat = bytes(range(256)) * (8 * MIB // 256)
    with AppHarness() as h:
        c = h.client
        c.call("bdev_aio_create", {"filename": str(img), "name": "aio0", "block_size": 512})
        c.call("bdev_lvol_create_lvstore", {"bdev_name": "aio0", "lvs_name": "lvs", "cluster_sz": MIB})
        c.call("bdev_malloc_create", {"name": "Ext", "num_blocks": 8 * MIB // 512, "block_size": 512,
                                      "uuid": ext_uuid})
        _write(h, "Ext", 0, pat)
        ec = c.call("bdev_lvol_clone_bdev", {"bdev": "Ext", "lvs_name": "lvs", "clone_name": "ec"})
        [b] = c.call("bdev_get_bdevs", {"name": ec})
        lv = b["driver_specific"]["lvol"]
        assert lv["esnap_clone"] and lv["external_snapshot_name"] == ext_uuid and not lv["clone"]
        assert _read(h, "lvs/ec", 0, 8 * MIB) == pat
        _write(h, "lvs/ec", 3 * MIB + 512, b"W" * 1024)
        want = bytearray(pat)
        want[3 * MIB + 512:3 * MIB + 1536] = b"W" * 1024
        assert _read(h, "lvs/ec", 0, 8 * MIB) == want
        # a snapshot takes the external snapshot with it; the volume becomes its clone
        c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/ec", "snapshot_name": "es"})
        lvols = {x["name"]: x for x in c.call("bdev_lvol_get_lvols", {})}
        assert lvols["es"]["is_esnap_clone"] and lvols["ec"]["is_clone"] and not lvols["ec"]["is_esnap_clone"]
        assert _read(h, "lvs/ec", 0, 8 * MIB) == want
        # set_parent_bdev on a fresh thin volume
        c.call("bdev_lvol_create", {"lvol_name": "t", "size_in_mib": 8, "lvs_name": "lvs", "thin_provision": True})
        c.call("bdev_lvol_set_parent_bdev", {"lvol_name": "lvs/t", "parent_name": "Ext"})
        assert _read(h, "lvs/t", MIB, MIB) == pat[MIB:2 * MIB]
        # reload: the external snapshot is found again by UUID
        c.call("bdev_aio_delete", {"name": "aio0"})
        c.call("bdev_aio_create", {"filename": str(img), "name": "aio0", "block_size": 512})
        c.call("bdev_wait_for_examine", {})
        assert _read(h, "lvs/ec", 0, 8 * MIB) == want
        # the external snapshot goes: degraded, reads of what is not written fail
        c.call("bdev_malloc_delete", {"name": "Ext"})
        lvols = {x["name"]: x for x in c.call("bdev_lvol_get_lvols", {})}
        assert lvols["t"]["is_degraded"] and lvols["es"]["is_degraded"]
        with pytest.raises(BdevError, match="I/O failed"):
            _read(h, "lvs/t", 0, 4096)
        # and comes back
        c.call("bdev_malloc_create", {"name": "Ext", "num_blocks": 8 * MIB // 512, "block_size": 512,
                                      "uuid": ext_uuid})
        _write(h, "Ext", 0, pat)
        c.call("bdev_wait_for_examine", {})
        assert not {x["name"]: x for x in c.call("bdev_lvol_get_lvols", {})}["t"]["is_degraded"]
        assert _read(h, "lvs/t", 0, 8 * MIB) == pat
        c.call("bdev_lvol_decouple_parent", {"name": "lvs/t"})
        c.call("bdev_malloc_delete", {"name": "Ext"})
        assert _read(h, "lvs/t", 0, 8 * MIB) == pat       # decoupled: its own copy


def test_shallow_copy_copies_only_the_volumes_own_clusters() -> None:
    import time
    with AppHarness() as h:
        c = h.client
        c.call("bdev_malloc_create", {"name": "M0", "num_blocks": 32 * MIB // 512, "block_size": 512})
        c.call("bdev_lvol_create_lvstore", {"bdev_name": "M0", "lvs_name": "lvs", "cluster_sz": MIB})
        c.call("bdev_lvol_create", {"lvol_name": "v", "size_in_mib": 4, "lvs_name": "lvs", "thin_provision": True})
        _write(h, "lvs/v", MIB, b"a" * 4096)
        c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/v", "snapshot_name": "s1"})
        _write(h, "lvs/v", 3 * MIB, b"b" * 4096)
        c.call("bdev_lvol_snapshot", {"lvol_name": "lvs/v", "snapshot_name": "s2"})
        c.call("bdev_malloc_create", {"name": "Dst", "num_blocks": 4 * MIB // 512, "block_size": 512})
        with pytest.raises(RpcClientError, match="not read-only"):
            c.call("bdev_lvol_start_shallow_copy", {"src_lvol_name": "lvs/v", "dst_bdev_name": "Dst"})
        op = c.call("bdev_lvol_start_shallow_copy", {"src_lvol_name": "lvs/s2", "dst_bdev_name": "Dst"})
        for _ in range(600):
            st = c.call("bdev_lvol_check_shallow_copy", op)
            if st["state"] != "in progress":
                break
            time.sleep(0.05)
        assert st == {"copied_clusters": 1, "total_clusters": 1, "state": "complete"}
        data = _read(h, "Dst", 0, 4 * MIB)
        assert data[3 * MIB:3 * MIB + 4096] == b"b" * 4096
        assert data[MIB:MIB + 4096] == bytes(4096)        # s1's cluster: not s2's own
        with pytest.raises(RpcClientError, match="does not exist"):
            c.call("bdev_lvol_check_shallow_copy", {"operation_id": 999})
