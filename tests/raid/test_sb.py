"""SPDK's raid superblock: byte layout, crc, round trip, and a fuzzed parser."""
from __future__ import annotations

import struct
import uuid

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.modules.bdev.raid import sb as sbm

U_RAID = uuid.UUID("12345678-9abc-def0-1122-334455667788")
U_A = uuid.UUID("aaaaaaaa-0000-0000-0000-000000000001")
U_B = uuid.UUID("bbbbbbbb-0000-0000-0000-000000000002")


def _sample() -> sbm.Superblock:
    return sbm.Superblock(uuid=U_RAID, name="Raid1", raid_size=0x3F800, block_size=512,
                          level=sbm.Level.RAID1, strip_size=0, num_base_bdevs=2, seq_number=7,
                          base_bdevs=[sbm.SbBase(U_A, 2048, 0x3F800, sbm.SlotState.CONFIGURED, 0),
                                      sbm.SbBase(U_B, 2048, 0x3F800, sbm.SlotState.FAILED, 1)])


def test_struct_sizes_match_spdk() -> None:
    assert sbm.HEADER.size == 256
    assert sbm.BASE.size == 64
    assert sbm.MAX_LENGTH == 0x5000          # 256 + 255 * 64 = 16576, rounded up to 4 KiB
    assert sbm.MAX_LENGTH < sbm.MIN_DATA_OFFSET_SIZE


def test_field_offsets() -> None:
    raw = _sample().encode(512)
    assert len(raw) == 512                     # 256 + 2 * 64 padded to one block
    assert raw[0:8] == b"SPDKRAID"
    assert struct.unpack_from("<HH", raw, 8) == (1, 0)
    assert struct.unpack_from("<I", raw, 12)[0] == 384          # length
    assert struct.unpack_from("<I", raw, 20)[0] == 0            # flags
    assert raw[24:40] == U_RAID.bytes
    assert raw[40:46] == b"Raid1\0" and raw[40:104] == b"Raid1".ljust(64, b"\0")
    assert struct.unpack_from("<QIIII", raw, 104) == (0x3F800, 512, 1, 0, 0)
    assert struct.unpack_from("<Q", raw, 128)[0] == 7           # seq_number
    assert raw[136] == 2 and raw[255] == 2                      # num_base_bdevs, base_bdevs_size
    assert raw[137:255] == bytes(118)
    assert raw[256:272] == U_A.bytes
    assert struct.unpack_from("<QQIIB", raw, 272) == (2048, 0x3F800, 1, 0, 0)
    assert raw[320:336] == U_B.bytes
    assert struct.unpack_from("<QQIIB", raw, 336) == (2048, 0x3F800, 2, 0, 1)
    assert raw[384:] == bytes(128)


def test_crc_is_spdk_crc32c_seed0_without_final_xor() -> None:
    raw = bytearray(_sample().encode(512))
    crc = struct.unpack_from("<I", raw, 16)[0]
    raw[16:20] = bytes(4)
    body = bytes(raw[:384])
    # crc32c(data, seed) inverts on entry and exit; SPDK's update with seed 0 does neither
    assert crc == crc32c(body, 0xFFFFFFFF) ^ 0xFFFFFFFF
    assert crc != crc32c(body)


def test_round_trip_and_checks() -> None:
    sb = _sample()
    raw = sb.encode(4096)
    assert len(raw) == 4096
    back = sbm.decode(raw)
    assert back == sb
    bad = bytearray(raw)
    bad[50] ^= 1
    with pytest.raises(sbm.SbError, match="crc"):
        sbm.decode(bytes(bad))
    with pytest.raises(sbm.SbError, match="signature"):
        sbm.decode(bytes(512))
    big = bytearray(raw)
    struct.pack_into("<I", big, 12, 0x10000)
    with pytest.raises(sbm.SbError, match="length"):
        sbm.needed_length(bytes(big))
    v2 = bytearray(raw)
    struct.pack_into("<H", v2, 8, 2)
    struct.pack_into("<I", v2, 16, sbm.sb_crc(bytes(v2[:384])))
    with pytest.raises(sbm.SbError, match="major version 2"):
        sbm.decode(bytes(v2))


def test_long_name_is_cut_to_63_bytes() -> None:
    sb = _sample()
    sb.name = "x" * 100
    assert sbm.decode(sb.encode(512)).name == "x" * 63


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=1024), st.integers(0, 1023), st.integers(0, 255))
def test_fuzzed_superblocks_raise_only_sberror(data: bytes, pos: int, val: int) -> None:
    raw = bytearray(_sample().encode(512))
    raw[pos % len(raw)] ^= val                 # a flipped byte of a real one
    for candidate in (bytes(raw), b"SPDKRAID" + data, data):
        try:
            sbm.decode(candidate)
        except sbm.SbError:
            pass
