"""I/O queues spread across reactors (spydk.nvmf.spread), in one process: a main Target that
admits connections and keeps admin queues, a worker Target that runs the I/O queues handed to
it, and an in-memory channel between them. The cross-process channel only changes how the
messages and the descriptor travel."""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest

from spydk.nvme import spec, tcp
from spydk.nvme.spec import NvmOpcode
from spydk.nvme.spec import fabrics as fab
from spydk.nvmf.spread import IoQueueHandoff, IoQueueHost, LocalLink, Spreader
from spydk.nvmf.subsystem import Subsystem
from spydk.nvmf.tgt import Target
from spydk.nvmf.transports.tcp import TcpConnection
from tests.nvmf.helpers import HOSTID, HOSTNQN, FakeTransport, TestHost, sgl_incapsule

from .conftest import ADDR, NQN, Env, Link

BS = 512


class SpreadEnv:
    """Main reactor (``main``: the usual in-memory Env) plus one worker reactor."""

    def __init__(self) -> None:
        self.main = Env()
        self.wtgt = Target(clock=self.main.clock)  # empty: the replica comes with the first queue
        self.open_fails = False
        self.adopted: list[tuple[TcpConnection, FakeTransport]] = []
        self.to_worker = LocalLink(lambda m, fds: self.host.on_message(m, fds))
        self.to_main = LocalLink(lambda m, fds: self.spreader.on_message(0, m))
        self.host = IoQueueHost(self.wtgt, self.to_main, attach=self._attach, open_backend=self._open)
        self.spreader = Spreader(self.main.tgt, [self.to_worker], take_socket=lambda conn: [])
        self.main.tr.spreader = self.spreader

    @property
    def wtr(self) -> Any:
        return self.wtgt.transports.get("TCP")

    @property
    def wsub(self) -> Subsystem:
        return self.wtgt.subsystems[NQN]

    def _open(self, bdev_name: str) -> Any:
        # Across processes the replica's bdev reads the same memory (shared malloc); here
        # it is the same in-memory namespace.
        if self.open_fails:
            raise OSError(f"no bdev {bdev_name} here")
        return self.main.backend

    def _attach(self, conn: TcpConnection, fds: Sequence[int]) -> None:
        ft = FakeTransport()
        conn.connection_made(ft)  # type: ignore[arg-type]
        self.adopted.append((conn, ft))
        conn.resumed()

    def pump(self, *links: Link) -> None:
        for _ in range(100):
            sent = self.to_worker.sent + self.to_main.sent
            moved = self.to_worker.pump() + self.to_main.pump()
            for lk in links:
                if lk.conn.closing and lk.conn.qp.ctrlr is None and self.adopted and lk.conn.tr is self.main.tr:
                    lk.conn.connection_lost(None)
                    lk.conn, lk.ft = self.adopted.pop(0)  # the connection now lives on the worker
                    moved += 1
                before = len(lk.host.completions)
                lk.pump()
                moved += len(lk.host.completions) - before
            moved += self.to_worker.sent + self.to_main.sent - sent
            if not moved:
                return

    def wait(self, lk: Link, cid: int) -> Any:
        self.pump(lk)
        assert cid in lk.host.completions, f"command {cid} did not complete"
        return lk.host.completions.pop(cid)

    def admin(self, hostnqn: str = HOSTNQN, hostid: bytes = HOSTID, kato: int = 0) -> tuple[Link, int]:
        lk = self.main.link()
        lk.host.icreq()
        lk.pump()
        c = lk.wait(lk.host.connect(NQN, hostnqn=hostnqn, hostid=hostid, kato=kato))
        assert c.status == 0, c
        lk.enable()
        return lk, c.dw0 & 0xFFFF

    def io(self, cntlid: int, qid: int, hostnqn: str = HOSTNQN, hostid: bytes = HOSTID) -> Link:
        lk = self.main.link()
        lk.host.icreq()
        lk.pump()
        c = self.wait(lk, lk.host.connect(NQN, qid=qid, cntlid=cntlid, sqsize=63, hostnqn=hostnqn,
                                          hostid=hostid))
        assert c.status == 0, c
        lk.host.icd = self.main.tr.opts.in_capsule_data_size
        return lk

    def on_worker(self, lk: Link) -> bool:
        return lk.conn.tr is self.wtr


