"""BdevDesc.stacked_rw: the pass-through a stacked module (lvol) uses from its submit_request.

An I/O the base module answers at once is accounted and recycled in the call (return 1,
no callback); anything else takes the ordinary completion path (return 0, callback later)."""
from __future__ import annotations

import errno
from typing import Any

from spydk.bdev import register_bdev
from spydk.bdev.io import FAILED, READ, RESET, SUCCESS, UNMAP, WRITE, BdevIO, IoStatus
from spydk.modules.bdev.malloc.malloc import create_malloc_disk

from .conftest import Env
from .conftest import TestDisk as _TestDisk


class ReturningDisk(_TestDisk):
    """Returns the status from submit_request (as malloc and null do)."""

    def submit_request(self, ctx: Any, io: BdevIO) -> int:  # type: ignore[override]
        self.log.append((io.type, io.offset_blocks, io.num_blocks))
        if io.type in self.fail_types:
            return FAILED
        off = io.offset_blocks * self.block_size
        mv = memoryview(self.data)[off:off + io.nbytes]
        if io.type == READ:
            io.scatter(mv)
        elif io.type == WRITE:
            io.gather_into(mv)
        return SUCCESS


def _stacked(env: Env, desc: Any, ch: Any, t: int, iovs: list[Any], off: int, n: int) -> tuple[int, list[bool]]:
    """Call stacked_rw on the app thread; the list collects the callback's ok values (and
    asserts the callback never ran inside the call)."""
    got: list[bool] = []

    def go() -> int:
        rc: int = desc.stacked_rw(ch, t, iovs, off, n, lambda io, ok, arg: got.append(ok), None)
        assert got == [], "called back from inside stacked_rw"
        return rc
    return env.call(go), got


def test_inline_completion_is_accounted_without_callback(env: Env) -> None:
    env.call(create_malloc_disk, "M0", 512, 64)
    desc = env.open("M0")
    ch = env.call(desc.get_io_channel)
    free = len(ch.free)
    data = bytes(range(256)) * 8
    rc, got = _stacked(env, desc, ch, WRITE, [memoryview(data)], 4, 4)
    assert rc == 1 and got == []
    buf = [memoryview(bytearray(1024)), memoryview(bytearray(1024))]   # two iovs, 4 blocks
    rc, got = _stacked(env, desc, ch, READ, buf, 4, 4)
    env.drain()
    assert rc == 1 and got == []
    assert bytes(buf[0]) + bytes(buf[1]) == data
    st = desc.bdev.iostat()
    assert st.ops[WRITE] == 1 and st.ops[READ] == 1
    assert st.bytes[WRITE] == 2048 and st.bytes[READ] == 2048
    assert st.lat[READ] > 0 and st.lat_max[READ] >= st.lat_min[READ] > 0
    assert ch.outstanding == 0 and not ch.cq
    assert len(ch.free) == max(free, 1)   # the one BdevIO used went back


def test_later_completions_call_back(env: Env) -> None:
    d = env.disk("T0")                     # completes with io.complete() inside submit: queued
    desc = env.open("T0")
    ch = env.call(desc.get_io_channel)
    rc, got = _stacked(env, desc, ch, WRITE, [memoryview(b"\x5a" * 512)], 3, 1)
    assert rc == 0
    env.until(lambda: got == [True])
    d.hold = True
    buf = memoryview(bytearray(512))
    rc, got = _stacked(env, desc, ch, READ, [buf], 3, 1)
    env.drain()
    assert rc == 0 and got == []           # held by the disk
    env.call(d.release)
    env.until(lambda: got == [True])
    assert bytes(buf) == b"\x5a" * 512
    assert d.iostat().ops[READ] == 1 and ch.outstanding == 0


def test_inline_failure_takes_the_completion_path(env: Env) -> None:
    d = ReturningDisk("R0")
    env.call(register_bdev, d)
    desc = env.open("R0")
    ch = env.call(desc.get_io_channel)
    d.fail_types = {READ}
    rc, got = _stacked(env, desc, ch, READ, [memoryview(bytearray(512))], 0, 1)
    assert rc == 0
    env.until(lambda: got == [False])
    assert d.iostat().errors == {IoStatus.FAILED: 1} and ch.outstanding == 0


