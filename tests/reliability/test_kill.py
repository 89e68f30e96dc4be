"""Acknowledged writes survive kill -9: an aio bdev on a file, exported over NVMe/TCP; a
client writes random data (distinct LBAs per round) and flushes at random points; the
target is killed with SIGKILL at a random point with writes and a flush in flight, restarted
on the same file, and every write acknowledged before the submission of a flush that
completed must read back. KILL_POINTS rounds (the issue asks at least 50)."""
from __future__ import annotations

import os
import random
import signal
import socket
from pathlib import Path
from typing import Any

from spydk.nvme import spec
from spydk.testing import TargetProcess, start_target
from tests.nvmf.helpers import SocketHost

NQN = "nqn.2016-06.io.spdk:kill"
BS = 512
LBAS_PER_ROUND = 48
KILL_POINTS = int(os.environ.get("SPYDK_KILL_POINTS", "50"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(path: Path, port: int) -> dict[str, Any]:
    addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_aio_create", "params": {"name": "Aio0", "filename": str(path), "block_size": BS}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": True}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Aio0"}}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": addr}},
        ]}]}


def connect(port: int) -> tuple[SocketHost, SocketHost]:
    a = SocketHost("127.0.0.1", port)
    c = a.connect_admin(NQN)
    assert c.status == 0, c
    io = SocketHost("127.0.0.1", port)
    assert io.connect_io(NQN, c.dw0 & 0xFFFF).status == 0
    return a, io


def flush_cmd(io: SocketHost) -> int:
    return io.h.submit(spec.build_sqe(spec.NvmOpcode.FLUSH, io.h.next_cid(), 1))


def workload(io: SocketHost, rng: random.Random, base: int, durable: dict[int, bytes]) -> None:
    """Writes to distinct LBAs from base with flushes; returns when the kill point is reached
    (with writes and a flush submitted and not waited for)."""
    lbas = list(range(base, base + LBAS_PER_ROUND))
    rng.shuffle(lbas)
    acked: dict[int, bytes] = {}
    steps = rng.randint(0, 6)
    for _ in range(steps):
        batch = [lbas.pop() for _ in range(rng.randint(1, 4)) if lbas]
        cids = {}
        for lba in batch:
            data = rng.randbytes(BS)
            cids[io.h.write(1, lba, data, BS)] = (lba, data)
        for cid, (lba, data) in cids.items():
            assert io.wait(cid).status == 0
            acked[lba] = data
        if rng.random() < 0.5:
            covered = dict(acked)  # acknowledged before the flush is submitted
            assert io.wait(flush_cmd(io)).status == 0
            durable.update(covered)
    # The kill point: more writes and a flush in flight.
    for _ in range(rng.randint(0, 4)):
        if lbas:
            io.h.write(1, lbas.pop(), rng.randbytes(BS), BS)
    flush_cmd(io)
    io.flush()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    nblocks = (KILL_POINTS + 1) * LBAS_PER_ROUND
    with open(path, "wb") as f:
        f.truncate(nblocks * BS)
    rng = random.Random(10)
    durable: dict[int, bytes] = {}  # every write acknowledged before a completed flush
    checked = 0
    for rnd in range(KILL_POINTS + 1):
        port = free_port()
        t: TargetProcess = start_target(tmp_path / f"r{rnd}", config(path, port))
        try:
            a, io = connect(port)
            for lba, data in sorted(durable.items()):
                r = io.wait(io.h.read(1, lba, 1, BS))
                assert r.status == 0 and r.data == data, f"round {rnd}: LBA {lba} lost its flushed write"
                checked += 1
            if rnd == KILL_POINTS:
                io.close()
                a.close()
                break
            workload(io, rng, rnd * LBAS_PER_ROUND, durable)
            os.kill(t.pid, signal.SIGKILL)
            t.wait(30)
            io.close()
            a.close()
        finally:
            t.stop()
    assert checked >= KILL_POINTS  # the check is not vacuous
