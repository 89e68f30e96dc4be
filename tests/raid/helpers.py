"""Small I/O helpers for the raid tests (run on the app thread of the Env)."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.apps.bdevperf import Job
from tests.bdev.conftest import Env


def read(env: Env, name: str, off: int, n: int) -> bytes:
    desc = env.open(name, write=False)
    ch = env.call(desc.get_io_channel)
    bs = desc.bdev.block_size
    buf = bytearray(n * bs)
    ok, _st, _d, rc = env.io(desc.read_blocks, ch, buf, off, n)
    env.call(lambda: (desc.put_io_channel(ch), desc.close()))
    assert ok and rc == 0, (name, off, n)
    return bytes(buf)


def write(env: Env, name: str, off: int, data: bytes) -> None:
    desc = env.open(name, write=True)
    ch = env.call(desc.get_io_channel)
    bs = desc.bdev.block_size
    ok, _st, _d, rc = env.io(desc.write_blocks, ch, data, off, len(data) // bs)
    env.call(lambda: (desc.put_io_channel(ch), desc.close()))
    assert ok and rc == 0, (name, off)


def job(env: Env, name: str, workload: str = "verify", qd: int = 8, io_size: int = 4096, seed: int = 1) -> Job:
    """A bdevperf job on the app thread, started; stop it with stop_job."""
    args = argparse.Namespace(workload=workload, queue_depth=qd, io_size=io_size, rwmixread=50)
    j = Job(name, env.thread, 0, args, seed)
    env.call(j.setup)
    env.call(j.start)
    return j


def stop_job(env: Env, j: Job) -> dict[str, Any]:
    finished: list[bool] = []
    j.on_finished = lambda _j: finished.append(True)
    env.call(j.stop)
    env.until(lambda: bool(finished))
    env.call(j.teardown)
    return j.result()