def test_split_channel_goes_the_ordinary_way(env: Env) -> None:
    d = ReturningDisk("S0", optimal_io_boundary=8, split_on_optimal_io_boundary=True)
    env.call(register_bdev, d)
    desc = env.open("S0")
    ch = env.call(desc.get_io_channel)
    data = bytes(range(256)) * 24                     # 12 blocks across a boundary
    rc, got = _stacked(env, desc, ch, WRITE, [memoryview(data)], 6, 12)
    assert rc == 0
    env.until(lambda: got == [True])
    assert (WRITE, 6, 2) in d.log and (WRITE, 8, 8) in d.log and (WRITE, 16, 2) in d.log
    assert bytes(d.data[6 * 512:18 * 512]) == data


def test_refusals_return_errno_and_never_call_back(env: Env) -> None:
    env.call(create_malloc_disk, "M1", 512, 64)
    ro = env.open("M1", write=False)
    ch = env.call(ro.get_io_channel)
    one = [memoryview(bytearray(512))]
    assert _stacked(env, ro, ch, WRITE, one, 0, 1) == (-errno.EBADF, [])
    assert _stacked(env, ro, ch, UNMAP, one, 0, 1) == (-errno.EINVAL, [])
    assert _stacked(env, ro, ch, RESET, one, 0, 1) == (-errno.EINVAL, [])
    assert _stacked(env, ro, ch, READ, one, 64, 1) == (-errno.EINVAL, [])      # past the end
    assert _stacked(env, ro, ch, READ, one, 0, 2) == (-errno.EINVAL, [])       # buffer too short
    assert _stacked(env, ro, ch, READ, [memoryview(bytearray(100))] * 2, 0, 1) == (-errno.EINVAL, [])
    env.drain()
    assert ch.outstanding == 0 and ro.bdev.iostat().ops[READ] == 0


def test_inline_statistics_match_per_io_accounting(env: Env, monkeypatch: Any) -> None:
    """The inline path defers its counting (IoStat.pending, folded in C): iostat, the
    per-channel JSON and reset_iostat still see every I/O exactly, and the pending lists
    stay bounded however long nobody reads them."""
    import spydk.bdev.desc as desc_mod
    from spydk.bdev.stats import PENDING_MAX

    ticks = iter(range(10**9))
    lats: dict[int, list[int]] = {READ: [], WRITE: []}
    nbytes: dict[int, int] = {READ: 0, WRITE: 0}
    state = {"start": 0, "step": 0}

    def clock() -> int:  # alternates start/end; each I/O's latency is a known 1..37
        if state["step"] == 0:
            state["start"] = next(ticks) * 100
            state["step"] = 1
            return state["start"]
        state["step"] = 0
        return state["start"] + state["lat"]

    monkeypatch.setattr(desc_mod, "_now", clock)
    env.call(create_malloc_disk, "M2", 512, 256)
    desc = env.open("M2")
    ch = env.call(desc.get_io_channel)
    for i in range(700):                                   # > PENDING_MAX / 2 I/Os per type
        t = READ if i % 3 else WRITE
        n = 1 + i % 5
        state["lat"] = 1 + (i * 7) % 37
        rc, _ = _stacked(env, desc, ch, t, [memoryview(bytearray(512 * n))], i % 200, n)
        assert rc == 1
        lats[t].append(state["lat"])
        nbytes[t] += 512 * n
        assert all(len(p) < PENDING_MAX for p in ch.stat.pending)
    st = desc.bdev.iostat()
    for t in (READ, WRITE):
        assert st.ops[t] == len(lats[t]) and st.bytes[t] == nbytes[t]
        assert st.lat[t] == sum(lats[t])
        assert st.lat_max[t] == max(lats[t]) and st.lat_min[t] == min(lats[t])
    js = ch.stat.to_json()
    assert js["num_read_ops"] == len(lats[READ]) and js["bytes_written"] == nbytes[WRITE]
    assert js["min_read_latency_ticks"] == min(lats[READ])
    state["lat"] = 40                                       # pending at reset time: folded first
    _stacked(env, desc, ch, READ, [memoryview(bytearray(512))], 0, 1)
    env.call(desc.bdev.reset_iostat, "maxmin")
    st = desc.bdev.iostat()
    assert st.ops[READ] == len(lats[READ]) + 1 and st.lat[READ] == sum(lats[READ]) + 40
    assert st.lat_max[READ] == 0                            # max/min cleared, counts kept
    env.call(desc.bdev.reset_iostat, "all")
    assert desc.bdev.iostat().ops[READ] == 0
