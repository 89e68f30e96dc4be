"""raid5f: SPDK's layout (rotating parity, byte vectors), full-stripe writes only, degraded
reads rebuilt by XOR, rebuild onto a new base under bdevperf verify, and a property test
against a model of the array."""
from __future__ import annotations

import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spydk.bdev import get_bdev
from spydk.modules.bdev.raid import bdev_raid
from spydk.modules.bdev.raid.raid5f import data_slot, locate, parity_slot
from spydk.modules.bdev.raid.xor import xor_bytes, xor_into
from tests.bdev.conftest import Env

from .conftest import rpc
from .helpers import job, read, stop_job, write

BS = 512
STRIP = 8                      # blocks: strip_size_kb 4 over 512-byte blocks


def mallocs(env: Env, names: list[str], blocks: int = 1024) -> None:
    for nm in names:
        rpc(env, "bdev_malloc_create", {"name": nm, "num_blocks": blocks, "block_size": BS})


def make(env: Env, name: str, bases: list[str], **kw: Any) -> None:
    rpc(env, "bdev_raid_create", {"name": name, "raid_level": "raid5f", "strip_size_kb": STRIP * BS // 1024,
                                  "base_bdevs": bases, **kw})


def info(env: Env, name: str) -> dict[str, Any]:
    return next(r for r in rpc(env, "bdev_raid_get_bdevs", {"category": "all"}) if r["name"] == name)


def try_write(env: Env, name: str, off: int, data: bytes) -> bool:
    desc = env.open(name, write=True)
    ch = env.call(desc.get_io_channel)
    ok, _st, _d, rc = env.io(desc.write_blocks, ch, data, off, len(data) // BS)
    env.call(lambda: (desc.put_io_channel(ch), desc.close()))
    return ok and rc == 0


# -- layout and XOR: byte vectors ----------------------------------------------------------------


def test_parity_rotates_from_the_last_base_down() -> None:
    # SPDK's raid5f: stripe s keeps its parity on base (n-1) - s % n
    assert [parity_slot(s, 3) for s in range(7)] == [2, 1, 0, 2, 1, 0, 2]
    assert [parity_slot(s, 4) for s in range(5)] == [3, 2, 1, 0, 3]
    # data strips fill the other bases in order
    assert [[data_slot(s, d, 4) for d in range(3)] for s in range(4)] == \
        [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]
    # block 21 of a 3-base array with strips of 8: stripe 1 (blocks 16..31), data strip 0,
    # on base 0 (parity of stripe 1 is on base 1) at 8 + 5
    assert locate(21, 8, 3) == (1, 0, 13)
    assert locate(24, 8, 3) == (1, 2, 8)        # data strip 1 skips the parity base
    assert locate(47, 8, 3) == (2, 2, 23)


def test_xor_vectors() -> None:
    assert xor_bytes([b"\x0f\xf0\x00\xff", b"\xff\x00\x00\x0f"]) == b"\xf0\xf0\x00\xf0"
    assert xor_bytes([b"\x01", b"\x02", b"\x04"]) == b"\x07"       # odd length: byte-wise
    a, b, c = os.urandom(4096), os.urandom(4096), os.urandom(4096)
    want = bytes(x ^ y ^ z for x, y, z in zip(a, b, c, strict=True))
    assert xor_bytes([a, b, c]) == want
    # the destination may be any of the sources
    for i in range(3):
        bufs = [bytearray(a), bytearray(b), bytearray(c)]
        xor_into(bufs[i], bufs)
        assert bytes(bufs[i]) == want, i
    with pytest.raises(ValueError, match="4096"):
        xor_into(bytearray(4096), [a, b[:512]])


# -- I/O over malloc bdevs ------------------------------------------------------------------------


def test_full_stripe_writes_land_as_spdk_lays_them_out(env: Env) -> None:
    bases = ["M0", "M1", "M2", "M3"]
    mallocs(env, bases, blocks=1000)          # 1000 // 8 = 125 whole strips per base
    make(env, "R5", bases)
    r = get_bdev("R5")
    assert r is not None
    stripe = STRIP * 3
    assert r.num_blocks == 125 * stripe
    assert (r.write_unit_size, r.split_on_write_unit, r.optimal_io_boundary) == (stripe, True, STRIP)
    assert not r.supports(3) and info(env, "R5")["raid_level"] == "raid5f"   # no UNMAP
    data = os.urandom(5 * stripe * BS)          # stripes 2..6 in one write: split into stripes
    write(env, "R5", 2 * stripe, data)
    for s in range(2, 7):
        sd = data[(s - 2) * stripe * BS:(s - 1) * stripe * BS]
        strips = [sd[d * STRIP * BS:(d + 1) * STRIP * BS] for d in range(3)]
        p = parity_slot(s, 4)
        assert read(env, bases[p], s * STRIP, STRIP) == xor_bytes(strips), s
        for d in range(3):
            assert read(env, bases[data_slot(s, d, 4)], s * STRIP, STRIP) == strips[d], (s, d)
    # reads of any range come back, across strips and stripes
    assert read(env, "R5", 2 * stripe + 3, 40) == data[3 * BS:43 * BS]
    assert read(env, "R5", 2 * stripe, 5 * stripe) == data


def test_partial_stripe_writes_are_refused_and_change_nothing(env: Env) -> None:
    bases = ["M0", "M1", "M2"]
    mallocs(env, bases)
    make(env, "R5", bases)
    stripe = STRIP * 2
    before = read(env, "R5", 0, 4 * stripe)
    assert not try_write(env, "R5", 0, b"a" * STRIP * BS)                  # one strip
    assert not try_write(env, "R5", STRIP, b"b" * stripe * BS)             # a stripe, misaligned
    assert not try_write(env, "R5", 0, b"c" * (stripe + 1) * BS)           # a stripe and a block
    assert read(env, "R5", 0, 4 * stripe) == before
    assert try_write(env, "R5", stripe, b"d" * 2 * stripe * BS)
    # write_zeroes is emulated with whole stripes, and refused when not whole
    desc = env.open("R5")
    ch = env.call(desc.get_io_channel)
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, stripe, 2 * stripe)
    assert ok and read(env, "R5", stripe, 2 * stripe) == bytes(2 * stripe * BS)
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 0, STRIP)
    assert not ok
    env.call(lambda: (desc.put_io_channel(ch), desc.close()))


