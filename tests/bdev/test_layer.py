"""The layer's machinery: lifecycle, claims, examine, QoS, histograms, iostat, pools."""
from __future__ import annotations

import base64
import random
import struct
from typing import Any

import pytest

from spydk import notify
from spydk.bdev import bdev as core
from spydk.bdev.bdev import Bdev, BdevError, BdevEvent, ClaimType, open_ext, unregister_bdev
from spydk.bdev.histogram import Histogram
from spydk.bdev.io import READ, WRITE, IoStatus
from spydk.bdev.iobuf import pool
from spydk.bdev.module import BdevModule, _modules, register_module
from spydk.bdev.qos import Qos
from spydk.modules.bdev.malloc.malloc import create_malloc_disk

from .conftest import Env

# -- lifecycle ----------------------------------------------------------------------------


def test_unregister_with_open_desc_sends_remove_and_waits(env: Env) -> None:
    d = env.disk("U")
    desc = env.open("U")
    ch = env.call(desc.get_io_channel)
    d.hold = True
    results: list[bool] = []
    env.call(lambda: desc.write_blocks(ch, bytes(512), 0, 1, lambda io, ok, a: results.append(ok), None))
    gone: list[int] = []
    env.call(lambda: unregister_bdev(d, gone.append))
    env.drain()
    assert env.events == [(BdevEvent.REMOVE, "U")]
    assert gone == [] and not d.destructed          # still open
    with pytest.raises(BdevError, match="'U' is being removed"):
        env.call(open_ext, "U", False, env.event_cb)
    # the outstanding I/O still completes cleanly
    env.call(d.release)
    env.until(lambda: results == [True])
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    env.until(lambda: gone == [0])
    assert d.destructed
    with pytest.raises(BdevError, match="bdev 'U' does not exist"):
        env.call(open_ext, "U", False, env.event_cb)
    kinds = [(n.type, n.ctx) for n in notify.get()]
    assert ("bdev_register", "U") in kinds and ("bdev_unregister", "U") in kinds


def test_duplicate_names_and_aliases_refused(env: Env) -> None:
    env.disk("A", aliases=["alias1"])
    with pytest.raises(BdevError, match="'A' already exists"):
        env.disk("A")
    with pytest.raises(BdevError, match="'alias1' already exists"):
        env.disk("B", aliases=["alias1"])
    assert core.get_bdev("alias1").name == "A"
    b = core.get_bdev("A")
    assert core.get_bdev(str(b.uuid)) is b


def test_resize_event(env: Env) -> None:
    d = env.disk("Rz", num_blocks=10)
    env.open("Rz")
    env.call(d.notify_blockcnt_change, 20)
    env.drain()
    assert env.events == [(BdevEvent.RESIZE, "Rz")] and d.num_blocks == 20
    with pytest.raises(BdevError, match="grow but not shrink"):
        d.notify_blockcnt_change(5)


# -- claims -------------------------------------------------------------------------------


class OtherModule(BdevModule):
    name = "other"


def test_claims(env: Env) -> None:
    d = env.disk("Cl")
    m1, m2 = OtherModule(), BdevModule()
    m2.name = "second"
    ro = env.open("Cl", write=False)
    d.claim(m1, ro)
    assert ro.writable and d.claimed and d.claim_type is ClaimType.EXCL_WRITE
    with pytest.raises(BdevError, match="claimed by module 'other'"):
        env.open("Cl", write=True)
    env.open("Cl", write=False)                      # readers are still welcome
    with pytest.raises(BdevError, match="already claimed"):
        d.claim(m2)
    d.release_claim(m1)
    env.open("Cl", write=True)
    with pytest.raises(BdevError, match="open for writing"):
        d.claim(m2, type=ClaimType.READ_MANY_WRITE_NONE)


def test_shared_read_claims(env: Env) -> None:
    d = env.disk("Sh")
    a, b = OtherModule(), BdevModule()
    b.name = "b"
    d.claim(a, type=ClaimType.READ_MANY_WRITE_NONE)
    d.claim(b, type=ClaimType.READ_MANY_WRITE_NONE)
    with pytest.raises(BdevError, match="cannot open it for writing"):
        env.open("Sh", write=True)
    with pytest.raises(BdevError):
        d.claim(_named("x"))          # exclusive claim refused while shared ones exist


