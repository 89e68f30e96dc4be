"""aio and uring bdevs: data integrity, O_DIRECT and its fallback, errors, delete, flush."""
from __future__ import annotations

import os
from typing import Any

import pytest

from spydk.bdev.bdev import BdevError, BdevEvent, get_bdev, open_ext
from spydk.bdev.io import FAILED, SUCCESS
from spydk.modules.bdev.aio import aio
from spydk.modules.bdev.uring import uring

from .helpers import read_all, verify

KINDS = {"aio": lambda name, path, **kw: aio.create_aio_disk(name, path, **kw),
         "uring": lambda name, path, **kw: uring.create_uring_disk(name, path, **kw)}


def mk(env: Any, kind: str, name: str, path: str, **kw: Any) -> Any:
    return env.call(lambda: KINDS[kind](name, path, **kw))


@pytest.fixture(params=sorted(KINDS))
def kind(request: Any) -> str:
    return request.param  # type: ignore[no-any-return]


def _file(tmp_path: Any, size: int = 1 << 20, name: str = "disk.img") -> str:
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)
    return str(p)


def test_verify_and_reset_and_reopen(env: Any, kind: str, tmp_path: Any) -> None:
    path = _file(tmp_path)
    d = mk(env, kind, "F0", path, block_size=512)
    assert d.direct  # /tmp-like ext4 accepts O_DIRECT
    desc = env.open("F0")
    ch = env.call(desc.get_io_channel)
    model = verify(env, desc, ch, rounds=25)
    ok, *_ = env.io(desc.reset, ch)
    assert ok
    model = verify(env, desc, ch, rounds=10, seed=2, model=model)
    ok, *_ = env.io(desc.flush_blocks, ch, 0, d.num_blocks)
    assert ok
    assert read_all(env, desc, ch) == bytes(model)
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    with open(path, "rb") as f:  # it is really on disk
        assert f.read() == bytes(model)


def test_block_size_detected_and_driver_specific(env: Any, kind: str, tmp_path: Any) -> None:
    path = _file(tmp_path)
    d = mk(env, kind, "F1", path)
    assert d.block_size == os.stat(path).st_blksize
    assert d.num_blocks == (1 << 20) // d.block_size
    info = d.dump_info_json()[kind]
    assert info["filename"] == path and info["o_direct"] is True
    cfg = d.write_config_json()
    assert "block_size" not in cfg["params"] and cfg["params"]["uuid"] == str(d.uuid)


def test_tmpfs_falls_back_to_buffered(env: Any, kind: str) -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = f"/dev/shm/spydk-test-{os.getpid()}-{kind}"
    with open(path, "wb") as f:
        f.truncate(256 * 1024)
    try:
        d = mk(env, kind, "S0", path, block_size=4096)
        desc = env.open("S0")
        ch = env.call(desc.get_io_channel)
        verify(env, desc, ch, rounds=8)
        if not d.direct:
            assert d.dump_info_json()[kind]["o_direct"] is False
        env.call(desc.put_io_channel, ch)
        env.call(desc.close)
    finally:
        os.unlink(path)


def test_bad_parameters(env: Any, kind: str, tmp_path: Any) -> None:
    path = _file(tmp_path)
    with pytest.raises(BdevError, match="does not exist") as ei:
        mk(env, kind, "X", str(tmp_path / "nope"))
    assert "nope" in str(ei.value)
    with pytest.raises(BdevError, match="block_size 1000"):
        mk(env, kind, "X", path, block_size=1000)
    mk(env, kind, "X", path)
    with pytest.raises(BdevError, match="already exists"):
        mk(env, kind, "X", path)
    tiny = _file(tmp_path, 100, "tiny")
    with pytest.raises(BdevError, match="too small"):
        mk(env, kind, "Y", tiny, block_size=512)


def test_read_past_eof_of_shrunk_file_fails_only_that_io(env: Any, kind: str, tmp_path: Any) -> None:
    path = _file(tmp_path, 64 * 1024)
    mk(env, kind, "E0", path, block_size=512)
    desc = env.open("E0")
    ch = env.call(desc.get_io_channel)
    ok, *_ = env.io(desc.write_blocks, ch, bytearray(b"a" * 512), 0, 1)
    assert ok
    os.truncate(path, 32 * 1024)  # shrink under the bdev
    ok, status, _, _ = env.io(desc.read_blocks, ch, bytearray(512), 100, 1)
    assert not ok and status == FAILED
    ok, status, data, _ = env.io(desc.read_blocks, ch, bytearray(512), 0, 1)
    assert ok and status == SUCCESS and data == b"a" * 512
    st = desc.bdev.iostat()
    assert st.errors.get(FAILED) == 1
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)


def test_delete_with_open_descriptor(env: Any, kind: str, tmp_path: Any) -> None:
    path = _file(tmp_path)
    mk(env, kind, "D0", path)
    events: list[Any] = []
    desc = env.call(open_ext, "D0", True, lambda ev, b, c: events.append(ev))
    rc: list[int] = []
    delete = aio.delete_aio_disk if kind == "aio" else uring.delete_uring_disk
    env.call(delete, "D0", rc.append)
    env.until(lambda: events == [BdevEvent.REMOVE])
    assert not rc
    env.call(desc.close)
    env.until(lambda: rc == [0])
    assert get_bdev("D0") is None
    with pytest.raises(BdevError, match="does not exist"):
        env.open("D0")


def test_rescan_picks_up_growth(env: Any, tmp_path: Any) -> None:
    path = _file(tmp_path, 64 * 1024)
    d = mk(env, "aio", "R0", path, block_size=512)
    os.truncate(path, 128 * 1024)
    env.call(aio.rescan_aio_disk, "R0")
    assert d.num_blocks == 256


def test_aio_fallocate_unmap_and_readonly(env: Any, tmp_path: Any) -> None:
    path = _file(tmp_path, 64 * 1024)
    with open(path, "r+b") as f:
        f.write(b"\xff" * 8192)
    mk(env, "aio", "U0", path, block_size=512, fallocate=True)
    desc = env.open("U0")
    ch = env.call(desc.get_io_channel)
    ok, *_ = env.io(desc.unmap_blocks, ch, 0, 8)
    assert ok
    ok, _, data, _ = env.io(desc.read_blocks, ch, bytearray(8192), 0, 16)
    assert ok and data == bytes(4096) + b"\xff" * 4096
    env.call(desc.put_io_channel, ch)
    env.call(desc.close)
    mk(env, "aio", "RO", path, block_size=512, readonly=True)
    assert not get_bdev("RO").io_type_supported(2)  # type: ignore[union-attr]
