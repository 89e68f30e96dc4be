from __future__ import annotations

import asyncio
import time

from spydk.thread import (
    PollerState,
    for_each_channel,
    get_io_channel,
    get_thread,
    io_device_register,
    io_device_unregister,
    put_io_channel,
)


def test_messages_run_in_order_per_thread(rh):
    t2 = rh.reactor.create_thread("t2")
    seen: list[tuple[str, int]] = []
    for i in range(1000):
        t2.send_msg(lambda i=i: seen.append((get_thread().name, i)))
    rh.drain()
    assert seen == [("t2", i) for i in range(1000)]


def test_message_sent_from_a_message_runs_later_not_recursively(rh):
    order: list[str] = []

    def first():
        rh.thread.send_msg(lambda: order.append("second"))
        order.append("first-end")

    rh.thread.send_msg(first)
    rh.drain()
    assert order == ["first-end", "second"]


def test_active_poller_runs_every_iteration_and_counts(rh):
    calls = []
    p = rh.thread.poller_register(lambda arg: calls.append(arg) or (len(calls) % 2), "x", name="p0")
    rh.run_until(lambda: len(calls) >= 10)
    assert p.run_count >= 10
    assert 4 <= p.busy_count <= p.run_count
    p.unregister()
    n = len(calls)
    rh.drain()
    assert len(calls) == n


def test_poller_pause_resume(rh):
    calls = []
    p = rh.thread.poller_register(lambda _: calls.append(1), name="pz")
    rh.run_until(lambda: len(calls) >= 3)
    p.pause()
    assert p.state is PollerState.PAUSED
    n = len(calls)
    rh.drain()
    rh.run(asyncio.sleep(0.01))
    assert len(calls) == n
    active, timed, paused = rh.thread.pollers()
    assert paused == [p] and active == []
    p.resume()
    rh.run_until(lambda: len(calls) > n)
    assert p.state is PollerState.RUNNING


def test_timed_poller_fires_after_period(rh):
    start = time.monotonic()
    fired: list[float] = []
    p = rh.thread.poller_register(lambda _: fired.append(time.monotonic()), period_us=20_000, name="tp")
    rh.run_until(lambda: len(fired) >= 3)
    p.unregister()
    assert fired[0] - start >= 0.019
    assert all(b - a >= 0.019 for a, b in zip(fired, fired[1:], strict=False))


def test_unregister_other_poller_during_iteration(rh):
    calls = {"a": 0, "b": 0}
    holder = {}

    def a(_):
        calls["a"] += 1
        holder["b"].unregister()  # b comes after a in the same iteration: must not run again
        return 1

    def b(_):
        calls["b"] += 1
        return 1

    rh.thread.poller_register(b, name="b0")  # b registered first runs once, a then removes it
    holder["b"] = rh.thread.poller_register(b, name="b")
    pa = rh.thread.poller_register(a, name="a")
    rh.run_until(lambda: calls["a"] >= 3)
    pa.unregister()
    # "b" never ran: it is after "b0" and before "a" in the first iteration, so it ran once at most
    assert holder["b"].state is PollerState.UNREGISTERED
    assert holder["b"].run_count <= 1


def test_poller_unregisters_itself(rh):
    box = {}

    def once(_):
        box["p"].unregister()
        return 1

    box["p"] = rh.thread.poller_register(once, name="once")
    rh.drain()
    assert box["p"].run_count == 1


def test_idle_reactor_sleeps(rh):
    """With nothing registered, iterations stop: the loop sleeps in epoll."""
    rh.drain()
    n = rh.reactor.iterations
    rh.run(asyncio.sleep(0.05))
    assert rh.reactor.iterations == n


def test_io_channel_refcount_and_callbacks(rh):
    dev = object()
    created, destroyed = [], []
    io_device_register(dev, lambda d, ch: created.append(ch) or setattr(ch, "ctx", {"n": 0}),
                       lambda d, ch: destroyed.append(ch), "dev")
    out = {}

    def on_thread():
        a = get_io_channel(dev)
        b = get_io_channel(dev)
        out["same"] = a is b
        out["ref"] = a.ref
        put_io_channel(a)
        put_io_channel(b)
        out["ch"] = a

    rh.thread.send_msg(on_thread)
    rh.drain()
    assert out["same"] and out["ref"] == 2
    assert len(created) == 1 and destroyed == [out["ch"]]
    assert rh.thread.io_channels == {}