def _named(name: str) -> BdevModule:
    m = BdevModule()
    m.name = name
    return m


# -- examine chain ------------------------------------------------------------------------


class Examiner(BdevModule):
    """Claims every bdev whose name starts with 'part' and registers a child on it."""

    name = "examiner"

    def __init__(self) -> None:
        self.configs: list[str] = []
        self.disks: list[str] = []
        self.pending: list[Any] = []

    def examine_config(self, bdev: Bdev) -> None:
        self.configs.append(bdev.name)
        if bdev.name.startswith("part"):
            bdev.claim(self)

    def examine_disk(self, bdev: Bdev, done: Any) -> None:
        self.disks.append(bdev.name)
        self.pending.append(done)   # finishes later, like a real partition-table read


def test_examine_chain_and_wait(env: Env) -> None:
    ex = Examiner()
    register_module(ex)
    try:
        env.disk("part0")
        env.drain()
        assert ex.configs == ["part0"] and ex.disks == ["part0"]
        assert core.get_bdev("part0").claimed
        waited: list[bool] = []
        env.call(core.wait_for_examine, lambda: waited.append(True))
        assert waited == [] and core.examine_in_progress() == 1
        env.call(ex.pending.pop())
        assert waited == [True]
        # a bdev registered by the examining module is examined in turn
        env.disk("plain")
        env.drain()
        assert ex.configs == ["part0", "plain"] and ex.disks == ["part0", "plain"]
    finally:
        del _modules["examiner"]


def test_auto_examine_off_needs_bdev_examine(env: Env) -> None:
    ex = Examiner()
    register_module(ex)
    try:
        core.options.bdev_auto_examine = False
        env.disk("quiet")
        env.drain()
        assert ex.configs == []
        env.call(core.examine, "quiet")
        assert ex.configs == ["quiet"]
    finally:
        del _modules["examiner"]


# -- QoS ----------------------------------------------------------------------------------


def test_qos_queues_and_releases_by_timeslice(env: Env) -> None:
    d = env.disk("Q", num_blocks=4096)
    desc = env.open("Q")
    ch = env.call(desc.get_io_channel)
    clock = [0]
    qos = Qos(d, None, now_ns=lambda: clock[0])
    d.qos = qos
    env.call(lambda: qos.set_limits(rw_ios_per_sec=2000))   # 2 per 1 ms slice
    done: list[int] = []

    def go() -> None:
        for i in range(7):
            assert desc.read_blocks(ch, bytearray(512), i, 1, lambda io, ok, a: done.append(a), i) == 0
    env.call(go)
    env.drain()
    assert done == [0, 1] and len(qos.queue) == 5
    env.call(qos.tick, 500_000)          # half a slice: no new budget
    env.drain()
    assert len(done) == 2
    env.call(qos.tick, 1_000_000)
    env.drain()
    assert done == [0, 1, 2, 3]
    env.call(qos.tick, 5_000_000)        # several slices pass: budget is capped at one slice
    env.drain()
    assert done == [0, 1, 2, 3, 4, 5]
    env.call(lambda: qos.set_limits(rw_ios_per_sec=0))   # off: the rest goes at once
    env.drain()
    assert done == list(range(7))


def test_qos_bandwidth_debt(env: Env) -> None:
    d = env.disk("QB", num_blocks=8192)
    desc = env.open("QB")
    ch = env.call(desc.get_io_channel)
    clock = [0]
    qos = Qos(d, None, now_ns=lambda: clock[0])
    d.qos = qos
    env.call(lambda: qos.set_limits(r_mbytes_per_sec=1))  # ~1048 bytes per slice
    done: list[int] = []
    env.call(lambda: [desc.read_blocks(ch, bytearray(4096), i * 8, 8, lambda io, ok, a: done.append(a), i)
                      for i in range(3)])
    env.drain()
    assert done == [0]                    # 4 KiB overdraws the budget: debt of ~3 slices
    env.call(qos.tick, 2_000_000)
    env.drain()
    assert done == [0]
    env.call(qos.tick, 4_000_000)
    env.drain()
    assert done == [0, 1]
    # FIFO like SPDK's: a write waits behind the queued read, then goes without charge
    env.call(lambda: desc.write_blocks(ch, bytes(512), 0, 1, lambda io, ok, a: done.append(a), 99))
    env.drain()
    assert done == [0, 1]
    env.call(qos.tick, 8_000_000)
    env.drain()
    assert done == [0, 1, 2, 99]
    assert qos.remaining[2] < 0 and qos.remaining[3] == 0


