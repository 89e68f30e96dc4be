"""NVMe/TCP with -m 0x3: I/O queues are spread over the main and the worker reactor process
(spydk.nvmf.spread over spydk.thread's links): data crosses reactors through the shared malloc
memory, both poll groups carry I/O, bad input on a worker's connection closes only it, and the
controller's end closes its queues on the worker."""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from spydk.nvme.host.ctrlr import Controller, ControllerOpts
from spydk.nvme.host.trid import parse_trid
from spydk.testing import start_target
from tests.nvmf.helpers import SocketHost

NQN = "nqn.2016-06.io.spdk:cnode1"
BS = 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int) -> dict[str, Any]:
    addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 16384, "block_size": BS}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": True}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": addr}}]}]}


@pytest.fixture
def target(tmp_path: Path) -> Any:
    port = _free_port()
    t = start_target(tmp_path, _config(port), extra_args=["-m", "0x3"])
    t.port = port  # type: ignore[attr-defined]
    try:
        yield t
    finally:
        t.stop()


def _groups(t: Any) -> list[dict[str, Any]]:
    return list(t.client.call("nvmf_get_stats")["poll_groups"])


def _until(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def _io(q: Any, write: bool, slba: int, buf: memoryview) -> int:
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    (q.write if write else q.read)(1, buf, slba, len(buf) // BS, lambda _a, st, _dw0: fut.set_result(st))
    return await fut


def test_two_io_queues_land_on_both_reactors_and_data_crosses_them(target: Any) -> None:
    async def run() -> None:
        trid = parse_trid(f"trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:{target.port} subnqn:{NQN}")
        c = Controller(trid, ControllerOpts(num_io_queues=2))
        await c.connect()
        try:
            q1, q2 = c.io_qpairs
            for i in range(64):  # written through one queue, read back through the other
                w, r = (q1, q2) if i % 2 else (q2, q1)
                data = bytes([i]) * BS * 8
                assert await _io(w, True, i * 8, memoryview(bytearray(data))) == 0
                got = bytearray(len(data))
                assert await _io(r, False, i * 8, memoryview(got)) == 0
                assert got == data, f"block run {i} differs when read on the other reactor"
            groups = _groups(target)
            assert [g["name"] for g in groups] == ["nvmf_tgt_poll_group_000", "nvmf_tgt_poll_group_001"]
            assert [g["current_io_qpairs"] for g in groups] == [1, 1]
            assert all(g["completed_nvme_io"] >= 64 for g in groups), groups
        finally:
            await c.detach()
    asyncio.run(run())
    # the controller went: its queue on the worker was closed by a message from main
    _until(lambda: [g["current_io_qpairs"] for g in _groups(target)] == [0, 0], "both queues closed")


def test_bad_input_on_a_worker_queue_closes_only_that_connection(target: Any) -> None:
    adm = SocketHost("127.0.0.1", target.port)
    c = adm.connect_admin(NQN)
    assert c.status == 0
    cntlid = c.dw0 & 0xFFFF
    queues = {}
    for qid in (1, 2):
        before = _groups(target)[1]["current_io_qpairs"]
        h = SocketHost("127.0.0.1", target.port)
        assert h.connect_io(NQN, cntlid, qid).status == 0
        # Where did it go? The worker's count of queues says (it gets the handover first).
        _until(lambda n=qid: sum(g["current_io_qpairs"] for g in _groups(target)) >= n,  # type: ignore[misc]
               "queue counted")
        queues["worker" if _groups(target)[1]["current_io_qpairs"] > before else "main"] = h
    assert set(queues) == {"main", "worker"}
    bad = queues["worker"]
    # a CapsuleCmd header with a wrong header length: C2HTermReq, then the target closes it
    bad.sock.sendall(struct.pack("<BBBBI", 4, 0, 10, 0, 72) + bytes(64))
    got = b""
    bad.sock.settimeout(10)
    while chunk := bad.sock.recv(4096):
        got += chunk
    assert got[:1] == b"\x03"  # C2HTermReq
    good = queues["main"]
    data = b"\x5a" * BS
    assert good.wait(good.h.write(1, 3, data, BS)).status == 0
    assert good.wait(good.h.read(1, 3, 1, BS)).data == data
    _until(lambda: _groups(target)[1]["current_io_qpairs"] == 0, "the worker's queue closed")
    # the controller keeps its admin queue; qid 2 can connect again
    h = SocketHost("127.0.0.1", target.port)
    assert h.connect_io(NQN, cntlid, 2).status == 0
    assert h.wait(h.h.read(1, 3, 1, BS)).data == data
    for s in (adm, good, h):
        s.close()


def test_poll_groups_are_numbered_in_core_order_whatever_the_main_core(tmp_path: Path) -> None:
    port = _free_port()
    t = start_target(tmp_path, _config(port), extra_args=["-m", "0x3", "-p", "1"])
    try:
        groups = _groups(t)
        assert [g["name"] for g in groups] == ["nvmf_tgt_poll_group_000", "nvmf_tgt_poll_group_001"]
    finally:
        t.stop()
