"""Issue 10, findings 1, 2, 5 and 6: what a hostile or buggy NVMe/TCP host can make the target
do.  Raw PDUs are pushed into a target connection (no host codec: it would refuse to send
them) and the target's output is parsed PDU by PDU.  Memory is checked with the iobuf pool's
counters and tracemalloc; nothing here depends on time."""
from __future__ import annotations

import logging
import struct
import tracemalloc
from typing import Any

import pytest

from spydk.bdev.iobuf import pool
from spydk.nvme import spec, tcp
from spydk.nvme.spec import AdminOpcode, GenericStatus, NvmOpcode
from spydk.nvme.spec import fabrics as fab
from spydk.nvme.spec.tcp import Fes
from spydk.nvmf.transport import TransportOptions
from spydk.nvmf.transports.tcp import TcpConnection
from tests.nvmf.helpers import HOSTID, HOSTNQN, FakeTransport, push_bytes, sgl_incapsule, sgl_transport

from .conftest import ADDR, NQN, Env, Link

_CH = struct.Struct("<BBBBI")
BS = 512
MiB = 1 << 20


def capsule(sqe: bytes, data: bytes = b"") -> bytes:
    """A CapsuleCmd PDU (no digests) carrying sqe and optional in-capsule data."""
    if data:
        return _CH.pack(4, 0, 72, 72, 72 + len(data)) + sqe + data
    return _CH.pack(4, 0, 72, 0, 72) + sqe


def h2c_data(cid: int, ttag: int, offset: int, data: bytes) -> bytes:
    return _CH.pack(6, 0x04, 24, 24, 24 + len(data)) + struct.pack("<HHII", cid, ttag, offset, len(data)) \
        + bytes(4) + data


def pdus(raw: bytes) -> list[tuple[int, bytes]]:
    """Split the target's output into (type, whole PDU)."""
    out = []
    pos = 0
    while pos + 8 <= len(raw):
        ptype, _f, _h, _p, plen = _CH.unpack_from(raw, pos)
        out.append((ptype, raw[pos:pos + plen]))
        pos += plen
    assert pos == len(raw), "target output ends inside a PDU"
    return out


class Raw:
    """A target connection driven with hand-made PDUs."""

    def __init__(self, env: Env, conn: TcpConnection | None = None, ft: FakeTransport | None = None):
        if conn is None:
            ft = FakeTransport()
            conn = TcpConnection(env.tr, ADDR)
            conn.connection_made(ft)  # type: ignore[arg-type]
        assert ft is not None
        self.conn = conn
        self.ft = ft

    @classmethod
    def of(cls, env: Env, lk: Link) -> Raw:
        return cls(env, lk.conn, lk.ft)

    def send(self, data: bytes) -> list[tuple[int, bytes]]:
        push_bytes(self.conn, data)
        out = b"".join(self.ft.written)
        self.ft.written.clear()
        if self.ft.closed and self.conn.transport is not None:
            self.conn.connection_lost(None)
        return pdus(out)

    def icreq(self) -> None:
        h = tcp.TcpQueuePair(tcp.Role.HOST)
        got = self.send(b"".join(bytes(b) for b in h.send_icreq()))
        assert [t for t, _ in got] == [1]

    @property
    def closed(self) -> bool:
        return self.ft.closed


def responses(got: list[tuple[int, bytes]]) -> dict[int, int]:
    """cid -> status (phase bit dropped) of the CapsuleResps in got."""
    out = {}
    for t, p in got:
        if t == 5:
            _dw0, _dw1, _sqhd, _sqid, cid, status = spec.CQE.unpack_from(p, 8)
            out[cid] = status & ~1
    return out


def connect_sqe(cid: int, sgl: bytes, qid: int = 0, sqsize: int = 31, cntlid: int = 0xFFFF) -> bytes:
    return fab.build_connect_command(fab.ConnectCommand(cid, qid, sqsize, 0), sgl)