def test_degraded_reads_rebuild_from_parity_then_offline(env: Env) -> None:
    bases = ["M0", "M1", "M2", "M3"]
    mallocs(env, bases)
    make(env, "R5", bases)
    r = get_bdev("R5")
    assert r is not None
    data = os.urandom(r.num_blocks * BS)
    write(env, "R5", 0, data)
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "M1"})
    env.drain()
    i = info(env, "R5")
    assert i["state"] == "online" and i["num_base_bdevs_operational"] == 3
    # every block, including those whose strip was on M1, read back; reads of odd sizes
    assert read(env, "R5", 0, r.num_blocks) == data
    for off, n in [(1, 3), (8, 8), (13, 11), (r.num_blocks - 5, 5)]:
        assert read(env, "R5", off, n) == data[off * BS:(off + n) * BS], (off, n)
    # degraded writes: parity kept, the missing strip comes back from it
    stripe = STRIP * 3
    new = os.urandom(4 * stripe * BS)
    write(env, "R5", stripe, new)
    assert read(env, "R5", stripe, 4 * stripe) == new
    # a second base lost: the array cannot serve its data any more
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "M2"})
    env.drain()
    assert info(env, "R5")["state"] == "offline" and get_bdev("R5") is None


def test_failed_base_is_failed_out_and_reads_go_on(env: Env) -> None:
    bases = ["M0", "M1", "M2"]
    mallocs(env, bases)
    rpc(env, "bdev_error_create", {"base_name": "M2"})
    make(env, "R5", ["M0", "M1", "EE_M2"])
    r = get_bdev("R5")
    assert r is not None
    data = os.urandom(r.num_blocks * BS)
    write(env, "R5", 0, data)
    rpc(env, "bdev_error_inject_error", {"name": "EE_M2", "io_type": "all", "error_type": "failure", "num": 100000})
    # the read of a strip on the failed base is rebuilt from the two others
    assert read(env, "R5", 0, r.num_blocks) == data
    env.drain()
    i = info(env, "R5")
    assert i["state"] == "online" and [b["is_configured"] for b in i["base_bdevs_list"]] == [True, True, False]
    new = os.urandom(STRIP * 2 * BS)
    write(env, "R5", 0, new)
    assert read(env, "R5", 0, STRIP * 2) == new


