"""Block commands: READ/WRITE 6/10/12/16, VERIFY, WRITE AND VERIFY, SYNCHRONIZE CACHE, WRITE
SAME, UNMAP, COMPARE AND WRITE, GET LBA STATUS, read-only LUNs, backend error injection."""
from __future__ import annotations

import struct

import pytest

from spydk.scsi.spec import Asc, SenseKey, parse_sense
from tests.scsi.memory_backend import MemoryBackend

from .helpers import Harness, cdb10, cdb12, cdb16, check, data, good

ILLEGAL = SenseKey.ILLEGAL_REQUEST
BS = 512


def pattern(nblocks: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(nblocks * BS))


def read(h: Harness, lba: int, n: int) -> bytes:
    return data(good(h.run(cdb16(0x88, lba, n))))


def test_read_write_vectors(h: Harness) -> None:
    payload = pattern(2)
    good(h.run(bytes.fromhex("2a00000000100000020 0".replace(" ", "")), payload))
    assert h.backend.data[16 * BS:18 * BS] == payload
    assert data(good(h.run(bytes.fromhex("28000000001000000200")))) == payload
    assert data(good(h.run(bytes.fromhex("a8000000001000000002 0000".replace(" ", ""))))) == payload
    assert data(good(h.run(bytes.fromhex("88000000000000000010 00000002 0000".replace(" ", ""))))) == payload
    # READ(6)/WRITE(6): 21-bit LBA
    good(h.run(bytes.fromhex("0a0000200100"), pattern(1, 9)))
    assert data(good(h.run(bytes.fromhex("080000200100")))) == pattern(1, 9)
    good(h.run(cdb12(0xAA, 40, 1), pattern(1, 3)))
    good(h.run(cdb16(0x8A, 41, 1), pattern(1, 4)))
    assert read(h, 40, 2) == pattern(1, 3) + pattern(1, 4)


def test_read6_zero_means_256() -> None:
    h = Harness(MemoryBackend(num_blocks=300))
    t = good(h.run(bytes.fromhex("080000000000")))
    assert t.data_in_length == 256 * BS
    assert check(h.run(bytes.fromhex("080000400000"))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)


@pytest.mark.parametrize("lba,n", [(1024, 1), (1023, 2), (0xFFFFFFFF, 1), (1025, 0)])
def test_out_of_range(h: Harness, lba: int, n: int) -> None:
    assert check(h.run(cdb10(0x28, lba, n))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(cdb10(0x2A, lba, n), bytes(n * BS))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(cdb16(0x88, (1 << 64) - 1, n))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)


def test_zero_blocks_and_last_block(h: Harness) -> None:
    assert good(h.run(cdb10(0x28, 1024, 0))).data_in_length == 0
    good(h.run(cdb10(0x2A, 0, 0)))
    assert good(h.run(cdb10(0x28, 1023, 1))).data_in_length == BS


def test_protect_fields_rejected(h: Harness) -> None:
    for op in (0x28, 0x2A, 0x2E, 0x2F):
        t = h.run(cdb10(op, 0, 1, flags=0x20), bytes(BS) if op != 0x28 else b"")
        assert check(t) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
        assert parse_sense(t.sense)[0] == ILLEGAL and t.sense[15] & 0x80  # SKSV
    for flags in (0x10, 0x08, 0x18, 0x02):  # DPO/FUA/FUA_NV are fine
        good(h.run(cdb10(0x28, 0, 1, flags)))
        good(h.run(cdb10(0x2A, 0, 1, flags), bytes(BS)))


def test_fua_flushes(h: Harness) -> None:
    h.backend.calls.clear()
    good(h.run(cdb10(0x2A, 3, 1, flags=0x08), bytes(BS)))
    assert h.backend.calls == [("write", 3, 1), ("flush", 3, 1)]
    h.backend.calls.clear()
    good(h.run(cdb10(0x2A, 3, 1), bytes(BS)))
    assert h.backend.calls == [("write", 3, 1)]


def test_read_length_is_the_commands_not_the_transports(h: Harness) -> None:
    # data_in_length is what the CDB asks for; the transport clips to its expected transfer
    # length and reports residual overflow/underflow.
    good(h.run(cdb10(0x2A, 0, 1), pattern(1)))
    for tl in (200, 0, 10000):
        t = good(h.run(cdb10(0x28, 0, 1), transfer_length=tl))
        assert data(t) == pattern(1)


