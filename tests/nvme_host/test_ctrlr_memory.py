"""Host driver against the in-memory spydk target: init, identify, I/O of every kind, digests,
several queues, splitting at MDTS, queueing beyond the queue depth, reset."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from spydk.nvme.host import Controller, NvmeError
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION

from .conftest import Env, run


def _io(fn: Any, *args: Any) -> Any:
    fut = asyncio.get_running_loop().create_future()
    fn(*args, lambda _a, st, _d: fut.set_result(st), None)
    return fut


@pytest.mark.parametrize("hdgst,ddgst", [(False, False), (True, True)])
def test_init_identify_and_io(hdgst: bool, ddgst: bool) -> None:
    env = Env()

    async def main() -> None:
        c = env.controller(header_digest=hdgst, data_digest=ddgst, num_io_queues=2)
        await c.connect()
        assert c.state == "ready" and c.cdata is not None
        assert c.cdata.sn == "SPDYK0001" and c.cdata.mn == "spydk test ctrl"
        assert c.cdata.subnqn == "nqn.2016-06.io.spdk:cnode1"
        assert list(c.namespaces) == [1] and c.namespaces[1].num_blocks == 4096
        assert len(c.io_qpairs) == 2 and c.vs >> 16 == 1
        rng = random.Random(7)
        for q in c.io_qpairs:
            for size in (512, 4096, c.io_icd + 512, c.max_xfer * 2 + 1024):
                data = rng.randbytes(size)
                assert await _io(q.write, 1, memoryview(data), 8, size // 512) == 0
                assert bytes(env.backend.mem[8 * 512:8 * 512 + size]) == data
                buf = bytearray(size)
                assert await _io(q.read, 1, memoryview(buf), 8, size // 512) == 0
                assert buf == data
        q = c.io_qpairs[0]
        assert await _io(q.flush, 1) == 0
        assert await _io(q.write_zeroes, 1, 8, 4) == 0
        assert env.backend.mem[8 * 512:12 * 512] == bytes(2048)
        fut = asyncio.get_running_loop().create_future()
        q.dataset_management(1, [(100, 8), (200, 8)], lambda _a, st, _d: fut.set_result(st))
        assert await fut == 0
        assert env.backend.ops[-3:] == ["flush", "write_zeroes", "unmap"]
        await c.detach()
        assert c.state == "detached"

    run(main())


def test_queueing_beyond_queue_depth() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller(io_queue_size=4)
        await c.connect()
        q = c.io_qpairs[0]
        assert q.depth == 4
        bufs = [bytearray(512) for _ in range(40)]
        for i in range(40):
            env.backend.mem[i * 512:(i + 1) * 512] = bytes([i]) * 512
        futs = [_io(q.read, 1, memoryview(bufs[i]), i, 1) for i in range(40)]
        assert len(q.queued) == 36 and q.outstanding == 4
        assert await asyncio.gather(*futs) == [0] * 40
        assert all(bufs[i] == bytes([i]) * 512 for i in range(40))
        assert q.outstanding == 0 and len(q.free) == 4

    run(main())


def test_reset_reconnects_same_qpairs() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller()
        await c.connect()
        q = c.io_qpairs[0]
        first = c.cntlid
        await c.reset()
        assert c.state == "ready" and c.io_qpairs[0] is q and c.cntlid != first
        buf = bytearray(512)
        assert await _io(q.read, 1, memoryview(buf), 0, 1) == 0

    run(main())


def test_wrong_subnqn_is_a_clear_error() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller()
        c.trid.subnqn = "nqn.2016-06.io.spdk:nothere"
        with pytest.raises(NvmeError, match="Connect of queue 0 refused"):
            await c.connect()
        assert c.state == "failed"

    run(main())


def test_io_on_failed_controller_completes_aborted() -> None:
    env = Env()

    async def main() -> None:
        c: Controller = env.controller()
        await c.connect()
        failures: list[str] = []
        c.failure_callbacks.append(lambda _c, why: failures.append(why))
        q = c.io_qpairs[0]
        c.fail("test says so")
        assert failures == ["test says so"]
        assert await _io(q.read, 1, memoryview(bytearray(512)), 0, 1) == ST_ABORTED_SQ_DELETION

    run(main())


def test_keep_alive_without_answer_fails_the_controller() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller(keep_alive_timeout_ms=200)
        await c.connect()
        env.mutator = lambda pdu: None  # the target goes silent
        for _ in range(100):
            if c.state == "failed":
                break
            await asyncio.sleep(0.05)
        assert c.state == "failed" and "keep-alive" in (c.failure or "")

    run(main())


def test_command_timeout_fails_the_controller() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller(command_timeout_ms=200, keep_alive_timeout_ms=0)
        await c.connect()
        env.mutator = lambda pdu: None if pdu[0] in (5, 7) else bytes(pdu)  # no completions
        st = await _io(c.io_qpairs[0].read, 1, memoryview(bytearray(512)), 0, 1)
        assert st == ST_ABORTED_SQ_DELETION
        assert "got no completion within 200 ms" in (c.failure or "")

    run(main())


def test_namespace_added_at_run_time_is_seen_through_aer() -> None:
    from tests.nvmf.helpers import MemoryBackend

    env = Env()

    async def main() -> None:
        c = env.controller()
        await c.connect()
        changed = asyncio.Event()
        c.ns_change_callbacks.append(lambda _c: changed.set())
        env.subsys.add_namespace("Mem1", MemoryBackend(num_blocks=1024), nsid=2)
        await asyncio.wait_for(changed.wait(), 10)
        assert sorted(c.namespaces) == [1, 2] and c.namespaces[2].num_blocks == 1024

    run(main())


def test_timeout_action_abort_then_reset() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller(command_timeout_ms=200, keep_alive_timeout_ms=0, timeout_action="abort")
        await c.connect()
        env.mutator = lambda pdu: None if pdu[0] == 7 else bytes(pdu)  # read data never comes
        st = await _io(c.io_qpairs[0].read, 1, memoryview(bytearray(512)), 0, 1)
        assert st == ST_ABORTED_SQ_DELETION
        # spydk's target aborts only AERs: it answers "not aborted", so the controller is reset.
        assert "got no completion within 200 ms (an Abort did not end it)" in (c.failure or "")

    run(main())