def test_rebuild_onto_a_new_base_under_bdevperf_verify(env: Env) -> None:
    bases = ["M0", "M1", "M2"]
    mallocs(env, [*bases, "Spare"], blocks=8192)
    make(env, "R5", bases, superblock=True)
    r = get_bdev("R5")
    assert r is not None
    stripe = STRIP * 2
    assert r.num_blocks == (8192 - 2048) // STRIP * stripe     # 1 MiB of superblock area
    data = os.urandom(r.num_blocks * BS)
    write(env, "R5", 0, data)
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "M1"})
    env.drain()
    rpc(env, "bdev_raid_set_options", {"process_window_size_kb": 16})
    j = job(env, "R5", "verify", qd=8, io_size=stripe * BS)
    env.until(lambda: j.done > 50)
    rpc(env, "bdev_raid_add_base_bdev", {"raid_bdev": "R5", "base_bdev": "Spare"})
    assert info(env, "R5")["process"]["target"] == "Spare"
    env.until(lambda: bdev_raid.module.raids["R5"].process is None)
    n_after = j.done
    env.until(lambda: j.done > n_after + 50)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    i = info(env, "R5")
    assert [b["name"] for b in i["base_bdevs_list"]] == ["M0", "Spare", "M2"]
    assert all(b["is_configured"] for b in i["base_bdevs_list"])
    # every stripe is consistent: the three strips XOR to zero
    area = [read(env, b, 2048, 8192 - 2048) for b in ("M0", "Spare", "M2")]
    assert xor_bytes(area) == bytes(len(area[0]))
    # and the rebuilt base serves reads alone with another one gone
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "M0"})
    env.drain()
    got = read(env, "R5", 0, r.num_blocks)
    m0 = area[0]
    assert xor_bytes([area[1], area[2]]) == m0   # M0's content is what the other two rebuild
    assert len(got) == r.num_blocks * BS


def test_add_base_to_raid0_is_refused(env: Env) -> None:
    from spydk.rpc.errors import RpcError
    mallocs(env, ["A", "B", "C"])
    rpc(env, "bdev_raid_create", {"name": "R", "raid_level": "raid0", "strip_size_kb": 4, "base_bdevs": ["A", "B"]})
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "B"})
    env.drain()
    with pytest.raises(RpcError):
        rpc(env, "bdev_raid_add_base_bdev", {"raid_bdev": "R", "base_bdev": "C"})


