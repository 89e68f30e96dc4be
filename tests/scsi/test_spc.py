"""Primary commands: INQUIRY, REPORT LUNS, missing LUNs, MODE SENSE/SELECT, REQUEST SENSE,
REPORT SUPPORTED OPERATION CODES, unit attentions."""
from __future__ import annotations

import struct
import uuid

from spydk.scsi.spec import Asc, SenseKey, build_sense, parse_sense, sense
from tests.scsi.memory_backend import MemoryBackend

from .helpers import I1, I2, Harness, check, data, good

ILLEGAL = SenseKey.ILLEGAL_REQUEST


def test_sense_fixed_and_descriptor_vectors() -> None:
    assert build_sense(0x05, 0x2400) == bytes.fromhex("700005000000000a000000002400000000 00".replace(" ", ""))
    fixed = build_sense(0x0E, 0x1D00, info=0x1234)
    assert fixed[0] == 0xF0 and fixed[3:7] == b"\x00\x00\x12\x34" and fixed[12:14] == b"\x1d\x00"
    desc = build_sense(0x0E, 0x1D00, descriptor=True, info=7)
    assert desc == bytes.fromhex("720e1d000000000c" "000a8000" "0000000000000007")
    assert parse_sense(desc) == (0x0E, 0x1D00, 7)
    sks = build_sense(0x05, 0x2400, sks=b"\xc0\x00\x02")
    assert sks[15:18] == b"\xc0\x00\x02"
    assert sense(5, 0x2000) is sense(5, 0x2000)  # cached


def test_test_unit_ready(h: Harness) -> None:
    good(h.run(bytes(6)))


def test_invalid_opcode(h: Harness) -> None:
    for op in (0x48, 0x02, 0xC0, 0xFF, 0x8B):
        assert check(h.run(bytes((op,)) + bytes(15))) == (ILLEGAL, Asc.INVALID_COMMAND_OPERATION_CODE)
    assert check(h.run(b"")) == (ILLEGAL, Asc.INVALID_COMMAND_OPERATION_CODE)


