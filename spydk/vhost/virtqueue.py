"""Split virtqueues, both sides (virtio 1.1 section 2.6).

``DeviceQueue`` is the device's view (the vhost target): take available descriptor chains
as lists of guest-memory views, give them back through the used ring, decide when the
driver needs an interrupt. ``DriverQueue`` is the driver's view (the virtio initiator):
post buffers, collect used ones.

A chain that loops, points outside guest memory, nests indirect tables or puts a readable
descriptor after a writable one raises ``VirtqError``: the device stops, nothing outside
the guest's memory is touched.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from spydk.vhost.memory import GuestMemory, MemoryFault
from spydk.vhost.spec import (
    AVAIL_F_NO_INTERRUPT,
    DESC,
    DESC_F_INDIRECT,
    DESC_F_NEXT,
    DESC_F_WRITE,
    MAX_QUEUE_SIZE,
    U16,
    USED_ELEM,
    USED_F_NO_NOTIFY,
    avail_size,
    desc_table_size,
    need_event,
    used_size,
)

_u16_from = U16.unpack_from
_desc_from = DESC.unpack_from
_used_into = USED_ELEM.pack_into

# Ring indexes and event fields the peer reads while we write them are stored through a
# native 16-bit view (one 2-byte store). struct's pack_into must not be used for them: it
# clears its target before packing, so a peer reading at that instant sees 0 (an avail
# index of 0 made qemu-storage-daemon fetch a whole lap of stale entries: "Virtqueue size
# exceeded"). Split rings are little-endian, as the native view is on the hosts we support.
if sys.byteorder != "little":
    raise ImportError("spydk.vhost needs a little-endian host (virtio rings are shared as native 16-bit words)")


def u16_words(view: memoryview) -> memoryview:
    """``view`` (even length) as 16-bit words: item stores are single 2-byte stores."""
    return view.cast("B").cast("H")

# Per chain: at most this many bytes in total (a bound on what one request can move).
MAX_CHAIN_BYTES = 1 << 30


class VirtqError(Exception):
    """The driver put something invalid in the ring: the device must fail."""


@dataclass
class Chain:
    head: int
    readable: list[memoryview]
    writable: list[memoryview]


class DeviceQueue:
    """The device side of one split ring in guest memory."""

    def __init__(self, mem: GuestMemory, num: int, desc_gpa: int, avail_gpa: int, used_gpa: int,
                 *, last_avail_idx: int = 0, event_idx: bool = False, indirect: bool = True,
                 used_idx: int | None = None):
        if not 1 <= num <= MAX_QUEUE_SIZE or num & (num - 1):
            raise VirtqError(f"queue size {num} is not a power of two between 1 and {MAX_QUEUE_SIZE}")
        try:
            self.desc = mem.gpa(desc_gpa, desc_table_size(num))
            self.avail = mem.gpa(avail_gpa, avail_size(num))
            self.used = mem.gpa(used_gpa, used_size(num))
        except MemoryFault as e:
            raise VirtqError(f"ring outside guest memory: {e}") from None
        self.mem = mem
        self.num = num
        self.mask = num - 1
        self.last_avail_idx = last_avail_idx & 0xFFFF
        self.used_idx = self.last_avail_idx if used_idx is None else used_idx & 0xFFFF
        self.signalled_used = self.used_idx
        self.event_idx = event_idx
        self.indirect = indirect
        self._used_event_off = 4 + 2 * num
        self._avail_event_off = 4 + 8 * num
        self._used16 = u16_words(self.used)     # used ring as 16-bit words: flags 0, idx 1

    # -- available ring -------------------------------------------------------------------

    def avail_idx(self) -> int:
        return int(_u16_from(self.avail, 2)[0])

    def has_avail(self) -> bool:
        return _u16_from(self.avail, 2)[0] != self.last_avail_idx

    def pop(self) -> Chain | None:
        """The next available chain, or None. Raises VirtqError on a malformed one."""
        avail = self.avail
        idx = _u16_from(avail, 2)[0]
        last = self.last_avail_idx
        if idx == last:
            return None
        if (idx - last) & 0xFFFF > self.num:
            raise VirtqError(f"avail index {idx} is more than the queue size {self.num} ahead of {last}")
        head = _u16_from(avail, 4 + 2 * (last & self.mask))[0]
        self.last_avail_idx = (last + 1) & 0xFFFF
        return self.walk(head)

    def walk(self, head: int) -> Chain:
        table = self.desc
        size = self.num
        if head >= size:
            raise VirtqError(f"chain head {head} is beyond the queue size {size}")
        readable: list[memoryview] = []
        writable: list[memoryview] = []
        mem = self.mem
        gpa = mem.gpa
        # GuestMemory.gpa's fast path inlined (a call per descriptor is most of a 4 KiB
        # request's translation cost): the region the last translation hit.
        r = mem._last
        rgpa, rend, rview = (r.gpa, r.gpa + r.size, r.view) if r is not None else (0, 0, None)
        i = head
        seen = 0
        total = 0
        in_indirect = False
        while True:
            if i >= size:
                raise VirtqError(f"descriptor index {i} is beyond the table of {size}")
            addr, length, flags, nxt = _desc_from(table, 16 * i)
            if flags & DESC_F_INDIRECT:
                if in_indirect or not self.indirect:
                    raise VirtqError("indirect descriptor inside an indirect table"
                                     if in_indirect else "indirect descriptor without the feature")
                if flags & DESC_F_NEXT:
                    raise VirtqError("indirect descriptor with the NEXT flag")
                if length == 0 or length % 16 or length // 16 > MAX_QUEUE_SIZE:
                    raise VirtqError(f"indirect table of {length} bytes")
                if rgpa <= addr and addr + length <= rend:
                    table = rview[addr - rgpa:addr - rgpa + length]    # type: ignore[index]
                else:
                    try:
                        table = gpa(addr, length)
                    except MemoryFault as e:
                        raise VirtqError(str(e)) from None
                size = length // 16
                in_indirect = True
                i = 0
                seen = 0
                continue
            seen += 1
            if seen > size:
                raise VirtqError(f"descriptor chain from head {head} loops (more than {size} descriptors)")
            total += length
            if total > MAX_CHAIN_BYTES:
                raise VirtqError(f"descriptor chain from head {head} describes more than {MAX_CHAIN_BYTES} bytes")
            if length:
                if flags & DESC_F_WRITE:
                    out = writable
                elif writable:
                    raise VirtqError(f"readable descriptor after a writable one in chain {head}")
                else:
                    out = readable
                if rgpa <= addr and addr + length <= rend:
                    out.append(rview[addr - rgpa:addr - rgpa + length])    # type: ignore[index]
                else:
                    try:
                        out.append(gpa(addr, length))
                    except MemoryFault:
                        # Contiguous in guest-physical space but split across regions: one
                        # view per region (or a real fault, which gpa_split raises again).
                        try:
                            out.extend(mem.gpa_split(addr, length))
                        except MemoryFault as e:
                            raise VirtqError(str(e)) from None
            if not flags & DESC_F_NEXT:
                break
            i = nxt
        return Chain(head, readable, writable)

    # -- used ring ------------------------------------------------------------------------

    def push(self, head: int, written: int) -> None:
        used = self.used
        idx = self.used_idx
        _used_into(used, 4 + 8 * (idx & self.mask), head, written)
        idx = (idx + 1) & 0xFFFF
        self.used_idx = idx
        self._used16[1] = idx     # after the element: x86 keeps stores in order

    def need_interrupt(self) -> bool:
        """Whether the driver wants an interrupt for what was pushed since the last one."""
        new, old = self.used_idx, self.signalled_used
        if new == old:
            return False
        self.signalled_used = new
        if self.event_idx:
            event = _u16_from(self.avail, self._used_event_off)[0]
            return need_event(event, new, old)
        return not _u16_from(self.avail, 0)[0] & AVAIL_F_NO_INTERRUPT

    def enable_kicks(self) -> None:
        """Ask for a kick on the next available buffer (after draining the ring)."""
        if self.event_idx:
            self._used16[self._avail_event_off >> 1] = self.last_avail_idx
        else:
            self._used16[0] = 0

    def disable_kicks(self) -> None:
        if not self.event_idx:
            self._used16[0] = USED_F_NO_NOTIFY


class DriverQueue:
    """The driver side of one split ring laid out in a buffer the driver owns.

    ``view`` is the ring memory (descriptor table, avail ring, used ring, in that order,
    used ring 4-aligned) and ``base`` its guest address.
    """

    def __init__(self, view: memoryview, base: int, num: int, *, event_idx: bool = False):
        self.num = num
        self.base = base
        self.desc_off = 0
        self.avail_off = desc_table_size(num)
        self.used_off = (self.avail_off + avail_size(num) + 3) & ~3
        self.size = self.used_off + used_size(num)
        if len(view) < self.size:
            raise ValueError(f"ring of {num} needs {self.size} bytes, got {len(view)}")
        self.view = view
        self._w = u16_words(view[:self.size])    # the ring as 16-bit words
        self._avail_idx_w = (self.avail_off + 2) >> 1
        self._avail_ring_w = (self.avail_off + 4) >> 1
        self._used_event_w = self._avail_ring_w + num
        self.event_idx = event_idx
        self.free = list(range(num - 1, -1, -1))
        self.avail_idx = 0
        self.last_used = 0
        self.kicked_avail = 0
        self.chain_len: dict[int, int] = {}

    @property
    def desc_addr(self) -> int:
        return self.base + self.desc_off

    @property
    def avail_addr(self) -> int:
        return self.base + self.avail_off

    @property
    def used_addr(self) -> int:
        return self.base + self.used_off

    def add(self, bufs: list[tuple[int, int, bool]]) -> int | None:
        """Post one chain of (guest address, length, device-writable); returns its head,
        or None when the ring lacks descriptors."""
        if len(bufs) > len(self.free) or not bufs:
            return None
        ids = [self.free.pop() for _ in bufs]
        v = self.view
        for n, ((addr, length, wr), d) in enumerate(zip(bufs, ids, strict=True)):
            last = n == len(ids) - 1
            flags = (DESC_F_WRITE if wr else 0) | (0 if last else DESC_F_NEXT)
            DESC.pack_into(v, self.desc_off + 16 * d, addr, length, flags, 0 if last else ids[n + 1])
        head = ids[0]
        self.chain_len[head] = len(ids)
        w = self._w
        w[self._avail_ring_w + self.avail_idx % self.num] = head
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        w[self._avail_idx_w] = self.avail_idx
        return head

    def add_indirect(self, table_addr: int, table: memoryview,
                     bufs: list[tuple[int, int, bool]]) -> int | None:
        """Post one chain through an indirect table the driver owns (``table`` at guest
        address ``table_addr``, 16 bytes per buffer): one ring descriptor per request."""
        if not self.free or not bufs or len(table) < 16 * len(bufs):
            return None
        for n, (addr, length, wr) in enumerate(bufs):
            last = n == len(bufs) - 1
            flags = (DESC_F_WRITE if wr else 0) | (0 if last else DESC_F_NEXT)
            DESC.pack_into(table, 16 * n, addr, length, flags, 0 if last else n + 1)
        head = self.free.pop()
        v = self.view
        DESC.pack_into(v, self.desc_off + 16 * head, table_addr, 16 * len(bufs), DESC_F_INDIRECT, 0)
        self.chain_len[head] = 1
        w = self._w
        w[self._avail_ring_w + self.avail_idx % self.num] = head
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        w[self._avail_idx_w] = self.avail_idx
        return head

    def need_kick(self) -> bool:
        old, new = self.kicked_avail, self.avail_idx
        self.kicked_avail = new
        if old == new:
            return False
        if self.event_idx:
            return need_event(_u16_from(self.view, self.used_off + 4 + 8 * self.num)[0], new, old)
        return not _u16_from(self.view, self.used_off)[0] & USED_F_NO_NOTIFY

    def poll_used(self, cb: Callable[[int, int], None]) -> int:
        """Call cb(head, written) for each used chain; return how many."""
        v = self.view
        n = 0
        while True:
            idx = _u16_from(v, self.used_off + 2)[0]
            if idx == self.last_used:
                break
            head, written = USED_ELEM.unpack_from(v, self.used_off + 4 + 8 * (self.last_used % self.num))
            self.last_used = (self.last_used + 1) & 0xFFFF
            count = self.chain_len.pop(head, 0)
            d = head
            for _ in range(count):
                self.free.append(d)
                d = _desc_from(v, self.desc_off + 16 * d)[3]
            if self.event_idx:
                self._w[self._used_event_w] = self.last_used
            n += 1
            cb(head, written)
        return n
