"""Benchmark: messages between two reactor processes (spydk.thread.cores.RemoteThread).

    .venv/bin/python bench/reactor_msg.py [--messages 200000] [--round-trips 5000]

Forks one worker reactor (as `-m 0x3` does), main pinned to core 0, the worker to core 1.
Throughput: main sends --messages `send_msg`s to the worker's thread (batched by the link:
one sendmsg per loop turn), then one call to wait for the last; messages/s = messages / time.
Latency: --round-trips sequential `call`s of a no-op (main -> worker thread -> main), median
and 99th percentile. Both processes are pinned; on a shared machine, other jobs add noise.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import time

from spydk.apps.worker import new_loop, worker_main
from spydk.thread import cores, init_reactor
from spydk.thread.link import Link

_count = [0]


def count(n: int) -> None:
    _count[0] += n


def total() -> int:
    return _count[0]


def noop() -> None:
    return None


async def bench(ws: cores.WorkerSet, messages: int, trips: int) -> None:
    loop = asyncio.get_running_loop()
    reactor = init_reactor(loop, lcore=0)
    thread = reactor.create_thread("app_thread", 1)

    async def run(fn):  # type: ignore[no-untyped-def]
        return await reactor.call_on(thread, fn)
    await ws.attach(loop, run, lambda w, why: print(f"{w.describe()} lost: {why}", file=sys.stderr))
    (target,) = [t for t in await cores.remote_threads(1) if t.name == "reactor_1"]
    batch = 1000
    t0 = time.perf_counter()
    for _i in range(messages // batch):
        for _ in range(batch):
            target.send_msg(count, 1)
        await asyncio.sleep(0)   # a loop turn: the batch leaves, replies are read
    got = await target.call(total)
    dt = time.perf_counter() - t0
    assert got == messages // batch * batch, got
    lats = []
    for _ in range(trips):
        s = time.perf_counter_ns()
        await target.call(noop)
        lats.append(time.perf_counter_ns() - s)
    lats.sort()
    link = ws[0].link
    assert isinstance(link, Link)
    print(f"reactor_msg: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"load {os.getloadavg()[0]:.1f}, main on core 0, worker on core 1 (pinned)")
    print(f"  send_msg main -> worker: {got / dt:,.0f} messages/s ({got} in {dt:.2f} s, "
          f"{link.frames_out} frames in {link.batches_out} sendmsg calls)")
    print(f"  round trip (call of a no-op): median {lats[len(lats) // 2] / 1000:.1f} us, "
          f"p99 {lats[len(lats) * 99 // 100] / 1000:.1f} us over {trips}")
    await ws.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--round-trips", type=int, default=5000)
    a = ap.parse_args()
    ws = cores.spawn_workers([1], lambda core, sock: worker_main(core, sock))
    cores.pin_to_core(0)
    loop = new_loop()
    try:
        loop.run_until_complete(bench(ws, a.messages, a.round_trips))
    finally:
        if not ws.stopping:
            ws.kill()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
