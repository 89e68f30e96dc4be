"""Ring indexes are published with one store: a peer process reading the avail index,
used index and event fields while we update them never sees a value go backwards.

Regression: indexes used to be written with struct's pack_into, which clears its target
before packing; qemu-storage-daemon then read an avail index of 0 now and then, fetched a
whole lap of stale entries and stopped with "Virtqueue size exceeded" (and a guest could
have read a used index of 0 from spydk's target). A reader in another process saw the
cleared value in about 2 % of its reads; with single stores it sees none.
"""
from __future__ import annotations

import mmap
import os
import time

import pytest

from spydk.vhost.memory import GuestMemory, Region
from spydk.vhost.virtqueue import DeviceQueue, DriverQueue

GPA = 0x10000
NUM = 64
ROUNDS = 20000          # stays below 2**15: no index wraps, so "never backwards" is exact
RING = 0x0              # ring at the start of the shared buffer
TABLES = 0x4000         # indirect tables
DATA = 0x8000
FLAG = 0xF000           # reader started / writer done / reader's verdict


def _reader(mm: mmap.mmap, offsets: list[int]) -> int:
    words = memoryview(mm).cast("H")
    idx = [o >> 1 for o in offsets]
    prev = [words[i] for i in idx]
    mm[FLAG] = 1                                   # started
    reads = bad = 0
    while mm[FLAG + 1] == 0:                       # until the writer is done
        for k, i in enumerate(idx):
            v = words[i]
            if (v - prev[k]) & 0xFFFF >= 0x8000:  # went backwards (e.g. read as 0)
                bad += 1
            prev[k] = v
        reads += 1
    return 1 if bad else (2 if reads == 0 else 0)


@pytest.mark.parametrize("event_idx", [False, True])
def test_indexes_never_go_backwards_for_a_concurrent_reader(event_idx: bool) -> None:
    mm = mmap.mmap(-1, 0x10000)                    # MAP_SHARED: the forked reader sees our stores
    mem = GuestMemory([Region(GPA, len(mm), 0x7000_0000, memoryview(mm))])
    drv = DriverQueue(memoryview(mm)[RING:TABLES], GPA + RING, NUM, event_idx=event_idx)
    dev = DeviceQueue(mem, NUM, drv.desc_addr, drv.avail_addr, drv.used_addr, event_idx=event_idx)
    offsets = [drv.avail_off + 2, drv.used_off + 2]
    if event_idx:
        offsets += [drv.avail_off + 4 + 2 * NUM, drv.used_off + 4 + 8 * NUM]   # used_event, avail_event
    pid = os.fork()
    if pid == 0:                                   # pragma: no cover - child
        code = 3
        try:
            code = _reader(mm, offsets)
        finally:
            os._exit(code)
    try:
        while mm[FLAG] == 0:                       # wait for the reader to be running
            time.sleep(0.001)
        table = memoryview(mm)[TABLES:TABLES + 32]
        done: list[int] = []
        for _ in range(ROUNDS):
            head = drv.add_indirect(GPA + TABLES, table, [(GPA + DATA, 512, False), (GPA + DATA + 512, 1, True)])
            assert head is not None
            chain = dev.pop()
            assert chain is not None and chain.head == head
            dev.enable_kicks()
            dev.push(chain.head, 1)
            assert drv.poll_used(lambda h, n: done.append(h)) == 1
        assert len(done) == ROUNDS
    finally:
        mm[FLAG + 1] = 1
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    verdict = os.WEXITSTATUS(status)
    assert verdict != 1, "a concurrent reader saw a ring index go backwards (a cleared 16-bit field)"
    assert verdict == 0, f"reader failed (exit {verdict})"