def test_put_then_get_reuses_channel(rh):
    dev = object()
    created = []
    io_device_register(dev, lambda d, ch: created.append(ch), lambda d, ch: None, "dev")

    def on_thread():
        a = get_io_channel(dev)
        put_io_channel(a)
        b = get_io_channel(dev)  # before the deferred destroy ran
        assert a is b
        put_io_channel(b)

    rh.thread.send_msg(on_thread)
    rh.drain()
    assert len(created) == 1


def test_put_more_than_get_is_an_error(rh):
    dev = object()
    io_device_register(dev, lambda d, ch: None, lambda d, ch: None, "dev")
    errs = []

    def on_thread():
        ch = get_io_channel(dev)
        put_io_channel(ch)
        try:
            put_io_channel(ch)
        except RuntimeError as e:
            errs.append(str(e))

    rh.thread.send_msg(on_thread)
    rh.drain()
    assert errs and "released more times" in errs[0]


def test_for_each_channel_visits_each_thread_then_completes(rh):
    dev = object()
    io_device_register(dev, lambda d, ch: setattr(ch, "ctx", []), lambda d, ch: None, "dev")
    threads = [rh.reactor.create_thread(f"w{i}") for i in range(3)]
    chans = []
    for t in threads:
        t.send_msg(lambda: chans.append(get_io_channel(dev)))
    rh.drain()
    visited, done = [], []

    def fn(it, ch):
        assert get_thread() is ch.thread
        visited.append(ch.thread.name)
        ch.ctx.append("hit")
        it.continue_(0)

    rh.thread.send_msg(lambda: for_each_channel(dev, fn, lambda it, st: done.append((get_thread().name, st))))
    rh.drain()
    assert sorted(visited) == ["w0", "w1", "w2"]
    assert done == [("app_thread", 0)]


def test_for_each_channel_stops_on_error_status(rh):
    dev = object()
    io_device_register(dev, lambda d, ch: None, lambda d, ch: None, "dev")
    for i in range(3):
        rh.reactor.create_thread(f"w{i}").send_msg(lambda: get_io_channel(dev))
    rh.drain()
    visited, done = [], []

    def fn(it, ch):
        visited.append(ch.thread.name)
        it.continue_(-5)

    rh.thread.send_msg(lambda: for_each_channel(dev, fn, lambda it, st: done.append(st)))
    rh.drain()
    assert len(visited) == 1 and done == [-5]


def test_unregister_waits_for_channels(rh):
    dev = object()
    io_device_register(dev, lambda d, ch: None, lambda d, ch: None, "dev")
    box, done = {}, []

    def take():
        box["ch"] = get_io_channel(dev)
        io_device_unregister(dev, lambda d: done.append(d))

    rh.thread.send_msg(take)
    rh.drain()
    assert done == []
    errs = []

    def other():
        try:
            get_io_channel(dev)
        except RuntimeError as e:
            errs.append(str(e))

    rh.reactor.create_thread("other").send_msg(other)
    rh.drain()
    assert errs and "being unregistered" in errs[0]
    rh.thread.send_msg(lambda: put_io_channel(box["ch"]))
    rh.drain()
    assert done == [dev]


def test_thread_exit_waits_for_pollers_and_channels(rh):
    t = rh.reactor.create_thread("exiting")
    p = t.poller_register(lambda _: 0, period_us=1000, name="tp")
    exited = []
    t.exit(lambda: exited.append(True))
    rh.drain()
    assert not exited
    t.send_msg(p.unregister)
    rh.drain()
    assert exited and t not in rh.reactor.threads


def test_stats_shape(rh):
    rh.thread.poller_register(lambda _: 0, period_us=1000, name="tp")
    s = rh.thread.stats(time.monotonic_ns())
    assert s["name"] == "app_thread" and s["timed_pollers_count"] == 1
    assert set(s) >= {"busy", "idle", "id", "cpumask", "active_pollers_count", "paused_pollers_count"}
