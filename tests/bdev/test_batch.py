"""BdevDesc.rw_batch: many reads or writes in one call; the module's submit_batch (malloc,
null) or the one-by-one fallback; completions in batches; iostat/histogram exact."""
from __future__ import annotations

import random
from typing import Any

import pytest

from spydk.bdev.io import FAILED, READ, SUCCESS, WRITE, BdevIO
from spydk.modules.bdev.malloc.malloc import create_malloc_disk
from spydk.modules.bdev.null.null import create_null_disk

from .conftest import Env


class Sink:
    """A batch callback recording what each call got (copied: the BdevIOs are recycled)."""

    def __init__(self, ch: Any, inside: list[bool]):
        self.ch = ch
        self.inside = inside
        self.calls: list[list[tuple[int, int, Any, int]]] = []   # (type, status, cb_arg, latency)

    def __call__(self, ios: list[BdevIO]) -> None:
        assert not self.inside[0], "a batch callback ran from inside rw_batch"
        self.calls.append([(io.type, io.status, io.cb_arg, self.ch.cpl_ns - io.submit_ns) for io in ios])

    def flat(self) -> list[tuple[int, int, Any, int]]:
        return [x for c in self.calls for x in c]


def _batch(env: Env, desc: Any, ch: Any, write: bool, bufs: list[Any], offs: list[int], nb: int,
           sink: Sink, args: list[Any]) -> int:
    def go() -> int:
        sink.inside[0] = True
        try:
            return desc.rw_batch(ch, write, bufs, offs, nb, sink, args)  # type: ignore[no-any-return]
        finally:
            sink.inside[0] = False
    n: int = env.call(go)
    env.drain()
    return n


def test_malloc_batch_writes_then_reads_one_module_call(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk("Mb", 512, 1024))
    desc = env.open("Mb")
    ch = env.call(desc.get_io_channel)
    assert ch.batch_fn is not None
    rng = random.Random(3)
    offs = rng.sample(range(0, 1024, 2), 64)
    data = [rng.randbytes(1024) for _ in offs]
    sink = Sink(ch, [False])
    assert _batch(env, desc, ch, True, [memoryview(bytearray(d)) for d in data], offs, 2, sink,
                  list(range(64))) == 64
    assert len(sink.calls) == 1 and [a for _, _, a, _ in sink.calls[0]] == list(range(64))
    assert all(t == WRITE and st == SUCCESS for t, st, _, _ in sink.calls[0])
    rbufs = [memoryview(bytearray(1024)) for _ in offs]
    sink2 = Sink(ch, [False])
    assert _batch(env, desc, ch, False, rbufs, offs, 2, sink2, list(range(64))) == 64
    assert len(sink2.calls) == 1
    assert [bytes(b) for b in rbufs] == data
    # iostat: exactly what per-I/O accounting of these completions gives
    s = bdev.iostat()
    for t, sk in ((WRITE, sink), (READ, sink2)):
        lats = [lat for _, _, _, lat in sk.flat()]
        assert s.ops[t] == 64 and s.bytes[t] == 64 * 1024
        assert s.lat[t] == sum(lats) and s.lat_max[t] == max(lats) and s.lat_min[t] == min(lats)
    assert ch.outstanding == 0
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)


def test_batch_refuses_bad_entries_from_the_first_one(env: Env) -> None:
    env.call(lambda: create_null_disk("Nb", 512, 64))
    desc = env.open("Nb")
    ch = env.call(desc.get_io_channel)
    sink = Sink(ch, [False])
    bufs = [bytearray(512) for _ in range(4)]
    # the third is past the end: two are submitted
    assert _batch(env, desc, ch, False, bufs, [0, 1, 64, 2], 1, sink, [0, 1, 2, 3]) == 2
    assert [a for _, _, a, _ in sink.flat()] == [0, 1]
    # a wrong-sized buffer stops it too
    assert _batch(env, desc, ch, False, [bytearray(512), bytearray(100)], [0, 1], 1, sink, [0, 1]) == 1
    with pytest.raises(ValueError, match="one of each per I/O"):
        env.call(lambda: desc.rw_batch(ch, False, bufs, [0, 1], 1, sink, [0, 1]))
    ro = env.open("Nb", write=False)
    assert env.call(lambda: ro.rw_batch(ch, True, bufs[:1], [0], 1, sink, [0])) == 0
    assert ch.outstanding == 0
    env.call(desc.put_io_channel, ch)