def connect_data(cntlid: int = 0xFFFF, hostnqn: str = HOSTNQN) -> bytes:
    return fab.build_connect_data(fab.ConnectData(HOSTID, cntlid, NQN, hostnqn))


def write_sqe(cid: int, slba: int, nbytes: int, *, incapsule: bool = False) -> bytes:
    sgl = sgl_incapsule(nbytes) if incapsule else sgl_transport(nbytes)
    return spec.build_sqe(NvmOpcode.WRITE, cid, 1, psdt=1, dptr=sgl, cdw10=slba, cdw12=nbytes // BS - 1)


def io_queue(env: Env, sqsize: int = 31) -> tuple[Link, Link]:
    adm, cntlid = env.admin()
    lk = env.link()
    c = lk.establish(qid=1, cntlid=cntlid, sqsize=sqsize)
    assert c.status == 0
    return adm, lk


def still_serves(env: Env) -> None:
    """A well-behaved host can still connect and do I/O."""
    adm, lk = io_queue(env)
    lk.host.icd = env.tr.opts.in_capsule_data_size
    data = bytes(range(256)) * 32
    assert lk.wait(lk.host.write(1, 16, data, BS)).status == 0
    r = lk.wait(lk.host.read(1, 16, len(data) // BS, BS))
    assert r.status == 0 and r.data == data


# ---------------------------------------------------------------------------------------------
# Finding 1: a Connect (or any Fabrics command) with a huge transport SGL, before admission


@pytest.mark.parametrize("length", [256 * MiB, 4096, 1025, 1023])
def test_connect_data_must_be_1024_bytes_and_nothing_is_allocated(env: Env, length: int) -> None:
    r = Raw(env)
    r.icreq()
    created, oversize = pool.created, pool.stats().get("oversize", 0)
    tracemalloc.start()
    try:
        got = r.send(capsule(connect_sqe(1, sgl_transport(length))))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 9 not in [t for t, _ in got], "an R2T was sent for a Connect of the wrong size"
    st = responses(got)
    assert (st[1] >> 1) & 0xFF == GenericStatus.DATA_SGL_LENGTH_INVALID
    assert r.closed, "the connection that sent a bad Connect must be closed"
    assert peak < 4 * MiB
    assert pool.created == created and pool.stats().get("oversize", 0) == oversize
    still_serves(env)


@pytest.mark.parametrize("length", [1023, 1025, 4096])
def test_incapsule_connect_of_the_wrong_size_is_refused(env: Env, length: int) -> None:
    r = Raw(env)
    r.icreq()
    data = (connect_data() + bytes(length))[:length]
    got = r.send(capsule(connect_sqe(1, sgl_incapsule(length)), data))
    st = responses(got)
    assert st[1] != 0 and (st[1] >> 1) & 0xFF == GenericStatus.DATA_SGL_LENGTH_INVALID
    assert r.closed
    still_serves(env)


def test_connect_data_by_r2t_of_exactly_1024_bytes_is_accepted(env: Env) -> None:
    r = Raw(env)
    r.icreq()
    got = r.send(capsule(connect_sqe(1, sgl_transport(1024))))
    r2t = [p for t, p in got if t == 9]
    assert len(r2t) == 1
    _cid, ttag, off, n = struct.unpack_from("<HHII", r2t[0], 8)
    assert (off, n) == (0, 1024)
    got = r.send(h2c_data(1, ttag, 0, connect_data()))
    assert responses(got) == {1: 0}


def test_eight_huge_connects_allocate_nothing_and_others_are_served(env: Env) -> None:
    created = pool.created
    tracemalloc.start()
    try:
        for _ in range(8):
            r = Raw(env)
            r.icreq()
            got = r.send(capsule(connect_sqe(1, sgl_transport(256 * MiB))))
            assert r.closed and 9 not in [t for t, _ in got]
            still_serves(env)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB
    assert pool.created - created <= 4


def test_fabrics_property_get_with_a_huge_sgl_is_refused(env: Env) -> None:
    adm, _ = env.admin()
    r = Raw.of(env, adm)
    sqe = bytearray(fab.build_property_get(77, fab.Property.CAP, 8))
    sqe[1] = 0x40  # SGL
    sqe[24:40] = sgl_transport(256 * MiB)
    sqe[4] = 0x04 | 2  # fctype Property Get, but claim controller-to-host data
    created = pool.created
    got = r.send(capsule(bytes(sqe)))
    assert 9 not in [t for t, _ in got]
    assert responses(got).get(77, 0) != 0
    assert pool.created == created


def test_admin_command_longer_than_max_io_is_refused_without_buffer(env: Env) -> None:
    adm, _ = env.admin()
    r = Raw.of(env, adm)
    n = 64 * MiB
    sqe = spec.build_sqe(AdminOpcode.SET_FEATURES, 78, 0, psdt=1, dptr=sgl_transport(n), cdw10=0x0B)
    created = pool.created
    got = r.send(capsule(sqe))
    assert 9 not in [t for t, _ in got]
    assert (responses(got)[78] >> 1) & 0xFF == GenericStatus.DATA_SGL_LENGTH_INVALID
    assert pool.created == created


# ---------------------------------------------------------------------------------------------
# Finding 2: outstanding commands bounded by the SQ size; pools bounded by their counts


def test_more_commands_than_the_sq_size_is_a_protocol_error(env: Env, caplog: Any) -> None:
    _, lk = io_queue(env, sqsize=31)
    r = Raw.of(env, lk)
    created = pool.large_created
    got: list[tuple[int, bytes]] = []
    for cid in range(500):
        got += r.send(capsule(write_sqe(cid, 0, 128 * 1024)))
        if r.closed:
            break
    types = [t for t, _ in got]
    assert types.count(9) == 32  # one R2T per admitted command, no more
    assert types[-1] == 3, "the connection must end with a C2HTermReq"
    fes = struct.unpack_from("<H", got[-1][1], 8)[0]
    assert fes == Fes.PDU_SEQUENCE_ERROR
    assert r.closed
    assert pool.large_created - created <= 32
    errs = [x for x in caplog.records if x.levelno >= logging.ERROR and "outstanding" in x.getMessage()]
    assert len(errs) == 1
    # The buffers held by the dead connection are back in the pool.
    assert pool.stats()["large_free"] >= pool.large_created - created
    still_serves(env)


def test_a_full_queue_is_fine_and_completions_free_slots(env: Env) -> None:
    _, lk = io_queue(env, sqsize=7)
    lk.host.icd = env.tr.opts.in_capsule_data_size
    for round_ in range(5):
        cids = [lk.host.write(1, i * 8, bytes([round_ + i]) * 4096, BS) for i in range(8)]
        lk.pump()
        for cid in cids:
            assert lk.host.completions.pop(cid).status == 0
    assert not lk.conn.closing


def test_iobuf_pool_honours_its_counts_and_waiters_get_buffers_in_order() -> None:
    from spydk.bdev.iobuf import BufferPool, IobufOptions
    p = BufferPool(IobufOptions(small_pool_count=2, large_pool_count=2))
    got = [p.get(100000), p.get(100000)]
    assert all(b is not None for b in got)
    assert p.get(100000) is None  # exhausted: no allocation past the pool
    order: list[int] = []
    p.wait(100000, lambda b: order.append(1))
    p.wait(100000, lambda b: order.append(2))
    assert order == []
    p.put(got[0])  # type: ignore[arg-type]
    assert order == [1]
    p.put(got[1])  # type: ignore[arg-type]
    assert order == [1, 2]
    assert p.large_created == 2 and p.stats()["waiting"] == 0


def test_writes_wait_for_buffers_when_the_pool_is_empty() -> None:
    from spydk.bdev import iobuf
    saved = iobuf.pool
    small = iobuf.BufferPool(iobuf.IobufOptions(small_pool_count=2, large_pool_count=2))
    try:
        env = Env(TransportOptions())
        env.tr.pool = small
        _, lk = io_queue(env, sqsize=31)
        datas = [bytes([i + 1]) * 65536 for i in range(6)]
        cids = [lk.host.write(1, i * 128, d, BS) for i, d in enumerate(datas)]
        lk.pump()
        for cid in cids:
            assert lk.host.completions.pop(cid).status == 0
        for i, d in enumerate(datas):
            assert bytes(env.backend.mem[i * 128 * BS:i * 128 * BS + 65536]) == d
        assert small.large_created <= 2
    finally:
        iobuf.pool = saved


# ---------------------------------------------------------------------------------------------
# Finding 5: host protocol errors get a C2HTermReq with the right FES and one log line


def test_cid_reused_while_its_r2t_is_outstanding(env: Env, caplog: Any) -> None:
    _, lk = io_queue(env)
    r = Raw.of(env, lk)
    got = r.send(capsule(write_sqe(5, 0, 8192)))
    assert [t for t, _ in got] == [9]
    got = r.send(capsule(write_sqe(5, 64, 8192)))
    assert [t for t, _ in got] == [3]
    fes, fei = struct.unpack_from("<HI", got[0][1], 8)
    assert fes == Fes.INVALID_HEADER_FIELD and fei == 10  # the CID field of the CapsuleCmd
    assert r.closed
    errs = [x for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errs) == 1 and "CID 5" in errs[0].getMessage() and "\n" not in errs[0].getMessage()
    assert errs[0].exc_info is None
    still_serves(env)


def test_ttag_allocation_skips_tags_in_use(env: Env) -> None:
    _, lk = io_queue(env)
    r = Raw.of(env, lk)
    got = r.send(capsule(write_sqe(1, 0, 8192)))
    ttag1 = struct.unpack_from("<HH", got[0][1], 8)[1]
    lk.conn.next_ttag = ttag1  # as if 65536 R2Ts later the counter wrapped onto it
    got = r.send(capsule(write_sqe(2, 64, 8192)))
    assert [t for t, _ in got] == [9]
    ttag2 = struct.unpack_from("<HH", got[0][1], 8)[1]
    assert ttag2 != ttag1
    d1, d2 = b"\x01" * 8192, b"\x02" * 8192
    got = r.send(h2c_data(2, ttag2, 0, d2) + h2c_data(1, ttag1, 0, d1))
    assert responses(got) == {2: 0, 1: 0}
    assert bytes(env.backend.mem[:8192]) == d1 and bytes(env.backend.mem[64 * BS:64 * BS + 8192]) == d2


def test_h2c_data_for_an_unknown_ttag_is_a_term_req(env: Env, caplog: Any) -> None:
    _, lk = io_queue(env)
    r = Raw.of(env, lk)
    got = r.send(h2c_data(1, 999, 0, b"x" * 512))
    assert [t for t, _ in got] == [3]
    assert struct.unpack_from("<H", got[0][1], 8)[0] == Fes.INVALID_HEADER_FIELD
    assert r.closed


# ---------------------------------------------------------------------------------------------
# Finding 6: Abort


def test_abort_of_a_command_waiting_for_its_data(env: Env) -> None:
    adm, lk = io_queue(env)
    r = Raw.of(env, lk)
    got = r.send(capsule(write_sqe(9, 0, 8192)))
    assert [t for t, _ in got] == [9]
    ttag = struct.unpack_from("<HH", got[0][1], 8)[1]
    a = adm.wait(adm.host.admin(AdminOpcode.ABORT, cdw10=1 | (9 << 16)))
    assert a.status == 0 and a.dw0 & 1 == 0  # aborted
    # The host may still send the data it was asked for; the command completes as aborted.
    got = r.send(h2c_data(9, ttag, 0, b"\xee" * 8192))
    st = responses(got)
    assert (st[9] >> 1) & 0xFF == GenericStatus.ABORTED_BY_REQUEST
    assert bytes(env.backend.mem[:8192]) == bytes(8192)
    assert not r.closed


def test_abort_of_an_unknown_or_completed_command_is_not_aborted(env: Env) -> None:
    adm, lk = io_queue(env)
    lk.host.icd = env.tr.opts.in_capsule_data_size
    cid = lk.host.write(1, 0, b"\x05" * 512, BS)
    assert lk.wait(cid).status == 0
    a = adm.wait(adm.host.admin(AdminOpcode.ABORT, cdw10=1 | (cid << 16)))
    assert a.status == 0 and a.dw0 & 1 == 1


def test_oversize_buffers_come_from_a_byte_budget() -> None:
    from spydk.bdev.iobuf import BufferPool, IobufOptions
    p = BufferPool(IobufOptions(oversize_bytes=MiB))
    a = p.get(600 * 1024)
    assert a is not None and p.get(600 * 1024) is None
    got: list[memoryview] = []
    p.wait(600 * 1024, got.append)
    p.put(a)
    assert len(got) == 1 and len(got[0]) == 600 * 1024 and p.stats()["oversize_bytes"] == 600 * 1024
    with pytest.raises(ValueError, match="oversize budget"):
        p.get(2 * MiB)


def test_icreq_followed_by_junk_in_one_segment(env: Env, caplog: Any) -> None:
    """Found by fuzz/ (nvme_tcp_controller): the codec parses past the ICReq before it is
    answered; a PDU there ends the connection, and the ICResp must not be attempted."""
    r = Raw(env)
    h = tcp.TcpQueuePair(tcp.Role.HOST)
    got = r.send(b"".join(bytes(b) for b in h.send_icreq()) + b"\x04" + bytes(71))
    assert [t for t, _ in got] == [3] and r.closed
    assert not [x for x in caplog.records if x.exc_info]


def test_commands_before_a_fatal_pdu_in_one_segment(env: Env, caplog: Any) -> None:
    """Found by fuzz/netfuzz.py: the codec has already met the bad PDU when the commands before
    it in the same segment are handled; they are not started and nothing raises."""
    adm, _ = env.admin()
    r = Raw.of(env, adm)
    got = r.send(capsule(fab.build_property_get(90, fab.Property.CSTS, 4)) + b"\xee" + bytes(23))
    assert [t for t, _ in got] == [3] and r.closed
    assert not [x for x in caplog.records if x.exc_info]
    still_serves(env)


def test_cid_of_an_async_event_request_the_host_dropped_may_be_reused(env: Env) -> None:
    """SPDK's host, detaching, completes its AERs locally and reuses their CIDs for the
    shutdown's Property Gets (spdk_nvme_perf and spdk_dd did this at every exit and were cut
    off with a C2HTermReq). The AER is forgotten; any other outstanding CID is still refused
    (test above)."""
    lk, _ = env.admin()
    h = lk.host
    aer = h.admin(AdminOpcode.ASYNC_EVENT_REQUEST)
    lk.pump()
    assert aer not in h.completions  # held by the controller, as an AER is
    del h.tq._cmds[aer]  # what SPDK's host does: it completes the AER locally...
    h._cid = (aer - 1) & 0xFFFF  # ...and the next command gets its CID
    cid = h.property_get(fab.Property.CSTS, 4)
    assert cid == aer
    c = lk.wait(cid)
    assert c.status == 0 and c.dw0 & 1  # CSTS.RDY of the enabled controller
    assert not lk.conn.closing
    ctrlr = lk.conn.qp.ctrlr
    assert ctrlr is not None and not ctrlr.aer_reqs
    # An event now finds no AER to answer (it waits for the next one): nothing goes to the host.
    c = lk.wait(h.admin(AdminOpcode.IDENTIFY, read_len=4096, cdw10=1))
    assert c.status == 0
