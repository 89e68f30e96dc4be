"""App framework in process: subsystem order, init failures, config replay and its errors."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spydk.apps.app import App, AppOptions, StartupError
from spydk.init import subsystem as subsystem_registry
from spydk.init.subsystem import Subsystem, register_subsystem
from spydk.thread import get_thread

from . import kv_plugin

events: list[str] = []


def _sync(name: str, kind: str) -> Any:
    def fn(app: App) -> None:
        assert get_thread() is app.thread
        events.append(f"{kind} {name}")
    return fn


def _async(name: str, kind: str) -> Any:
    async def fn(app: App) -> None:
        await asyncio.sleep(0.001)
        assert get_thread() is app.thread  # still on the app thread after an await
        events.append(f"{kind} {name}")
    return fn


@pytest.fixture
def order_subsystems() -> Iterator[None]:
    subs = [
        Subsystem("t_c", depends_on=("t_a",), init=_sync("t_c", "init"), fini=_async("t_c", "fini")),
        Subsystem("t_a", depends_on=("t_b",), init=_async("t_a", "init"), fini=_sync("t_a", "fini")),
        Subsystem("t_b", init=_sync("t_b", "init"), fini=_sync("t_b", "fini")),
        Subsystem("t_bad", depends_on=("t_b",), init=lambda app: 1 / 0),
    ]
    for s in subs:
        register_subsystem(s)
    events.clear()
    yield
    for s in subs:
        subsystem_registry._registry.pop(s.name, None)


def run_app(opts: AppOptions) -> tuple[App, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    app = App(opts)
    try:
        loop.run_until_complete(app.start())
    except BaseException:
        loop.close()
        raise
    return app, loop


def stop_app(app: App, loop: asyncio.AbstractEventLoop) -> None:
    app.shutdown("test")
    loop.run_until_complete(app.wait_shutdown())
    loop.close()


def test_init_in_dependency_order_and_fini_in_reverse(order_subsystems: None) -> None:
    app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("t_c",)))
    assert [s.name for s in app.subsystems] == ["t_b", "t_a", "t_c"]
    assert app.state.value == "RUNTIME"
    stop_app(app, loop)
    assert events == ["init t_b", "init t_a", "init t_c", "fini t_c", "fini t_a", "fini t_b"]
    assert app.state.value == "SHUTDOWN"


def test_failed_init_stops_startup_and_finalizes_what_started(order_subsystems: None) -> None:
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=("t_bad",)))
    assert "t_bad" in str(e.value) and "division by zero" in str(e.value)
    assert events == ["init t_b", "fini t_b"]


def test_missing_dependency_leaves_subsystem_out(caplog: pytest.LogCaptureFixture) -> None:
    register_subsystem(Subsystem("t_orphan", depends_on=("not_built_yet",)))
    try:
        app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("t_orphan", "no_such")))
        assert app.subsystems == []
        stop_app(app, loop)
    finally:
        subsystem_registry._registry.pop("t_orphan")


def kv_config(*entries: tuple[str, str, Any], extra: list[Any] | None = None) -> dict[str, Any]:
    subs: dict[str, list[Any]] = {}
    for sub, method, params in entries:
        subs.setdefault(sub, []).append({"method": method, "params": params})
    return {"subsystems": [{"subsystem": k, "config": v} for k, v in subs.items()] + (extra or [])}


def test_config_replay_runs_startup_methods_before_init() -> None:
    kv_plugin._events.clear()
    kv_plugin._kv.clear()
    cfg = kv_config(("test_kv", "test_kv_set", {"key": "a", "value": 1}),
                    ("test_opts", "test_opts_set", {"depth": 9}))
    app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("test_kv",), config=cfg))
    try:
        assert kv_plugin._events == ["init test_opts", "init test_kv", "set a depth=9"]
    finally:
        stop_app(app, loop)
        kv_plugin._opts["depth"] = 1


def test_unknown_subsystem_skipped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    kv_plugin._kv.clear()
    cfg = kv_config(("test_kv", "test_kv_set", {"key": "b", "value": 2}),
                    extra=[{"subsystem": "vhost_blk", "config": [{"method": "x", "params": {}}]},
                           {"subsystem": "empty", "config": None}])
    with caplog.at_level(logging.WARNING, logger="spydk"):
        logging.getLogger("spydk").propagate = True
        try:
            app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("test_kv",), config=cfg,
                                           config_source="my.json"))
        finally:
            logging.getLogger("spydk").propagate = False
    stop_app(app, loop)
    assert kv_plugin._kv == {"b": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("vhost_blk" in w and "my.json" in w for w in warnings)


@pytest.mark.parametrize("entry, words", [
    (("test_kv", "test_kv_sett", {"key": "a", "value": 1}), ["test_kv", "test_kv_sett", "my.json", "test_kv_set"]),
    (("test_kv", "test_kv_set", {"key": "a", "value": "1"}), ["test_kv", "test_kv_set", "my.json", "'value'"]),
    (("test_kv", "test_kv_set", {"key": "a"}), ["test_kv", "test_kv_set", "my.json", "'value'"]),
    (("test_kv", "test_kv_set", {"key": "a", "value": 1, "colour": 1}), ["'colour'"]),
])
def test_config_errors_name_subsystem_method_parameter_and_file(entry: Any, words: list[str]) -> None:
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=("test_kv",), config=kv_config(entry),
                           config_source="my.json"))
    for w in words:
        assert w in str(e.value)


def test_ignore_init_errors_goes_on() -> None:
    kv_plugin._kv.clear()
    cfg = kv_config(("test_kv", "nope", {}), ("test_kv", "test_kv_set", {"key": "c", "value": 3}))
    app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("test_kv",), config=cfg,
                                   json_ignore_init_errors=True))
    stop_app(app, loop)
    assert kv_plugin._kv == {"c": 3}


def test_truncated_and_invalid_config_files(tmp_path: Path) -> None:
    good = json.dumps(kv_config(("test_kv", "test_kv_set", {"key": "a", "value": 1})), indent=2)
    f = tmp_path / "trunc.json"
    f.write_text(good[: len(good) // 2])
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=(), json_config=str(f)))
    assert str(f) in str(e.value) and "line" in str(e.value) and "column" in str(e.value)
    assert "truncated" in str(e.value)
    f.write_text('{"subsystems": [\n  {"subsystem": "x",, }]}')
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=(), json_config=str(f)))
    assert "line 2 column" in str(e.value)
    f.write_text('{"subsystems": {}}')
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=(), json_config=str(f)))
    assert "must be an array" in str(e.value)
    with pytest.raises(StartupError) as e:
        run_app(AppOptions(rpc_socket=None, subsystems=(), json_config=str(tmp_path / "missing.json")))
    assert "cannot read" in str(e.value)


def test_wait_for_rpc_defers_runtime_config() -> None:
    kv_plugin._kv.clear()
    cfg = kv_config(("test_kv", "test_kv_set", {"key": "d", "value": 4}))
    app, loop = run_app(AppOptions(rpc_socket=None, subsystems=("test_kv",), config=cfg, wait_for_rpc=True))
    assert kv_plugin._kv == {}
    assert app.state.value == "STARTUP"
    r = loop.run_until_complete(app.dispatcher.handle({"method": "framework_start_init", "id": 1}))
    assert r["result"] is True
    assert kv_plugin._kv == {"d": 4}
    stop_app(app, loop)
