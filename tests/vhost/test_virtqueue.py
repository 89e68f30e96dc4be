"""Split virtqueues: the driver side posts, the device side takes and returns; malformed
chains fail with VirtqError and never produce a view outside guest memory."""
from __future__ import annotations

import pytest

from spydk.vhost.memory import GuestMemory, Region
from spydk.vhost.spec import AVAIL_F_NO_INTERRUPT, DESC, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, U16
from spydk.vhost.virtqueue import DeviceQueue, DriverQueue, VirtqError

from .helpers import ram

GPA = 0x10000
NUM = 8


def pair(event_idx: bool = False) -> tuple[bytearray, DriverQueue, DeviceQueue]:
    buf, mem = ram(64 * 1024, gpa=GPA)
    drv = DriverQueue(memoryview(buf)[:8192], GPA, NUM, event_idx=event_idx)
    dev = DeviceQueue(mem, NUM, drv.desc_addr, drv.avail_addr, drv.used_addr, event_idx=event_idx)
    return buf, drv, dev


def test_roundtrip() -> None:
    buf, drv, dev = pair()
    buf[0x4000:0x4004] = b"ping"
    head = drv.add([(GPA + 0x4000, 4, False), (GPA + 0x5000, 16, True)])
    assert head is not None and drv.need_kick()
    chain = dev.pop()
    assert chain is not None and chain.head == head
    assert [bytes(v) for v in chain.readable] == [b"ping"]
    chain.writable[0][:4] = b"pong"
    dev.push(chain.head, 4)
    assert dev.pop() is None
    assert dev.need_interrupt()
    got: list[tuple[int, int]] = []
    assert drv.poll_used(lambda h, n: got.append((h, n))) == 1
    assert got == [(head, 4)] and buf[0x5000:0x5004] == b"pong"
    assert len(drv.free) == NUM


def test_interrupt_suppression_and_event_idx() -> None:
    buf, drv, dev = pair()
    U16.pack_into(buf, drv.avail_off, AVAIL_F_NO_INTERRUPT)
    drv.add([(GPA + 0x4000, 1, True)])
    c = dev.pop()
    assert c is not None
    dev.push(c.head, 1)
    assert not dev.need_interrupt()
    buf2, drv2, dev2 = pair(event_idx=True)
    for _ in range(3):
        drv2.add([(GPA + 0x4000, 1, True)])
    U16.pack_into(buf2, drv2.avail_off + 4 + 2 * NUM, 1)   # used_event: interrupt once used idx passes 1
    for _ in range(3):
        c = dev2.pop()
        assert c is not None
        dev2.push(c.head, 1)
        if dev2.used_idx == 1:
            assert not dev2.need_interrupt()
    assert dev2.need_interrupt()


