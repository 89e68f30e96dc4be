"""A running target (subprocess) under a network fuzzer and under connection churn, while
well-behaved NVMe/TCP and iSCSI clients keep verifying their data on another bdev: the target
stays up, the verify clients see no error and no wrong byte, and the target's RSS and open
file descriptors come back to their baseline. Short in CI; SPYDK_NETFUZZ_SESSIONS and
SPYDK_CHURN_CYCLES make the recorded long runs (docs/reliability.md)."""
from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fuzz import netfuzz
from spydk.apps.main import raise_fd_limit
from spydk.testing import TargetProcess, start_target
from tests.iscsi_tgt.initiator import Initiator
from tests.nvmf.helpers import SocketHost

NQN_VERIFY = "nqn.2016-06.io.spdk:verify"
NQN_FUZZ = "nqn.2016-06.io.spdk:fuzz"
IQN_VERIFY = "iqn.2016-06.io.spdk:verify"
IQN_FUZZ = "iqn.2016-06.io.spdk:fuzz"
BS = 512
NETFUZZ_SESSIONS = int(os.environ.get("SPYDK_NETFUZZ_SESSIONS", "60"))
CHURN_CYCLES = int(os.environ.get("SPYDK_CHURN_CYCLES", "100"))  # NVMe/TCP + iSCSI each
# Connections held open at once (NVMe/TCP: half admin, half I/O queues; iSCSI: sessions), and
# rounds of opening, using and closing them all.
CHURN_AT_ONCE = int(os.environ.get("SPYDK_CHURN_AT_ONCE", "40"))
CHURN_ROUNDS = int(os.environ.get("SPYDK_CHURN_ROUNDS", "3"))
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(nport: int, iport: int) -> dict[str, Any]:
    def addr() -> dict[str, str]:
        return {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(nport)}
    nvmf: list[dict[str, Any]] = [{"method": "nvmf_create_transport", "params": {"trtype": "TCP"}}]
    for nqn, bdev in ((NQN_VERIFY, "Malloc0"), (NQN_FUZZ, "Malloc1")):
        nvmf += [{"method": "nvmf_create_subsystem", "params": {"nqn": nqn, "allow_any_host": True}},
                 {"method": "nvmf_subsystem_add_ns", "params": {"nqn": nqn, "namespace": {"bdev_name": bdev}}},
                 {"method": "nvmf_subsystem_add_listener", "params": {"nqn": nqn, "listen_address": addr()}}]
    iscsi: list[dict[str, Any]] = [
        # Room for the sessions the churn holds at once (the default is 128).
        {"method": "iscsi_set_options", "params": {"max_sessions": max(128, CHURN_AT_ONCE + 16)}},
        {"method": "iscsi_create_portal_group",
         "params": {"tag": 1, "portals": [{"host": "127.0.0.1", "port": str(iport)}]}},
        {"method": "iscsi_create_initiator_group",
         "params": {"tag": 1, "initiators": ["ANY"], "netmasks": ["127.0.0.1/32"]}}]
    for name, bdev in (("verify", "Malloc0"), ("fuzz", "Malloc1")):
        iscsi.append({"method": "iscsi_create_target_node", "params": {
            "name": name, "alias_name": "", "luns": [{"bdev_name": bdev, "lun_id": 0}],
            "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 32}})
    bdevs = [{"method": "bdev_malloc_create", "params": {"name": f"Malloc{i}", "num_blocks": 16384,
                                                          "block_size": BS}} for i in range(2)]
    return {"subsystems": [{"subsystem": "bdev", "config": bdevs}, {"subsystem": "nvmf", "config": nvmf},
                           {"subsystem": "iscsi", "config": iscsi}]}


class Verifier:
    """Well-behaved clients on the verify bdev: NVMe/TCP on LBAs [0, 4096), iSCSI on
    [8192, 12288); each writes random blocks and reads them back until stopped."""

    def __init__(self, nport: int, iport: int):
        self.nport, self.iport = nport, iport
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ops = {"nvme": 0, "iscsi": 0}
        self.threads = [threading.Thread(target=self._guard, args=(self._nvme,), daemon=True),
                        threading.Thread(target=self._guard, args=(self._iscsi,), daemon=True)]

    def __enter__(self) -> Verifier:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except Exception as e:  # reported by the test
            self.errors.append(f"{fn.__name__}: {type(e).__name__}: {e}")

    def _nvme(self) -> None:
        rng = random.Random(1)
        a = SocketHost("127.0.0.1", self.nport)
        c = a.connect_admin(NQN_VERIFY)
        io = SocketHost("127.0.0.1", self.nport)
        io.connect_io(NQN_VERIFY, c.dw0 & 0xFFFF)
        while not self.stop.is_set():
            lba, n = rng.randrange(4096 - 16), rng.randint(1, 16)
            data = rng.randbytes(n * BS)
            w = io.wait(io.h.write(1, lba, data, BS))
            r = io.wait(io.h.read(1, lba, n, BS))
            if w.status or r.status or r.data != data:
                raise AssertionError(f"NVMe verify at LBA {lba}: write {w.status:#x} read {r.status:#x} "
                                     f"data {'ok' if r.data == data else 'WRONG'}")
            self.ops["nvme"] += 1
        io.close()
        a.close()

    def _iscsi(self) -> None:
        rng = random.Random(2)
        i = Initiator("127.0.0.1", self.iport, isid=b"\x80\0\0\0\0\x99")
        i.login(IQN_VERIFY)
        while not self.stop.is_set():
            lba, n = 8192 + rng.randrange(4096 - 16), rng.randint(1, 16)
            data = rng.randbytes(n * BS)
            w = i.write10(0, lba, data)
            r = i.read10(0, lba, n)
            if w.status or r.status or r.data != data:
                raise AssertionError(f"iSCSI verify at LBA {lba}: status {w.status}/{r.status}")
            self.ops["iscsi"] += 1
            i.nop() if rng.random() < 0.01 else None
        i.logout()
        i.close()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, base_fds: int) -> int:
    """Wait (bounded) for the target to close what the clients closed; returns its fd count."""
    n = fds(pid)
    for _ in range(100):
        if n <= base_fds:
            break
        time.sleep(0.1)
        n = fds(pid)
    return n


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TargetProcess, int, int]]:
    nport, iport = free_port(), free_port()
    t = start_target(tmp_path_factory.mktemp("net"), config(nport, iport))
    try:
        yield t, nport, iport
    finally:
        t.stop()


