"""Event mode's spin after work (--spin-us): poll a while after work, then sleep."""
from __future__ import annotations

import time
from typing import Any

ReactorHarness = Any  # tests/conftest.py's harness (the rh fixture)


def _sleep(rh: ReactorHarness, seconds: float) -> None:
    import asyncio
    rh.run(asyncio.sleep(seconds))


def test_reactor_keeps_iterating_after_work_then_sleeps(rh: ReactorHarness) -> None:
    r = rh.reactor
    r.set_spin_us(20_000)
    ran: list[int] = []
    rh.thread.send_msg(lambda: ran.append(1))
    rh.run_until(lambda: r.spin_iterations > 0)  # iterations with nothing queued: spinning
    assert ran == [1]
    # Past the deadline with no more work the reactor stops scheduling iterations.
    rh.run_until(lambda: time.monotonic_ns() > r._spin_until + 5_000_000)
    _sleep(rh, 0.01)
    n = r.iterations
    _sleep(rh, 0.1)
    assert r.iterations == n


def test_work_done_between_iterations_restarts_the_spin(rh: ReactorHarness) -> None:
    # A transport that polls its thread inline (poll_if_messages) leaves no message for the
    # reactor to see; the reactor notices the thread's busy time instead.
    r = rh.reactor
    r.set_spin_us(20_000)
    rh.thread.send_msg(lambda: None)
    rh.thread.poll_if_messages()                 # done inline, outside any reactor iteration
    rh.run_until(lambda: not rh.thread.has_pending())
    before = r.spin_iterations
    r.wake()
    rh.run_until(lambda: r.spin_iterations > before)


def test_spin_zero_sleeps_at_once(rh: ReactorHarness) -> None:
    r = rh.reactor
    r.set_spin_us(0)
    for _ in range(10):
        rh.thread.send_msg(lambda: None)
    rh.drain()
    _sleep(rh, 0.05)
    n = r.iterations
    _sleep(rh, 0.05)
    assert r.spin_iterations == 0
    assert r.iterations == n


def test_an_idle_reactor_never_spins(rh: ReactorHarness) -> None:
    r = rh.reactor
    r.set_spin_us(20_000)
    rh.drain()
    _sleep(rh, 0.05)   # anything done at start-up has had its spin by now
    n, s = r.iterations, r.spin_iterations
    _sleep(rh, 0.1)
    assert (r.iterations, r.spin_iterations) == (n, s)
