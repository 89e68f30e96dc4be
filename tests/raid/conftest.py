"""Fixtures for the raid tests: the module tests' Env plus a clean raid registry, and an
RPC helper that awaits asynchronous handlers."""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest

import spydk.modules.bdev.error  # noqa: F401  (registers the modules the tests use)
import spydk.modules.bdev.rbd  # noqa: F401
from spydk.modules.bdev.raid import bdev_raid
from spydk.rpc.registry import RpcContext, get_method
from tests.bdev.conftest import Env
from tests.bdev_modules.conftest import _core_env  # noqa: F401
from tests.bdev_modules.conftest import env as _mod_env  # noqa: F401


@pytest.fixture
def env(_mod_env: Env) -> Iterator[Env]:  # noqa: F811
    bdev_raid.module.raids.clear()
    bdev_raid.options.process_window_size_kb = 1024
    bdev_raid.options.process_max_bandwidth_mb_sec = 0
    yield _mod_env
    bdev_raid.module.raids.clear()


def rpc(env: Env, method: str, params: dict[str, Any] | None = None) -> Any:
    m = get_method(method)
    assert m is not None, method

    def go() -> Any:
        return m.handler(RpcContext(app=None, method=method), **m.schema.decode(params or {}))  # type: ignore[arg-type]
    res = env.call(go)
    if inspect.isawaitable(res):
        res = env.rh.run(res)
    return res
