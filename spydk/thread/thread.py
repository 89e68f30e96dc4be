"""Lightweight threads, messages and pollers (SPDK's spdk_thread model).

A ``Thread`` is not an OS thread: it is a queue of messages plus a set of pollers that
a reactor runs from its event loop. Everything owned by one Thread is only touched from
that Thread, so the I/O path needs no locks: work for another Thread is sent to it as a
message.
"""
from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk import trace as _trace
from spydk.log import get_logger
from spydk.trace import tpoints as _tp

if TYPE_CHECKING:
    from spydk.thread.io_channel import IoChannel
    from spydk.thread.reactor import Reactor

# How many messages one poll() runs before it gives pollers and sockets a turn.
MSG_BATCH = 256

# A poller that raises this many times in a row is unregistered: its bug must not cost
# every iteration a traceback, and the thread's other pollers and messages keep running.
POLLER_MAX_FAILURES = 3

log = get_logger("thread")

_ids = itertools.count(1)
_poller_ids = itertools.count(1)


def start_ids_at(base: int) -> None:
    """Number this process's threads and pollers from ``base`` (a worker reactor does, so
    ids stay unique across the reactors of one app)."""
    global _ids, _poller_ids
    _ids = itertools.count(base)
    _poller_ids = itertools.count(base)

_current: Thread | None = None
_TRACE_THREAD = False
_trace.bind_flag(globals(), "_TRACE_THREAD", _tp.GROUP_THREAD)


def _current_id() -> int:
    return _current.id if _current is not None else 0


_trace.set_thread_getter(_current_id)


def get_thread() -> Thread | None:
    """The Thread whose code is running now (None outside any Thread)."""
    return _current


def set_thread(thread: Thread | None) -> Thread | None:
    """Make ``thread`` current; returns the previous one (for code that enters a Thread)."""
    global _current
    prev = _current
    _current = thread
    return prev


class PollerState(enum.Enum):
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    UNREGISTERED = "unregistered"


class Poller:
    """A function a Thread calls repeatedly: every iteration (period 0) or every period_us.

    The function returns a truthy value when it did work (SPDK_POLLER_BUSY) and a falsy one
    when it found nothing to do; the counts feed thread_get_pollers.
    """

    __slots__ = ("name", "id", "fn", "arg", "period_ns", "state", "thread", "run_count",
                 "busy_count", "next_run", "_heap_seq", "failures", "fail_count")

    def __init__(self, thread: Thread, fn: Callable[[Any], Any], arg: Any, period_us: int, name: str):
        self.name = name
        self.id = next(_poller_ids)
        self.fn = fn
        self.arg = arg
        self.period_ns = int(period_us) * 1000
        self.state = PollerState.RUNNING
        self.thread = thread
        self.run_count = 0
        self.busy_count = 0
        self.next_run = 0
        self._heap_seq = 0
        self.failures = 0      # consecutive runs that raised
        self.fail_count = 0    # runs that raised, in all

    @property
    def period_us(self) -> int:
        return self.period_ns // 1000

    def pause(self) -> None:
        """Stop calling the poller until resume(). Takes effect before its next run."""
        self.thread._pause_poller(self)

    def resume(self) -> None:
        self.thread._resume_poller(self)

    def unregister(self) -> None:
        """Remove the poller; safe from inside its own function or another poller."""
        self.thread._unregister_poller(self)

    def __repr__(self) -> str:
        return f"<Poller {self.name} {self.state.value} period={self.period_us}us>"