def test_write_data_shorter_than_cdb(h: Harness) -> None:
    # The transport's expected length was short: the whole blocks that came are written,
    # write_length tells the transport what the CDB asked for (its residual overflow).
    h.backend.data[:BS * 2] = b"a" * (2 * BS)
    t = good(h.run(cdb10(0x2A, 0, 2), b"b" * BS))
    assert t.write_length == 2 * BS
    assert h.backend.data[:BS * 2] == b"b" * BS + b"a" * BS
    t = good(h.run(cdb10(0x2A, 0, 1), b""))
    assert t.write_length == BS and h.backend.data[:BS] == b"b" * BS
    # a partial block is refused, and nothing is written
    t = h.run(cdb10(0x2A, 0, 1), b"x" * 200)
    assert check(t) == (ILLEGAL, Asc.INVALID_FIELD_IN_INFORMATION_UNIT)
    assert h.backend.data[:BS] == b"b" * BS
    # more data than the CDB asks for: only the CDB's length is written
    good(h.run(cdb10(0x2A, 0, 1), b"c" * (2 * BS)))
    assert h.backend.data[:BS * 2] == b"c" * BS + b"a" * BS


def test_write_scattered_buffers(h: Harness) -> None:
    payload = pattern(3)
    parts = [payload[:100], payload[100:1000], payload[1000:]]
    good(h.run(cdb10(0x2A, 7, 3), parts))
    assert read(h, 7, 3) == payload