def test_fallback_one_by_one_for_modules_without_submit_batch(env: Env) -> None:
    d = env.disk("Fb", num_blocks=256)
    desc = env.open("Fb")
    ch = env.call(desc.get_io_channel)
    assert ch.batch_fn is None
    sink = Sink(ch, [False])
    bufs = [bytes([i]) * 512 for i in range(8)]
    assert _batch(env, desc, ch, True, bufs, list(range(8)), 1, sink, list("abcdefgh")) == 8
    assert all(len(c) == 1 for c in sink.calls) and [a for _, _, a, _ in sink.flat()] == list("abcdefgh")
    assert bytes(d.data[:8 * 512]) == b"".join(bufs)
    d.fail_types = {READ}
    assert _batch(env, desc, ch, False, [bytearray(512)], [0], 1, sink, ["x"]) == 1
    assert sink.flat()[-1][1] == FAILED and d.iostat().errors


def test_slow_channel_and_histogram_stay_exact(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk("Hb", 512, 256))
    bdev.enable_histogram(True, opc=READ)
    desc = env.open("Hb")
    ch = env.call(desc.get_io_channel)
    sink = Sink(ch, [False])
    assert _batch(env, desc, ch, False, [bytearray(512) for _ in range(10)], list(range(10)), 1, sink,
                  list(range(10))) == 10
    assert bdev.histogram.total() == 10
    # tracing (a slow channel) goes one by one through read_blocks, still counted
    env.call(lambda: ch.set_traced(True))
    try:
        assert _batch(env, desc, ch, False, [bytearray(512) for _ in range(5)], list(range(5)), 1, sink,
                      list(range(5))) == 5
    finally:
        env.call(lambda: ch.set_traced(False))
    assert len(sink.calls) == 1 + 5
    assert bdev.histogram.total() == 15 and bdev.iostat().ops[READ] == 15


def test_module_raising_in_submit_batch_fails_its_ios(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk("Rb", 512, 64))
    desc = env.open("Rb")
    ch = env.call(desc.get_io_channel)

    def boom(ctx: Any, ios: list[BdevIO]) -> None:
        ios[0].status = SUCCESS
        raise RuntimeError("module bug")
    ch.batch_fn = boom
    sink = Sink(ch, [False])
    assert _batch(env, desc, ch, False, [bytearray(512) for _ in range(3)], [0, 1, 2], 1, sink, [0, 1, 2]) == 3
    assert [st for _, st, _, _ in sink.flat()] == [SUCCESS, FAILED, FAILED]
    assert bdev.iostat().ops[READ] == 1 and ch.outstanding == 0


class Grab:
    """A batch callback keeping each read's data (copied inside the call, as a transport does
    when it queues the view for sending) and its status, by cb_arg."""

    def __init__(self) -> None:
        self.calls = 0
        self.data: dict[Any, tuple[int, bytes]] = {}

    def __call__(self, ios: list[BdevIO]) -> None:
        self.calls += 1
        for io in ios:
            self.data[io.cb_arg] = (io.status, b"".join(bytes(b) for b in io.iovs) if io.iovs else b"")


def test_zero_copy_reads_take_none_buffers(env: Env) -> None:
    """Reads with None buffers on a zero-copy bdev (malloc, null): one module call, each I/O's
    iovs a view of the bdev's data; iostat exact."""
    bdev = env.call(lambda: create_malloc_disk("Zb", 512, 256))
    desc = env.open("Zb")
    ch = env.call(desc.get_io_channel)
    rng = random.Random(5)
    offs = rng.sample(range(0, 256, 4), 20)
    data = [rng.randbytes(2048) for _ in offs]
    sink = Sink(ch, [False])
    assert _batch(env, desc, ch, True, data, offs, 4, sink, list(range(20))) == 20
    calls = []
    orig = ch.batch_fn

    def counting(ctx: Any, ios: list[BdevIO]) -> None:
        calls.append(len(ios))
        orig(ctx, ios)
    ch.batch_fn = counting
    grab = Grab()
    assert env.call(lambda: desc.rw_batch(ch, False, [None] * 20, offs, 4, grab, list(range(20)))) == 20
    env.drain()
    assert calls == [20] and grab.calls == 1
    assert [grab.data[i] for i in range(20)] == [(SUCCESS, d) for d in data]
    assert bdev.iostat().ops[READ] == 20 and bdev.iostat().bytes[READ] == 20 * 2048
    # a None buffer for a write is refused where it stands, as a wrong-sized one is
    assert _batch(env, desc, ch, True, [data[0], None], offs[:2], 4, sink, [0, 1]) == 1
    assert ch.outstanding == 0
    env.call(desc.put_io_channel, ch)
    env.call(lambda: create_null_disk("Zn", 512, 64))
    nd = env.open("Zn")
    nch = env.call(nd.get_io_channel)
    grab = Grab()
    assert env.call(lambda: nd.rw_batch(nch, False, [None, None], [0, 8], 8, grab, ["a", "b"])) == 2
    env.drain()
    assert grab.data == {"a": (SUCCESS, bytes(4096)), "b": (SUCCESS, bytes(4096))}
    env.call(nd.put_io_channel, nch)


