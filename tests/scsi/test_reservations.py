"""Persistent reservations and SPC-2 RESERVE/RELEASE across two initiator ports."""
from __future__ import annotations

import struct

import pytest

from spydk.scsi.spec import Asc, PrOut, PrType, SenseKey

from .helpers import I1, I2, Harness, cdb10, check, data, good

BS = 512
RC = 0x18


def prout(h: Harness, sa: int, key: int, sa_key: int = 0, rtype: int = 0, port: str = I1,
          flags: int = 0):  # type: ignore[no-untyped-def]
    cdb = struct.pack(">BBB2xIB", 0x5F, sa, rtype, 24, 0)
    return h.run(cdb, struct.pack(">QQ4xBx2x", key, sa_key, flags), port=port)


def prin(h: Harness, sa: int, port: str = I1) -> bytes:
    return data(good(h.run(struct.pack(">BB5xHB", 0x5E, sa, 8192, 0), port=port)))


def keys(h: Harness, port: str = I1) -> tuple[int, list[int]]:
    d = prin(h, 0, port)
    gen, n = struct.unpack_from(">II", d)
    return gen, [int.from_bytes(d[8 + i:16 + i], "big") for i in range(0, n, 8)]


def reservation(h: Harness, port: str = I1) -> tuple[int, int] | None:
    d = prin(h, 1, port)
    if struct.unpack_from(">I", d, 4)[0] == 0:
        return None
    return int.from_bytes(d[8:16], "big"), d[21] & 0x0F


def can_read(h: Harness, port: str) -> bool:
    return h.run(cdb10(0x28, 0, 1), port=port).status == 0


def can_write(h: Harness, port: str) -> bool:
    t = h.run(cdb10(0x2A, 0, 1), bytes(BS), port=port)
    assert t.status in (0, RC)
    return t.status == 0


def test_register_and_read_keys(h: Harness) -> None:
    assert keys(h) == (0, [])
    good(prout(h, PrOut.REGISTER, 0, 0xAA))
    good(prout(h, PrOut.REGISTER, 0, 0xBB, port=I2))
    assert keys(h) == (2, [0xAA, 0xBB])
    # wrong key on REGISTER is a conflict; REGISTER AND IGNORE replaces it
    assert prout(h, PrOut.REGISTER, 0x99, 0xCC).status == RC
    good(prout(h, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0xCC))
    assert keys(h) == (3, [0xCC, 0xBB])
    good(prout(h, PrOut.REGISTER, 0xCC, 0))  # unregister
    assert keys(h) == (4, [0xBB])
    # unregistered nexus with a non-zero key
    assert prout(h, PrOut.REGISTER, 0x11, 0x22).status == RC
    # APTPL unsupported, wrong parameter list length
    assert check(prout(h, PrOut.REGISTER, 0, 1, flags=0x01)) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    t = h.run(struct.pack(">BBB2xIB", 0x5F, 0, 0, 20, 0), bytes(20))
    assert check(t) == (SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR)
    assert check(h.run(struct.pack(">BB5xHB", 0x5E, 4, 100, 0))) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)


def test_report_capabilities(h: Harness) -> None:
    d = prin(h, 2)
    assert d[:2] == b"\x00\x08" and d[4:6] == b"\xea\x01"


@pytest.mark.parametrize("rtype,reg_read,reg_write,unreg_read,unreg_write", [
    (PrType.WRITE_EXCLUSIVE, True, False, True, False),
    (PrType.EXCLUSIVE_ACCESS, False, False, False, False),
    (PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, True, True, True, False),
    (PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, True, True, False, False),
    (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, True, True, True, False),
    (PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, True, True, False, False),
])
def test_access_per_type(h: Harness, rtype: int, reg_read: bool, reg_write: bool,
                         unreg_read: bool, unreg_write: bool) -> None:
    good(prout(h, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x1111))
    good(prout(h, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x2222, port=I2))
    good(prout(h, PrOut.RESERVE, 0x1111, rtype=rtype))
    all_reg = rtype in (PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
    assert reservation(h) == (0 if all_reg else 0x1111, rtype)
    assert can_read(h, I1) and can_write(h, I1)
    assert can_read(h, I2) == reg_read and can_write(h, I2) == reg_write
    good(prout(h, PrOut.REGISTER, 0x2222, 0, port=I2))
    assert can_read(h, I2) == unreg_read and can_write(h, I2) == unreg_write
    # INQUIRY, TEST UNIT READY, READ CAPACITY always pass
    good(h.run(bytes.fromhex("120000006000"), port=I2))
    good(h.run(bytes(6), port=I2))
    good(h.run(bytes.fromhex("25000000000000000000"), port=I2))
    good(prout(h, PrOut.RELEASE, 0x1111, rtype=rtype))
    assert reservation(h) is None
    assert can_write(h, I2)


def test_reserve_rules(h: Harness) -> None:
    assert prout(h, PrOut.RESERVE, 0, rtype=1).status == RC  # not registered
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2))
    assert prout(h, PrOut.RESERVE, 4, rtype=1).status == RC  # wrong key
    assert check(prout(h, PrOut.RESERVE, 5, rtype=2)) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    good(prout(h, PrOut.RESERVE, 5, rtype=1))
    good(prout(h, PrOut.RESERVE, 5, rtype=1))  # same again: fine
    assert prout(h, PrOut.RESERVE, 5, rtype=3).status == RC  # different type
    assert prout(h, PrOut.RESERVE, 6, rtype=1, port=I2).status == RC
    good(prout(h, PrOut.RELEASE, 6, rtype=1, port=I2))  # non-holder: no-op
    assert reservation(h) == (5, 1)
    assert check(prout(h, PrOut.RELEASE, 5, rtype=3)) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    # the holder unregistering releases the reservation
    good(prout(h, PrOut.REGISTER, 5, 0))
    assert reservation(h) is None


