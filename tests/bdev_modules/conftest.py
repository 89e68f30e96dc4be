"""Fixtures for the module tests: tests/bdev's reactor harness and Env, plus a reset of
the module-level configurations the examine-based modules keep."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from spydk.modules.bdev.aio import aio  # noqa: F401  (register the modules)
from spydk.modules.bdev.delay import delay
from spydk.modules.bdev.passthru import passthru
from spydk.modules.bdev.split import split
from tests.bdev.conftest import Env
from tests.bdev.conftest import env as _core_env  # noqa: F401


@pytest.fixture
def env(_core_env: Env) -> Iterator[Env]:  # noqa: F811
    for m in (passthru.module, delay.module, split.module):
        m.configs.clear()
    yield _core_env
    for m in (passthru.module, delay.module, split.module):
        m.configs.clear()


def call(env: Any, fn: Any, *args: Any, **kw: Any) -> Any:
    return env.call(lambda: fn(*args, **kw))
