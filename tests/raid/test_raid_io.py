"""raid0 / concat / raid1 over malloc bdevs: placement of the data on the bases, RPCs,
degraded raid1 after a failure injected with the error bdev, rebuild under bdevperf verify."""
from __future__ import annotations

import os
from typing import Any

import pytest

from spydk.bdev import get_bdev
from spydk.modules.bdev.raid import bdev_raid
from spydk.rpc.errors import RpcError
from tests.bdev.conftest import Env

from .conftest import rpc
from .helpers import job, read, stop_job, write


def mallocs(env: Env, n: int, blocks: int = 4096, bs: int = 512, prefix: str = "M") -> list[str]:
    names = [f"{prefix}{i}" for i in range(n)]
    for nm in names:
        rpc(env, "bdev_malloc_create", {"name": nm, "num_blocks": blocks, "block_size": bs})
    return names


def raid_info(env: Env, name: str) -> dict[str, Any]:
    out = [r for r in rpc(env, "bdev_raid_get_bdevs", {"category": "all"}) if r["name"] == name]
    assert out, name
    return out[0]  # type: ignore[no-any-return]


def test_raid0_stripes_round_robin(env: Env) -> None:
    bases = mallocs(env, 3)
    assert rpc(env, "bdev_raid_create", {"name": "R0", "raid_level": "raid0", "strip_size_kb": 4,
                                         "base_bdevs": bases}) is True
    r = get_bdev("R0")
    assert r is not None and r.num_blocks == 3 * 4096 and r.block_size == 512
    data = os.urandom(512 * 8 * 7)            # 7 strips of 8 blocks, written in one I/O
    write(env, "R0", 4, data)                 # starts mid-strip: the layer splits it
    assert read(env, "R0", 4, 56) == data
    # strip k of the array is strip k // 3 of base k % 3
    for k in range(8):
        lo, hi = max(k * 8, 4), min(k * 8 + 8, 60)
        if lo >= hi:
            continue
        base = bases[k % 3]
        within = lo - k * 8
        got = read(env, base, (k // 3) * 8 + within, hi - lo)
        assert got == data[(lo - 4) * 512:(hi - 4) * 512], k
    info = raid_info(env, "R0")
    assert info["state"] == "online" and info["strip_size_kb"] == 4 and info["num_base_bdevs_discovered"] == 3
    # unmap and write_zeroes are cut per base
    rpc(env, "bdev_raid_delete", {"name": "R0"})
    assert get_bdev("R0") is None and rpc(env, "bdev_raid_get_bdevs", {"category": "all"}) == []


def test_raid0_unmap_ranges_cover_exactly() -> None:
    from spydk.modules.bdev.raid.levels import Raid0

    class R:
        strip_size = 4
        num_base_bdevs = 3
    ops = Raid0()
    for off in range(0, 40):
        for n in range(1, 40):
            got = {}
            for slot, boff, cnt in ops.ranges(R(), off, n):  # type: ignore[arg-type]
                got[slot] = set(range(boff, boff + cnt))
            want: dict[int, set[int]] = {}
            for blk in range(off, off + n):
                strip, within = divmod(blk, 4)
                want.setdefault(strip % 3, set()).add((strip // 3) * 4 + within)
            assert got == want, (off, n)


def test_concat_places_bases_one_after_another(env: Env) -> None:
    rpc(env, "bdev_malloc_create", {"name": "C0", "num_blocks": 100, "block_size": 512})   # 96 usable (strips of 8)
    rpc(env, "bdev_malloc_create", {"name": "C1", "num_blocks": 64, "block_size": 512})
    rpc(env, "bdev_raid_create", {"name": "Cat", "raid_level": "concat", "strip_size_kb": 4,
                                  "base_bdevs": ["C0", "C1"]})
    r = get_bdev("Cat")
    assert r is not None and r.num_blocks == 96 + 64
    data = os.urandom(512 * 16)
    write(env, "Cat", 88, data)                # crosses from C0 into C1
    assert read(env, "C0", 88, 8) == data[:4096]
    assert read(env, "C1", 0, 8) == data[4096:]
    assert read(env, "Cat", 88, 16) == data


def test_raid1_mirror_degraded_and_rebuild_under_verify(env: Env) -> None:
    bases = mallocs(env, 2, blocks=8192)
    rpc(env, "bdev_malloc_create", {"name": "Spare", "num_blocks": 8192, "block_size": 512})
    rpc(env, "bdev_error_create", {"base_name": bases[1]})
    rpc(env, "bdev_raid_create", {"name": "Mirror", "raid_level": "raid1", "superblock": True,
                                  "base_bdevs": [bases[0], "EE_" + bases[1]]})
    r = get_bdev("Mirror")
    assert r is not None and r.num_blocks == 8192 - 2048     # 1 MiB for the superblock area
    data = os.urandom(512 * 32)
    write(env, "Mirror", 100, data)
    assert read(env, bases[0], 2048 + 100, 32) == data
    assert read(env, bases[1], 2048 + 100, 32) == data
    # fail the second base: writes go on, the raid stays online, degraded
    rpc(env, "bdev_error_inject_error", {"name": "EE_" + bases[1], "io_type": "all",
                                         "error_type": "failure", "num": 1000})
    j = job(env, "Mirror", "verify", qd=8)
    env.until(lambda: j.done > 300)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    info = raid_info(env, "Mirror")
    assert info["state"] == "online" and info["num_base_bdevs_operational"] == 1
    assert [b["is_configured"] for b in info["base_bdevs_list"]] == [True, False]
    write(env, "Mirror", 100, data)          # degraded writes land on the survivor
    assert read(env, "Mirror", 100, 32) == data == read(env, bases[0], 2048 + 100, 32)
    # rebuild onto the spare while bdevperf verify runs
    rpc(env, "bdev_raid_set_options", {"process_window_size_kb": 64})
    j = job(env, "Mirror", "verify", qd=8, seed=2)
    env.until(lambda: j.done > 50)
    rpc(env, "bdev_raid_add_base_bdev", {"raid_bdev": "Mirror", "base_bdev": "Spare"})
    assert raid_info(env, "Mirror")["process"]["target"] == "Spare"
    env.until(lambda: bdev_raid.module.raids["Mirror"].process is None)
    n_after = j.done
    env.until(lambda: j.done > n_after + 100)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0 and res["iops"] > 0
    info = raid_info(env, "Mirror")
    assert [b["name"] for b in info["base_bdevs_list"]] == [bases[0], "Spare"]
    assert all(b["is_configured"] for b in info["base_bdevs_list"])
    # both members hold the same data area
    size = r.num_blocks
    assert read(env, bases[0], 2048, size) == read(env, "Spare", 2048, size)
    # and the superblocks agree on the new member
    from spydk.modules.bdev.raid import sb as sbm
    sb0 = sbm.decode(read(env, bases[0], 0, 1))
    sb1 = sbm.decode(read(env, "Spare", 0, 1))
    assert sb0 == sb1 and sb0.base_bdevs[1].uuid == get_bdev("Spare").uuid  # type: ignore[union-attr]
    assert sb0.base_bdevs[1].state == sbm.SlotState.CONFIGURED


def test_raid1_reads_are_balanced(env: Env) -> None:
    bases = mallocs(env, 2)
    rpc(env, "bdev_raid_create", {"name": "Bal", "raid_level": "raid1", "base_bdevs": bases})
    j = job(env, "Bal", "randread", qd=16)
    env.until(lambda: j.done > 2000)
    stop_job(env, j)
    reads = [get_bdev(b).iostat().ops[1] for b in bases]  # type: ignore[union-attr]
    assert min(reads) > sum(reads) / 4, reads


@pytest.mark.parametrize("params,words", [
    ({"name": "X", "raid_level": "raid7", "base_bdevs": ["M0"]}, ["raid_level"]),
    ({"name": "X", "raid_level": "raid5f", "strip_size_kb": 64, "base_bdevs": ["M0", "M1"]}, ["raid5f", "at least 3"]),
    ({"name": "X", "raid_level": "raid5f", "base_bdevs": ["M0", "M1", "M2"]}, ["strip_size_kb", "required"]),
    ({"name": "X", "raid_level": "raid0", "base_bdevs": ["M0", "M1"]}, ["strip_size_kb", "required"]),
    ({"name": "X", "raid_level": "raid0", "strip_size_kb": 3, "base_bdevs": ["M0"]}, ["strip_size_kb", "power of two"]),
    ({"name": "X", "raid_level": "raid1", "strip_size_kb": 64, "base_bdevs": ["M0", "M1"]}, ["strip_size_kb", "raid1"]),
    ({"name": "X", "raid_level": "raid1", "base_bdevs": ["M0"]}, ["at least 2"]),
    ({"name": "X", "raid_level": "raid1", "base_bdevs": ["M0", "M0"]}, ["twice"]),
    ({"name": "X", "raid_level": "raid1", "base_bdevs": []}, ["base_bdevs"]),
    ({"name": "M0", "raid_level": "raid1", "base_bdevs": ["M1", "M2"]}, ["M0", "exists"]),
    ({"name": "X" * 70, "raid_level": "raid1", "superblock": True, "base_bdevs": ["M1", "M2"]}, ["name", "superblock"]),
    ({"name": "X", "raid_level": "raid0", "strip_size_kb": 4, "base_bdevs": ["M0", "B4k"]}, ["block sizes"]),
])
def test_bad_params_are_named(env: Env, params: dict[str, Any], words: list[str]) -> None:
    mallocs(env, 3)
    rpc(env, "bdev_malloc_create", {"name": "B4k", "num_blocks": 512, "block_size": 4096})
    with pytest.raises(RpcError) as ei:
        rpc(env, "bdev_raid_create", params)
    for w in words:
        assert w in ei.value.message, (w, ei.value.message)
    # nothing stays claimed after a refused create
    assert all(not get_bdev(n).claimed for n in ("M0", "M1", "M2", "B4k"))  # type: ignore[union-attr]


def test_other_rpc_errors(env: Env) -> None:
    mallocs(env, 3)
    rpc(env, "bdev_raid_create", {"name": "R", "raid_level": "raid0", "strip_size_kb": 4, "base_bdevs": ["M0", "M1"]})
    for method, params, word in [
        ("bdev_raid_delete", {"name": "nosuch"}, "nosuch"),
        ("bdev_raid_remove_base_bdev", {"name": "M2"}, "M2"),
        ("bdev_raid_add_base_bdev", {"raid_bdev": "R", "base_bdev": "M2"}, "no free slot"),
        ("bdev_raid_add_base_bdev", {"raid_bdev": "nosuch", "base_bdev": "M2"}, "nosuch"),
        ("bdev_raid_get_bdevs", {"category": "weird"}, "category"),
        ("bdev_raid_create", {"name": "R2", "raid_level": "raid1", "base_bdevs": ["M0", "M2"]}, "already in raid R"),
    ]:
        with pytest.raises(RpcError) as ei:
            rpc(env, method, params)
        assert word in ei.value.message, (method, ei.value.message)


def test_configuring_until_bases_appear_and_raid0_goes_offline(env: Env) -> None:
    rpc(env, "bdev_raid_create", {"name": "Late", "raid_level": "raid0", "strip_size_kb": 4,
                                  "base_bdevs": ["L0", "L1"]})
    assert raid_info(env, "Late")["state"] == "configuring"
    mallocs(env, 1, prefix="L")
    env.drain()
    assert raid_info(env, "Late")["num_base_bdevs_discovered"] == 1
    rpc(env, "bdev_malloc_create", {"name": "L1", "num_blocks": 4096, "block_size": 512})
    env.drain()
    assert raid_info(env, "Late")["state"] == "online" and get_bdev("Late") is not None
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "L1"})
    env.drain()
    assert raid_info(env, "Late")["state"] == "offline" and get_bdev("Late") is None
    rpc(env, "bdev_raid_delete", {"name": "Late"})
    assert not get_bdev("L0").claimed  # type: ignore[union-attr]
