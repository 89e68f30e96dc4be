"""Raids with a superblock are found again by examine: in-process (bases deleted and made
again, in the other order) with the data checked, and across a real target restart."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from spydk.bdev import get_bdev
from spydk.modules.bdev.raid import bdev_raid
from spydk.modules.bdev.raid import sb as sbm
from spydk.testing import start_target
from tests.bdev.conftest import Env

from .conftest import rpc
from .helpers import read, write


def _files(tmp_path: Path, n: int, size: int = 8 << 20) -> list[str]:
    out = []
    for i in range(n):
        p = tmp_path / f"base{i}.img"
        with open(p, "wb") as f:
            f.truncate(size)
        out.append(str(p))
    return out


def test_examine_reassembles_raid1_and_raid0_with_their_data(env: Env, tmp_path: Path) -> None:
    files = _files(tmp_path, 4)
    uuids = [str(uuid.uuid4()) for _ in files]
    for i, (f, u) in enumerate(zip(files, uuids, strict=True)):
        rpc(env, "bdev_aio_create", {"filename": f, "name": f"A{i}", "uuid": u, "block_size": 512})
    rpc(env, "bdev_raid_create", {"name": "M", "raid_level": "raid1", "superblock": True, "base_bdevs": ["A0", "A1"]})
    rpc(env, "bdev_raid_create", {"name": "S", "raid_level": "raid0", "strip_size_kb": 64, "superblock": True,
                                  "base_bdevs": ["A2", "A3"]})
    env.until(lambda: get_bdev("M") is not None and get_bdev("S") is not None)
    m_uuid, s_uuid = get_bdev("M").uuid, get_bdev("S").uuid  # type: ignore[union-attr]
    dm, ds = os.urandom(64 * 1024), os.urandom(256 * 1024)
    write(env, "M", 10, dm)
    write(env, "S", 100, ds)
    # the superblock written by spydk is SPDK's: check it straight from the file
    with open(files[0], "rb") as f:
        sb = sbm.decode(f.read(4096))
    assert (sb.name, sb.level, sb.uuid, sb.num_base_bdevs) == ("M", sbm.Level.RAID1, m_uuid, 2)
    assert [b.uuid for b in sb.base_bdevs] == [uuid.UUID(uuids[0]), uuid.UUID(uuids[1])]
    assert sb.base_bdevs[0].data_offset == 2048 and sb.raid_size == 16384 - 2048
    # "restart": everything goes away, the bases come back in another order
    rpc(env, "bdev_raid_delete", {"name": "M"})
    rpc(env, "bdev_raid_delete", {"name": "S"})
    for i in range(4):
        rpc(env, "bdev_aio_delete", {"name": f"A{i}"})
    assert bdev_raid.module.raids == {}
    for i in (3, 1, 0, 2):
        rpc(env, "bdev_aio_create", {"filename": files[i], "name": f"B{i}", "uuid": uuids[i], "block_size": 512})
    env.until(lambda: get_bdev("M") is not None and get_bdev("S") is not None)
    assert get_bdev("M").uuid == m_uuid and get_bdev("S").uuid == s_uuid  # type: ignore[union-attr]
    assert read(env, "M", 10, len(dm) // 512) == dm
    assert read(env, "S", 100, len(ds) // 512) == ds
    info = {r["name"]: r for r in rpc(env, "bdev_raid_get_bdevs", {"category": "online"})}
    assert [b["name"] for b in info["S"]["base_bdevs_list"]] == ["B2", "B3"]
    assert info["M"]["superblock"] is True
    # delete with clear_sb wipes them: nothing comes back
    rpc(env, "bdev_raid_delete", {"name": "M", "clear_sb": True})
    with open(files[0], "rb") as f:
        assert f.read(512) == bytes(512)


def test_degraded_raid1_comes_back_without_the_failed_member(env: Env, tmp_path: Path) -> None:
    files = _files(tmp_path, 2)
    uuids = [str(uuid.uuid4()) for _ in files]
    for i, (f, u) in enumerate(zip(files, uuids, strict=True)):
        rpc(env, "bdev_aio_create", {"filename": f, "name": f"A{i}", "uuid": u, "block_size": 512})
    rpc(env, "bdev_raid_create", {"name": "M", "raid_level": "raid1", "superblock": True, "base_bdevs": ["A0", "A1"]})
    env.until(lambda: get_bdev("M") is not None)
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "A1"})
    data = os.urandom(8192)
    write(env, "M", 0, data)            # only A0 has this
    rpc(env, "bdev_raid_delete", {"name": "M"})
    rpc(env, "bdev_aio_delete", {"name": "A0"})
    rpc(env, "bdev_aio_delete", {"name": "A1"})
    # the stale member first: its superblock (older seq) still lists both, the newer one not
    rpc(env, "bdev_aio_create", {"filename": files[1], "name": "A1", "uuid": uuids[1], "block_size": 512})
    env.drain()
    rpc(env, "bdev_aio_create", {"filename": files[0], "name": "A0", "uuid": uuids[0], "block_size": 512})
    env.until(lambda: get_bdev("M") is not None)
    info = rpc(env, "bdev_raid_get_bdevs", {"category": "online"})[0]
    assert info["num_base_bdevs_operational"] == 1
    assert [b["name"] for b in info["base_bdevs_list"]] == ["A0", None]
    assert not get_bdev("A1").claimed  # type: ignore[union-attr]
    assert read(env, "M", 0, 16) == data


def test_target_restart_finds_the_raid(tmp_path: Path) -> None:
    files = _files(tmp_path, 2)
    with start_target(tmp_path / "a", config={"subsystems": []}) as t:
        for i, f in enumerate(files):
            t.client.call("bdev_aio_create", {"filename": f, "name": f"Aio{i}", "block_size": 512})
        t.rpc("bdev_raid_create", "-n", "Raid1", "-r", "raid1", "-s", "-b", "Aio0 Aio1")
        before = t.client.call("bdev_raid_get_bdevs", {"category": "all"})
        cfg = json.loads(t.rpc("save_config").stdout)
    bdev_cfg = next(s for s in cfg["subsystems"] if s["subsystem"] == "bdev")["config"]
    assert not [c for c in bdev_cfg if c["method"] == "bdev_raid_create"]   # the superblocks say it
    with start_target(tmp_path / "b", config=cfg) as t2:
        t2.client.call("bdev_wait_for_examine")
        after = t2.client.call("bdev_raid_get_bdevs", {"category": "all"})
        b = t2.client.call("bdev_get_bdevs", {"name": "Raid1"})[0]
    assert before[0]["state"] == after[0]["state"] == "online"
    assert before[0]["uuid"] == after[0]["uuid"] == b["uuid"]
    assert b["num_blocks"] == 16384 - 2048 and b["driver_specific"]["raid"]["raid_level"] == "raid1"
    assert [x["name"] for x in after[0]["base_bdevs_list"]] == ["Aio0", "Aio1"]


def test_create_refuses_bases_holding_another_superblock(env: Env, tmp_path: Path) -> None:
    import pytest

    from spydk.rpc.errors import RpcError
    files = _files(tmp_path, 2)
    for i, f in enumerate(files):
        rpc(env, "bdev_aio_create", {"filename": f, "name": f"A{i}", "block_size": 512})
    rpc(env, "bdev_raid_create", {"name": "M", "raid_level": "raid1", "superblock": True, "base_bdevs": ["A0", "A1"]})
    env.until(lambda: get_bdev("M") is not None)
    rpc(env, "bdev_raid_delete", {"name": "M"})
    with pytest.raises(RpcError) as ei:
        rpc(env, "bdev_raid_create", {"name": "N", "raid_level": "raid1", "superblock": True, "base_bdevs": ["A0", "A1"]})
    assert "A0" in ei.value.message and "'M'" in ei.value.message and ei.value.code == -17
    assert not get_bdev("A0").claimed  # type: ignore[union-attr]
