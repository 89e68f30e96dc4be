"""A real single-node Ceph cluster (scripts/ceph-cluster.sh) for the rbd tests, started once
per module and torn down after; plus the module tests' Env."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.raid.conftest import (  # noqa: F401
    _core_env,
    _mod_env,
    env,  # noqa: F401
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ceph-cluster.sh"


@dataclass
class Ceph:
    dir: Path
    conf: str
    keyring: str

    def run(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run([args[0], "-c", self.conf, "-k", self.keyring, *args[1:]],
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    def script(self, cmd: str) -> None:
        subprocess.run([str(SCRIPT), cmd, str(self.dir)], check=True, capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def ceph() -> Iterator[Ceph]:
    d = Path(tempfile.mkdtemp(prefix="spydk-ceph-"))
    r = subprocess.run([str(SCRIPT), "start", str(d)], capture_output=True, text=True, timeout=240)
    try:
        assert r.returncode == 0, f"the Ceph cluster did not start:\n{r.stdout}\n{r.stderr}"
        yield Ceph(d, str(d / "ceph.conf"), str(d / "admin.keyring"))
    finally:
        subprocess.run([str(SCRIPT), "stop", str(d)], capture_output=True, timeout=60)
        shutil.rmtree(d, ignore_errors=True)
