"""The raw AIO and io_uring engines on their own: vectored I/O, fsync, errors, queue full."""
from __future__ import annotations

import errno
import os
import select
from typing import Any

import pytest

from spydk.sysio.base import AlignedPool, Engine
from spydk.sysio.io_uring import IoUring
from spydk.sysio.linux_aio import LinuxAio


@pytest.fixture(params=[LinuxAio, IoUring], ids=["aio", "uring"])
def engine(request: Any) -> Any:
    e = request.param(4)
    yield e
    e.close()


def _wait(e: Engine, n: int) -> list[tuple[Any, int]]:
    out: list[tuple[Any, int]] = []
    while len(out) < n:
        r, _, _ = select.select([e.efd], [], [], 5)
        assert r, "no completion signalled on the eventfd"
        e.drain_eventfd()
        e.reap(out)
    return out


def test_vectored_write_read_fsync(engine: Engine, tmp_path: Any) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_DIRECT)
    pool = AlignedPool()
    w = pool.get(3 * 4096)
    w[2][:] = os.urandom(len(w[2]))
    addrs = [(w[0], 4096), (w[0] + 4096, 8192)]
    assert engine.prep_rw(True, fd, addrs, 8192, "w")
    assert engine.flush() == 1
    assert _wait(engine, 1) == [("w", 12288)]
    r = pool.get(12288)
    assert engine.prep_rw(False, fd, [(r[0], 12288)], 8192, "r")
    assert engine.prep_fsync(fd, "s")
    engine.flush()
    assert sorted(_wait(engine, 2)) == [("r", 12288), ("s", 0)]
    assert bytes(r[2][:12288]) == bytes(w[2][:12288])
    assert engine.inflight == 0
    os.close(fd)


def test_errors_come_back_per_request(engine: Engine, tmp_path: Any) -> None:
    fd = os.open(tmp_path / "g", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"x" * 4096)
    buf = AlignedPool().get(4096)
    engine.prep_rw(False, 9999, [(buf[0], 4096)], 0, "badfd")
    engine.prep_rw(False, fd, [(buf[0], 4096)], 1 << 20, "eof")   # past EOF: 0 bytes
    engine.prep_rw(False, fd, [(buf[0], 4096)], 0, "good")
    engine.flush()
    res = dict(_wait(engine, 3))
    assert res == {"badfd": -errno.EBADF, "eof": 0, "good": 4096}
    os.close(fd)


def test_queue_full_refuses_then_recovers(engine: Engine, tmp_path: Any) -> None:
    fd = os.open(tmp_path / "h", os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 1 << 16)
    buf = AlignedPool().get(4096)
    for i in range(4):
        assert engine.prep_rw(False, fd, [(buf[0], 512)], 0, i)
    assert not engine.has_room()
    assert not engine.prep_rw(False, fd, [(buf[0], 512)], 0, 99)
    engine.flush()
    assert sorted(t for t, _ in _wait(engine, 4)) == [0, 1, 2, 3]
    assert engine.prep_rw(False, fd, [(buf[0], 512)], 0, 5)
    engine.flush()
    assert _wait(engine, 1) == [(5, 512)]
    os.close(fd)