# -- histogram ----------------------------------------------------------------------------


def test_histogram_layout_matches_spdk() -> None:
    h = Histogram(7)
    assert h.num_ranges == 58 and len(h.buckets) == 58 * 128
    for v in [0, 1, 127, 128, 255, 256, 257, 511, 512, 1023, 1024, 4095, 10**6, 2**63, 2**64 - 1]:
        i = Histogram.index_of(v, 7)
        lo, hi = h.bucket_bounds(i)
        assert lo <= v < hi, v
    assert Histogram.index_of(127, 7) == 127
    assert Histogram.index_of(128, 7) == 128          # range 1, first bucket
    assert Histogram.index_of(256, 7) == 256          # range 2 starts at 256, buckets 2 wide
    assert Histogram.index_of(257, 7) == 256
    assert Histogram.index_of(258, 7) == 257
    assert Histogram.index_of(2**64 - 1, 7) == 58 * 128 - 1


def test_histogram_encoding_round_trip() -> None:
    h = Histogram(5)
    rng = random.Random(3)
    values = [rng.randrange(1, 10**7) for _ in range(500)]
    for v in values:
        h.tally(v)
    raw = base64.b64decode(h.encode())
    counts = struct.unpack(f"<{len(raw) // 8}Q", raw)
    assert len(counts) == (64 - 5 + 1) << 5 and sum(counts) == 500
    assert Histogram.decode(h.encode(), 5).buckets == h.buckets
    got = sorted((s, e) for s, e, c in h.iter_nonzero() for _ in range(c))
    for v, (s, e) in zip(sorted(values), got, strict=True):
        assert s <= v < e


def test_histogram_collected_on_io(env: Env) -> None:
    d = env.disk("Hg")
    desc = env.open("Hg")
    ch = env.call(desc.get_io_channel)
    d.enable_histogram(True, opc=WRITE)
    for _ in range(3):
        env.io(desc.write_blocks, ch, bytes(512), 0, 1)
    env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
    assert d.histogram is not None and d.histogram.total() == 3


# -- iostat -------------------------------------------------------------------------------


def test_iostat_counts_success_and_errors(env: Env) -> None:
    d = env.disk("St")
    desc = env.open("St")
    ch = env.call(desc.get_io_channel)
    for _ in range(3):
        assert env.io(desc.read_blocks, ch, bytearray(1024), 0, 2)[0]
    assert env.io(desc.write_blocks, ch, bytes(512), 0, 1)[0]
    d.fail_types = {WRITE}
    ok, status, _, _ = env.io(desc.write_blocks, ch, bytes(512), 0, 1)
    assert not ok and status == IoStatus.FAILED
    st = d.iostat().to_json()
    assert st["num_read_ops"] == 3 and st["bytes_read"] == 3 * 1024
    assert st["num_write_ops"] == 1 and st["bytes_written"] == 512
    assert st["io_error"] == {"failed": 1}
    assert st["read_latency_ticks"] >= st["max_read_latency_ticks"] >= st["min_read_latency_ticks"] > 0
    # the stats survive the channel going away
    env.call(desc.put_io_channel, ch)
    env.drain()
    assert d.iostat().to_json()["num_read_ops"] == 3
    d.reset_iostat("maxmin")
    st = d.iostat().to_json()
    assert st["num_read_ops"] == 3 and st["max_read_latency_ticks"] == 0
    d.reset_iostat("all")
    assert d.iostat().to_json()["num_read_ops"] == 0


