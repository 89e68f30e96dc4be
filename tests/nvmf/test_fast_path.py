"""The transport's I/O fast path (Read / in-capsule Write straight to a bdev): same bytes on the
wire as the general path, falls back for everything it does not take, errors logged."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from spydk.bdev import registry as core
from spydk.bdev.io import FAILED, READ, WRITE, BdevIO
from spydk.modules.bdev.malloc.malloc import create_malloc_disk
from spydk.modules.bdev.malloc.malloc import module as malloc_module
from spydk.nvme import spec, tcp
from spydk.nvme.spec import GenericStatus
from spydk.nvmf.bdev_ns import BdevBackend
from spydk.nvmf.io import rw_status
from spydk.nvmf.subsystem import Listener, Subsystem
from spydk.nvmf.tgt import Target
from spydk.nvmf.transport import TransportOptions
from spydk.nvmf.transports import tcp as transport_tcp
from spydk.nvmf.transports.tcp import TcpTransport
from spydk.thread.thread import set_thread
from tests.nvmf.helpers import TestHost, push_bytes

from .conftest import ADDR, NQN, Clock, Link

BS = 512


class BdevEnv:
    """A Target on the app thread exporting a malloc bdev as namespace 1."""

    def __init__(self, rh: Any, opts: TransportOptions | None = None, **malloc_kw: Any):
        self.rh = rh
        set_thread(rh.thread)
        self.disk = create_malloc_disk("Malloc0", BS, 4096, **malloc_kw)
        self.tgt = Target(clock=Clock())
        self.tgt.thread = rh.thread
        self.tr = TcpTransport(self.tgt, opts or TransportOptions())
        self.tgt.add_transport(self.tr)
        self.subsys = Subsystem(NQN, allow_any_host=True)
        self.tgt.add_subsystem(self.subsys)
        self.subsys.listeners.append(Listener(ADDR))
        self.backend = BdevBackend("Malloc0")
        self.subsys.add_namespace("Malloc0", self.backend, nsid=1)
        # Count commands that take the general path.
        self.general = 0
        orig = transport_tcp.nvmf_ctrlr.exec_request

        def counting(tgt: Target, req: Any) -> None:
            if req.opcode in (spec.NvmOpcode.READ, spec.NvmOpcode.WRITE):
                self.general += 1
            orig(tgt, req)
        self._orig = orig
        transport_tcp.nvmf_ctrlr.exec_request = counting  # type: ignore[assignment]

    def close(self) -> None:
        transport_tcp.nvmf_ctrlr.exec_request = self._orig  # type: ignore[assignment]

    def io(self, **kw: bool) -> Link:
        adm = Link(self.tr, TestHost(**kw))
        c = adm.establish()
        assert c.status == 0
        adm.enable()
        lk = Link(self.tr, TestHost(**kw))
        c = lk.establish(qid=1, cntlid=c.dw0 & 0xFFFF, sqsize=127)
        assert c.status == 0
        lk.host.icd = self.tr.opts.in_capsule_data_size
        lk.admin = adm  # type: ignore[attr-defined]
        return lk


@pytest.fixture
def benv(rh: Any) -> Iterator[BdevEnv]:
    core._reset_for_tests()
    malloc_module.count = 0
    e = BdevEnv(rh)
    yield e
    e.close()
    core._reset_for_tests()


@pytest.mark.parametrize("c2h_success", [True, False])
@pytest.mark.parametrize("digests", [False, True])
def test_fast_write_then_read(rh: Any, c2h_success: bool, digests: bool) -> None:
    core._reset_for_tests()
    e = BdevEnv(rh, TransportOptions(c2h_success=c2h_success))
    try:
        io = e.io(header_digest=digests, data_digest=digests)
        data = os.urandom(4096)
        assert io.wait(io.host.write(1, 16, data, BS)).status == 0
        assert bytes(e.disk.mem[16 * BS:16 * BS + 4096]) == data
        r = io.wait(io.host.read(1, 16, 8, BS))
        assert r.status == 0 and r.data == data
        assert r.c2h_success is c2h_success
        assert e.general == 0  # both took the fast path
        assert e.tgt.completed_nvme_io >= 2
        ctrlr = next(iter(e.subsys.controllers.values()))
        assert (ctrlr.reads, ctrlr.writes, ctrlr.read_units, ctrlr.write_units) == (1, 1, 8, 8)
    finally:
        e.close()
        core._reset_for_tests()


def test_fast_pipelined_batch(benv: BdevEnv) -> None:
    """32 reads and 32 writes arrive in one receive: all complete, each with its own data."""
    io = benv.io()
    blobs = {i: os.urandom(BS) for i in range(32)}
    cids = [io.host.write(1, 100 + i, blobs[i], BS) for i in range(32)]
    push_bytes(io.conn, io.host.take_output())  # one batch
    io.pump()
    for c in cids:
        assert io.host.completions.pop(c).status == 0
    cids = {io.host.read(1, 100 + i, 1, BS): i for i in range(32)}
    push_bytes(io.conn, io.host.take_output())
    io.pump()
    for c, i in cids.items():
        r = io.host.completions.pop(c)
        assert r.status == 0 and r.data == blobs[i]
    assert benv.general == 0


def test_fast_batch_sq_head_and_counters(benv: BdevEnv) -> None:
    """The fast path sums its SQ head and SMART counts per batch: every CQE still reports the
    head after the whole batch was fetched, and a general-path command in the middle of a
    batch sees the head including the fast commands before it."""
    io = benv.io()
    ctrlr = next(iter(benv.subsys.controllers.values()))
    qp = ctrlr.io_qpairs[1]
    head0 = qp.sq_head
    w = [io.host.write(1, 300 + i, bytes([i]) * BS, BS) for i in range(5)]
    bad = io.host.read(1, 4095, 2, BS)  # out of range: general path, completes at once
    w += [io.host.write(1, 310 + i, bytes([i]) * BS, BS) for i in range(4)]
    push_bytes(io.conn, io.host.take_output())  # one batch
    io.pump()
    # The general-path error was answered while the batch was being processed.
    r = io.host.completions.pop(bad)
    assert r.sc == GenericStatus.LBA_OUT_OF_RANGE
    heads = [io.host.completions.pop(c).sqhd for c in w]
    assert all(h is not None for h in heads)
    start = heads[-1] - 10  # the queue's head before this batch
    assert r.sqhd == start + 6
    assert heads == [start + 10] * 9
    assert qp.sq_head == head0 + 10
    assert (ctrlr.writes, ctrlr.write_units) == (9, 9)
    assert ctrlr.reads == 0
    assert benv.general == 1


def test_fast_path_declines_to_general_path(benv: BdevEnv) -> None:
    io = benv.io()
    # Out of range, wrong SGL length, unknown namespace: the general path answers.
    r = io.wait(io.host.read(1, 4095, 2, BS))
    assert r.sc == GenericStatus.LBA_OUT_OF_RANGE
    sqe = io.host.io_sqe(spec.NvmOpcode.READ, 1, 1024, incapsule=False, cdw10=0, cdw12=0)
    r = io.wait(io.host.submit(sqe, read_len=1024))
    assert r.sc == GenericStatus.DATA_SGL_LENGTH_INVALID
    r = io.wait(io.host.read(7, 0, 1, BS))
    assert r.sc == GenericStatus.INVALID_NAMESPACE_OR_FORMAT
    # A write larger than the in-capsule limit goes through R2T (general path), and works.
    big = os.urandom(16384)
    assert io.wait(io.host.write(1, 200, big, BS)).status == 0
    r = io.wait(io.host.read(1, 200, 32, BS))
    assert r.status == 0 and r.data == big
    assert benv.general == 4
    ctrlr = next(iter(benv.subsys.controllers.values()))
    assert ctrlr.error_count == 3


@pytest.mark.parametrize("slba, nlb, length", [
    (0, 1, 512), (4095, 1, 512), (4095, 2, 1024), (4096, 1, 512), (0, 8, 4096), (4088, 8, 4096),
    (4089, 8, 4096), (0, 8, 2048), (0, 1, 1024), (0, 2, 512),
])
def test_fast_path_takes_exactly_what_rw_status_accepts(benv: BdevEnv, slba: int, nlb: int,
                                                        length: int) -> None:
    # The fast path evaluates nvmf.io.rw_status inline: both must agree on every edge.
    io = benv.io()
    sqe = io.host.io_sqe(spec.NvmOpcode.READ, 1, length, incapsule=False, cdw10=slba, cdw12=nlb - 1)
    before = benv.general
    r = io.wait(io.host.submit(sqe, read_len=length))
    st = rw_status(benv.backend, slba, nlb, length)
    assert (benv.general == before) is (st == 0)
    if st == 0:
        assert r.status == 0
    else:
        assert r.status != 0 and r.sc == (st >> 1) & 0xFF


def test_fast_path_bdev_failure_is_logged(benv: BdevEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = benv.disk
    orig = disk.submit_request

    def failing(ctx: Any, bio: BdevIO) -> None:
        if bio.type in (READ, WRITE):
            bio.complete(FAILED)
            return
        orig(ctx, bio)
    # Before the first I/O: the bdev channel takes the submit function when it is created.
    monkeypatch.setattr(disk, "submit_request", failing)
    io = benv.io()
    r = io.wait(io.host.read(1, 0, 1, BS))
    assert r.sc == GenericStatus.INTERNAL_DEVICE_ERROR
    w = io.wait(io.host.write(1, 0, bytes(BS), BS))
    assert w.sc == GenericStatus.INTERNAL_DEVICE_ERROR
    assert benv.general == 0
    ctrlr = next(iter(benv.subsys.controllers.values()))
    assert ctrlr.error_count == 2 and ctrlr.errors[-1].cid == w.cid


def test_split_read_keeps_its_buffer_until_sent(rh: Any) -> None:
    """A bdev that splits I/O gives pooled (not zero-copy) data: still correct."""
    core._reset_for_tests()
    e = BdevEnv(rh, optimal_io_boundary=4)
    try:
        io = e.io()
        data = os.urandom(4096)
        assert io.wait(io.host.write(1, 2, data, BS)).status == 0
        r = io.wait(io.host.read(1, 2, 8, BS))
        assert r.status == 0 and r.data == data
    finally:
        e.close()
        core._reset_for_tests()


def test_codec_append_encoders_match_send() -> None:
    h = tcp.TcpQueuePair(tcp.Role.HOST)
    for hd, dd in [(False, False), (True, True), (True, False)]:
        c = tcp.TcpQueuePair(tcp.Role.CONTROLLER)
        h = tcp.TcpQueuePair(tcp.Role.HOST)
        c.receive_data(b"".join(bytes(x) for x in h.send_icreq(header_digest=hd, data_digest=dd)))
        assert isinstance(c.next_event(), tcp.ICReqReceived)
        c.send_icresp()
        data = memoryview(os.urandom(4096))
        for success in (True, False):
            out: list[tcp.Buffer] = [b"x"]
            c.append_c2h_data(out, 9, data, success)
            want = c.send_c2h_data(9, 0, data, last=True, success=success)
            assert b"".join(bytes(x) for x in out[1:]) == b"".join(bytes(x) for x in want)
        out = []
        c.append_response(out, 9, 0x4004, 1, 2, 3, 4)
        assert out == c.send_response(9, 0x4004, 1, 2, 3, 4)
    assert c.pending_events is c._events
