"""Guest memory tables: translation and the regions we refuse."""
from __future__ import annotations

import pytest

from spydk.vhost.memory import GuestMemory, MemoryFault, Region, RegionDesc, parse_mem_table
from spydk.vhost.spec import MEM_HDR, MEM_REGION

from .helpers import ram


def test_translate_gpa_and_uva() -> None:
    buf, mem = ram(4096, gpa=0x10000, uva=0x7000_0000)
    mem.gpa(0x10010, 4)[:] = b"abcd"
    assert buf[0x10:0x14] == b"abcd"
    assert bytes(mem.uva(0x7000_0010, 4)) == b"abcd"
    assert mem.uva_to_gpa(0x7000_0010) == 0x10010
    assert len(mem.gpa(0x10000, 4096)) == 4096


@pytest.mark.parametrize("addr, length", [(0xFFFF, 1), (0x10000, 4097), (0x10FFF, 2), (0x11000, 1),
                                          (2**64 - 1, 2)])
def test_outside_guest_memory(addr: int, length: int) -> None:
    _, mem = ram(4096, gpa=0x10000)
    with pytest.raises(MemoryFault, match="outside guest memory"):
        mem.gpa(addr, length)


def test_two_regions_no_spanning() -> None:
    a, b = bytearray(4096), bytearray(4096)
    mem = GuestMemory([Region(0, 4096, 0x100000, memoryview(a)),
                       Region(4096, 4096, 0x200000, memoryview(b))])
    mem.gpa(4096, 1)[0] = 7
    assert b[0] == 7
    with pytest.raises(MemoryFault):
        mem.gpa(4000, 200)     # contiguous in GPA but two mappings: one view cannot hold it
    # ... gpa_split gives one view per mapping instead (a descriptor may span regions)
    a[4000:4096] = b"x" * 96
    parts = mem.gpa_split(4000, 200)
    assert [len(p) for p in parts] == [96, 104]
    assert bytes(parts[0]) == b"x" * 96 and parts[1][0] == 7
    parts[1][1] = 9
    assert b[1] == 9


@pytest.mark.parametrize("addr, length", [(4000, 200), (100, 8000), (0, 12288), (12288, 1)])
def test_split_refuses_holes(addr: int, length: int) -> None:
    a, c = bytearray(4096), bytearray(4096)
    mem = GuestMemory([Region(0, 4096, 0x100000, memoryview(a)),
                       Region(8192, 4096, 0x200000, memoryview(c))])   # hole at 4096
    with pytest.raises(MemoryFault, match="outside guest memory"):
        mem.gpa_split(addr, length)
    assert [len(p) for p in mem.gpa_split(8192, 4096)] == [4096]


def _table(*regions: tuple[int, int, int, int]) -> bytes:
    return MEM_HDR.pack(len(regions), 0) + b"".join(MEM_REGION.pack(*r) for r in regions)


def test_parse_table() -> None:
    descs = parse_mem_table(_table((0, 0xA0000, 0x7F00_0000_0000, 0),
                                   (0xC0000, 0x1000, 0x7F00_000C_0000, 0xC0000)), 2)
    assert descs[1] == RegionDesc(0xC0000, 0x1000, 0x7F00_000C_0000, 0xC0000)


@pytest.mark.parametrize("payload, nfds, what", [
    (_table((0, 0x2000, 0x10000, 0), (0x1000, 0x1000, 0x90000, 0)), 2, "overlap"),
    (_table((0, 0x1000, 0x10000, 0), (0x8000, 0x1000, 0x10800, 0)), 2, "UVA .* overlap"),
    (_table((0, 0, 0x10000, 0)), 1, "size 0"),
    (_table((2**64 - 0x1000, 0x2000, 0, 0)), 1, "wraps"),
    (_table((0, 0x1000, 0, 0)), 0, "1 regions but came with 0"),
    (MEM_HDR.pack(9, 0), 9, "9 regions"),
    (MEM_HDR.pack(2, 0) + MEM_REGION.pack(0, 1, 0, 0), 2, "says 2 regions"),
    (b"\x01", 0, "shorter than its header"),
])
def test_bad_tables(payload: bytes, nfds: int, what: str) -> None:
    with pytest.raises(MemoryFault, match=what):
        parse_mem_table(payload, nfds)


def test_unmappable_fd_is_a_fault(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    fd = os.memfd_create("t")
    os.ftruncate(fd, 4096)
    try:
        with pytest.raises(MemoryFault, match="cannot map"):
            GuestMemory.map_fds([RegionDesc(0, 8192, 0, 4096 * 1000)], [fd])
    finally:
        os.close(fd)