def test_iostat_batched_accounting_matches_each_io(env: Env) -> None:
    """Completions delivered in one batch (runs of reads and writes, failures between
    them) are counted exactly as per-I/O accounting would: ops, bytes, latency sum/min/max."""
    d = env.disk("Sb", num_blocks=4096)
    desc = env.open("Sb")
    ch = env.call(desc.get_io_channel)
    d.fail_types = set()
    seen: dict[int, list[int]] = {READ: [], WRITE: []}
    nbytes = {READ: 0, WRITE: 0}
    failed = [0]
    rng = random.Random(7)

    def cb(io: Any, ok: bool, arg: Any) -> None:
        if ok:
            seen[io.type].append(ch.cpl_ns - io.submit_ns)
            nbytes[io.type] += io.nbytes
        else:
            failed[0] += 1

    def burst() -> None:
        # submitted one after another, so the submission times differ; all complete in
        # the same batch (the test module completes during submit)
        for i in range(200):
            n = rng.randrange(1, 5)
            kind = rng.choice((READ, READ, WRITE, WRITE, -1))
            if kind == READ:
                rc = desc.read_blocks(ch, bytearray(512 * n), i, n, cb)
            elif kind == WRITE:
                rc = desc.write_blocks(ch, bytes(512 * n), i, n, cb)
            else:
                d.fail_types = {WRITE}
                rc = desc.write_blocks(ch, bytes(512), i, 1, cb)
                d.fail_types = set()
            assert rc == 0
    for _ in range(3):
        env.call(burst)
        env.drain()
    s = d.iostat()
    for t in (READ, WRITE):
        assert seen[t] and s.ops[t] == len(seen[t]) and s.bytes[t] == nbytes[t]
        assert s.lat[t] == sum(seen[t])
        assert s.lat_max[t] == max(seen[t]) and s.lat_min[t] == min(seen[t])
    assert sum(s.errors.values()) == failed[0] > 0


# -- pools --------------------------------------------------------------------------------


def test_no_growth_across_100k_ios(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk("P", 512, 4096, optimal_io_boundary=16))
    desc = env.open("P")
    ch = env.call(desc.get_io_channel)
    rng = random.Random(5)
    offs = [rng.randrange(4000) for _ in range(1024)]
    state = {"n": 0, "inflight": 0}
    total = 100_000

    def cb(io: Any, ok: bool, k: int) -> None:
        assert ok
        state["n"] += 1
        state["inflight"] -= 1
        if state["n"] + state["inflight"] < total:
            submit(k)

    def submit(k: int) -> None:
        state["inflight"] += 1
        o = offs[(state["n"] + k) & 1023]
        if k % 3 == 0:
            rc = desc.read_blocks(ch, None, o, 8, cb, k)          # pooled buffer, maybe split
        elif k % 3 == 1:
            rc = desc.write_blocks(ch, bytes(4096), o, 8, cb, k)
        else:
            rc = desc.read_blocks(ch, memoryview(bytearray(4096)), o, 8, cb, k)
        assert rc == 0

    env.call(lambda: [submit(k) for k in range(64)])
    env.until(lambda: state["n"] >= 5000)
    ios, bufs = core._io_allocated, pool.created
    env.until(lambda: state["n"] >= total and state["inflight"] == 0)
    assert core._io_allocated == ios and pool.created == bufs
    assert ios <= 64 * 3 and bufs <= 64
    assert bdev.iostat().ops[READ] + bdev.iostat().ops[WRITE] == total


def test_bdev_io_pool_limit_gives_enomem(env: Env) -> None:
    env.disk("Lim")
    core.options.bdev_io_pool_size = 4
    desc = env.open("Lim")
    ch = env.call(desc.get_io_channel)
    d = core.get_bdev("Lim")
    d.hold = True
    rcs = env.call(lambda: [desc.read_blocks(ch, bytearray(512), 0, 1, lambda *a: None, None) for _ in range(6)])
    assert rcs == [0, 0, 0, 0, -12, -12]
    env.call(d.release)
    env.drain()
    assert env.call(lambda: desc.read_blocks(ch, bytearray(512), 0, 1, lambda *a: None, None)) == 0
