"""Data integrity through malloc, null and the layer's splitting, vectors and reset."""
from __future__ import annotations

import random
from typing import Any

import pytest

from spydk.bdev.bdev import BdevChannel, BdevDesc, register_bdev
from spydk.bdev.io import COMPARE, FAILED, READ, RESET, SUCCESS, WRITE, WRITE_ZEROES, IoStatus
from spydk.modules.bdev.malloc.malloc import create_malloc_disk
from spydk.modules.bdev.null.null import create_null_disk

from .conftest import Env
from .conftest import TestDisk as _TestDisk


def odd_iovs(rng: random.Random, nbytes: int) -> list[memoryview]:
    """Buffers of odd lengths summing to nbytes."""
    out = []
    left = nbytes
    while left:
        n = min(left, rng.choice((1, 7, 100, 511, 513, 4095, 9000)))
        out.append(memoryview(bytearray(n)))
        left -= n
    return out


def fill(iovs: list[memoryview], data: bytes) -> None:
    pos = 0
    for v in iovs:
        v[:] = data[pos:pos + len(v)]
        pos += len(v)


def verify_random(env: Env, desc: BdevDesc, ch: BdevChannel, rounds: int, seed: int,
                  reset_every: int = 0) -> None:
    rng = random.Random(seed)
    bdev = desc.bdev
    bs = bdev.block_size
    shadow = bytearray(bdev.num_blocks * bs)
    for r in range(rounds):
        n = rng.randint(1, 40)
        off = rng.randrange(bdev.num_blocks - n + 1)
        data = rng.randbytes(n * bs)
        if rng.random() < 0.5:
            ok, *_ = env.io(desc.write_blocks, ch, memoryview(bytearray(data)), off, n)
        else:
            iovs = odd_iovs(rng, n * bs)
            fill(iovs, data)
            ok, *_ = env.io(desc.writev_blocks, ch, iovs, off, n)
        assert ok
        shadow[off * bs:(off + n) * bs] = data
        # read back a random window around it, vectored or not
        ro = max(0, off - rng.randint(0, 5))
        rn = min(bdev.num_blocks - ro, n + rng.randint(0, 10))
        if rng.random() < 0.5:
            buf = memoryview(bytearray(rn * bs))
            ok, _, _, _ = env.io(desc.read_blocks, ch, buf, ro, rn)
            got = bytes(buf)
        else:
            iovs = odd_iovs(rng, rn * bs)
            ok, _, _, _ = env.io(desc.readv_blocks, ch, iovs, ro, rn)
            got = b"".join(bytes(v) for v in iovs)
        assert ok
        assert got == bytes(shadow[ro * bs:(ro + rn) * bs]), f"round {r}"
        if reset_every and r % reset_every == reset_every - 1:
            ok, *_ = env.io(desc.reset, ch)
            assert ok


@pytest.mark.parametrize("boundary", [0, 8])
def test_malloc_verify_random(env: Env, boundary: int) -> None:
    bdev = env.call(lambda: create_malloc_disk(None, 512, 2048, optimal_io_boundary=boundary))
    assert bdev.name == "Malloc0"
    desc = env.open(bdev.name)
    ch = env.call(desc.get_io_channel)
    verify_random(env, desc, ch, 150, seed=boundary, reset_every=40)
    if boundary:
        assert bdev.split_on_optimal_io_boundary


def test_malloc_4k_blocks_and_buffer_less_read(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk("M4k", 4096, 64))
    desc = env.open("M4k")
    ch = env.call(desc.get_io_channel)
    data = bytes(range(256)) * 16
    ok, *_ = env.io(desc.write_blocks, ch, data * 2, 3, 2)
    assert ok
    ok, _, got, _ = env.io(desc.read_blocks, ch, None, 3, 2)   # zero copy from malloc memory
    assert ok and got == data * 2
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 4, 1)
    ok, _, got, _ = env.io(desc.read_blocks, ch, None, 3, 2)
    assert got == data + bytes(4096)
    assert bdev.zcopy_read


