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


@pytest.mark.parametrize("batched", [True, False])
def test_fast_path_bdev_failure_is_logged(benv: BdevEnv, monkeypatch: pytest.MonkeyPatch, batched: bool) -> None:
    """A failed bdev I/O, through the module's submit_batch or (a module without it) one by
    one, is answered and logged as on the general path."""
    disk = benv.disk
    orig = disk.submit_request

    def failing(ctx: Any, bio: BdevIO) -> None:
        if bio.type in (READ, WRITE):
            bio.complete(FAILED)
            return
        orig(ctx, bio)

    def failing_batch(ctx: Any, ios: list[BdevIO]) -> None:
        for bio in ios:
            bio.status = FAILED
    # Before the first I/O: the bdev channel takes the submit functions when it is created.
    monkeypatch.setattr(disk, "submit_request", failing)
    monkeypatch.setattr(disk, "submit_batch", failing_batch if batched else None)
    io = benv.io()
    n = 3 if batched else 1  # several in one receive: a run for rw_batch; one alone: read_blocks
    rs = [io.host.read(1, i, 1, BS) for i in range(n)]
    push_bytes(io.conn, io.host.take_output())
    io.pump()
    assert all(io.host.completions.pop(c).sc == GenericStatus.INTERNAL_DEVICE_ERROR for c in rs)
    ws = [io.host.write(1, i, bytes(BS), BS) for i in range(n)]
    push_bytes(io.conn, io.host.take_output())
    io.pump()
    assert all(io.host.completions.pop(c).sc == GenericStatus.INTERNAL_DEVICE_ERROR for c in ws)
    assert benv.general == 0
    ctrlr = next(iter(benv.subsys.controllers.values()))
    assert ctrlr.error_count == 2 * n and ctrlr.errors[-1].cid == ws[-1]


def test_fast_batch_is_one_rw_batch_per_run(benv: BdevEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """One receive of writes, reads, writes and reads of the same blocks: one module call
    per run (same direction and length), issued in the host's order (each read sees the
    write before it), every command answered with its own data; iostat counts each."""
    calls: list[tuple[int, int]] = []
    orig = benv.disk.submit_batch
    assert orig is not None

    def counting(ctx: Any, ios: list[BdevIO]) -> None:
        calls.append((ios[0].type, len(ios)))
        orig(ctx, ios)
    monkeypatch.setattr(benv.disk, "submit_batch", counting)
    io = benv.io()
    first = {i: os.urandom(BS) for i in range(8)}
    second = {i: os.urandom(BS) for i in range(8)}
    w1 = [io.host.write(1, 500 + i, first[i], BS) for i in range(8)]
    r1 = [io.host.read(1, 500 + i, 1, BS) for i in range(8)]
    r1b = [io.host.read(1, 500 + 2 * i, 2, BS) for i in range(3)]  # another length: a new run
    # (other blocks: a zero-copy read's data is the bdev's memory until it is sent)
    w2 = [io.host.write(1, 520 + i, second[i], BS) for i in range(8)]
    r2 = [io.host.read(1, 520 + i, 1, BS) for i in range(8)]
    st = benv.disk.iostat()  # (examine modules may have read already)
    before = (st.ops[READ], st.ops[WRITE], st.bytes[READ])
    push_bytes(io.conn, io.host.take_output())  # one batch
    io.pump()
    assert calls == [(WRITE, 8), (READ, 8), (READ, 3), (WRITE, 8), (READ, 8)]
    for c in w1 + w2:
        assert io.host.completions.pop(c).status == 0
    for i, c in enumerate(r1):
        r = io.host.completions.pop(c)
        assert r.status == 0 and r.data == first[i]
    for i, c in enumerate(r1b):
        r = io.host.completions.pop(c)
        assert r.status == 0 and r.data == first[2 * i] + first[2 * i + 1]
    for i, c in enumerate(r2):
        assert io.host.completions.pop(c).data == second[i]
    assert benv.general == 0
    st = benv.disk.iostat()
    assert (st.ops[READ] - before[0], st.ops[WRITE] - before[1]) == (19, 16)
    assert st.bytes[READ] - before[2] == 22 * BS


def test_fast_batch_errors_are_per_command(benv: BdevEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """In one run, the I/Os the module fails get their own error completions (and error log
    entries); the others their data."""
    orig = benv.disk.submit_batch
    assert orig is not None

    def odd_fail(ctx: Any, ios: list[BdevIO]) -> None:
        orig(ctx, ios)
        for bio in ios:
            if bio.offset_blocks & 1:
                bio.status = FAILED
    monkeypatch.setattr(benv.disk, "submit_batch", odd_fail)
    io = benv.io()
    blobs = {i: os.urandom(BS) for i in range(10)}
    ws = {io.host.write(1, 600 + i, blobs[i], BS): i for i in range(10)}
    rs = {io.host.read(1, 600 + i, 1, BS): i for i in range(10)}
    push_bytes(io.conn, io.host.take_output())
    io.pump()
    for c, i in ws.items():
        r = io.host.completions.pop(c)
        assert (r.sc == GenericStatus.INTERNAL_DEVICE_ERROR) if i & 1 else (r.status == 0)
    for c, i in rs.items():
        r = io.host.completions.pop(c)
        if i & 1:
            assert r.sc == GenericStatus.INTERNAL_DEVICE_ERROR
        else:
            assert r.status == 0 and r.data == blobs[i]
    ctrlr = next(iter(benv.subsys.controllers.values()))
    assert ctrlr.error_count == 10
    assert {e.cid for e in ctrlr.errors} == {c for c, i in list(ws.items()) + list(rs.items()) if i & 1}


def test_fast_batch_out_of_bdev_ios_fails_each_exactly(benv: BdevEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """When rw_batch takes only part of a run (no free BdevIO left), the rest goes one by
    one and each command gets the status that submit gives it (NOT READY for -ENOMEM)."""
    from spydk.bdev import bdev as bdev_mod
    from spydk.bdev import channel as bdev_channel
    io = benv.io()
    blobs = {i: os.urandom(BS) for i in range(6)}
    assert io.wait(io.host.write(1, 700, b"".join(blobs[i] for i in range(6)), BS)).status == 0
    # Leave 3 BdevIOs to allocate and none free on the channel.
    ch = benv.backend.channel()
    ch.free.clear()
    monkeypatch.setattr(bdev_mod.options, "bdev_io_pool_size", bdev_channel._io_allocated + 3)
    rs = [io.host.read(1, 700 + i, 1, BS) for i in range(6)]
    push_bytes(io.conn, io.host.take_output())
    io.pump()
    got = [io.host.completions.pop(c) for c in rs]
    assert [r.data for r in got[:3]] == [blobs[i] for i in range(3)]
    assert all(r.status == 0 for r in got[:3])
    assert all(r.sc == GenericStatus.NAMESPACE_NOT_READY for r in got[3:])


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