@pytest.fixture
def senv() -> SpreadEnv:
    return SpreadEnv()


def test_queues_go_round_robin_and_both_reactors_carry_verified_io(senv: SpreadEnv) -> None:
    adm, cntlid = senv.admin()
    q1 = senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    q3 = senv.io(cntlid, 3)
    assert [senv.on_worker(q) for q in (q1, q2, q3)] == [False, True, False]
    assert senv.spreader.placed == [2, 1]
    ctrlr = senv.main.subsys.controllers[cntlid]
    assert sorted(ctrlr.io_qpairs) == [1, 2, 3]
    # each queue writes a block, another queue reads it back
    for i, (w, r) in enumerate(((q1, q2), (q2, q3), (q3, q1))):
        data = bytes([0x30 + i]) * BS
        assert senv.wait(w, w.host.write(1, 10 + i, data, BS)).status == 0
        got = senv.wait(r, r.host.read(1, 10 + i, 1, BS))
        assert got.status == 0 and got.data == data
    assert senv.main.tgt.completed_nvme_io > 0 and senv.wtgt.completed_nvme_io >= 2
    assert senv.wtgt.stats()["current_io_qpairs"] == 1
    assert senv.main.tgt.stats()["io_qpairs"] == 2 and senv.wtgt.stats()["io_qpairs"] == 1
    # the admin queue on main still answers, and counts the I/O in the identify data
    assert senv.wait(adm, adm.host.identify(1)).status == 0


def test_controller_reset_closes_the_queue_on_the_worker_and_the_qid_can_reconnect(senv: SpreadEnv) -> None:
    adm, cntlid = senv.admin()
    senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    assert senv.on_worker(q2)
    c = senv.wait(adm, adm.host.property_set(fab.Property.CC, 0))  # CC.EN = 0
    assert c.status == 0
    senv.pump(q2)
    assert q2.ft.closed and senv.host.queues == {}
    ctrlr = senv.main.subsys.controllers[cntlid]
    assert ctrlr.io_qpairs == {} and senv.spreader.remote == {}
    adm.enable()
    senv.io(cntlid, 1)
    q2b = senv.io(cntlid, 2)  # the same qid again, on the worker again
    assert senv.on_worker(q2b)
    assert senv.wait(q2b, q2b.host.write(1, 0, b"z" * BS, BS)).status == 0


@pytest.mark.parametrize("how", ["keep-alive", "subsystem deleted", "host removed"])
def test_controller_state_changes_reach_the_worker(senv: SpreadEnv, how: str) -> None:
    import asyncio
    adm, cntlid = senv.admin(kato=5000)
    senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    assert senv.on_worker(q2)
    if how == "keep-alive":
        senv.main.clock.now += 6_000_000_000
        assert senv.main.tgt.check_keep_alive(senv.main.clock.now) == 1
    elif how == "subsystem deleted":
        asyncio.run(senv.main.tgt.remove_subsystem(NQN))
    else:
        senv.main.subsys.allow_any_host = False
        for c in list(senv.main.subsys.controllers.values()):
            c.destroy("host removed")  # what nvmf_subsystem_remove_host does to its controllers
    senv.pump(q2)
    assert q2.ft.closed and senv.host.queues == {}
    assert senv.to_worker.queue == [] and senv.spreader.remote == {}


def test_the_host_closing_a_worker_queue_frees_its_qid_and_reports_its_counters(senv: SpreadEnv) -> None:
    adm, cntlid = senv.admin()
    senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    for i in range(3):
        assert senv.wait(q2, q2.host.write(1, i, b"w" * BS, BS)).status == 0
    bad = senv.wait(q2, q2.host.read(1, 1 << 40, 1, BS))  # out of range: an error log entry
    assert bad.sc == spec.GenericStatus.LBA_OUT_OF_RANGE
    ctrlr = senv.main.subsys.controllers[cntlid]
    before = ctrlr.writes
    q2.conn.connection_lost(None)  # the host went away
    senv.pump()
    assert 2 not in ctrlr.io_qpairs and senv.spreader.remote == {}
    assert ctrlr.writes == before + 3
    assert any(e.status == bad.status and e.sqid == 2 for e in ctrlr.errors)
    q2b = senv.io(cntlid, 2)  # placed on main this time (round-robin), qid free again
    assert not senv.on_worker(q2b)
    assert senv.wait(q2b, q2b.host.read(1, 0, 1, BS)).data == b"w" * BS


