"""Issue 10, finding 3: immediate SCSI commands bypass the CmdSN window, so they are bounded
on their own: past max_immediate_commands (or max_immediate_bytes of write buffers) they get a
Reject "immediate command reject - too many immediate commands" (RFC 7143 11.17.1) and nothing
is allocated for them; the connection and its window carry on."""
from __future__ import annotations

import tracemalloc

from spydk.iscsi.conn import ConnState, TargetConfig
from spydk.iscsi.session import BufferPool
from spydk.iscsi.spec import Opcode, RejectReason

from .test_conn import logged_in

MiB = 1 << 20


def _write_cdb(lba: int, nbytes: int) -> bytes:
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + b"\0" + (nbytes // 512).to_bytes(2, "big") + b"\0"


def test_300_immediate_writes_are_bounded_and_rejected_past_the_limit() -> None:
    cfg = TargetConfig(queue_depth=64, max_write_length=32 * MiB)
    ini, conn, _ = logged_in(config=cfg)
    ini.scsi.auto = False
    accepted = rejected = 0
    tracemalloc.start()
    try:
        for i in range(300):
            # No immediate data: each is sent an R2T and waits, holding its buffer, for
            # Data-Out that never comes.
            _, rx = ini.scsi_cmd(_write_cdb(i, 256 * 1024), write=bytes(256 * 1024), immediate=True)
            rej = [r for r in rx if r.op == Opcode.REJECT]
            if rej:
                assert rej[0].f["reason"] == RejectReason.IMMEDIATE_COMMAND_REJECT
                rejected += 1
            else:
                accepted += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert accepted == cfg.max_immediate_commands and rejected == 300 - accepted
    assert peak < cfg.max_immediate_bytes + 16 * MiB
    assert conn.state is ConnState.FULL_FEATURE and ini.failed is None
    # Ordinary (windowed) commands still run.
    ini.scsi.auto = True
    _, rx = ini.read(4096)
    assert [r.op for r in rx][-1] in (Opcode.SCSI_RSP, Opcode.DATA_IN)


def test_immediate_write_bytes_are_bounded() -> None:
    cfg = TargetConfig(queue_depth=64, max_write_length=32 * MiB)
    ini, conn, _ = logged_in(config=cfg)
    ini.scsi.auto = False
    _, rx = ini.scsi_cmd(_write_cdb(0, cfg.max_immediate_bytes), write=bytes(cfg.max_immediate_bytes),
                         immediate=True)
    assert not [r for r in rx if r.op == Opcode.REJECT]
    _, rx = ini.scsi_cmd(_write_cdb(0, 4096), write=bytes(4096), immediate=True)
    assert [r.f["reason"] for r in rx if r.op == Opcode.REJECT] == [RejectReason.IMMEDIATE_COMMAND_REJECT]


def test_immediate_commands_free_their_slot_when_done() -> None:
    cfg = TargetConfig(queue_depth=64)
    ini, conn, _ = logged_in(config=cfg)
    for i in range(3 * cfg.max_immediate_commands):
        _, rx = ini.scsi_cmd(_write_cdb(i, 4096), write=bytes([i]) * 4096, immediate_len=4096,
                             immediate=True)
        assert [r.op for r in rx] == [Opcode.SCSI_RSP], rx
    assert ini.failed is None


def test_write_buffer_cache_is_bounded_in_bytes() -> None:
    p = BufferPool(max_cached_bytes=4 * MiB)
    bufs = [p.get(MiB) for _ in range(16)]
    for b in bufs:
        p.put(b)
    assert p.cached_bytes <= 4 * MiB


def test_write_buffers_per_connection_are_bounded_task_set_full() -> None:
    """Writes whose Data-Out is withheld hold their buffers; past max_write_buffer_bytes a
    new write is answered TASK SET FULL (no buffer allocated) and the connection carries on."""
    cfg = TargetConfig(queue_depth=64, max_write_buffer_bytes=MiB)
    ini, conn, _ = logged_in(config=cfg)
    statuses = []
    tracemalloc.start()
    try:
        for i in range(40):
            _, rx = ini.scsi_cmd(_write_cdb(i, 256 * 1024), write=bytes(256 * 1024))
            statuses += [r.f["status"] for r in rx if r.op == Opcode.SCSI_RSP]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert statuses == [0x28] * 36  # four fit in 1 MiB; the rest: TASK SET FULL
    assert peak < 4 * MiB
    assert ini.failed is None and conn.state is ConnState.FULL_FEATURE
    # A complete write (data sent at once) still goes through once there is room again.
    _, rx = ini.read(4096)
    assert rx[-1].op in (Opcode.SCSI_RSP, Opcode.DATA_IN)


def test_write_buffer_budget_frees_as_writes_complete() -> None:
    cfg = TargetConfig(queue_depth=64, max_write_buffer_bytes=MiB)
    ini, conn, _ = logged_in(config=cfg)
    for i in range(20):
        itt, rx = ini.write(bytes([i]) * (256 * 1024), burst=65536)
        assert [r.f["status"] for r in rx if r.op == Opcode.SCSI_RSP] == [0], i
    assert conn.pool.outstanding == 0  # type: ignore[attr-defined]
