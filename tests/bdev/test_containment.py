"""Finding 4 of issue 10 for bdev completions: a completion callback that raises is logged
once (then counted), and neither the other completions nor the channel's accounting suffer."""
from __future__ import annotations

import logging
from typing import Any

from spydk.bdev.io import BdevIO

from .conftest import Env


def test_raising_completion_callback_logged_once_and_contained(env: Env, caplog: Any) -> None:
    disk = env.disk("T0")
    desc = env.open("T0")
    ch = env.call(desc.get_io_channel)
    done: list[int] = []

    def broken_cb(io: BdevIO, ok: bool, arg: Any) -> None:
        done.append(arg)
        raise ValueError("caller bug")

    def submit() -> None:
        for i in range(50):
            assert desc.write_blocks(ch, memoryview(bytearray(512)), i, 1, broken_cb, i) == 0
    disk.hold = True
    env.call(submit)
    env.call(disk.release)
    env.until(lambda: len(done) == 50)
    env.drain()
    assert sorted(done) == list(range(50))
    assert ch.outstanding == 0
    errs = [r for r in caplog.records if r.levelno >= logging.ERROR and "broken_cb" in r.getMessage()]
    assert len(errs) == 1
