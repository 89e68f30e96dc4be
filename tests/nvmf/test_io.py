"""I/O commands through the codec: in-capsule and R2T writes, reads with and without
c2h_success, digests, compare, fused compare-and-write, DSM, write zeroes, flush."""
from __future__ import annotations

import os
import struct

import pytest

from spydk.nvme import spec
from spydk.nvme.spec import GenericStatus, MediaStatus, NvmOpcode
from spydk.nvmf.transport import TransportOptions

from .conftest import Env

BS = 512


def _io(env: Env, **kw: bool):  # type: ignore[no-untyped-def]
    _, cntlid = env.admin(**kw)
    return env.io(cntlid, **kw)


@pytest.mark.parametrize("digests", [False, True])
@pytest.mark.parametrize("size", [512, 4096, 65536, 131072])
def test_write_read_roundtrip(env: Env, digests: bool, size: int) -> None:
    io = _io(env, header_digest=digests, data_digest=digests)
    assert io.conn.tq.header_digest is digests and io.conn.tq.data_digest is digests
    data = os.urandom(size)
    w = io.wait(io.host.write(1, 8, data, BS))
    assert w.status == 0
    assert bytes(env.backend.mem[8 * BS:8 * BS + size]) == data
    r = io.wait(io.host.read(1, 8, size // BS, BS))
    assert r.status == 0 and r.data == data
    assert r.c2h_success  # default c2h_success: no CapsuleResp after the data


def test_incapsule_vs_r2t_paths(env: Env) -> None:
    io = _io(env)
    small, big = os.urandom(4096), os.urandom(8192)
    io.host.events.clear()
    assert io.wait(io.host.write(1, 0, small, BS)).status == 0
    from spydk.nvme import tcp
    assert not any(isinstance(e, tcp.R2TReceived) for e in io.host.events)
    assert io.wait(io.host.write(1, 100, big, BS)).status == 0
    assert any(isinstance(e, tcp.R2TReceived) for e in io.host.events)
    assert bytes(env.backend.mem[100 * BS:100 * BS + 8192]) == big


def test_c2h_success_off_sends_response() -> None:
    env = Env(TransportOptions(c2h_success=False))
    io = _io(env)
    r = io.wait(io.host.read(1, 0, 1, BS))
    assert r.status == 0 and not r.c2h_success and r.data == bytes(BS)


def test_out_of_range_and_bad_length(env: Env) -> None:
    io = _io(env)
    r = io.wait(io.host.read(1, env.backend.num_blocks - 1, 2, BS))
    assert r.sc == GenericStatus.LBA_OUT_OF_RANGE
    r = io.wait(io.host.read(9, 0, 1, BS))
    assert r.sc == GenericStatus.INVALID_NAMESPACE_OR_FORMAT
    # SGL length that does not match NLB
    sqe = io.host.io_sqe(NvmOpcode.READ, 1, 1024, incapsule=False, cdw12=0)
    assert io.wait(io.host.submit(sqe, read_len=1024)).sc == GenericStatus.DATA_SGL_LENGTH_INVALID
    # larger than max_io_size
    n = env.tr.opts.max_io_size * 2
    sqe = io.host.io_sqe(NvmOpcode.READ, 1, n, incapsule=False, cdw12=n // BS - 1)
    assert io.wait(io.host.submit(sqe, read_len=n)).sc == GenericStatus.DATA_SGL_LENGTH_INVALID


def test_compare(env: Env) -> None:
    io = _io(env)
    data = os.urandom(1024)
    io.wait(io.host.write(1, 4, data, BS))
    assert io.wait(io.host.write(1, 4, data, BS, opcode=NvmOpcode.COMPARE)).status == 0
    bad = io.wait(io.host.write(1, 4, bytes(1024), BS, opcode=NvmOpcode.COMPARE))
    assert bad.sct == 2 and bad.sc == MediaStatus.COMPARE_FAILURE


def test_fused_compare_and_write(env: Env) -> None:
    io = _io(env)
    old, new = os.urandom(BS), os.urandom(BS)
    io.wait(io.host.write(1, 3, old, BS))
    c1 = io.host.write(1, 3, old, BS, opcode=NvmOpcode.COMPARE, fuse=1)
    c2 = io.host.write(1, 3, new, BS, fuse=2)
    io.pump()
    assert io.host.completions.pop(c1).status == 0
    assert io.host.completions.pop(c2).status == 0
    assert bytes(env.backend.mem[3 * BS:4 * BS]) == new
    # miscompare: the write is not done and fails as "failed fused"
    c1 = io.host.write(1, 3, old, BS, opcode=NvmOpcode.COMPARE, fuse=1)
    c2 = io.host.write(1, 3, os.urandom(BS), BS, fuse=2)
    io.pump()
    assert io.host.completions.pop(c1).sc == MediaStatus.COMPARE_FAILURE
    assert io.host.completions.pop(c2).sc == GenericStatus.ABORTED_FAILED_FUSED
    assert bytes(env.backend.mem[3 * BS:4 * BS]) == new
    # a second half without a first half
    lone = io.wait(io.host.write(1, 3, old, BS, fuse=2))
    assert lone.sc == GenericStatus.ABORTED_MISSING_FUSED
    # a first half followed by an unrelated command
    c1 = io.host.write(1, 3, new, BS, opcode=NvmOpcode.COMPARE, fuse=1)
    r = io.host.read(1, 0, 1, BS)
    io.pump()
    assert io.host.completions.pop(c1).sc == GenericStatus.ABORTED_MISSING_FUSED
    assert io.host.completions.pop(r).status == 0


def test_dsm_deallocate_write_zeroes_flush(env: Env) -> None:
    io = _io(env)
    io.wait(io.host.write(1, 0, b"\xff" * (16 * BS), BS))
    ranges = struct.pack("<IIQ", 0, 2, 2) + struct.pack("<IIQ", 0, 1, 10)
    sqe = io.host.io_sqe(NvmOpcode.DATASET_MANAGEMENT, 1, len(ranges), incapsule=True,
                         cdw10=1, cdw11=0x4)
    assert io.wait(io.host.submit(sqe, ranges)).status == 0
    mem = env.backend.mem
    assert mem[2 * BS:4 * BS] == bytes(2 * BS) and mem[10 * BS:11 * BS] == bytes(BS)
    assert mem[4 * BS:5 * BS] == b"\xff" * BS
    sqe = spec.build_sqe(NvmOpcode.WRITE_ZEROES, io.host.next_cid(), 1, cdw10=5, cdw12=1)
    assert io.wait(io.host.submit(sqe)).status == 0
    assert mem[5 * BS:7 * BS] == bytes(2 * BS)
    assert io.wait(io.host.submit(spec.build_sqe(NvmOpcode.FLUSH, io.host.next_cid(), 1))).status == 0
    assert env.backend.ops.count("unmap") == 1 and "flush" in env.backend.ops
    # a range past the end
    bad = struct.pack("<IIQ", 0, 4, env.backend.num_blocks - 2)
    sqe = io.host.io_sqe(NvmOpcode.DATASET_MANAGEMENT, 1, 16, incapsule=True, cdw10=0, cdw11=0x4)
    assert io.wait(io.host.submit(sqe, bad)).sc == GenericStatus.LBA_OUT_OF_RANGE


def test_deferred_completions_with_reactor(rh) -> None:  # type: ignore[no-untyped-def]
    """Backend completions that arrive from a later reactor iteration are flushed."""
    env = Env()
    env.backend.defer = lambda fn: rh.thread.send_msg(fn)
    io = _io(env)
    data = os.urandom(4096)
    cid = io.host.write(1, 0, data, BS)
    io.pump()
    rh.drain()
    io.pump()
    assert io.host.completions.pop(cid).status == 0
    cid = io.host.read(1, 0, 8, BS)
    io.pump()
    rh.drain()
    io.pump()
    assert io.host.completions.pop(cid).data == data


def test_many_outstanding_commands(env: Env) -> None:
    io = _io(env)
    data = {i: os.urandom(BS) for i in range(64)}
    cids = [io.host.write(1, i, d, BS) for i, d in data.items()]
    io.pump()
    assert all(io.host.completions.pop(c).status == 0 for c in cids)
    rcids = {io.host.read(1, i, 1, BS): i for i in data}
    io.pump()
    for c, i in rcids.items():
        assert io.host.completions.pop(c).data == data[i]