def baseline(t: TargetProcess, nport: int, iport: int) -> tuple[int, int]:
    # Warm up both protocols once so lazily created pools and caches are in the baseline.
    netfuzz.run(4, 99, ("127.0.0.1", nport, NQN_FUZZ), ("127.0.0.1", iport, IQN_FUZZ))
    time.sleep(0.2)
    return rss(t.pid), settle(t.pid, 0)


def test_network_fuzzer_while_verify_clients_run(target: tuple[TargetProcess, int, int]) -> None:
    t, nport, iport = target
    base_rss, base_fds = baseline(t, nport, iport)
    with Verifier(nport, iport) as v:
        st = netfuzz.run(NETFUZZ_SESSIONS, 7, ("127.0.0.1", nport, NQN_FUZZ), ("127.0.0.1", iport, IQN_FUZZ))
    assert not v.errors, v.errors
    assert v.ops["nvme"] > 0 and v.ops["iscsi"] > 0
    assert t.proc.poll() is None, t.log_text()[-3000:]
    assert st.sessions + st.refused == NETFUZZ_SESSIONS and st.pdus > NETFUZZ_SESSIONS
    assert "Traceback" not in t.log_text(), t.log_text()[-5000:]
    assert settle(t.pid, base_fds) <= base_fds
    assert rss(t.pid) - base_rss < 64 * MiB
    print(f"netfuzz: {st} verify ops {v.ops} rss {base_rss / MiB:.1f} -> {rss(t.pid) / MiB:.1f} MiB")


def test_connection_churn(target: tuple[TargetProcess, int, int]) -> None:
    t, nport, iport = target
    base_rss, base_fds = baseline(t, nport, iport)
    rng = random.Random(5)
    with Verifier(nport, iport) as v:
        for i in range(CHURN_CYCLES):
            a = SocketHost("127.0.0.1", nport)
            c = a.connect_admin(NQN_FUZZ)
            assert c.status == 0
            io = SocketHost("127.0.0.1", nport)
            assert io.connect_io(NQN_FUZZ, c.dw0 & 0xFFFF).status == 0
            data = rng.randbytes(4096)
            assert io.wait(io.h.write(1, i % 4000, data, BS)).status == 0
            assert io.wait(io.h.read(1, i % 4000, 8, BS)).data == data
            io.close()
            a.close()
            s = Initiator("127.0.0.1", iport, isid=b"\x80\0\0\2" + (i & 0xFFFF).to_bytes(2, "big"))
            s.login(IQN_FUZZ)
            assert s.write10(0, i % 4000, data).status == 0
            assert s.read10(0, i % 4000, 8).data == data
            if rng.random() < 0.5:
                s.logout()
            s.close()
            assert not v.errors, v.errors
    assert not v.errors, v.errors
    assert t.proc.poll() is None
    n = settle(t.pid, base_fds)
    assert n <= base_fds, f"fds {base_fds} -> {n}"
    grown = rss(t.pid) - base_rss
    assert grown < 48 * MiB, f"RSS grew {grown / MiB:.1f} MiB over {CHURN_CYCLES} cycles"
    print(f"churn: {CHURN_CYCLES} NVMe/TCP + {CHURN_CYCLES} iSCSI cycles, verify ops {v.ops}, "
          f"fds {base_fds} -> {n}, rss {base_rss / MiB:.1f} -> {rss(t.pid) / MiB:.1f} MiB")