def test_none_buffers_on_a_copying_bdev_take_pooled_buffers(env: Env) -> None:
    """A bdev without zero-copy reads: rw_batch gives each None read a pooled buffer of
    exactly its size, the batch stays one module call, and every buffer is back in the
    pool once the callback has read it."""
    from spydk.bdev.iobuf import pool

    def out() -> int:
        st = pool.stats()
        return st["small_created"] + st["large_created"] - st["small_free"] - st["large_free"]
    d = env.disk("Pb", num_blocks=64)
    desc = env.open("Pb")
    ch = env.call(desc.get_io_channel)
    blobs = [bytes([i + 1]) * 512 for i in range(4)]
    sink = Sink(ch, [False])
    assert _batch(env, desc, ch, True, blobs, [3, 4, 5, 6], 1, sink, [0, 1, 2, 3]) == 4
    calls: list[int] = []

    def copy(ctx: Any, ios: list[BdevIO]) -> None:
        calls.append(len(ios))
        for io in ios:
            assert io.pool_buf is not None and io.iovs is not None and len(io.iovs[0]) == io.nbytes
            off = io.offset_blocks * 512
            io.iovs[0][:] = d.data[off:off + io.nbytes]
            io.status = SUCCESS
    ch.batch_fn = copy  # as if the module could batch
    before = out()
    grab = Grab()
    assert env.call(lambda: desc.rw_batch(ch, False, [None] * 4, [3, 4, 5, 6], 1, grab, [0, 1, 2, 3])) == 4
    env.drain()
    assert calls == [4]
    assert [grab.data[i] for i in range(4)] == [(SUCCESS, b) for b in blobs]
    assert d.iostat().ops[READ] == 4 and ch.outstanding == 0
    assert out() == before
    env.call(desc.put_io_channel, ch)


def test_handed_back_ios_go_one_by_one_and_count_once(env: Env) -> None:
    """A submit_batch may finish some I/Os and hand the others back untouched: those go
    through submit_request one at a time and complete alone; iostat counts each I/O once."""
    bdev = env.call(lambda: create_malloc_disk("Pb", 512, 256))
    whole = bdev.submit_batch

    def partial(ctx: Any, ios: list[BdevIO]) -> list[BdevIO]:
        mine = ios[0::2]
        whole(ctx, mine)
        return ios[1::2]
    bdev.submit_batch = partial  # before the channel exists: it takes the module's function
    desc = env.open("Pb")
    ch = env.call(desc.get_io_channel)
    sink = Sink(ch, [False])
    data = [bytes([i + 1]) * 512 for i in range(9)]
    assert _batch(env, desc, ch, True, data, list(range(9)), 1, sink, list(range(9))) == 9
    assert sorted(len(c) for c in sink.calls) == [1, 1, 1, 1, 5]
    assert {a for c in sink.calls if len(c) == 5 for _, _, a, _ in c} == {0, 2, 4, 6, 8}
    assert all(st == SUCCESS for _, st, _, _ in sink.flat())
    rbufs = [bytearray(512) for _ in range(9)]
    sink2 = Sink(ch, [False])
    assert _batch(env, desc, ch, False, rbufs, list(range(9)), 1, sink2, list(range(9))) == 9
    assert [bytes(b) for b in rbufs] == data
    s = bdev.iostat()
    assert s.ops[WRITE] == 9 and s.ops[READ] == 9 and s.bytes[READ] == 9 * 512
    assert ch.outstanding == 0
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    # everything handed back: no batch completion at all, each I/O alone
    b2 = env.call(lambda: create_malloc_disk("Pc", 512, 16))
    b2.submit_batch = lambda ctx, ios: ios
    d2 = env.open("Pc")
    ch2 = env.call(d2.get_io_channel)
    sink3 = Sink(ch2, [False])
    assert _batch(env, d2, ch2, False, [bytearray(512) for _ in range(3)], [0, 1, 2], 1, sink3, [0, 1, 2]) == 3
    assert [len(c) for c in sink3.calls] == [1, 1, 1] and b2.iostat().ops[READ] == 3
    assert ch2.outstanding == 0
    env.call(d2.put_io_channel, ch2)
    env.call(d2.close)