def test_split_children_and_data(env: Env) -> None:
    d = env.disk("S", optimal_io_boundary=8, split_on_optimal_io_boundary=True, max_rw_blocks=5)
    desc = env.open("S")
    ch = env.call(desc.get_io_channel)
    data = bytes(random.Random(1).randbytes(20 * 512))
    ok, *_ = env.io(desc.write_blocks, ch, data, 6, 20)
    assert ok
    # blocks 6..26: boundary at 8, 16, 24; max 5 per child
    assert [(o, n) for t, o, n in d.log] == [(6, 2), (8, 5), (13, 3), (16, 5), (21, 3), (24, 2)]
    assert bytes(d.data[6 * 512:26 * 512]) == data
    d.log.clear()
    iovs = odd_iovs(random.Random(2), 20 * 512)
    ok, *_ = env.io(desc.readv_blocks, ch, iovs, 6, 20)
    assert ok and b"".join(bytes(v) for v in iovs) == data
    assert all(t == READ for t, _, _ in d.log) and len(d.log) == 6


def test_split_child_failure_fails_parent(env: Env) -> None:
    d = env.disk("S", max_rw_blocks=4)
    desc = env.open("S")
    ch = env.call(desc.get_io_channel)
    d.fail_types = {WRITE}
    ok, status, _, rc = env.io(desc.write_blocks, ch, bytes(16 * 512), 0, 16)
    assert rc == 0 and not ok and status == IoStatus.FAILED
    # the failure stopped further children
    assert len(d.log) <= 4


def test_range_and_buffer_checks_return_errno(env: Env) -> None:
    env.disk("R", num_blocks=100)
    desc = env.open("R")
    ro = env.open("R", write=False)
    ch = env.call(desc.get_io_channel)
    buf = bytearray(512)
    for args in [(buf, 100, 1), (buf, 99, 2), (buf, -1, 1), (buf, 0, 0)]:
        assert env.io(desc.read_blocks, ch, *args)[3] == -22
    assert env.io(desc.read_blocks, ch, bytearray(511), 0, 1)[3] == -22   # buffer too small
    assert env.io(ro.write_blocks, ch, buf, 0, 1)[3] == -9                  # EBADF
    assert env.io(desc.unmap_blocks, ch, 0, 1)[3] == -95                    # test disk: no UNMAP
    assert env.io(desc.read, ch, buf, 1, 512)[3] == -22                     # unaligned byte offset
    ok, *_ = env.io(desc.read, ch, buf, 512, 512)
    assert ok


def test_null_discards_and_leaves_buffers(env: Env) -> None:
    create = env.call(lambda: create_null_disk("Null0", 512, 100))
    desc = env.open("Null0")
    ch = env.call(desc.get_io_channel)
    ok, *_ = env.io(desc.write_blocks, ch, b"\xaa" * 1024, 0, 2)
    assert ok
    buf = bytearray(b"\x55" * 1024)
    ok, *_ = env.io(desc.read_blocks, ch, buf, 0, 2)
    assert ok and buf == bytearray(b"\x55" * 1024)   # SPDK's null does not touch read buffers
    ok, _, got, _ = env.io(desc.read_blocks, ch, None, 0, 2)
    assert ok and got == bytes(1024)                   # a buffer-less read sees zeroes
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 0, 100)
    assert ok
    assert create.supports(WRITE_ZEROES)


def test_write_zeroes_emulated_with_writes(env: Env) -> None:
    d = env.disk("Z", num_blocks=4096)
    d.data[:] = b"\xff" * len(d.data)
    desc = env.open("Z")
    ch = env.call(desc.get_io_channel)
    assert d.supports(WRITE_ZEROES) and not d.io_type_supported(WRITE_ZEROES)
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 10, 3000)   # > the 1 MiB zero buffer
    assert ok
    assert d.data[10 * 512:3010 * 512] == bytes(3000 * 512)
    assert d.data[:10 * 512] == b"\xff" * (10 * 512) and d.data[3010 * 512:3011 * 512] == b"\xff" * 512
    assert {t for t, _, _ in d.log} == {WRITE} and len(d.log) == 2