def test_many_connections_at_once_churn(target: tuple[TargetProcess, int, int]) -> None:
    """CHURN_AT_ONCE NVMe/TCP connections (admin and I/O queue of CHURN_AT_ONCE/2 hosts) and
    CHURN_AT_ONCE iSCSI sessions open at the same time, each used (a write read back), then
    all closed; CHURN_ROUNDS times, while the verify clients run. File descriptors come back
    to the baseline, and the target's RSS after the last round is within a margin of the RSS
    after the first (what a round holds is given back)."""
    t, nport, iport = target
    raise_fd_limit()  # this process holds the client side of every connection (1000 at 500 + 500)
    _, base_fds = baseline(t, nport, iport)
    rng = random.Random(6)
    after_first = 0
    with Verifier(nport, iport) as v:
        for rnd in range(CHURN_ROUNDS):
            hosts: list[tuple[SocketHost, SocketHost]] = []
            sessions: list[Initiator] = []
            for _ in range(CHURN_AT_ONCE // 2):
                a = SocketHost("127.0.0.1", nport)
                c = a.connect_admin(NQN_FUZZ)
                assert c.status == 0, c
                io = SocketHost("127.0.0.1", nport)
                assert io.connect_io(NQN_FUZZ, c.dw0 & 0xFFFF).status == 0
                hosts.append((a, io))
            for k in range(CHURN_AT_ONCE):
                s = Initiator("127.0.0.1", iport, isid=b"\x80\0\0\3" + k.to_bytes(2, "big"))
                s.login(IQN_FUZZ)
                sessions.append(s)
            assert fds(t.pid) >= base_fds + 2 * CHURN_AT_ONCE  # all of them open at once
            for k, (_a, io) in enumerate(hosts):  # distinct blocks: [0, 8 * CHURN_AT_ONCE / 2)
                data = rng.randbytes(4096)
                assert io.wait(io.h.write(1, 8 * k, data, BS)).status == 0
                assert io.wait(io.h.read(1, 8 * k, 8, BS)).data == data
            for k, s in enumerate(sessions):  # distinct blocks from 8192 on
                data = rng.randbytes(4096)
                assert s.write10(0, 8192 + 8 * k, data).status == 0
                assert s.read10(0, 8192 + 8 * k, 8).data == data
            for a, io in hosts:
                io.close()
                a.close()
            for s in sessions:
                if rng.random() < 0.5:
                    s.logout()
                s.close()
            n = settle(t.pid, base_fds + 3)  # the verify clients hold three connections
            assert n <= base_fds + 3, f"round {rnd}: fds {base_fds} + 3 -> {n}"
            assert not v.errors, v.errors
            if rnd == 0:
                after_first = rss(t.pid)
    assert not v.errors, v.errors
    assert v.ops["nvme"] > 0 and v.ops["iscsi"] > 0
    assert t.proc.poll() is None
    assert "Traceback" not in t.log_text(), t.log_text()[-5000:]
    n = settle(t.pid, base_fds)
    assert n <= base_fds, f"fds {base_fds} -> {n}"
    grown = rss(t.pid) - after_first
    assert grown < 48 * MiB, f"RSS grew {grown / MiB:.1f} MiB from round 1 to round {CHURN_ROUNDS}"
    print(f"churn at once: {CHURN_ROUNDS} rounds of {CHURN_AT_ONCE} NVMe/TCP + {CHURN_AT_ONCE} iSCSI "
          f"connections, verify ops {v.ops}, fds {base_fds} -> {n}, rss after round 1 "
          f"{after_first / MiB:.1f} MiB, after the last {rss(t.pid) / MiB:.1f} MiB")
