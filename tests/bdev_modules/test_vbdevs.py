"""passthru, delay, error and split: data integrity, examine order, errors, delete."""
from __future__ import annotations

from typing import Any

import pytest

from spydk.bdev.bdev import BdevError, BdevEvent, get_bdev, open_ext
from spydk.bdev.io import FAILED, SUCCESS
from spydk.modules.bdev.delay import delay
from spydk.modules.bdev.error import error
from spydk.modules.bdev.malloc.malloc import create_malloc_disk, delete_malloc_disk
from spydk.modules.bdev.passthru import passthru
from spydk.modules.bdev.split import split

from .conftest import call
from .helpers import read_all, verify


def malloc(env: Any, name: str = "M0", blocks: int = 2048, bs: int = 512, **kw: Any) -> Any:
    return call(env, create_malloc_disk, name, bs, blocks, **kw)


def roundtrip(env: Any, name: str, rounds: int = 20) -> bytes:
    desc = env.open(name)
    ch = env.call(desc.get_io_channel)
    model = verify(env, desc, ch, rounds=rounds)
    ok, *_ = env.io(desc.reset, ch)
    assert ok
    assert read_all(env, desc, ch) == bytes(model)
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    return bytes(model)


def test_passthru_forwards_and_claims(env: Any) -> None:
    malloc(env)
    assert call(env, passthru.create_passthru, "M0", "PT0") == "PT0"
    env.drain()
    model = roundtrip(env, "PT0")
    with pytest.raises(BdevError, match="claimed"):
        env.open("M0", write=True)
    base = env.open("M0", write=False)
    ch = env.call(base.get_io_channel)
    assert read_all(env, base, ch) == model  # the data is really on the base
    env.call(base.put_io_channel, ch)
    env.call(base.close)
    with pytest.raises(BdevError, match="already exists"):
        call(env, passthru.create_passthru, "M0", "PT0")


def test_passthru_waits_for_its_base(env: Any) -> None:
    call(env, passthru.create_passthru, "LATER", "PT1")
    assert get_bdev("PT1") is None
    malloc(env, "LATER")
    env.drain()
    assert get_bdev("PT1") is not None
    cfg = passthru.module.config_json()
    assert cfg[0]["params"]["base_bdev_name"] == "LATER" and cfg[0]["params"]["name"] == "PT1"


def test_base_hot_remove_removes_the_vbdev(env: Any) -> None:
    malloc(env)
    call(env, passthru.create_passthru, "M0", "PT0")
    env.drain()
    events: list[Any] = []
    desc = env.call(open_ext, "PT0", True, lambda ev, b, c: events.append(ev))
    rc: list[int] = []
    env.call(delete_malloc_disk, "M0", rc.append)
    env.until(lambda: BdevEvent.REMOVE in events)
    env.call(desc.close)
    env.until(lambda: rc == [0])
    assert get_bdev("PT0") is None and get_bdev("M0") is None


def test_delay_holds_completions_and_delete_with_outstanding_io(env: Any) -> None:
    malloc(env)
    call(env, delay.create_delay, "M0", "D0", 20000, 30000, 20000, 30000)
    env.drain()
    events: list[Any] = []
    desc = env.call(open_ext, "D0", True, lambda ev, b, c: events.append(ev))
    ch = env.call(desc.get_io_channel)
    done: list[bool] = []
    rc = env.call(desc.write_blocks, ch, bytearray(b"x" * 512), 3, 1, lambda io, ok, a: done.append(ok))
    assert rc == 0
    deleted: list[int] = []
    env.call(delay.delete_delay, "D0", deleted.append)
    env.until(lambda: BdevEvent.REMOVE in events)
    assert not done  # still held by the delay
    env.until(lambda: done == [True])  # the held I/O completes cleanly
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    env.until(lambda: deleted == [0])
    with pytest.raises(BdevError, match="does not exist"):
        env.open("D0")