def test_bad_input_on_a_worker_queue_fails_only_that_connection(senv: SpreadEnv) -> None:
    adm, cntlid = senv.admin()
    q1 = senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    assert senv.on_worker(q2)
    # a CapsuleCmd PDU whose header length is wrong: a protocol error (C2HTermReq, close)
    raw = struct.pack("<BBBBI", 4, 0, 10, 0, 72) + bytes(64)
    from tests.nvmf.helpers import push_bytes
    push_bytes(q2.conn, raw)
    senv.pump()
    assert q2.ft.closed and q2.conn.protocol_errors == 1
    q2.conn.connection_lost(None)
    senv.pump()
    ctrlr = senv.main.subsys.controllers[cntlid]
    assert sorted(ctrlr.io_qpairs) == [1] and not ctrlr.dead
    assert senv.wait(q1, q1.host.write(1, 0, b"k" * BS, BS)).status == 0
    assert senv.wait(adm, adm.host.identify(1)).status == 0


def test_reservation_commands_on_a_worker_queue_run_on_main(senv: SpreadEnv) -> None:
    a_adm, a_id = senv.admin()
    senv.io(a_id, 1)
    a = senv.io(a_id, 2)  # host A's queue lives on the worker
    b_host, b_nqn = bytes(range(16, 32)), "nqn.2014-08.org.nvmexpress:uuid:host-b"
    b_adm, b_id = senv.admin(b_nqn, b_host)
    b = senv.io(b_id, 1, b_nqn, b_host)  # host B's on main
    assert senv.on_worker(a) and not senv.on_worker(b)

    def cmd(lk: Link, opc: int, cdw10: int, data: bytes | None = None, read_len: int = 0, cdw11: int = 0) -> Any:
        n = len(data) if data is not None else read_len
        sqe = lk.host.io_sqe(opc, 1, n, incapsule=data is not None, cdw10=cdw10, cdw11=cdw11)
        return senv.wait(lk, lk.host.submit(sqe, data, read_len))

    key_a = struct.pack("<QQ", 0, 0xA)
    assert cmd(a, NvmOpcode.RESERVATION_REGISTER, 0, key_a).status == 0
    assert senv.main.subsys.namespaces[1].resv.active or senv.main.subsys.namespaces[1].resv.registrants
    # Exclusive Access by A (through the worker): B is refused, A's queue on the worker goes
    # through main while the reservation is held, and is allowed
    assert cmd(a, NvmOpcode.RESERVATION_ACQUIRE, 2 << 8, struct.pack("<QQ", 0xA, 0)).status == 0
    assert senv.main.subsys.reservations_active and senv.wsub.reservations_active
    assert senv.wait(b, b.host.write(1, 0, b"b" * BS, BS)).sc == spec.GenericStatus.RESERVATION_CONFLICT
    assert senv.wait(a, a.host.write(1, 0, b"a" * BS, BS)).status == 0
    assert senv.wait(a, a.host.read(1, 0, 1, BS)).data == b"a" * BS
    rep = cmd(a, NvmOpcode.RESERVATION_REPORT, (4096 // 4) - 1, read_len=4096, cdw11=1)
    assert rep.status == 0 and rep.data[4] == 2
    # released (clear): back to local I/O on the worker, told by main
    assert cmd(a, NvmOpcode.RESERVATION_RELEASE, 1, struct.pack("<Q", 0xA)).status == 0
    senv.pump()
    assert not senv.wsub.reservations_active
    done = senv.wtgt.completed_nvme_io
    assert senv.wait(b, b.host.write(1, 0, b"b" * BS, BS)).status == 0
    assert senv.wait(a, a.host.read(1, 0, 1, BS)).data == b"b" * BS
    assert senv.wtgt.completed_nvme_io == done + 1


def test_a_queue_whose_namespace_cannot_be_opened_on_the_worker_is_closed_and_freed_on_main(
        senv: SpreadEnv, caplog: Any) -> None:
    adm, cntlid = senv.admin()
    senv.io(cntlid, 1)
    senv.open_fails = True
    lk = senv.main.link()
    lk.host.icreq()
    lk.pump()
    lk.host.connect(NQN, qid=2, cntlid=cntlid, sqsize=63)
    senv.pump(lk)
    assert 2 not in senv.main.subsys.controllers[cntlid].io_qpairs and senv.spreader.remote == {}
    assert "no bdev Mem0 here" in caplog.text
    assert senv.wait(adm, adm.host.identify(1)).status == 0


def test_namespace_and_ana_changes_reach_the_replica(senv: SpreadEnv) -> None:
    from spydk.nvme.spec import AnaState
    senv.main.subsys.ana_reporting = True
    adm, cntlid = senv.admin()
    senv.io(cntlid, 1)
    q2 = senv.io(cntlid, 2)
    assert senv.on_worker(q2) and senv.wsub.ana_reporting and list(senv.wsub.namespaces) == [1]
    senv.main.subsys.set_ana_state(ADDR, AnaState.INACCESSIBLE)
    senv.pump()
    r = senv.wait(q2, q2.host.read(1, 0, 1, BS))
    assert (r.sct, r.sc) == (3, 0x02)  # path error: ANA inaccessible
    senv.main.subsys.set_ana_state(ADDR, AnaState.OPTIMIZED)
    senv.main.subsys.remove_namespace(1)
    senv.pump()
    assert senv.wsub.namespaces == {}
    r = senv.wait(q2, q2.host.read(1, 0, 1, BS))
    assert r.sc == spec.GenericStatus.INVALID_NAMESPACE_OR_FORMAT


def test_codec_state_moves_with_the_bytes_already_received() -> None:
    host = TestHost()
    ctl = tcp.TcpQueuePair(tcp.Role.CONTROLLER)
    ctl.receive_data(b"".join(bytes(b) for b in host.tq.send_icreq(header_digest=True, data_digest=True)))
    assert isinstance(ctl.next_event(), tcp.ICReqReceived)
    host.tq.receive_data(b"".join(bytes(b) for b in ctl.send_icresp(cpda=0, maxh2cdata=131072)))
    host.tq.next_event()
    sqe = spec.build_sqe(NvmOpcode.WRITE, 7, 1, psdt=1, dptr=sgl_incapsule(BS), cdw12=0)
    wire = b"".join(bytes(b) for b in host.tq.send_capsule_cmd(sqe, b"q" * BS))
    ctl.receive_data(wire[:40])  # part of a PDU: not parsed yet
    st = ctl.export_state()
    assert st.header_digest and st.data_digest and st.unparsed == wire[:40]
    moved = tcp.TcpQueuePair.resume(st)
    moved.receive_data(wire[40:])
    ev = moved.next_event()
    assert isinstance(ev, tcp.CapsuleCommand) and bytes(ev.data or b"") == b"q" * BS
    # a queue pair with an event not taken, or not negotiated, does not move
    ctl.receive_data(wire[40:])
    with pytest.raises(tcp.LocalProtocolError):
        ctl.export_state()
    with pytest.raises(tcp.LocalProtocolError):
        tcp.TcpQueuePair(tcp.Role.CONTROLLER).export_state()


def test_handoff_message_is_plain_json() -> None:
    import json
    st = tcp.MovedState(True, False, 0, 0, 0, 131072, 4096, b"\x01\x02")
    ho = IoQueueHandoff(3, "nvmf_tgt", NQN, 1, HOSTNQN, HOSTID.hex(), 2, 63, 1,
                        {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "4420"},
                        st, b"resp", True)
    assert IoQueueHandoff.from_msg(json.loads(json.dumps(ho.to_msg()))) == ho
