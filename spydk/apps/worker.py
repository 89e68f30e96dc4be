"""The body of a worker reactor process (one per extra core of ``-m``).

Forked by ``spydk.thread.cores.spawn_workers`` before the main process creates its loop.
The worker runs a *replica* App: its own Reactor and one Thread, ``reactor_<core>``, the
same subsystems as main, no RPC socket and no config file of its own. Its state comes from
main: every replicated RPC (``spydk.rpc.replica``) main applies is repeated here, in order
(op ``rpc_replica``), and main's framework init is too (op ``replica_start_init``). It serves
the operations registered with ``register_op`` (run on that Thread) and ends when main says
"stop" or its link closes. It ignores SIGINT/SIGTERM: the main process decides when
reactors stop (and the kernel kills the worker if main dies: PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

from spydk import log as spydk_log
from spydk.rpc.replica import replication_of
from spydk.thread.cores import register_op, serve_worker
from spydk.thread.thread import start_ids_at

log = spydk_log.get_logger("app")

# Thread and poller ids of the worker on core c start at c << ID_SHIFT: unique per app.
ID_SHIFT = 20

_app: Any = None   # the replica App of this worker process


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def worker_main(core: int, sock: socket.socket, poll: bool = False,
                subsystems: tuple[str, ...] | None = None, name: str = "spydk_tgt", spin_us: int = 0) -> int:
    from spydk.apps.app import App, AppOptions
    global _app
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    start_ids_at(core << ID_SHIFT)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    app = _app = App(AppOptions(name=f"{name}_core{core}", rpc_socket=None, wait_for_rpc=True,
                                subsystems=subsystems, poll=poll, spin_us=spin_us, lcore=core, cpumask=1 << core,
                                thread_name=f"reactor_{core}", replica=True))

    async def serve() -> int:
        await app.start()
        done = asyncio.Event()
        link = serve_worker(core, sock, loop, app.run_on_app_thread, done.set)
        await done.wait()
        await asyncio.sleep(0)   # let the answer to "stop" be queued, then send it
        link.flush()
        app.shutdown()
        await app.wait_shutdown()
        link.close()
        code: int = app.exit_code
        return code

    try:
        return loop.run_until_complete(serve())
    finally:
        spydk_log.flush()
        loop.close()


async def _rpc_replica(method: str, params: Any, *, fds: list[int]) -> Any:
    """Repeat a config-changing RPC main applied (on this worker's reactor_<core> Thread)."""
    if _app is None:
        raise RuntimeError("not a worker reactor")
    r = replication_of(method)
    if r is not None and r.adopt is not None:
        r.adopt(params, fds)
    return await _app.dispatcher.call(method, params)


async def _replica_start_init(*, fds: list[int]) -> bool:
    if _app is None:
        raise RuntimeError("not a worker reactor")
    await _app.start_init()
    return True


register_op("rpc_replica", _rpc_replica)
register_op("replica_start_init", _replica_start_init)

__all__ = ["ID_SHIFT", "new_loop", "worker_main"]
