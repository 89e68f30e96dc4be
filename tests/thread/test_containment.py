"""Finding 4 of issue 10: a message, poller or timer that raises must not stop the reactor.

Each failure is logged once with the message's or poller's name and the thread; a poller
that keeps failing is unregistered; every other thread and timed poller keeps running
without any new message arriving to restart the loop.
"""
from __future__ import annotations

import logging

from spydk.thread import POLLER_MAX_FAILURES, PollerState


def _errors(caplog) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("spydk")]


def test_failing_active_poller_is_logged_once_and_unregistered_timers_keep_running(rh, caplog):
    other = rh.reactor.create_thread("other_thread")
    ticks: list[int] = []
    other.poller_register(lambda _: ticks.append(1), period_us=1000, name="keepalive_timer")
    same_ticks: list[int] = []
    rh.thread.poller_register(lambda _: same_ticks.append(1), period_us=1000, name="same_thread_timer")

    def broken(_arg: object) -> int:
        raise ZeroDivisionError("poller bug")

    bad = rh.thread.poller_register(broken, name="broken_poller")
    # No message is sent from here on: the reactor must re-arm its own timers.
    rh.run_until(lambda: len(ticks) >= 5 and len(same_ticks) >= 5)
    assert bad.state is PollerState.UNREGISTERED
    assert bad.fail_count == POLLER_MAX_FAILURES
    errs = _errors(caplog)
    first = [r for r in errs if "broken_poller" in r.getMessage() and "ZeroDivisionError" in r.getMessage()]
    assert len(first) == 1 and "app_thread" in first[0].getMessage()
    assert any("unregistered" in r.getMessage() and "broken_poller" in r.getMessage() for r in errs)
    assert len(errs) == 2  # the first failure and the unregistration, nothing per iteration


def test_failing_timed_poller_does_not_stall_other_timers(rh, caplog):
    ticks: list[int] = []
    rh.thread.poller_register(lambda _: ticks.append(1), period_us=2000, name="qos_timer")

    def broken(_arg: object) -> int:
        raise RuntimeError("timer bug")

    bad = rh.thread.poller_register(broken, period_us=1000, name="broken_timer")
    rh.run_until(lambda: len(ticks) >= 5)
    assert bad.state is PollerState.UNREGISTERED
    assert [r.getMessage() for r in _errors(caplog)
            if "broken_timer" in r.getMessage() and "RuntimeError" in r.getMessage()] != []


def test_poller_that_recovers_stays_registered(rh):
    calls: list[int] = []

    def flaky(_arg: object) -> int:
        calls.append(1)
        if len(calls) % POLLER_MAX_FAILURES == 1:
            raise ValueError("every third run")
        return 1

    p = rh.thread.poller_register(flaky, name="flaky")
    rh.run_until(lambda: len(calls) >= 30)
    p.unregister()
    assert p.fail_count >= 10


def test_failing_message_is_contained_and_later_messages_run(rh, caplog):
    other = rh.reactor.create_thread("other_thread")
    ticks: list[int] = []
    other.poller_register(lambda _: ticks.append(1), period_us=1000, name="delay_timer")
    seen: list[int] = []

    def bad_message() -> None:
        raise KeyError("message bug")

    for i in range(10):
        rh.thread.send_msg(bad_message)
        rh.thread.send_msg(seen.append, i)
    rh.run_until(lambda: len(seen) == 10 and len(ticks) >= 5)
    assert seen == list(range(10))
    errs = [r for r in _errors(caplog) if "bad_message" in r.getMessage()]
    assert len(errs) == 1
    assert "app_thread" in errs[0].getMessage() and "KeyError" in errs[0].getMessage()
    assert rh.thread.msg_failures == 10


def test_failing_reader_callback_keeps_the_thread_running(rh, caplog):
    import os
    r, w = os.pipe()
    got: list[bytes] = []

    def on_read() -> None:
        data = os.read(r, 1)
        got.append(data)
        if data == b"x":
            raise OSError("reader bug")

    rh.reactor.add_reader(r, rh.thread, on_read)
    try:
        os.write(w, b"x")
        rh.run_until(lambda: len(got) == 1)
        os.write(w, b"y")
        rh.run_until(lambda: len(got) == 2)
    finally:
        rh.reactor.remove_reader(r)
        os.close(r)
        os.close(w)
    assert any("on_read" in rec.getMessage() for rec in _errors(caplog))