def test_backend_errors_only_fail_that_task(h: Harness) -> None:
    h.backend.inject("read", 10, 1, count=1)
    assert check(h.run(cdb10(0x28, 9, 2))) == (SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
    good(h.run(cdb10(0x28, 9, 2)))
    good(h.run(cdb10(0x28, 11, 2)))
    h.backend.inject("write", 50, 1)
    assert check(h.run(cdb10(0x2A, 50, 1), bytes(BS))) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    good(h.run(cdb10(0x2A, 51, 1), bytes(BS)))
    h.backend.inject("flush", count=1)
    assert check(h.run(bytes.fromhex("35000000000000000000"))) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    good(h.run(bytes.fromhex("35000000000000000000")))


def test_read_only_lun() -> None:
    h = Harness(read_only=True)
    wp = (SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)
    assert check(h.run(cdb10(0x2A, 0, 1), bytes(BS))) == wp
    assert check(h.run(cdb12(0xAA, 0, 1), bytes(BS))) == wp
    assert check(h.run(cdb16(0x8A, 0, 1), bytes(BS))) == wp
    assert check(h.run(bytes.fromhex("0a0000000100"), bytes(BS))) == wp
    assert check(h.run(cdb10(0x2E, 0, 1), bytes(BS))) == wp
    assert check(h.run(cdb10(0x41, 0, 1), bytes(BS))) == wp
    assert check(h.run(cdb16(0x93, 0, 1, 0x08), bytes(BS))) == wp
    unmap = struct.pack(">HH4xQI4x", 22, 16, 0, 1)
    assert check(h.run(bytes.fromhex("42000000000000001800"), unmap)) == wp
    caw = cdb16(0x89, 0, 0)[:13] + b"\x01\x00\x00"
    assert check(h.run(caw, bytes(2 * BS))) == wp
    good(h.run(cdb10(0x28, 0, 1)))
    assert data(good(h.run(bytes.fromhex("1a003f00ff00"))))[2] & 0x80


def test_verify(h: Harness) -> None:
    good(h.run(cdb10(0x2A, 4, 2), pattern(2)))
    good(h.run(cdb10(0x2F, 4, 2)))  # BYTCHK=0: range check only
    good(h.run(cdb10(0x2F, 4, 2, 0x02), pattern(2)))
    bad = bytearray(pattern(2))
    bad[700] ^= 1
    t = h.run(cdb12(0xAF, 4, 2, 0x02), bytes(bad))
    assert check(t) == (SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY)
    assert parse_sense(t.sense)[2] == 700
    good(h.run(cdb16(0x8F, 4, 2, 0x02), pattern(2)))
    assert check(h.run(cdb10(0x2F, 1024, 1))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(cdb10(0x2F, 0, 1, 0x04), bytes(BS))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    # BYTCHK=11b: one block compared against every block
    good(h.run(cdb10(0x2A, 100, 3), b"\x5a" * (3 * BS)))
    good(h.run(cdb10(0x2F, 100, 3, 0x06), b"\x5a" * BS))
    assert check(h.run(cdb10(0x2F, 100, 4, 0x06), b"\x5a" * BS))[0] == SenseKey.MISCOMPARE


def test_write_and_verify_writes_through(h: Harness) -> None:
    for cdb in (cdb10(0x2E, 8, 1, 0x02), cdb12(0xAE, 8, 1), cdb16(0x8E, 8, 1, 0x10)):
        h.backend.calls.clear()
        good(h.run(cdb, pattern(1, 5)))
        assert h.backend.calls == [("write", 8, 1), ("flush", 8, 1)]
    assert read(h, 8, 1) == pattern(1, 5)


def test_synchronize_cache(h: Harness) -> None:
    h.backend.calls.clear()
    good(h.run(bytes.fromhex("35000000001000000200")))
    good(h.run(bytes.fromhex("35000000000000000000")))
    good(h.run(cdb16(0x91, 1000, 24)))
    assert h.backend.calls == [("flush", 16, 2), ("flush", 0, 1024), ("flush", 1000, 24)]
    assert check(h.run(cdb16(0x91, 1000, 25))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)


def test_prefetch(h: Harness) -> None:
    good(h.run(cdb10(0x34, 0, 8)))
    good(h.run(cdb16(0x90, 1020, 4)))
    assert check(h.run(cdb16(0x90, 1020, 5))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)


def test_write_same_replicates_in_chunks() -> None:
    h = Harness(MemoryBackend(num_blocks=5000))
    block = pattern(1, 11)
    good(h.run(cdb16(0x93, 10, 4500), block))
    assert h.backend.data[10 * BS:4510 * BS] == block * 4500
    writes = [c for c in h.backend.calls if c[0] == "write"]
    assert len(writes) == 3 and max(c[2] for c in writes) == 2048  # 1 MiB pattern buffer
    assert h.backend.data[9 * BS:10 * BS] == bytes(BS)


def test_write_same_zero_and_unmap(h: Harness) -> None:
    good(h.run(cdb10(0x2A, 0, 8), pattern(8)))
    h.backend.calls.clear()
    good(h.run(cdb10(0x41, 0, 4), bytes(BS)))
    assert h.backend.calls == [("write_zeroes", 0, 4)]
    h.backend.calls.clear()
    good(h.run(cdb16(0x93, 4, 4, 0x08), bytes(BS)))
    assert h.backend.calls == [("unmap", 4, 4)]
    assert read(h, 0, 8) == bytes(8 * BS)
    h.backend.calls.clear()
    good(h.run(cdb16(0x93, 0, 2, 0x09)))  # NDOB + UNMAP: no data-out
    assert h.backend.calls == [("unmap", 0, 2)]
    # zero blocks: to the end of the LUN
    h.backend.calls.clear()
    good(h.run(cdb16(0x93, 1000, 0, 0x08), bytes(BS)))
    assert h.backend.calls == [("unmap", 1000, 24)]


def test_write_same_errors(h: Harness) -> None:
    assert check(h.run(cdb10(0x41, 1020, 5), bytes(BS))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(cdb10(0x41, 1025, 0), bytes(BS))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(cdb10(0x41, 0, 1), bytes(BS - 1)))[0] == ILLEGAL
    assert check(h.run(cdb10(0x41, 0, 1), bytes(BS + 1)))[0] == ILLEGAL
    assert check(h.run(cdb10(0x41, 0, 1, 0x10), bytes(BS))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    assert check(h.run(cdb10(0x41, 0, 1, 0x02), bytes(BS))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    h2 = Harness(MemoryBackend(supports_unmap=False))
    assert check(h2.run(cdb10(0x41, 0, 1, 0x08), bytes(BS))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)


def unmap_list(*ranges: tuple[int, int]) -> bytes:
    body = b"".join(struct.pack(">QI4x", lba, n) for lba, n in ranges)
    return struct.pack(">HH4x", len(body) + 6, len(body)) + body


def unmap_cdb(plen: int, anchor: int = 0) -> bytes:
    return bytes((0x42, anchor, 0, 0, 0, 0, 0)) + plen.to_bytes(2, "big") + b"\x00"


def test_unmap(h: Harness) -> None:
    good(h.run(cdb10(0x2A, 0, 16), pattern(16)))
    plist = unmap_list((0, 2), (8, 4), (12, 0))
    good(h.run(unmap_cdb(len(plist)), plist))
    assert h.backend.calls[-2:] == [("unmap", 0, 2), ("unmap", 8, 4)]
    assert read(h, 0, 2) == bytes(2 * BS) and read(h, 2, 6) == pattern(16)[2 * BS:8 * BS]
    good(h.run(unmap_cdb(0)))
    good(h.run(unmap_cdb(8), unmap_list()))


def test_unmap_errors(h: Harness) -> None:
    plist = unmap_list((1020, 5))
    assert check(h.run(unmap_cdb(len(plist)), plist)) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(unmap_cdb(4), bytes(4))) == (ILLEGAL, Asc.PARAMETER_LIST_LENGTH_ERROR)
    plist = unmap_list((0, 1))
    assert check(h.run(unmap_cdb(len(plist)), plist[:10])) == (ILLEGAL, Asc.PARAMETER_LIST_LENGTH_ERROR)
    assert check(h.run(unmap_cdb(len(plist), anchor=1), plist)) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    # the largest possible list: 4095 descriptors in a 65535-byte parameter list
    many = struct.pack(">HH4x", 0xFFFD, 4095 * 16) + struct.pack(">QI4x", 0, 0) * 4095 + bytes(7)
    good(h.run(unmap_cdb(0xFFFF), many))
    h.lun.max_unmap_descriptors = 2
    plist = unmap_list((0, 1), (2, 1), (4, 1))
    assert check(h.run(unmap_cdb(len(plist)), plist)) == (ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    h.lun.max_unmap_lbas = 2
    plist = unmap_list((0, 3))
    assert check(h.run(unmap_cdb(len(plist)), plist)) == (ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    h2 = Harness(MemoryBackend(supports_unmap=False))
    assert check(h2.run(unmap_cdb(len(plist)), plist)) == (ILLEGAL, Asc.INVALID_COMMAND_OPERATION_CODE)


def test_unmap_split_to_backend_limits() -> None:
    h = Harness(MemoryBackend(max_unmap_blocks=4, max_unmap_descriptors=2))
    plist = unmap_list((0, 10), (100, 3))
    good(h.run(unmap_cdb(len(plist)), plist))
    assert [c for c in h.backend.calls if c[0] == "unmap"] == [
        ("unmap", 0, 4), ("unmap", 4, 4), ("unmap", 8, 2), ("unmap", 100, 3)]


def caw(lba: int, n: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQ3xBBB", 0x89, flags, lba, n, 0, 0)


def test_compare_and_write(h: Harness) -> None:
    good(h.run(cdb10(0x2A, 20, 2), b"A" * (2 * BS)))
    good(h.run(caw(20, 2), b"A" * (2 * BS) + b"B" * (2 * BS)))
    assert read(h, 20, 2) == b"B" * (2 * BS)
    compare = bytearray(b"B" * (2 * BS))
    compare[2 * BS - 27] = ord("C")
    t = h.run(caw(20, 2, 0x08), bytes(compare) + b"D" * (2 * BS))
    assert check(t) == (SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY)
    assert parse_sense(t.sense)[2] == 2 * BS - 27
    assert read(h, 20, 2) == b"B" * (2 * BS)
    good(h.run(caw(20, 0)))
    assert check(h.run(caw(1023, 2), bytes(4 * BS))) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    assert check(h.run(caw(0, 1), bytes(BS)))[0] == ILLEGAL
    assert check(h.run(caw(0, 1), bytes(3 * BS)))[0] == ILLEGAL


def test_compare_and_write_serialises_overlapping_writes() -> None:
    h = Harness(MemoryBackend(deferred=True))
    t1 = h.submit(caw(0, 1), bytes(BS) + b"X" * BS)
    t2 = h.submit(cdb10(0x2A, 0, 1), b"Y" * BS)  # waits for the CAW's range lock
    t3 = h.submit(cdb10(0x2A, 5, 1), b"Z" * BS)  # unrelated range: goes straight through
    assert [c[0] for c in h.backend.calls] == ["read", "write"]
    h.backend.complete_all()
    assert [good(t) for t in (t1, t2, t3)]
    assert h.backend.data[:BS] == b"Y" * BS


def test_get_lba_status(h: Harness) -> None:
    good(h.run(cdb10(0x2A, 0, 10), pattern(10)))
    cdb = bytes.fromhex("9e12") + (0).to_bytes(8, "big") + (1000).to_bytes(4, "big") + b"\x00\x00"
    d = data(good(h.run(cdb)))
    descs = [struct.unpack_from(">QIB", d, 8 + 16 * i) for i in range((len(d) - 8) // 16)]
    assert int.from_bytes(d[:4], "big") == len(d) - 4
    assert descs == [(0, 10, 0), (10, 1014, 1)]
    plist = unmap_list((3, 1))
    good(h.run(unmap_cdb(len(plist)), plist))
    cdb = bytes.fromhex("9e12") + (3).to_bytes(8, "big") + (24).to_bytes(4, "big") + b"\x00\x00"
    d = data(good(h.run(cdb)))
    assert struct.unpack_from(">QIB", d, 8) == (3, 1, 1) and len(d) == 24
    oob = bytes.fromhex("9e12") + (1024).to_bytes(8, "big") + (24).to_bytes(4, "big") + b"\x00\x00"
    assert check(h.run(oob)) == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    h2 = Harness(MemoryBackend(supports_seek=False))
    d = data(good(h2.run(cdb)))
    assert struct.unpack_from(">QIB", d, 8) == (3, 1021, 0)
