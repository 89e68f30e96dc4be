"""Reactors as processes: one pinned worker process per extra core of ``-m``.

The main process (the core of ``-p``) forks one worker per other core *before* it creates
its event loop or opens sockets (after the plugins are imported, so a worker starts in
milliseconds with every operation registered). Each worker pins itself, asks the kernel to
kill it when the main process dies (PR_SET_PDEATHSIG), runs its own Reactor with one
Thread (``reactor_<core>``), and serves the operations of ``register_op`` over its link.

Main side::

    ws = spawn_workers([1, 2])          # before any loop exists
    ...                                 # inside the loop:
    await ws.attach(loop, run, on_lost) # links up, every worker answered "ready"
    await ws[0].link.call("reactor_stats")
    await ws.stop()                     # "stop" to each, reap, SIGKILL after a bound

Worker side: ``main_link()`` is the link to the main process (None in main).
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spydk.log import get_logger
from spydk.thread.link import Handler, Link, LinkClosed, Runner
from spydk.thread.reactor import get_reactor

log = get_logger("thread")

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 5.0

# Operations either side may call on the other (filled at import time by the layers; a
# worker inherits the table when it is forked).
_ops: dict[str, Handler] = {}


_inline_ops: set[str] = set()


def register_op(name: str, fn: Handler, *, inline: bool = False) -> Handler:
    """Make ``fn(*args, fds=[...])`` callable from the other reactors as ``name``.

    ``inline``: run it in the link's read callback (no Thread current, no task): for ops that
    only route a message on, as ``thread_msg`` does."""
    _ops[name] = fn
    if inline:
        _inline_ops.add(name)
    return fn


def ops() -> dict[str, Handler]:
    return _ops


class CoreError(Exception):
    """A core of the cpumask cannot be used (names the core and what is available)."""


def allowed_cores() -> set[int]:
    return set(os.sched_getaffinity(0))


def check_cores(cores: list[int]) -> None:
    allowed = allowed_cores()
    bad = [c for c in cores if c not in allowed]
    if bad:
        raise CoreError(f"core {', '.join(map(str, bad))} of the cpumask is not available to this process "
                        f"(usable cores: {_ranges(sorted(allowed))}); choose -m within them")


def _ranges(cores: list[int]) -> str:
    out: list[str] = []
    for c in cores:
        if out and out[-1].split("-")[-1] == str(c - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)


def pin_to_core(core: int) -> None:
    """Pin the calling process to one core, as SPDK pins each reactor."""
    os.sched_setaffinity(0, {core})


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent_pid:   # the parent died before the prctl: nobody would kill us
        os._exit(1)


@dataclass
class Worker:
    core: int
    pid: int
    sock: socket.socket
    link: Link | None = None
    exit_status: int | None = None

    def describe(self) -> str:
        return f"worker reactor on core {self.core} (pid {self.pid})"


@dataclass
class WorkerSet:
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.workers)

    def __len__(self) -> int:
        return len(self.workers)

    def __getitem__(self, i: int) -> Worker:
        return self.workers[i]

    def by_core(self, core: int) -> Worker | None:
        for w in self.workers:
            if w.core == core:
                return w
        return None

    async def attach(self, loop: asyncio.AbstractEventLoop, run: Runner,
                     on_lost: Callable[[Worker, str], None]) -> None:
        """Put a link on every worker's socket and wait until each answered "ready"."""
        global _workers
        _workers = self
        def lost_cb(w: Worker) -> Callable[[str], None]:
            return lambda why: self._lost(w, why, on_lost)
        for w in self.workers:
            w.link = Link(w.sock, loop, _ops, name=f"core {w.core}", run=run, on_close=lost_cb(w),
                          inline=_inline_ops)
        await asyncio.gather(*(w.link.call("ready") for w in self.workers if w.link is not None))

    def _lost(self, w: Worker, why: str, on_lost: Callable[[Worker, str], None]) -> None:
        self._reap(w)
        if not self.stopping:
            on_lost(w, why)

    def _reap(self, w: Worker, block: bool = False) -> bool:
        if w.exit_status is not None:
            return True
        try:
            pid, status = os.waitpid(w.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            w.exit_status = -1
            return True
        if pid == 0:
            return False
        w.exit_status = os.waitstatus_to_exitcode(status)
        return True

    async def call_all(self, op: str, *args: Any) -> list[Any]:
        """``op`` on every worker, in core order; the results in the same order."""
        futs = []
        for w in self.workers:
            if w.link is None:
                raise LinkClosed(f"{w.describe()} is not attached")
            futs.append(w.link.call(op, *args))
        return list(await asyncio.gather(*futs))

    async def stop(self) -> None:
        """Stop the workers in reverse core order, then reap them (SIGKILL after a bound)."""
        global _workers
        self.stopping = True
        if _workers is self:
            _workers = None
        for w in reversed(self.workers):
            if w.link is None and w.exit_status is None:   # never attached: it waits for nothing
                os.kill(w.pid, signal.SIGKILL)
            if w.link is not None and not w.link.closed:
                try:
                    await asyncio.wait_for(w.link.call("stop"), timeout=STOP_TIMEOUT_S)
                except (LinkClosed, TimeoutError, Exception) as e:  # gone already or stuck: killed below
                    log.debug("%s: stop: %s", w.describe(), e)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not self._reap(w) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if w.exit_status is None:
                log.error("%s did not stop within %.0f s; killing it", w.describe(), STOP_TIMEOUT_S)
                os.kill(w.pid, signal.SIGKILL)
                self._reap(w, block=True)
            if w.link is not None:
                w.link.close()
            else:
                w.sock.close()

    def kill(self) -> None:
        """Last resort (start-up failed before a loop ran): SIGKILL and reap every worker."""
        global _workers
        self.stopping = True
        if _workers is self:
            _workers = None
        for w in self.workers:
            if w.exit_status is None:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reap(w, block=True)
            w.sock.close()


# -- the worker process ------------------------------------------------------------------

_workers: WorkerSet | None = None
_main_link: Link | None = None


def workers() -> WorkerSet | None:
    """In the main process of a multi-core app: its workers. Otherwise None."""
    return _workers
_worker_core: int | None = None


def main_link() -> Link | None:
    """In a worker: the link to the main process. In the main process: None."""
    return _main_link


def worker_core() -> int | None:
    """In a worker: its core. In the main process: None."""
    return _worker_core


WorkerBody = Callable[[int, socket.socket], int]


def link_to(core: int) -> Link:
    """The link that reaches the reactor of ``core`` (a worker's own link to main reaches every
    other core too: main relays). Raises LinkClosed naming the core when there is none."""
    if _workers is not None:
        w = _workers.by_core(core)
        if w is not None and w.link is not None:
            return w.link
    elif _main_link is not None and core != _worker_core:
        return _main_link
    raise LinkClosed(f"no reactor on core {core} is reachable from this one")


@dataclass(frozen=True)
class RemoteThread:
    """A spydk Thread on another reactor. ``send_msg(fn, *args)`` runs ``fn(*args)`` on it, in
    order with the other messages sent to it from here; ``fn`` must be a module-level function
    (it crosses by name), ``args`` picklable. Messages of one loop turn leave in one batch."""
    core: int
    id: int
    name: str = ""

    def send_msg(self, fn: Callable[..., Any], *args: Any) -> None:
        link_to(self.core).notify("thread_msg", self.core, self.id, fn, args)

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Like send_msg, with a future of fn's result (or of its error)."""
        return link_to(self.core).call("thread_call", self.core, self.id, fn, args)


def _thread_msg(core: int, tid: int, fn: Callable[..., Any], args: tuple[Any, ...], *, fds: list[int]) -> None:
    if core != _here():   # main relays messages between workers
        link_to(core).notify("thread_msg", core, tid, fn, args)
        return
    _local_thread(core, tid).send_msg(fn, *args)


def _thread_call(core: int, tid: int, fn: Callable[..., Any], args: tuple[Any, ...], *,
                 fds: list[int]) -> asyncio.Future[Any]:
    if core != _here():
        return link_to(core).call("thread_call", core, tid, fn, args)
    return get_reactor().call_on(_local_thread(core, tid), fn, *args)


def _here() -> int:
    if _worker_core is not None:
        return _worker_core
    return get_reactor().lcore


def _local_thread(core: int, tid: int) -> Any:
    t = get_reactor().thread_by_id(tid)
    if t is None or t.exited:
        raise LookupError(f"thread {tid} on core {core} has exited (or never existed); "
                          f"thread_get_stats lists the live ones")
    return t


def _thread_list(*, fds: list[int]) -> list[tuple[int, str]]:
    return [(t.id, t.name) for t in get_reactor().threads if not t.exited]


register_op("thread_msg", _thread_msg, inline=True)
register_op("thread_call", _thread_call, inline=True)
register_op("thread_list", _thread_list)


async def remote_threads(core: int) -> list[RemoteThread]:
    """The live Threads of the reactor on ``core``."""
    return [RemoteThread(core, tid, name) for tid, name in await link_to(core).call("thread_list")]


def spawn_workers(cores: list[int], body: WorkerBody) -> WorkerSet:
    """Fork one process per core; the child runs ``body(core, sock)`` and exits with its code.

    Call before any event loop or listening socket exists in this process."""
    ws = WorkerSet()
    parent = os.getpid()
    for core in cores:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:   # the worker
            code = 1
            try:
                a.close()
                for w in ws.workers:   # the links of the siblings forked before us are not ours
                    w.sock.close()
                die_with_parent(parent)
                pin_to_core(core)
                signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the group: main decides
                code = body(core, b)
            except BaseException:
                log.exception("worker reactor on core %d failed", core)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        b.close()
        ws.workers.append(Worker(core, pid, a))
    return ws


def serve_worker(core: int, sock: socket.socket, loop: asyncio.AbstractEventLoop, run: Runner,
                 on_stop: Callable[[], Any]) -> Link:
    """In a worker: the link to main, with "ready" and "stop" answered. ``on_stop`` ends the
    worker (also called when main goes away)."""
    global _main_link, _worker_core
    _worker_core = core

    def ready(*, fds: list[int]) -> int:
        return os.getpid()

    def stop(*, fds: list[int]) -> bool:
        loop.call_soon(on_stop)
        return True

    register_op("ready", ready)
    register_op("stop", stop)
    _main_link = Link(sock, loop, _ops, name="main", run=run, on_close=lambda why: on_stop(),
                      inline=_inline_ops)
    return _main_link