def test_standard_inquiry(h: Harness) -> None:
    t = good(h.run(bytes.fromhex("120000006000")))
    d = data(t)
    assert len(d) == 96
    assert d[0] == 0 and d[2] == 6 and d[3] == 0x12 and d[4] == 91
    assert d[7] & 0x02  # CMDQUE
    assert d[8:16] == b"SPYDK   "
    assert d[16:32] == b"Malloc0".ljust(16)
    assert d[58:60] == b"\x00\xa0" and b"\x04\x60" in d[58:74] and b"\x04\xc0" in d[58:74]
    # allocation length truncation
    assert data(good(h.run(bytes.fromhex("120000000500")))) == d[:5]
    # EVPD=0 with a page code, CMDDT
    assert check(h.run(bytes.fromhex("120080006000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    assert check(h.run(bytes.fromhex("120200006000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)


def test_vpd_pages(h: Harness) -> None:
    pages = data(good(h.run(bytes.fromhex("120100010000"))))
    assert pages[1] == 0 and list(pages[4:]) == sorted(pages[4:])
    assert {0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2} <= set(pages[4:])
    for p in pages[4:]:
        d = data(good(h.run(bytes((0x12, 1, p, 1, 0, 0)))))
        assert d[1] == p and len(d) == 4 + int.from_bytes(d[2:4], "big")
    assert check(h.run(bytes.fromhex("1201c0010000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)


def test_vpd_device_identification_naa_from_uuid() -> None:
    u = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    h = Harness(MemoryBackend(uuid=u))
    d = data(good(h.run(bytes.fromhex("120183010000"))))
    assert d[4:8] == bytes((0x01, 0x03, 0x00, 0x10))
    assert d[8:24] == bytes.fromhex("6123456789abcdef0123456789abcdef")
    assert b"SPYDK   " + str(u).encode() in d
    assert b"iqn.2016-06.io.spdk:disk1,t,0x0001\x00" in d
    # relative target port designator: PIV, target port association, type 4
    i = d.index(bytes((0x51, 0x94, 0x00, 0x04)))
    assert d[i + 4:i + 8] == b"\x00\x00\x00\x01"


def test_vpd_block_limits_and_provisioning(h: Harness) -> None:
    bl = data(good(h.run(bytes.fromhex("1201b0010000"))))
    assert len(bl) == 64 and bl[3] == 0x3C
    max_unmap, max_desc = struct.unpack_from(">II", bl, 20)
    assert max_unmap > 0 and max_desc == 4095
    assert bl[5] == 255  # maximum COMPARE AND WRITE length
    lbp = data(good(h.run(bytes.fromhex("1201b2010000"))))
    assert lbp[5] & 0xE4 == 0xE4  # LBPU, LBPWS, LBPWS10, LBPRZ
    h2 = Harness(MemoryBackend(supports_unmap=False))
    bl2 = data(good(h2.run(bytes.fromhex("1201b0010000"))))
    assert struct.unpack_from(">II", bl2, 20) == (0, 0)
    assert data(good(h2.run(bytes.fromhex("1201b2010000"))))[5] == 0
    bdc = data(good(h.run(bytes.fromhex("1201b1010000"))))
    assert bdc[4:6] == b"\x00\x01"


def test_report_luns(h: Harness) -> None:
    h.dev.add_lun(5, MemoryBackend("m5"))
    h.dev.add_lun(300, MemoryBackend("m300"))
    cdb = bytes.fromhex("a00000000000000001000000")
    d = data(good(h.run(cdb)))
    assert d[:4] == (24).to_bytes(4, "big")
    assert d[8:] == bytes.fromhex("0000000000000000" "0005000000000000" "412c000000000000")
    # from a LUN that does not exist too
    assert data(good(h.run(cdb, lun=77))) == d
    # allocation length < 16 and bad select report
    assert check(h.run(bytes.fromhex("a0000000000000000008 0000".replace(" ", "")))) == (
        ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    assert check(h.run(bytes.fromhex("a00007000000000001000000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)


def test_missing_lun(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("120000006000"), lun=9)))
    assert d[0] == 0x7F
    assert check(h.run(bytes(6), lun=9)) == (ILLEGAL, Asc.LOGICAL_UNIT_NOT_SUPPORTED)
    assert check(h.run(bytes.fromhex("28000000000000000100"), lun=9)) == (
        ILLEGAL, Asc.LOGICAL_UNIT_NOT_SUPPORTED)
    rs = data(good(h.run(bytes.fromhex("030000001200"), lun=9)))
    assert parse_sense(rs)[:2] == (ILLEGAL, Asc.LOGICAL_UNIT_NOT_SUPPORTED)


def test_read_capacity(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("25000000000000000000"))))
    assert d == struct.pack(">II", 1023, 512)
    assert check(h.run(bytes.fromhex("25000000000100000000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    d16 = data(good(h.run(bytes.fromhex("9e10000000000000000000000020 0000".replace(" ", "")))))
    assert len(d16) == 32
    assert struct.unpack_from(">QI", d16) == (1023, 512)
    assert d16[14] & 0xC0 == 0xC0  # LBPME, LBPRZ


def test_read_capacity10_saturates() -> None:
    b = MemoryBackend(num_blocks=8)
    b.num_blocks = (1 << 32) + 5  # capacity only; no I/O issued
    h = Harness(b)
    d = data(good(h.run(bytes.fromhex("25000000000000000000"))))
    assert d[:4] == b"\xff\xff\xff\xff"
    d16 = data(good(h.run(bytes.fromhex("9e100000000000000000000000200000"))))
    assert struct.unpack_from(">Q", d16)[0] == (1 << 32) + 4


def test_mode_sense_all_pages(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("1a003f00ff00"))))
    assert d[0] == len(d) - 1
    assert d[2] & 0x10  # DPOFUA
    assert d[3] == 8 and struct.unpack_from(">I", d, 4)[0] == 1024
    assert d[9:12] == (512).to_bytes(3, "big")
    pages = d[12:]
    found = {}
    pos = 0
    while pos < len(pages):
        found[pages[pos] & 0x3F] = pages[pos:pos + 2 + pages[pos + 1]]
        pos += 2 + pages[pos + 1]
    assert {0x08, 0x0A, 0x1C} <= set(found)
    assert found[0x08][2] & 0x04  # WCE: backend has a write cache
    # DBD, single page, truncation, saved values
    d = data(good(h.run(bytes.fromhex("1a080a00ff00"))))
    assert d[3] == 0 and d[4] == 0x0A and len(d) == 4 + 12
    assert len(data(good(h.run(bytes.fromhex("1a003f000400"))))) == 4
    assert check(h.run(bytes.fromhex("1a00ca00ff00"))) == (ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
    assert check(h.run(bytes.fromhex("1a002500ff00"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    assert check(h.run(bytes.fromhex("1a000a01ff00"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    # changeable values
    ch = data(good(h.run(bytes.fromhex("1a084800ff00"))))
    assert ch[4:] == bytes((0x08, 0x12, 0x04)) + bytes(17)


def test_mode_sense10_long_lba(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("5a100800000000ffff00"))))
    assert struct.unpack_from(">H", d)[0] == len(d) - 2
    assert d[4] & 1 and struct.unpack_from(">H", d, 6)[0] == 16
    assert struct.unpack_from(">Q4xI", d, 8) == (1024, 512)


def test_mode_select_d_sense_and_swp(h: Harness) -> None:
    ctrl = data(good(h.run(bytes.fromhex("1a080a00ff00"))))[4:]
    new = bytearray(ctrl)
    new[2] |= 0x04  # D_SENSE
    plist = bytes(4) + bytes(new)
    good(h.run(bytes((0x15, 0x10, 0, 0, len(plist), 0)), plist))
    t = h.run(bytes.fromhex("28000000ffff00000100"))
    assert t.sense[0] == 0x72 and parse_sense(t.sense)[:2] == (ILLEGAL, Asc.LBA_OUT_OF_RANGE)
    # other initiator gets MODE PARAMETERS CHANGED
    h.lun._nexuses.add(I2)
    new[4] |= 0x08  # SWP
    plist = bytes(4) + bytes(new)
    good(h.run(bytes((0x15, 0x10, 0, 0, len(plist), 0)), plist))
    assert check(h.run(bytes(6), port=I2)) == (SenseKey.UNIT_ATTENTION, Asc.MODE_PARAMETERS_CHANGED)
    assert check(h.run(bytes.fromhex("2a000000000000000100"), bytes(512))) == (
        SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)
    assert data(good(h.run(bytes.fromhex("1a000a00ff00"))))[2] & 0x80  # WP in header


def test_mode_select_errors(h: Harness) -> None:
    ctrl = bytearray(data(good(h.run(bytes.fromhex("1a080a00ff00"))))[4:])
    bad = bytearray(ctrl)
    bad[3] ^= 0x10  # QAM is not changeable
    plist = bytes(4) + bytes(bad)
    assert check(h.run(bytes((0x15, 0x10, 0, 0, len(plist), 0)), plist)) == (
        ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    # SP=1
    assert check(h.run(bytes((0x15, 0x11, 0, 0, 16, 0)), bytes(16))) == (
        ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
    # list shorter than the header / than announced
    assert check(h.run(bytes((0x15, 0x10, 0, 0, 2, 0)), bytes(2))) == (
        ILLEGAL, Asc.PARAMETER_LIST_LENGTH_ERROR)
    assert check(h.run(bytes((0x15, 0x10, 0, 0, 40, 0)), bytes(10))) == (
        ILLEGAL, Asc.PARAMETER_LIST_LENGTH_ERROR)
    # wrong page length
    plist = bytes(4) + bytes((0x0A, 0x09)) + bytes(9)
    assert check(h.run(bytes((0x15, 0x10, 0, 0, len(plist), 0)), plist)) == (
        ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    # block descriptor with a different block length
    plist = bytes((0, 0, 0, 8)) + bytes(5) + (4096).to_bytes(3, "big")
    assert check(h.run(bytes((0x15, 0x10, 0, 0, len(plist), 0)), plist)) == (
        ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    # zero-length list is fine
    good(h.run(bytes((0x15, 0x10, 0, 0, 0, 0))))


def test_mode_select_wce_off_makes_writes_durable(h: Harness) -> None:
    caching = bytearray(data(good(h.run(bytes.fromhex("1a080800ff00"))))[4:])
    caching[2] &= ~0x04
    plist = bytes(8) + bytes(caching)
    good(h.run(bytes.fromhex("55100000000000") + len(plist).to_bytes(2, "big") + b"\x00", plist))
    assert not data(good(h.run(bytes.fromhex("1a080800ff00"))))[6] & 0x04
    h.backend.calls.clear()
    good(h.run(bytes.fromhex("2a000000000100000100"), bytes(512)))
    assert [c[0] for c in h.backend.calls] == ["write", "flush"]


def test_request_sense_and_unit_attention(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("030000001200"))))
    assert parse_sense(d)[:2] == (SenseKey.NO_SENSE, 0)
    h.lun.establish_ua(I1, Asc.POWER_ON_RESET_OCCURRED)
    # INQUIRY and REPORT LUNS do not report it
    good(h.run(bytes.fromhex("120000006000")))
    good(h.run(bytes.fromhex("a00000000000000001000000")))
    d = data(good(h.run(bytes.fromhex("030100001200"))))  # descriptor format requested
    assert d[0] == 0x72 and parse_sense(d)[:2] == (SenseKey.UNIT_ATTENTION, Asc.POWER_ON_RESET_OCCURRED)
    good(h.run(bytes(6)))
    h.lun.establish_ua(I1, Asc.CAPACITY_DATA_HAS_CHANGED)
    assert check(h.run(bytes(6))) == (SenseKey.UNIT_ATTENTION, Asc.CAPACITY_DATA_HAS_CHANGED)
    good(h.run(bytes(6)))


def test_capacity_changed_ua() -> None:
    h = Harness()
    good(h.run(bytes(6), port=I2))
    h.backend.resize(2048)
    h.lun.capacity_changed()
    assert check(h.run(bytes(6), port=I2)) == (SenseKey.UNIT_ATTENTION, Asc.CAPACITY_DATA_HAS_CHANGED)
    assert struct.unpack_from(">I", data(good(h.run(bytes(10).replace(b"\x00", b"\x25", 1)))))[0] == 2047


def test_report_supported_opcodes(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("a30c00000000000100000000"))))
    n = int.from_bytes(d[:4], "big")
    assert n == len(d) - 4 and n % 8 == 0
    descs = [d[4 + i:12 + i] for i in range(0, n, 8)]
    ops = {(x[0], int.from_bytes(x[2:4], "big") if x[5] & 1 else None) for x in descs}
    assert (0x28, None) in ops and (0x9E, 0x10) in ops and (0x5E, 0x00) in ops
    # RCTD: every descriptor carries a 12-byte timeouts descriptor
    d = data(good(h.run(bytes.fromhex("a30c80000000000100000000"))))
    n = int.from_bytes(d[:4], "big")
    assert n % 20 == 0 and all(d[4 + i + 5] & 0x02 for i in range(0, n, 20))
    # one command: READ(10)
    one = data(good(h.run(bytes.fromhex("a30c01280000000100000000"))))
    assert one[1] & 0x07 == 3 and one[2:4] == b"\x00\x0a" and one[4] == 0x28 and one[5] & 0x18 == 0x18
    # one command with service action: READ CAPACITY(16)
    one = data(good(h.run(bytes.fromhex("a30c029e0010000100000000"))))
    assert one[4:6] == b"\x9e\x10"
    # SA-less form for an opcode with service actions, and the reverse
    assert check(h.run(bytes.fromhex("a30c019e0000000100000000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    assert check(h.run(bytes.fromhex("a30c02280000000100000000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    # unsupported opcode: SUPPORT = 001b
    assert data(good(h.run(bytes.fromhex("a30c01480000000100000000"))))[1] & 7 == 1


def test_report_supported_tmfs(h: Harness) -> None:
    d = data(good(h.run(bytes.fromhex("a30d00000000000100000000"))))
    assert len(d) == 4 and d[0] & 0x88 == 0x88
    assert len(data(good(h.run(bytes.fromhex("a30d80000000000100000000"))))) == 16


def test_start_stop_and_prevent(h: Harness) -> None:
    good(h.run(bytes.fromhex("1b0000000100")))
    good(h.run(bytes.fromhex("1b0000000000")))  # stop: flushes the cache
    assert ("flush", 0, 1024) in h.backend.calls
    assert check(h.run(bytes.fromhex("1b0000005000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
    good(h.run(bytes.fromhex("1e0000000100")))
    good(h.run(bytes.fromhex("1e0000000000")))
    assert check(h.run(bytes.fromhex("1e0000000200"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)


def test_removable_eject_and_prevent() -> None:
    h = Harness(removable=True)
    assert data(good(h.run(bytes.fromhex("120000006000"))))[1] & 0x80
    good(h.run(bytes.fromhex("1e0000000100")))
    assert check(h.run(bytes.fromhex("1b0100000200"))) == (ILLEGAL, Asc.MEDIUM_REMOVAL_PREVENTED)
    good(h.run(bytes.fromhex("1e0000000000")))
    good(h.run(bytes.fromhex("1b0100000200")))
    assert check(h.run(bytes(6))) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    assert check(h.run(bytes.fromhex("28000000000000000100"))) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    good(h.run(bytes.fromhex("1b0100000300")))
    good(h.run(bytes(6)))


def test_lun_inventory_change_ua_cleared_by_report_luns(h: Harness) -> None:
    good(h.run(bytes(6), port=I2))
    h.dev.add_lun(3, MemoryBackend("m3"))
    assert h.lun.pending_unit_attentions(I2) == [Asc.REPORTED_LUNS_DATA_HAS_CHANGED]
    good(h.run(bytes.fromhex("a00000000000000001000000"), port=I2))
    good(h.run(bytes(6), port=I2))
    assert check(h.run(bytes.fromhex("a000000000"))) == (ILLEGAL, Asc.INVALID_FIELD_IN_CDB)
