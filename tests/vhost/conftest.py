"""Fixtures for vhost tests: a reactor with a clean bdev registry, a short socket folder."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spydk.bdev  # noqa: F401  (registers modules)
from spydk import notify
from spydk.bdev import registry as core
from spydk.bdev.iobuf import pool


class Env:
    def __init__(self, rh: Any, sock_dir: Path):
        self.rh = rh
        self.thread = rh.thread
        self.sock_dir = sock_dir

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the app thread and return its result."""
        return self.rh.run(self.rh.reactor.call_on(self.thread, fn, *args))

    def run(self, coro: Any) -> Any:
        return self.rh.run(coro)


@pytest.fixture
def env(rh: Any) -> Iterator[Env]:
    core._reset_for_tests()
    notify._reset_for_tests()
    pool.__init__()  # type: ignore[misc]
    d = Path(tempfile.mkdtemp(prefix="spydk-vh-", dir="/tmp"))
    yield Env(rh, d)
    core._reset_for_tests()
    shutil.rmtree(d, ignore_errors=True)