def test_delay_roundtrip_and_update(env: Any) -> None:
    malloc(env)
    call(env, delay.create_delay, "M0", "D1", 10, 50, 10, 50)
    env.drain()
    roundtrip(env, "D1", rounds=10)
    call(env, delay.update_latency, "D1", "avg_read", 40)
    assert delay.module.configs["D1"].latencies_us == [40, 50, 10, 50]
    with pytest.raises(BdevError, match="p99_read_latency 50 is below avg_read_latency 60"):
        call(env, delay.update_latency, "D1", "avg_read", 60)
    with pytest.raises(BdevError, match="p99_write_latency"):
        call(env, delay.create_delay, "M0", "D2", 1, 1, 5, 4)


def test_error_injection(env: Any) -> None:
    malloc(env)
    assert call(env, error.create_error_bdev, "M0") == "EE_M0"
    roundtrip(env, "EE_M0", rounds=8)
    desc = env.open("EE_M0")
    ch = env.call(desc.get_io_channel)
    call(env, error.inject_error, "EE_M0", "read", "failure", 2)
    for _ in range(2):
        ok, status, _, _ = env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
        assert not ok and status == FAILED
    ok, status, _, _ = env.io(desc.write_blocks, ch, bytearray(b"w" * 512), 0, 1)
    assert ok  # writes were never targeted
    ok, status, data, _ = env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
    assert ok and status == SUCCESS and data == b"w" * 512
    assert desc.bdev.iostat().errors.get(FAILED) == 2
    call(env, error.inject_error, "EE_M0", "read", "corrupt_data", 1, corrupt_offset=5, corrupt_value=0xFF)
    ok, _, data, _ = env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
    assert ok and data[5] == ord("w") ^ 0xFF and data[:5] == b"wwwww"
    call(env, error.inject_error, "EE_M0", "write", "nomem", 1)
    ok, *_ = env.io(desc.write_blocks, ch, bytearray(b"n" * 512), 1, 1)
    assert ok  # NOMEM is retried by the layer
    call(env, error.inject_error, "EE_M0", "all", "pending", 1)
    got: list[bool] = []
    env.call(desc.read_blocks, ch, bytearray(512), 0, 1, lambda io, ok, a: got.append(ok))
    env.drain()
    assert not got
    env.call(lambda: error._error_bdev("EE_M0").resume_pending())
    env.until(lambda: got == [True])
    with pytest.raises(BdevError, match="corrupt_value"):
        call(env, error.inject_error, "EE_M0", "read", "corrupt_data", 1)
    with pytest.raises(BdevError, match="error_type"):
        call(env, error.inject_error, "EE_M0", "read", "bogus", 1)
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    with pytest.raises(BdevError, match="does not exist"):
        call(env, error.create_error_bdev, "nothing")


def test_split_parts_and_boundaries(env: Any) -> None:
    malloc(env, blocks=4096)
    names = call(env, split.create_split, "M0", 3)
    assert names == ["M0p0", "M0p1", "M0p2"]
    env.drain()
    parts = [get_bdev(n) for n in names]
    assert all(p is not None and p.num_blocks == 4096 // 3 for p in parts)
    models = [roundtrip(env, n, rounds=8) for n in names]
    base = env.open("M0", write=False)
    ch = env.call(base.get_io_channel)
    whole = read_all(env, base, ch)
    per = (4096 // 3) * 512
    for i, m in enumerate(models):
        assert whole[i * per:(i + 1) * per] == m
    env.call(base.put_io_channel, ch)
    env.call(base.close)
    with pytest.raises(BdevError, match="already split"):
        call(env, split.create_split, "M0", 2)
    rc: list[int] = []
    env.call(split.delete_split, "M0", rc.append)
    env.until(lambda: rc == [0])
    env.drain()
    assert all(get_bdev(n) is None for n in names)
    env.open("M0", write=True)  # the claim is gone


def test_split_by_size_examine_and_errors(env: Any) -> None:
    assert call(env, split.create_split, "M9", 2, 1) == []
    malloc(env, "M9", blocks=8192)  # 4 MiB
    env.drain()
    assert get_bdev("M9p0").num_blocks == 2048 and get_bdev("M9p1") is not None  # type: ignore[union-attr]
    malloc(env, "M8", blocks=2048)
    with pytest.raises(BdevError, match="exceeds"):
        call(env, split.create_split, "M8", 3, 1)
    with pytest.raises(BdevError, match="split_count must be at least 1"):
        call(env, split.create_split, "M8", 0)
