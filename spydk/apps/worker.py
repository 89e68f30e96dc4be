"""The body of a worker reactor process (one per extra core of ``-m``).

Forked by ``spydk.thread.cores.spawn_workers`` before the main process creates its loop.
The worker runs its own Reactor with one Thread, ``reactor_<core>``, serves the operations
registered with ``register_op`` (they run on that Thread), and ends when main says "stop"
or its link closes. It ignores SIGINT/SIGTERM: the main process decides when reactors stop
(and the kernel kills the worker if main dies: PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import asyncio
import inspect
import signal
import socket
from collections.abc import Callable
from typing import Any

from spydk import log as spydk_log
from spydk.thread import Reactor, Thread, init_reactor
from spydk.thread.cores import serve_worker
from spydk.thread.thread import start_ids_at

log = spydk_log.get_logger("app")

# Thread and poller ids of the worker on core c start at c << ID_SHIFT: unique per app.
ID_SHIFT = 20


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def make_runner(reactor: Reactor, thread: Thread) -> Callable[[Callable[[], Any]], Any]:
    async def run(fn: Callable[[], Any]) -> Any:
        from spydk.apps.app import on_thread
        res = await reactor.call_on(thread, fn)
        if inspect.isawaitable(res):
            res = await on_thread(res, thread)
        return res
    return run


def worker_main(core: int, sock: socket.socket, poll: bool = False) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    start_ids_at(core << ID_SHIFT)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    reactor = init_reactor(loop, poll_mode=poll, lcore=core)
    thread = reactor.create_thread(f"reactor_{core}", 1 << core)
    done = asyncio.Event()
    link = serve_worker(core, sock, loop, make_runner(reactor, thread), done.set)

    async def serve() -> None:
        await done.wait()
        await asyncio.sleep(0)   # let the answer to "stop" be queued, then send it
        link.flush()
        exited = asyncio.Event()
        thread.exit(exited.set)
        try:
            await asyncio.wait_for(exited.wait(), timeout=2)
        except TimeoutError:
            log.warning("reactor_%d still holds io_channels or pollers at exit", core)
        reactor.stop()
        link.close()

    try:
        loop.run_until_complete(serve())
    finally:
        spydk_log.flush()
        loop.close()
    return 0


__all__ = ["worker_main"]