class Thread:
    """A lightweight thread: a message queue, pollers and io_channels, run by a Reactor."""

    def __init__(self, reactor: Reactor, name: str, cpumask: int = 1):
        self.reactor = reactor
        self.name = name
        self.id = next(_ids)
        self.cpumask = cpumask
        self._msgs: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._active: list[Poller] = []          # period 0, running
        self._timed: list[tuple[int, int, Poller]] = []  # heap of (next_run, seq, poller)
        self._timed_set: set[Poller] = set()
        self._paused: list[Poller] = []
        self._seq = itertools.count()
        self._pollers_dirty = False
        self.io_channels: dict[int, IoChannel] = {}  # io_device id -> channel
        self.exiting = False
        self.exited = False
        self._exit_cb: Callable[[], Any] | None = None
        self.created_ns = time.monotonic_ns()
        self.busy_ns = 0
        self.in_interrupt = not reactor.poll_mode
        self.critical_msg = None
        self.msg_failures = 0
        self._msg_failed_names: set[str] = set()
        if _TRACE_THREAD:
            _trace.record(_tp.THREAD_CREATE, self.id, a0=self.id, s=name.encode())

    # -- messages ---------------------------------------------------------------------

    def send_msg(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue fn(*args) to run on this thread. Messages from one sender run in order."""
        if self.exited:
            raise RuntimeError(f"thread {self.name!r} has exited; message {getattr(fn, '__name__', fn)} dropped")
        self._msgs.append((fn, args))
        self.reactor.wake()

    def send_msg_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """send_msg for callers on another OS thread (signal handlers, helper threads)."""
        self._msgs.append((fn, args))
        self.reactor.wake_threadsafe()

    # -- pollers ----------------------------------------------------------------------

    def poller_register(self, fn: Callable[[Any], Any], arg: Any = None, period_us: int = 0,
                        name: str | None = None) -> Poller:
        if self.exiting:
            raise RuntimeError(f"thread {self.name!r} is exiting; cannot register poller")
        if period_us < 0:
            raise ValueError("poller period must be >= 0 microseconds")
        p = Poller(self, fn, arg, period_us, name or str(getattr(fn, "__qualname__", "poller")))
        if _TRACE_THREAD:
            _trace.record(_tp.POLLER_REGISTER, self.id, a0=p.id, a1=period_us, s=p.name.encode())
        self._add_running(p)
        self.reactor.wake()
        return p

    def _add_running(self, p: Poller) -> None:
        p.state = PollerState.RUNNING
        if p.period_ns == 0:
            self._active.append(p)
        else:
            p.next_run = time.monotonic_ns() + p.period_ns
            self._push_timed(p)

    def _push_timed(self, p: Poller) -> None:
        p._heap_seq = next(self._seq)
        heapq.heappush(self._timed, (p.next_run, p._heap_seq, p))
        self._timed_set.add(p)

    def _pause_poller(self, p: Poller) -> None:
        if p.state in (PollerState.PAUSED, PollerState.PAUSING, PollerState.UNREGISTERED):
            return
        self._detach(p)
        if _TRACE_THREAD:
            _trace.record(_tp.POLLER_PAUSE, self.id, a0=p.id, s=p.name.encode())
        p.state = PollerState.PAUSED
        self._paused.append(p)

    def _resume_poller(self, p: Poller) -> None:
        if p.state is PollerState.PAUSED:
            if _TRACE_THREAD:
                _trace.record(_tp.POLLER_RESUME, self.id, a0=p.id, s=p.name.encode())
            self._paused.remove(p)
            self._add_running(p)
            self.reactor.wake()

    def _unregister_poller(self, p: Poller) -> None:
        if p.state is PollerState.UNREGISTERED:
            return
        if _TRACE_THREAD:
            _trace.record(_tp.POLLER_UNREGISTER, self.id, a0=p.id, s=p.name.encode())
        if p.state is PollerState.PAUSED:
            self._paused.remove(p)
        else:
            self._detach(p)
        p.state = PollerState.UNREGISTERED
        if self.exiting:
            self.reactor.wake()

    def _detach(self, p: Poller) -> None:
        if p.period_ns == 0:
            # Rebuilt lazily: removing from the list while poll() iterates it would skip one.
            self._pollers_dirty = True
        else:
            self._timed_set.discard(p)  # heap entry is dropped lazily

    # -- running ----------------------------------------------------------------------

    def poll(self, now: int) -> int:
        """Run queued messages, then every active poller, then due timed pollers.

        Returns how much work was done (0 = idle).
        """
        global _current
        prev = _current
        _current = self
        start = time.perf_counter_ns()
        work = 0
        try:
            msgs = self._msgs
            n = min(len(msgs), MSG_BATCH)
            work += n
            pop = msgs.popleft
            for _ in range(n):
                fn, args = pop()
                try:
                    fn(*args)
                except Exception as e:
                    self._message_raised(fn, e)

            if self._active:
                for p in self._active:
                    if p.state is not PollerState.RUNNING:
                        continue
                    p.run_count += 1
                    try:
                        if p.fn(p.arg):
                            p.busy_count += 1
                            work += 1
                        p.failures = 0
                    except Exception as e:
                        self._poller_raised(p, e)
                if self._pollers_dirty:
                    self._active = [p for p in self._active if p.state is PollerState.RUNNING]
                    self._pollers_dirty = False

            timed = self._timed
            while timed and timed[0][0] <= now:
                _, seq, p = heapq.heappop(timed)
                if p not in self._timed_set or p._heap_seq != seq:
                    continue  # paused or unregistered since it was queued
                self._timed_set.discard(p)
                p.run_count += 1
                try:
                    if p.fn(p.arg):
                        p.busy_count += 1
                        work += 1
                    p.failures = 0
                except Exception as e:
                    self._poller_raised(p, e)
                if p.state is PollerState.RUNNING and p not in self._timed_set:
                    p.next_run = now + p.period_ns
                    self._push_timed(p)
        finally:
            _current = prev
            if work:
                self.busy_ns += time.perf_counter_ns() - start
        if self.exiting and not self.exited:
            self._try_finish_exit()
        return work

    def _message_raised(self, fn: Callable[..., Any], e: Exception) -> None:
        # Logged with a traceback the first time a message of this name fails, counted after.
        self.msg_failures += 1
        name = str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)
        if name not in self._msg_failed_names:
            self._msg_failed_names.add(name)
            log.error("thread %s: message %s raised %s: %s (later failures of this message are "
                      "counted, not logged)", self.name, name, type(e).__name__, e, exc_info=e)

    def _poller_raised(self, p: Poller, e: Exception) -> None:
        p.failures += 1
        p.fail_count += 1
        if p.fail_count == 1:
            log.error("thread %s: poller %s raised %s: %s", self.name, p.name, type(e).__name__, e,
                      exc_info=e)
        if p.failures >= POLLER_MAX_FAILURES and p.state is not PollerState.UNREGISTERED:
            log.error("thread %s: poller %s raised %d times in a row; unregistered",
                      self.name, p.name, p.failures)
            self._unregister_poller(p)

    def poll_if_messages(self, now: int | None = None) -> int:
        """Poll now if messages are queued (returns 0 at once otherwise).

        The fast-path entry for code running a batch on this thread: a protocol that just
        submitted I/O whose completions were queued as messages delivers them before it
        writes, so one write carries them (now: time.monotonic_ns(), read only if needed)."""
        if not self._msgs:
            return 0
        return self.poll(time.monotonic_ns() if now is None else now)

    def has_pending(self) -> bool:
        """True when the next poll has work that cannot wait for an event (messages or period-0 pollers)."""
        return bool(self._msgs) or any(p.state is PollerState.RUNNING for p in self._active)

    def next_timer_ns(self) -> int | None:
        timed = self._timed
        while timed and (timed[0][2] not in self._timed_set or timed[0][2]._heap_seq != timed[0][1]):
            heapq.heappop(timed)
        return timed[0][0] if timed else None

    # -- exit -------------------------------------------------------------------------

    def exit(self, on_exited: Callable[[], Any] | None = None) -> None:
        """Ask the thread to finish: it exits once its pollers are unregistered,
        its io_channels released and its message queue drained."""
        self.exiting = True
        self._exit_cb = on_exited
        self.reactor.wake()

    def _try_finish_exit(self) -> None:
        if self._msgs or self.io_channels:
            return
        if self._active and any(p.state is not PollerState.UNREGISTERED for p in self._active):
            return
        if self._timed_set or self._paused:
            return
        self.exited = True
        if _TRACE_THREAD:
            _trace.record(_tp.THREAD_EXIT, self.id, a0=self.id, s=self.name.encode())
        self.reactor._thread_exited(self)
        if self._exit_cb is not None:
            self._exit_cb()

    # -- introspection ----------------------------------------------------------------

    def pollers(self) -> tuple[list[Poller], list[Poller], list[Poller]]:
        active = [p for p in self._active if p.state is PollerState.RUNNING]
        timed = sorted(self._timed_set, key=lambda p: p.next_run)
        return active, timed, list(self._paused)

    def stats(self, now_ns: int) -> dict[str, Any]:
        """One entry of thread_get_stats: exactly SPDK's members (spdk_top decodes strictly)."""
        elapsed = now_ns - self.created_ns
        active, timed, paused = self.pollers()
        return {
            "name": self.name,
            "id": self.id,
            "cpumask": format(self.cpumask, "x"),
            "busy": self.busy_ns,
            "idle": max(0, elapsed - self.busy_ns),
            "active_pollers_count": len(active),
            "timed_pollers_count": len(timed),
            "paused_pollers_count": len(paused),
        }

    def __repr__(self) -> str:
        return f"<Thread {self.id} {self.name!r}>"
