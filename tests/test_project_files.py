"""The README's commands and the files they run: what they install and pass on."""
from __future__ import annotations

import re
import subprocess
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_ONLY = {"qemu-system-x86", "tgt", "libiscsi-bin", "qemu-utils"}


def _packages(name: str) -> set[str]:
    text = (ROOT / "scripts" / name).read_text()
    return {w for line in text.splitlines() for w in line.split("#", 1)[0].split()}


def test_run_target_installs_only_what_the_target_needs() -> None:
    target = _packages("debian-packages-target.txt")
    assert target and not target & TEST_ONLY, f"test-only packages in the target's list: {target & TEST_ONLY}"
    assert TEST_ONLY <= _packages("debian-packages.txt")
    run_target = (ROOT / "scripts" / "run-target.sh").read_text()
    setup_lines = [ln for ln in run_target.splitlines() if "setup.sh" in ln and not ln.lstrip().startswith("#")]
    assert setup_lines and all("--test" not in ln for ln in setup_lines), setup_lines
    assert re.search(r"^scripts/setup\.sh --test$", (ROOT / "scripts" / "test.sh").read_text(), re.M)


def test_setup_refuses_unknown_arguments() -> None:
    res = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--bogus"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2 and "usage" in res.stderr


def test_pyproject_builds_without_deprecation_warnings() -> None:
    """What pip's build backend reads prints no warning of ours at install time."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), ROOT / "pyproject.toml")
    ours = [str(w.message).splitlines()[0] for w in caught
            if "beta" not in str(w.message).lower()]  # setuptools' own note on [tool.setuptools]
    assert not ours, ours


def test_ci_passes_its_arguments_to_the_test_command(tmp_path: Path) -> None:
    """.ci/run hands its arguments to scripts/test.sh, which hands them to pytest: run a copy
    whose test.sh only prints what it got."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".ci" / "run").write_text((ROOT / ".ci" / "run").read_text())
    (tmp_path / "scripts" / "test.sh").write_text('#!/usr/bin/env bash\nprintf "%s|" "$@"\n')
    (tmp_path / "scripts" / "test.sh").chmod(0o755)
    res = subprocess.run(["bash", str(tmp_path / ".ci" / "run"), "-k", "two words", "-x"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout == "-k|two words|-x|", res
    assert re.search(r'pytest -q "\$@"\s*$', (ROOT / "scripts" / "test.sh").read_text())
