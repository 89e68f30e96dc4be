"""The reactor: runs lightweight Threads from an asyncio event loop.

Event-driven by default: a reactor iteration is scheduled only when a message is sent,
a period-0 poller is registered, or a timed poller falls due; otherwise the loop sleeps
in epoll and the process uses no CPU. With ``poll_mode`` the reactor iterates without
pause, like SPDK's reactors, trading a core for latency.

Between the two, by default, the reactor spins for ``spin_ns`` after the last work it saw
(messages, pollers, or a transport polling a thread inline) before it sleeps again: a
request that arrives while it spins is picked up without a wake-up from the kernel, which
costs more than the request itself at queue depth 1, and an idle target still sleeps.

Multi-core is a reactor per process (see docs/architecture.md); one Reactor per process.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from spydk.log import get_logger
from spydk.thread.thread import Thread, set_thread

log = get_logger("thread")


class Reactor:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *, poll_mode: bool = False,
                 lcore: int = 0, spin_us: int = 0):
        self.loop = loop or asyncio.get_event_loop()
        self.poll_mode = poll_mode
        self.spin_ns = max(0, spin_us) * 1000
        self._spin_until = 0
        self._seen_busy = 0     # sum of the threads' busy_ns at the last look
        self.spin_iterations = 0
        self.lcore = lcore
        self.threads: list[Thread] = []
        self._scheduled = False
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_due: int | None = None
        self.created_ns = time.monotonic_ns()
        self.busy_ns = 0
        self.iterations = 0
        self.app_thread: Thread | None = None
        self._stopped = False

    # -- threads ----------------------------------------------------------------------

    def create_thread(self, name: str, cpumask: int | None = None) -> Thread:
        t = Thread(self, name, cpumask if cpumask is not None else (1 << self.lcore))
        self.threads.append(t)
        if self.app_thread is None:
            self.app_thread = t
        self.wake()
        return t

    def _thread_exited(self, thread: Thread) -> None:
        if thread in self.threads:
            self.threads.remove(thread)

    def thread_by_id(self, tid: int) -> Thread | None:
        for t in self.threads:
            if t.id == tid:
                return t
        return None

    # -- scheduling -------------------------------------------------------------------

    def wake(self) -> None:
        """Make sure an iteration runs soon (cheap when one is already scheduled)."""
        if not self._scheduled and not self._stopped:
            self._scheduled = True
            self.loop.call_soon(self._iterate)

    def wake_threadsafe(self) -> None:
        self.loop.call_soon_threadsafe(self.wake)

    def set_poll_mode(self, enabled: bool) -> None:
        self.poll_mode = enabled
        for t in self.threads:
            t.in_interrupt = not enabled
        self.wake()

    def _iterate(self) -> None:
        self._scheduled = False
        now = time.monotonic_ns()
        start = time.perf_counter_ns()
        work = 0
        pending = False
        next_due: int | None = None
        for t in tuple(self.threads):
            try:
                work += t.poll(now)
            except Exception:  # poll() contains its callbacks; this is a last line of defence
                log.exception("thread %s: poll raised; the reactor keeps running", t.name)
            if t.has_pending():
                pending = True
            due = t.next_timer_ns()
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        self.iterations += 1
        if work:
            self.busy_ns += time.perf_counter_ns() - start
        if self._stopped:
            return
        if pending or self.poll_mode:
            self.wake()
            return
        if self.spin_ns:
            # Work since the last look, including inline polls the transports made between
            # iterations (they add to their thread's busy_ns): keep spinning a while.
            busy = 0
            for t in self.threads:
                busy += t.busy_ns
            if busy != self._seen_busy:
                self._seen_busy = busy
                self._spin_until = now + self.spin_ns
            if now < self._spin_until:
                self.spin_iterations += 1
                self.wake()
                return
        if next_due is not None:
            self._arm_timer(next_due)

    def set_spin_us(self, spin_us: int) -> None:
        """How long to keep polling after the last work before sleeping (0: sleep at once)."""
        self.spin_ns = max(0, spin_us) * 1000
        self._spin_until = 0

    def _arm_timer(self, due_ns: int) -> None:
        if self._timer is not None and self._timer_due is not None and self._timer_due <= due_ns:
            return  # an earlier timer is already set and will re-arm
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, (due_ns - time.monotonic_ns()) / 1e9)
        self._timer_due = due_ns
        self._timer = self.loop.call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._timer_due = None
        self.wake()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- helpers for code outside any Thread -------------------------------------------

    def call_on(self, thread: Thread, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run fn(*args) on ``thread`` and return a future of its result (control plane)."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def run() -> None:
            try:
                res = fn(*args)
            except BaseException as e:  # delivered to the awaiting coroutine
                if not fut.done():
                    fut.set_exception(e)
                return
            if not fut.done():
                fut.set_result(res)

        thread.send_msg(run)
        return fut

    def add_reader(self, fd: int, thread: Thread, fn: Callable[[], Any]) -> None:
        """Call fn on ``thread`` whenever fd is readable (an interrupt source, e.g. an eventfd)."""
        def ready() -> None:
            prev = set_thread(thread)
            try:
                fn()
            except Exception:
                log.exception("thread %s: reader callback %s for fd %d raised", thread.name,
                              getattr(fn, "__qualname__", fn), fd)
            finally:
                set_thread(prev)
            if thread.has_pending():
                self.wake()
        self.loop.add_reader(fd, ready)

    def remove_reader(self, fd: int) -> None:
        self.loop.remove_reader(fd)

    # -- introspection ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """One entry of framework_get_reactors, in SPDK v24.01's shape: spdk_top decodes it
        strictly, so no member may be added (irq/sys/usr/tid arrived in later releases)."""
        now = time.monotonic_ns()
        return {
            "lcore": self.lcore,
            "busy": self.busy_ns,
            "idle": max(0, now - self.created_ns - self.busy_ns),
            "in_interrupt": not self.poll_mode,
            "lw_threads": [
                {"name": t.name, "id": t.id, "cpumask": format(t.cpumask, "x"),
                 "elapsed": now - t.created_ns}
                for t in self.threads
            ],
        }

    def cpu_times(self) -> dict[str, int]:
        """Process CPU time in ns (the reactor is the process's only busy OS thread)."""
        times = os.times()
        return {"usr": int(times.user * 1e9), "sys": int(times.system * 1e9)}


_reactor: Reactor | None = None


def get_reactor() -> Reactor:
    if _reactor is None:
        raise RuntimeError("no spydk reactor in this process; create one with spydk.thread.init_reactor()")
    return _reactor


def init_reactor(loop: asyncio.AbstractEventLoop | None = None, *, poll_mode: bool = False,
                 lcore: int = 0, spin_us: int = 0) -> Reactor:
    """Create the process's reactor (replacing a stopped one, for tests)."""
    global _reactor
    if _reactor is not None:
        _reactor.stop()
    _reactor = Reactor(loop, poll_mode=poll_mode, lcore=lcore, spin_us=spin_us)
    return _reactor


def reactor_or_none() -> Reactor | None:
    return _reactor


# Ticks reported by *_get_stats RPCs are nanoseconds.
TICK_RATE = 1_000_000_000
