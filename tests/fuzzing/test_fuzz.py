"""CI part of fuzz/: every input kept in fuzz/corpus/ replays cleanly through its target, and a
short coverage-guided atheris run per target finds nothing (new inputs go to a scratch
directory). Long runs and their figures: docs/reliability.md."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS, install_trap

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
# Inputs per target in CI (the slow targets build a whole in-memory target per input).
SHORT_RUNS = {"nvmf_controller": 100, "iscsi_pdus": 200, "scsi_cdbs": 300, "rpc_params": 300}


def test_every_target_has_a_corpus() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays(name: str) -> None:
    remove_trap = install_trap()
    try:
        files = sorted((CORPUS / name).iterdir())
        assert files
        for f in files:
            TARGETS[name](f.read_bytes())
    finally:
        remove_trap()  # later tests in this process expect spydk's normal logging


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_short_fuzz_run(name: str, tmp_path: Path) -> None:
    runs = SHORT_RUNS.get(name, 1000)
    res = subprocess.run(
        [sys.executable, "-m", "fuzz.run", name, f"-runs={runs}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", str(tmp_path), str(CORPUS / name)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-40:])
    assert res.returncode == 0, tail
    assert "Done" in res.stderr or "DONE" in res.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail


def test_nvmf_controller_target_gives_the_buffer_pool_back() -> None:
    """Found by a long run (RSS past 2 GiB): each input's target was dropped with its
    connections up, so the process-wide buffer pool kept their buffers, then their waits
    (callbacks holding whole controllers). The target now ends its connections as closed
    sockets would; the pool is whole after every input."""
    from fuzz.targets import nvmf_controller
    from spydk.bdev import iobuf
    pool = iobuf.pool
    # 32 writes per input (the I/O queue's depth), each asking by R2T for 128 KiB - 1 that
    # never comes: more inputs than the pool has large buffers for.
    rec = bytearray()
    for cid in range(32):
        sqe = bytearray(64)
        sqe[0] = 0x01                                   # Write
        sqe[2:4] = cid.to_bytes(2, "little")
        sqe[4:8] = (1).to_bytes(4, "little")            # NSID 1
        sqe[48:50] = (255).to_bytes(2, "little")        # 256 blocks
        sqe[32:36] = (0x1FFFF).to_bytes(4, "little")    # the length the harness puts in the SGL
        rec += bytes([3]) + sqe + (0).to_bytes(2, "little")
    runs = pool.opts.large_pool_count // 32 + 4
    for _ in range(runs):
        nvmf_controller(bytes(rec))
        assert not pool._large_wait and not pool._over_wait
        assert len(pool._large) == pool.large_created
    assert pool.large_created > 0, "the writes never took a buffer: the test proves nothing"


class _Planted(Exception):
    pass


@pytest.mark.parametrize(("cls", "method", "seed"), [
    ("spydk.iscsi.commands:CommandPhase", "_on_scsi_cmd", 0),   # SCSI Command after a login
    ("spydk.iscsi.control:ControlPhase", "_on_text", 0),        # Text Request after a login
    ("spydk.iscsi.login:LoginPhase", "_on_login", 1),           # a Login Request, in login
])
def test_iscsi_pdus_harness_reaches_the_parser_and_reports_a_planted_fault(
        cls: str, method: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The iscsi_pdus harness was made ~200 times faster (its stand-in LU built each READ's data
    a byte at a time, for whatever length a fuzzed header asked). It must still take the fuzzed
    bytes into the same handlers of the target connection, and a fault there must surface."""
    import importlib

    from fuzz.seeds import SEEDS
    from fuzz.targets import iscsi_pdus
    mod, name = cls.split(":")
    klass = getattr(importlib.import_module(mod), name)

    def planted(self: object, pdu: object) -> None:
        raise _Planted(method)
    data = SEEDS["iscsi_pdus"]()[seed]
    iscsi_pdus(data)  # clean without the fault
    monkeypatch.setattr(klass, method, planted)
    with pytest.raises(_Planted):
        iscsi_pdus(data)


def test_iscsi_pdus_harness_bounds_what_a_fuzzed_read_makes_it_allocate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A READ whose Expected Data Transfer Length says 4 GiB: the harness's LU gives 1 MiB (a
    view of a shared buffer) and the target sends it with the underflow. Nothing large is
    allocated per input (the old harness built 4 GiB a byte at a time)."""
    import tracemalloc

    import fuzz.targets as ft
    from spydk.iscsi import pdu
    from spydk.iscsi.spec import Opcode
    sent: list[int] = []

    def count(bufs: list[object]) -> list[object]:
        sent.extend(len(memoryview(b)) for b in bufs)  # type: ignore[arg-type]
        return []
    monkeypatch.setattr(ft, "_drop_output", count)
    read = pdu.encode(Opcode.SCSI_CMD, flags=0xC1, lun=0, itt=0x20, edtl=0xFFFFFFFF, cmdsn=100, expstatsn=5001,
                      cdb=bytes([0x28, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0]).ljust(16, b"\0"))
    ft.iscsi_pdus(b"\x01")  # imports and first-use caches are not what this measures
    tracemalloc.start()
    try:
        ft.iscsi_pdus(b"\x01" + bytes(read))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (1 << 20) < sum(sent) < (1 << 20) + 65536, sum(sent)  # 1 MiB of Data-In and the headers
    assert peak < 4 << 20, peak


def test_fake_scsi_read_pattern_is_unchanged() -> None:
    """The in-memory initiator's READ data is built a period at a time now: same bytes."""
    from spydk.scsi.task import ScsiTask
    from tests.iscsi.initiator import FakeScsi
    for tag, n in ((0, 0), (3, 1), (0x21, 4096), (0xFFFF, 1000), (7, 70000)):
        t = ScsiTask()
        t.cdb = bytes([0x28]) + bytes(9)
        t.tag, t.transfer_length = tag, n
        FakeScsi().execute(t)
        assert bytes(t.data_in[0]) == bytes((i * 7 + tag) & 0xFF for i in range(n))


def test_merge_adds_what_new_inputs_cover(tmp_path: Path) -> None:
    """`-merge=1` (how long runs' finds get into fuzz/corpus) makes libFuzzer run its program
    again through the shell with argv[0] first: that must be this target (it was run.py
    itself, not executable, so every merge added nothing)."""
    out, new = tmp_path / "out", tmp_path / "new"
    out.mkdir()
    new.mkdir()
    for i, f in enumerate(sorted((CORPUS / "jsonrpc_framing").iterdir())):
        (new / f"in{i}").write_bytes(f.read_bytes())
    (new / "dup").write_bytes((CORPUS / "jsonrpc_framing" / f.name).read_bytes())
    res = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "jsonrpc_framing", "-merge=1", str(out), str(new)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-20:])
    assert res.returncode == 0, tail
    kept = sorted(p.read_bytes() for p in out.iterdir())
    assert kept and len(kept) < len(list(new.iterdir())), tail  # something added, the duplicate not
