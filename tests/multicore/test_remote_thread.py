"""Messages to a Thread on another reactor process: order, results, an exited thread, a dead worker."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest

from spydk.apps.worker import new_loop, worker_main
from spydk.thread import cores, init_reactor
from spydk.thread.link import LinkClosed, RemoteError

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")

_seen: list[int] = []


def record(i: int) -> None:
    _seen.append(i)


def seen() -> list[int]:
    return list(_seen)


def whoami() -> tuple[int, str]:
    from spydk.thread import get_thread
    t = get_thread()
    assert t is not None
    return os.getpid(), t.name


def _with_worker(body):
    allowed = sorted(os.sched_getaffinity(0))
    main_core, other = allowed[0], allowed[1]
    saved = os.sched_getaffinity(0)
    ws = cores.spawn_workers([other], lambda core, sock: worker_main(core, sock))
    loop = new_loop()
    try:
        async def go():
            reactor = init_reactor(loop, lcore=main_core)
            thread = reactor.create_thread("app_thread", 1 << main_core)

            async def run(fn):
                return await reactor.call_on(thread, fn)
            lost: list[str] = []
            await ws.attach(loop, run, lambda w, why: lost.append(why))
            try:
                await body(ws, other, lost)
            finally:
                await ws.stop()
                reactor.stop()
        loop.run_until_complete(asyncio.wait_for(go(), 60))
    finally:
        if not ws.stopping:
            ws.kill()
        loop.close()
        os.sched_setaffinity(0, saved)
    for w in ws:
        assert w.exit_status is not None   # reaped: no process left


def test_messages_arrive_in_order_on_the_remote_thread():
    async def body(ws, core, lost):
        (t,) = await cores.remote_threads(core)
        assert t.name == f"reactor_{core}"
        for i in range(500):
            t.send_msg(record, i)
        assert await t.call(seen) == list(range(500))
        pid, name = await t.call(whoami)
        assert pid == ws[0].pid and name == f"reactor_{core}"
    _with_worker(body)


def test_message_to_an_exited_thread_is_a_clear_error():
    async def body(ws, core, lost):
        gone = cores.RemoteThread(core, 999_999_999, "gone")
        with pytest.raises(RemoteError, match="thread 999999999 on core .* has exited"):
            await gone.call(seen)
        gone.send_msg(record, 1)   # logged on the worker, nothing else breaks
        (t,) = await cores.remote_threads(core)
        assert await t.call(seen) == []
    _with_worker(body)


def test_unpicklable_function_is_refused_at_the_sender():
    async def body(ws, core, lost):
        (t,) = await cores.remote_threads(core)
        with pytest.raises(Exception, match="lambda|pickle"):
            t.send_msg(lambda: None)
    _with_worker(body)


def test_dead_worker_fails_calls_and_is_reported():
    async def body(ws, core, lost):
        (t,) = await cores.remote_threads(core)
        os.kill(ws[0].pid, signal.SIGKILL)
        with pytest.raises(LinkClosed):
            for _ in range(200):
                await t.call(seen)
                await asyncio.sleep(0.01)
        assert lost
        with pytest.raises(LinkClosed):
            t.send_msg(record, 1)
    _with_worker(body)