# -- property: the array behaves as a flat disk, degraded or not -------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_raid5f_matches_a_flat_model(env: Env, data: st.DataObject) -> None:
    n = data.draw(st.integers(3, 5), label="bases")
    strip = data.draw(st.sampled_from([2, 4, 8]), label="strip blocks")   # 1, 2, 4 KiB
    per = strip * data.draw(st.integers(2, 6), label="strips per base")
    tag = f"P{os.urandom(3).hex()}_"
    names = [f"{tag}{i}" for i in range(n)]
    for nm in names:
        rpc(env, "bdev_malloc_create", {"name": nm, "num_blocks": per, "block_size": BS})
    raid = tag + "R"
    rpc(env, "bdev_raid_create", {"name": raid, "raid_level": "raid5f", "strip_size_kb": strip * BS // 1024,
                                  "base_bdevs": names})
    r = get_bdev(raid)
    assert r is not None
    stripe = r.write_unit_size
    nstripes = r.num_blocks // stripe
    model = bytearray(r.num_blocks * BS)
    removed = False
    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        op = data.draw(st.sampled_from(["write", "read", "read", "remove"]))
        if op == "write":
            s0 = data.draw(st.integers(0, nstripes - 1))
            k = data.draw(st.integers(1, nstripes - s0))
            buf = random.Random(data.draw(st.integers(0, 2**32))).randbytes(k * stripe * BS)
            write(env, raid, s0 * stripe, buf)
            model[s0 * stripe * BS:(s0 + k) * stripe * BS] = buf
        elif op == "read":
            off = data.draw(st.integers(0, r.num_blocks - 1))
            cnt = data.draw(st.integers(1, r.num_blocks - off))
            assert read(env, raid, off, cnt) == bytes(model[off * BS:(off + cnt) * BS])
        elif not removed:
            victim = data.draw(st.sampled_from(names))
            rpc(env, "bdev_raid_remove_base_bdev", {"name": victim})
            env.drain()
            removed = True
    assert read(env, raid, 0, r.num_blocks) == bytes(model)
    rpc(env, "bdev_raid_delete", {"name": raid})
    for nm in names:
        rpc(env, "bdev_malloc_delete", {"name": nm})


def test_raid5f_superblock_reassembles_by_examine(env: Env, tmp_path: Any) -> None:
    import uuid as _uuid

    from spydk.modules.bdev.raid import sb as sbm
    files, uuids = [], [str(_uuid.uuid4()) for _ in range(3)]
    for i in range(3):
        p = tmp_path / f"b{i}.img"
        with open(p, "wb") as f:
            f.truncate(4 << 20)
        files.append(str(p))
        rpc(env, "bdev_aio_create", {"filename": files[i], "name": f"A{i}", "uuid": uuids[i], "block_size": BS})
    make(env, "R5", ["A0", "A1", "A2"], superblock=True)
    r = get_bdev("R5")
    assert r is not None
    data = os.urandom(r.num_blocks * BS)
    write(env, "R5", 0, data)
    with open(files[1], "rb") as f:
        sb = sbm.decode(f.read(4096))
    assert (sb.level, sb.strip_size, sb.num_base_bdevs, sb.raid_size) == (sbm.Level.RAID5F, STRIP, 3, r.num_blocks)
    rpc(env, "bdev_raid_delete", {"name": "R5"})
    for i in range(3):
        rpc(env, "bdev_aio_delete", {"name": f"A{i}"})
    for i in (2, 0, 1):
        rpc(env, "bdev_aio_create", {"filename": files[i], "name": f"B{i}", "uuid": uuids[i], "block_size": BS})
    env.until(lambda: get_bdev("R5") is not None)
    assert read(env, "R5", 0, r.num_blocks) == data
    # a base removed: the superblocks on the other two say so, and the array comes back
    # degraded from those two alone, its data rebuilt from parity
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "B1"})
    env.drain()
    rpc(env, "bdev_raid_delete", {"name": "R5"})
    for i in (0, 2):
        rpc(env, "bdev_aio_delete", {"name": f"B{i}"})
    rpc(env, "bdev_aio_delete", {"name": "B1"})
    for i in (2, 0):
        rpc(env, "bdev_aio_create", {"filename": files[i], "name": f"C{i}", "uuid": uuids[i], "block_size": BS})
    env.until(lambda: get_bdev("R5") is not None)
    i5 = info(env, "R5")
    assert i5["state"] == "online" and i5["num_base_bdevs_discovered"] == 2
    assert read(env, "R5", 0, r.num_blocks) == data