@pytest.mark.parametrize("native", [True, False])
def test_compare_and_compare_and_write(env: Env, native: bool) -> None:
    if native:
        bdev = env.call(lambda: create_malloc_disk("C", 512, 64))
    else:
        bdev = env.disk("C", num_blocks=64)
    assert bdev.io_type_supported(COMPARE) is native
    desc = env.open("C")
    ch = env.call(desc.get_io_channel)
    a, b = b"a" * 1024, b"b" * 1024
    assert env.io(desc.write_blocks, ch, a, 4, 2)[0]
    assert env.io(desc.compare_blocks, ch, a, 4, 2)[0]
    ok, status, _, _ = env.io(desc.compare_blocks, ch, b, 4, 2)
    assert not ok and status == IoStatus.MISCOMPARE
    ok, status, _, _ = env.io(desc.compare_and_write_blocks, ch, [b], [b], 4, 2)
    assert not ok and status == IoStatus.MISCOMPARE
    assert env.io(desc.compare_blocks, ch, a, 4, 2)[0]          # unchanged
    assert env.io(desc.compare_and_write_blocks, ch, [a], [b], 4, 2)[0]
    assert env.io(desc.compare_blocks, ch, b, 4, 2)[0]


def test_reset_waits_for_outstanding_io(env: Env) -> None:
    d = env.disk("H")
    desc = env.open("H")
    ch = env.call(desc.get_io_channel)
    done: list[str] = []

    def cb(io: Any, ok: bool, tag: str) -> None:
        done.append(tag)

    def go() -> None:
        d.hold = True
        assert desc.write_blocks(ch, bytes(512), 0, 1, cb, "w1") == 0
        assert desc.reset(ch, cb, "reset") == 0
        assert desc.read_blocks(ch, bytearray(512), 0, 1, cb, "r-after") == 0
    env.call(go)
    env.drain()
    assert done == []                       # reset waits for w1; r-after waits for reset
    assert (RESET, 0, 0) not in d.log
    d.hold = False
    env.call(d.release)
    env.until(lambda: len(done) == 3)
    assert done == ["w1", "reset", "r-after"]
    assert d.log.index((RESET, 0, 0)) < d.log.index((READ, 0, 1))


def test_submit_from_callback_does_not_recurse(env: Env) -> None:
    bdev = env.call(lambda: create_malloc_disk(None, 512, 64))
    desc = env.open(bdev.name)
    ch = env.call(desc.get_io_channel)
    count = [0]
    buf = memoryview(bytearray(512))

    def cb(io: Any, ok: bool, arg: Any) -> None:
        count[0] += 1
        if count[0] < 20000:      # deeper than the recursion limit if completions were inline
            desc.read_blocks(ch, buf, count[0] % 64, 1, cb, None)
    env.call(lambda: desc.read_blocks(ch, buf, 0, 1, cb, None))
    env.until(lambda: count[0] >= 20000)


class ReturningDisk(_TestDisk):
    """Finishes every I/O by returning its status from submit_request (no io.complete)."""

    def submit_request(self, ctx: Any, io: Any) -> int:
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


def test_module_may_return_the_status(env: Env) -> None:
    d = ReturningDisk("Ret", optimal_io_boundary=8, split_on_optimal_io_boundary=True)
    env.call(register_bdev, d)
    desc = env.open("Ret")
    ch = env.call(desc.get_io_channel)
    data = bytes(range(256)) * 24                                       # 12 blocks: split in 2
    assert env.io(desc.write_blocks, ch, data, 6, 12)[0]
    ok, status, got, _ = env.io(desc.read_blocks, ch, bytearray(len(data)), 6, 12)
    assert ok and status == IoStatus.SUCCESS and got == data
    assert (WRITE, 6, 2) in d.log and (WRITE, 8, 8) in d.log and (WRITE, 16, 2) in d.log
    assert env.io(desc.reset, ch)[0]
    d.fail_types = {READ}
    ok, status, _, _ = env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
    assert not ok and status == IoStatus.FAILED
    st = d.iostat()
    assert st.ops[WRITE] == 1 and st.ops[READ] == 1 and st.errors == {IoStatus.FAILED: 1}
