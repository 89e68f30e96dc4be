"""Raids made by SPDK C v24.01 (tests/raid/data, see its README) assemble in spydk with
their data: superblock parsed (crc included), striping identical."""
from __future__ import annotations

import lzma
import struct
from pathlib import Path

from spydk.bdev import get_bdev
from spydk.modules.bdev.raid import bdev_raid
from spydk.modules.bdev.raid import sb as sbm
from tests.bdev.conftest import Env

from .conftest import rpc
from .helpers import read, write

DATA = Path(__file__).parent / "data"


def pattern(tag: bytes, nblocks: int) -> bytes:
    return b"".join((tag + struct.pack(">Q", i)).ljust(64, b".") * 8 for i in range(nblocks))


def _unpack(tmp: Path, letters: str) -> list[Path]:
    out = []
    for x in letters:
        p = tmp / f"{x}.img"
        p.write_bytes(lzma.decompress((DATA / f"spdk-{x}.img.xz").read_bytes()))
        out.append(p)
    return out


def test_spdk_made_raid1_and_raid0_assemble_with_their_data(env: Env, tmp_path: Path) -> None:
    files = _unpack(tmp_path, "abcd")
    sbs = [sbm.decode(f.read_bytes()[:4096]) for f in files]
    assert [s.name for s in sbs] == ["SpdkR1", "SpdkR1", "SpdkR0", "SpdkR0"]
    assert sbs[0].level == sbm.Level.RAID1 and sbs[2].level == sbm.Level.RAID0 and sbs[2].strip_size == 128
    # bases come up in another order, each with the uuid its slot records (aio uuids are random in SPDK)
    for i in (3, 1, 2, 0):
        s = sbs[i]
        rpc(env, "bdev_aio_create", {"filename": str(files[i]), "name": f"Base{i}", "block_size": 512,
                                     "uuid": str(s.base_bdevs[i % 2].uuid)})
    env.until(lambda: get_bdev("SpdkR1") is not None and get_bdev("SpdkR0") is not None)
    r1, r0 = get_bdev("SpdkR1"), get_bdev("SpdkR0")
    assert r1 is not None and r0 is not None
    assert str(r1.uuid) == "11111111-1111-4111-8111-111111111111" and r1.num_blocks == 6144
    assert str(r0.uuid) == "22222222-2222-4222-8222-222222222222" and r0.num_blocks == 12288
    assert read(env, "SpdkR1", 0, 2048) == pattern(b"spdk-raid1 block ", 2048)
    assert read(env, "SpdkR0", 0, 4096) == pattern(b"spdk-raid0 block ", 4096)
    # spydk keeps running it: a write, and the superblock's sequence number moved on
    write(env, "SpdkR1", 0, b"x" * 512)
    assert read(env, "Base1", 2048, 1) == b"x" * 512
    assert bdev_raid.module.raids["SpdkR1"].sb.seq_number > sbs[0].seq_number  # type: ignore[union-attr]


def test_spdk_made_raid5f_assembles_reads_degraded_and_takes_writes(env: Env, tmp_path: Path) -> None:
    """e, f, g: SPDK's raid5f SpdkR5 (16 KiB strips, 3 bases, superblock), data written by
    spdk_dd through SPDK's raid5f: its parity placement is ours if a degraded read is right."""
    from spydk.modules.bdev.raid.xor import xor_bytes
    files = _unpack(tmp_path, "efg")
    sbs = [sbm.decode(f.read_bytes()[:4096]) for f in files]
    assert {s.name for s in sbs} == {"SpdkR5"} and sbs[0].level == sbm.Level.RAID5F
    assert sbs[0].strip_size == 32 and sbs[0].raid_size == 12288
    for i in (2, 0, 1):
        rpc(env, "bdev_aio_create", {"filename": str(files[i]), "name": f"Base{i}", "block_size": 512,
                                     "uuid": str(sbs[i].base_bdevs[i].uuid)})
    env.until(lambda: get_bdev("SpdkR5") is not None)
    r5 = get_bdev("SpdkR5")
    assert r5 is not None and str(r5.uuid) == "55555555-5555-4555-8555-555555555555"
    assert r5.num_blocks == 12288 and r5.write_unit_size == 64
    want = pattern(b"spdk-raid5f block ", 12288)
    assert read(env, "SpdkR5", 0, 12288) == want
    # SPDK's parity strips: every stripe of the three bases XORs to zero
    areas = [read(env, f"Base{i}", 2048, 6144) for i in range(3)]
    assert xor_bytes(areas) == bytes(6144 * 512)
    # without base 1 the data comes back from SPDK's parity
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "Base1"})
    env.drain()
    assert read(env, "SpdkR5", 0, 12288) == want
    new = bytes(range(256)) * 2 * 64
    write(env, "SpdkR5", 64, new)
    assert read(env, "SpdkR5", 64, 64) == new


def test_spydk_writes_the_superblocks_spdk_wrote_byte_for_byte(env: Env, tmp_path: Path) -> None:
    """The other direction without SPDK: spydk creates the same three arrays as SPDK did for
    the fixtures (same names, raid uuids, levels, strips, base uuids and sizes) over blank
    files; each base's first 4 KiB (superblock, crc, zero padding) must equal SPDK's bytes.
    SPDK itself assembling spydk-made arrays: tests/raid/data/spdk-assembles-spydk.sh."""
    spdk = {x: lzma.decompress((DATA / f"spdk-{x}.img.xz").read_bytes())[:4096] for x in "abcdefg"}
    arrays = {"SpdkR1": ("ab", "raid1", 0), "SpdkR0": ("cd", "raid0", 64), "SpdkR5": ("efg", "raid5f", 16)}
    for name, (letters, level, strip_kb) in arrays.items():
        sbs = [sbm.decode(spdk[x]) for x in letters]
        names = []
        for i, x in enumerate(letters):
            f = tmp_path / f"{x}.img"
            with open(f, "wb") as fh:
                fh.truncate(4 << 20)
            rpc(env, "bdev_aio_create", {"filename": str(f), "name": f"Z{x}", "block_size": 512,
                                         "uuid": str(sbs[i].base_bdevs[i].uuid)})
            names.append(f"Z{x}")
        params = {"name": name, "raid_level": level, "base_bdevs": names, "superblock": True,
                  "uuid": str(sbs[0].uuid)}
        if strip_kb:
            params["strip_size_kb"] = strip_kb
        rpc(env, "bdev_raid_create", params)
        env.until(lambda n=name: get_bdev(n) is not None)  # type: ignore[misc]
    env.drain()
    for x in "abcdefg":
        mine = read(env, f"Z{x}", 0, 8)
        assert sbm.decode(mine) == sbm.decode(spdk[x]), x
        assert mine == spdk[x], (x, [i for i in range(4096) if mine[i] != spdk[x][i]][:16])