def _raw_desc(buf: bytearray, drv: DriverQueue, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
    DESC.pack_into(buf, drv.desc_off + 16 * i, addr, length, flags, nxt)


def _make_avail(buf: bytearray, drv: DriverQueue, head: int) -> None:
    U16.pack_into(buf, drv.avail_off + 4, head)
    U16.pack_into(buf, drv.avail_off + 2, 1)


def test_indirect_chain() -> None:
    buf, drv, dev = pair()
    table = 0x6000
    DESC.pack_into(buf, table, GPA + 0x4000, 3, DESC_F_NEXT, 1)
    DESC.pack_into(buf, table + 16, GPA + 0x5000, 7, DESC_F_WRITE, 0)
    _raw_desc(buf, drv, 0, GPA + table, 32, DESC_F_INDIRECT, 0)
    _make_avail(buf, drv, 0)
    c = dev.pop()
    assert c is not None and [len(v) for v in c.readable] == [3] and [len(v) for v in c.writable] == [7]


@pytest.mark.parametrize("setup, what", [
    ("loop", "loops"),
    ("self_loop", "loops"),
    ("outside", "outside guest memory"),
    ("huge", "describes more than"),
    ("big", "outside guest memory"),
    ("wrap", "outside guest memory"),
    ("head", "beyond the queue size"),
    ("next", "beyond the table"),
    ("order", "readable descriptor after a writable"),
    ("nested", "inside an indirect table"),
    ("indirect_len", "indirect table of 24 bytes"),
    ("indirect_next", "NEXT flag"),
    ("indirect_loop", "loops"),
    ("avail_jump", "more than the queue size"),
])
def test_malformed_chains(setup: str, what: str) -> None:
    buf, drv, dev = pair()
    d = GPA + 0x4000
    head = 0
    if setup == "loop":
        _raw_desc(buf, drv, 0, d, 1, DESC_F_NEXT, 1)
        _raw_desc(buf, drv, 1, d, 1, DESC_F_NEXT, 0)
    elif setup == "self_loop":
        _raw_desc(buf, drv, 0, d, 1, DESC_F_NEXT, 0)
    elif setup == "outside":
        _raw_desc(buf, drv, 0, GPA + 64 * 1024 - 2, 4, 0, 0)
    elif setup == "huge":
        _raw_desc(buf, drv, 0, d, 0xFFFFFFFF, 0, 0)
    elif setup == "big":
        _raw_desc(buf, drv, 0, d, 1 << 20, 0, 0)
    elif setup == "wrap":
        _raw_desc(buf, drv, 0, 2**64 - 8, 16, 0, 0)
    elif setup == "head":
        head = NUM + 3
    elif setup == "next":
        _raw_desc(buf, drv, 0, d, 1, DESC_F_NEXT, 200)
    elif setup == "order":
        _raw_desc(buf, drv, 0, d, 1, DESC_F_WRITE | DESC_F_NEXT, 1)
        _raw_desc(buf, drv, 1, d, 1, 0, 0)
    elif setup in ("nested", "indirect_loop"):
        DESC.pack_into(buf, 0x6000, GPA + 0x6000, 32, DESC_F_INDIRECT, 0)
        if setup == "indirect_loop":
            DESC.pack_into(buf, 0x6000, d, 1, DESC_F_NEXT, 1)
            DESC.pack_into(buf, 0x6010, d, 1, DESC_F_NEXT, 0)
        _raw_desc(buf, drv, 0, GPA + 0x6000, 32, DESC_F_INDIRECT, 0)
    elif setup == "indirect_len":
        _raw_desc(buf, drv, 0, GPA + 0x6000, 24, DESC_F_INDIRECT, 0)
    elif setup == "indirect_next":
        _raw_desc(buf, drv, 0, GPA + 0x6000, 32, DESC_F_INDIRECT | DESC_F_NEXT, 1)
    _make_avail(buf, drv, head)
    if setup == "avail_jump":
        U16.pack_into(buf, drv.avail_off + 2, NUM + 1)
    with pytest.raises(VirtqError, match=what):
        dev.pop()


def test_ring_outside_memory_refused() -> None:
    _, mem = ram(4096, gpa=GPA)
    with pytest.raises(VirtqError, match="ring outside guest memory"):
        DeviceQueue(mem, 256, GPA, GPA + 4096, GPA + 8192)
    with pytest.raises(VirtqError, match="power of two"):
        DeviceQueue(mem, 3, GPA, GPA, GPA)


def test_descriptor_spanning_two_regions() -> None:
    """A buffer contiguous in guest-physical space but split across two memory-table
    regions becomes two views, each in its own mapping (SPDK's bdevperf hit this)."""
    lo, hi = bytearray(0x4000), bytearray(0x4000)
    mem = GuestMemory([Region(GPA, 0x4000, 0x100000, memoryview(lo)),
                       Region(GPA + 0x4000, 0x4000, 0x900000, memoryview(hi))])
    drv = DriverQueue(memoryview(lo)[:0x2000], GPA, NUM)
    dev = DeviceQueue(mem, NUM, drv.desc_addr, drv.avail_addr, drv.used_addr)
    lo[0x3000:0x4000] = b"a" * 0x1000
    hi[0:0x1000] = b"b" * 0x1000
    drv.add([(GPA + 0x3000, 0x2000, False), (GPA + 0x3800, 0x1000, True)])
    chain = dev.pop()
    assert chain is not None
    assert [bytes(v) for v in chain.readable] == [b"a" * 0x1000, b"b" * 0x1000]
    assert [len(v) for v in chain.writable] == [0x800, 0x800]
    # beyond the second region: the chain is refused, nothing outside is exposed
    drv.add([(GPA + 0x7000, 0x2000, False)])
    with pytest.raises(VirtqError, match="outside guest memory"):
        dev.pop()
