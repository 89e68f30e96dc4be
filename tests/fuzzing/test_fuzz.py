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