def test_registrants_only_release_notifies(h: Harness) -> None:
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2))
    good(prout(h, PrOut.RESERVE, 5, rtype=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    good(prout(h, PrOut.RELEASE, 5, rtype=PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    assert check(h.run(bytes(6), port=I2)) == (SenseKey.UNIT_ATTENTION, Asc.RESERVATIONS_RELEASED)


def test_clear(h: Harness) -> None:
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2))
    good(prout(h, PrOut.RESERVE, 5, rtype=3))
    gen = keys(h)[0]
    assert prout(h, PrOut.CLEAR, 7, port=I2).status == RC
    good(prout(h, PrOut.CLEAR, 6, port=I2))
    assert keys(h, I2) == (gen + 1, []) and reservation(h, I2) is None
    assert check(h.run(bytes(6))) == (SenseKey.UNIT_ATTENTION, Asc.RESERVATIONS_PREEMPTED)


def test_preempt(h: Harness) -> None:
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2))
    good(prout(h, PrOut.RESERVE, 5, rtype=1))
    gen = keys(h)[0]
    good(prout(h, PrOut.PREEMPT, 6, 5, rtype=3, port=I2))
    assert keys(h, I2) == (gen + 1, [6])
    assert reservation(h, I2) == (6, 3)
    assert check(h.run(bytes(6))) == (SenseKey.UNIT_ATTENTION, Asc.REGISTRATIONS_PREEMPTED)
    # preempting a key nobody holds
    assert prout(h, PrOut.PREEMPT, 6, 0x77, rtype=3, port=I2).status == RC
    assert check(prout(h, PrOut.PREEMPT, 6, 0, rtype=3, port=I2))[0] == SenseKey.ILLEGAL_REQUEST


def test_preempt_and_abort_aborts_victim_tasks() -> None:
    from tests.scsi.memory_backend import MemoryBackend
    h = Harness(MemoryBackend(deferred=True))
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2))
    victim = h.submit(cdb10(0x28, 0, 1), port=I1)
    good(prout(h, PrOut.PREEMPT_AND_ABORT, 6, 5, rtype=1, port=I2))
    h.backend.complete_all()
    assert victim.aborted and victim.status == 0x40


def test_spc2_reserve_release(h: Harness) -> None:
    good(h.run(bytes.fromhex("160000000000")))
    good(h.run(bytes.fromhex("160000000000")))
    assert h.run(bytes.fromhex("160000000000"), port=I2).status == RC
    good(h.run(bytes.fromhex("170000000000"), port=I2))  # release by non-holder: no-op
    good(h.run(bytes.fromhex("1a003f00ff00")))
    assert h.run(bytes.fromhex("1a003f00ff00"), port=I2).status == RC
    assert h.run(bytes(6), port=I2).status == RC
    good(h.run(bytes.fromhex("120000006000"), port=I2))
    good(h.run(bytes.fromhex("170000000000")))
    good(h.run(bytes.fromhex("160000000000"), port=I2))
    good(h.run(bytes.fromhex("170000000000"), port=I2))
    # PR registrations make RESERVE(6) conflict
    good(prout(h, PrOut.REGISTER, 0, 5))
    assert h.run(bytes.fromhex("160000000000")).status == RC


def test_spc2_released_by_lun_reset_and_nexus_loss(h: Harness) -> None:
    from spydk.scsi.task import TmfFunction
    good(h.run(bytes.fromhex("160000000000")))
    h.dev.nexus_lost(I1)
    good(h.run(bytes.fromhex("160000000000"), port=I2))
    results: list[int] = []
    h.dev.task_mgmt(TmfFunction.LOGICAL_UNIT_RESET, 0, 0, I1, results.append)
    assert results == [0]
    good(h.run(bytes.fromhex("160000000000")))


def test_read_full_status(h: Harness) -> None:
    good(prout(h, PrOut.REGISTER, 0, 5))
    good(prout(h, PrOut.REGISTER, 0, 6, port=I2, flags=0x04))  # ALL_TG_PT
    good(prout(h, PrOut.RESERVE, 5, rtype=1))
    d = prin(h, 3)
    gen, length = struct.unpack_from(">II", d)
    assert length == len(d) - 8
    pos, seen = 8, []
    while pos < len(d):
        key = int.from_bytes(d[pos:pos + 8], "big")
        flags, scope_type = d[pos + 12], d[pos + 13]
        rel = int.from_bytes(d[pos + 18:pos + 20], "big")
        tid_len = int.from_bytes(d[pos + 20:pos + 24], "big")
        tid = d[pos + 24:pos + 24 + tid_len]
        assert tid[0] == 0x45 and tid_len % 4 == 0
        seen.append((key, flags, scope_type, rel, tid[4:].rstrip(b"\x00").decode()))
        pos += 24 + tid_len
    assert seen == [(5, 0x01, 0x01, 1, I1), (6, 0x02, 0, 0, I2)]
