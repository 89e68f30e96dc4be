"""Property test: whatever byte of a target's PDU is corrupted (header, PDU-specific header,
data; reads and writes; with and without digests), the I/O completes exactly once, the host
driver raises nothing into the event loop, and a controller that gives up says why. Corruption
that leaves the host waiting for bytes that never come is ended by the target closing the
connection, as a real target would at its own timeout."""
from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION

from .conftest import Env, run


@settings(max_examples=150, deadline=None)
@given(write=st.booleans(), digests=st.booleans(), nth=st.integers(0, 2), pos=st.integers(0, 600),
       xor=st.integers(1, 255))
def test_corrupted_target_pdu_completes_the_io_once(write: bool, digests: bool, nth: int, pos: int,
                                                      xor: int) -> None:
    env = Env()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[Any] = []
        loop.set_exception_handler(lambda _l, ctx: errors.append(ctx))
        c = env.controller(header_digest=digests, data_digest=digests, arm_aer=False,
                           keep_alive_timeout_ms=0)
        await c.connect()
        seen = [0]

        def corrupt(pdu: bytearray) -> bytes:
            k = seen[0]
            seen[0] += 1
            if k == nth:
                pdu[pos % len(pdu)] ^= xor
            return bytes(pdu)
        env.mutator = corrupt
        results: list[int] = []
        fn = c.io_qpairs[0].write if write else c.io_qpairs[0].read
        fn(1, memoryview(bytearray(8192)), 0, 16, lambda _a, s, _d: results.append(s), None)
        for _ in range(100):
            if results:
                break
            await asyncio.sleep(0)
        if not results:  # the host waits for more: the target hangs up
            for conn in env.conns:
                if conn.transport is not None:
                    conn.transport.close()
            for _ in range(20):
                await asyncio.sleep(0)
        assert len(results) == 1, results
        if c.state == "failed":
            assert c.failure and results[0] == ST_ABORTED_SQ_DELETION
        assert not errors, errors
        await c.detach()
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(results) == 1 and not errors, (results, errors)

    run(main())
