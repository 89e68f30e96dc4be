"""A misbehaving target (the in-memory spydk target with its PDUs rewritten) fails that
controller with a clear error; pending I/O completes as aborted; other controllers go on."""
from __future__ import annotations

import asyncio
import struct

import pytest

from spydk.nvme.host import NvmeError
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION

from .conftest import Env, run

_CQE_CID = 8 + 12
_C2H_PSH = struct.Struct("<HHII")  # CCCID, rsvd, DATAO, DATAL


async def _read(q, nblocks: int = 8, write: bool = False) -> int:  # type: ignore[no-untyped-def]
    fut = asyncio.get_running_loop().create_future()
    fn = q.write if write else q.read
    fn(1, memoryview(bytearray(512 * nblocks)), 0, nblocks, lambda _a, st, _d: fut.set_result(st))
    return await fut  # type: ignore[no-any-return]


def _fails_with(mutate, match: str, write: bool = False) -> None:  # type: ignore[no-untyped-def]
    env = Env()

    async def main() -> None:
        bad = env.controller()
        await bad.connect()
        good = Env().controller()
        await good.connect()
        failures: list[str] = []
        bad.failure_callbacks.append(lambda _c, why: failures.append(why))
        env.mutator = mutate
        assert await _read(bad.io_qpairs[0], write=write) == ST_ABORTED_SQ_DELETION
        assert bad.state == "failed" and len(failures) == 1
        assert failures[0] == bad.failure
        assert match in failures[0], failures[0]
        assert await _read(good.io_qpairs[0]) == 0  # the process and other controllers go on

    run(main())


def test_wrong_cid_in_response() -> None:
    def mutate(pdu: bytearray) -> bytes:
        if pdu[0] == 5:
            struct.pack_into("<H", pdu, _CQE_CID, 999)
        return bytes(pdu)
    _fails_with(mutate, "response for no command", write=True)


def test_wrong_cid_in_data() -> None:
    def mutate(pdu: bytearray) -> bytes:
        if pdu[0] == 7:
            struct.pack_into("<H", pdu, 8, 77)
        return bytes(pdu)
    _fails_with(mutate, "C2H data for no read command")


def test_malformed_pdu() -> None:
    def mutate(pdu: bytearray) -> bytes:
        pdu[0] = 0x0F
        return bytes(pdu)
    _fails_with(mutate, "unexpected PDU type")


def test_short_read_data() -> None:
    def mutate(pdu: bytearray) -> bytes:
        if pdu[0] == 7:
            cccid, r, datao, datal = _C2H_PSH.unpack_from(pdu, 8)
            pdo = pdu[3]
            keep = datal // 2
            _C2H_PSH.pack_into(pdu, 8, cccid, r, datao, keep)
            struct.pack_into("<I", pdu, 4, pdo + keep)
            return bytes(pdu[:pdo + keep])
        return bytes(pdu)
    _fails_with(mutate, "with 2048 of 4096 bytes")


def test_termreq_from_target() -> None:
    def mutate(pdu: bytearray) -> bytes:
        return struct.pack("<BBBBIHI10x", 3, 0, 24, 0, 24, 1, 0)
    _fails_with(mutate, "TermReq FES 0x1")


def test_controller_that_never_becomes_ready() -> None:
    env = Env()

    def zero_dw0(pdu: bytearray) -> bytes:
        if pdu[0] == 5:
            pdu[8:12] = bytes(4)
        return bytes(pdu)
    env.mutator = zero_dw0

    async def main() -> None:
        c = env.controller()
        with pytest.raises(NvmeError, match="never became ready"):
            await c.connect()
        await asyncio.sleep(0.01)
        assert c.state == "failed" and "never became ready" in (c.failure or "")
        assert all(cn.closing for cn in env.conns)

    run(main())


def test_target_closes_connection() -> None:
    env = Env()

    async def main() -> None:
        c = env.controller()
        await c.connect()
        q = c.io_qpairs[0]
        for conn in env.conns:
            conn.transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.01)
        assert c.state == "failed" and "connection" in (c.failure or "")
        assert await _read(q) == ST_ABORTED_SQ_DELETION

    run(main())


def test_malformed_identify_data_is_a_clear_error() -> None:
    env = Env()

    def bad_nlbaf(pdu: bytearray) -> bytes:
        if pdu[0] == 7 and len(pdu) >= 24 + 4096:
            pdu[pdu[3] + 25] = 0xFF  # byte 25 of Identify data: NLBAF of a namespace
        return bytes(pdu)
    env.mutator = bad_nlbaf

    async def main() -> None:
        c = env.controller()
        with pytest.raises(NvmeError, match="NLBAF 255 is over 63"):
            await c.connect()
        assert c.state == "failed"

    run(main())
