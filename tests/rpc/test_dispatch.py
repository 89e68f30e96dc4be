"""The dispatcher: request validation, errors, states, handlers on the app thread."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spydk.rpc import errors
from spydk.rpc.errors import RpcError
from spydk.rpc.registry import RpcContext, State, rpc_method
from spydk.rpc.schema import Param
from spydk.thread import get_thread

from .conftest import LocalApp

seen_threads: list[Any] = []


@rpc_method("test_dispatch_echo", [Param("value", "uint32", required=True), Param("name", "string")])
def _echo(ctx: RpcContext, value: int, name: str | None = None) -> dict[str, Any]:
    seen_threads.append(get_thread())
    return {"value": value, "name": name}


@rpc_method("test_dispatch_boom")
def _boom(ctx: RpcContext) -> None:
    raise KeyError("the thing")


@rpc_method("test_dispatch_rpcerror")
def _rpcerror(ctx: RpcContext) -> None:
    raise RpcError(-17, "bdev 'x' already exists")


@rpc_method("test_dispatch_slow")
async def _slow(ctx: RpcContext) -> list[str]:
    names = []
    for _ in range(3):
        t = get_thread()
        names.append(t.name if t else "none")
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
    return names


@rpc_method("test_dispatch_startup_only", states=State.STARTUP)
def _startup_only(ctx: RpcContext) -> bool:
    return True


def err(resp: Any) -> tuple[int, str]:
    return resp["error"]["code"], resp["error"]["message"]


def test_result_and_id_echoed(local_app: LocalApp) -> None:
    r = local_app.call("test_dispatch_echo", {"value": 7}, id_="abc")
    assert r == {"jsonrpc": "2.0", "id": "abc", "result": {"value": 7, "name": None}}


def test_sync_handler_runs_on_app_thread(local_app: LocalApp) -> None:
    seen_threads.clear()
    local_app.call("test_dispatch_echo", {"value": 1})
    assert seen_threads == [local_app.app.thread]
    assert get_thread() is None  # not leaked to the caller


def test_coroutine_handler_has_app_thread_at_every_step(local_app: LocalApp) -> None:
    r = local_app.call("test_dispatch_slow")
    assert r["result"] == ["app_thread"] * 3
    assert get_thread() is None


def test_unknown_method_suggests(local_app: LocalApp) -> None:
    code, msg = err(local_app.call("spdk_get_versoin"))
    assert code == errors.METHOD_NOT_FOUND
    assert "spdk_get_version" in msg


@pytest.mark.parametrize("params, word", [
    ({"value": "7"}, "'value' must be an integer"),
    ({"value": -1}, "out of range"),
    ({}, "missing required parameter 'value'"),
    ({"value": 1, "nmae": "x"}, "unknown parameter 'nmae'"),
    ([1], "by name"),
])
def test_invalid_params(local_app: LocalApp, params: Any, word: str) -> None:
    code, msg = err(local_app.call("test_dispatch_echo", params))
    assert code == errors.INVALID_PARAMS
    assert word in msg


@pytest.mark.parametrize("req", [
    5, "x", None, [], {"method": 5, "id": 1}, {"id": 1}, {"jsonrpc": "1.0", "method": "a", "id": 1},
    {"method": "a", "id": [1]}, {"method": "a", "id": 1, "params": 3}, {"method": "a", "id": 1, "extra": 1},
    {"method": "a", "id": True},
])
def test_invalid_requests(local_app: LocalApp, req: Any) -> None:
    code, _ = err(local_app.handle(req))
    assert code == errors.INVALID_REQUEST


def test_handler_exception_is_internal_error_with_message(local_app: LocalApp) -> None:
    code, msg = err(local_app.call("test_dispatch_boom"))
    assert code == errors.INTERNAL_ERROR
    assert "KeyError" in msg and "the thing" in msg


def test_rpcerror_code_kept(local_app: LocalApp) -> None:
    assert err(local_app.call("test_dispatch_rpcerror")) == (-17, "bdev 'x' already exists")


def test_notification_gets_no_reply(local_app: LocalApp) -> None:
    assert local_app.handle({"jsonrpc": "2.0", "method": "test_dispatch_echo", "params": {"value": 1}}) is None
    assert local_app.handle({"jsonrpc": "2.0", "method": "no_such"}) is None


def test_batch(local_app: LocalApp) -> None:
    r = local_app.handle([
        {"jsonrpc": "2.0", "method": "test_dispatch_echo", "params": {"value": 1}, "id": 1},
        {"jsonrpc": "2.0", "method": "test_dispatch_echo", "params": {"value": 2}},  # notification
        {"jsonrpc": "2.0", "method": "nope", "id": 3},
        7,
    ])
    assert [x.get("id") for x in r] == [1, 3, None]
    assert r[0]["result"]["value"] == 1
    assert r[1]["error"]["code"] == errors.METHOD_NOT_FOUND
    assert r[2]["error"]["code"] == errors.INVALID_REQUEST
    assert local_app.handle([{"jsonrpc": "2.0", "method": "test_dispatch_echo", "params": {"value": 1}}]) is None


def test_state_rules_with_wait_for_rpc() -> None:
    a = LocalApp(wait_for_rpc=True)
    try:
        assert a.app.rpc_state == State.STARTUP
        code, msg = err(a.call("framework_get_subsystems"))
        assert code == errors.INVALID_STATE
        assert "framework_get_subsystems" in msg and "STARTUP" in msg and "framework_start_init" in msg
        assert a.call("test_dispatch_startup_only")["result"] is True
        names = a.call("rpc_get_methods", {"current": True})["result"]
        assert "framework_start_init" in names and "framework_get_subsystems" not in names
        assert a.call("framework_start_init")["result"] is True
        assert a.app.rpc_state == State.RUNTIME
        code, msg = err(a.call("test_dispatch_startup_only"))
        assert code == errors.INVALID_STATE and "RUNTIME" in msg and "--wait-for-rpc" in msg
        assert err(a.call("framework_start_init"))[0] == errors.INVALID_STATE
        assert a.call("framework_get_subsystems")["result"] == []
    finally:
        a.close()


def test_shutdown_refuses_new_requests(local_app: LocalApp) -> None:
    local_app.app.shutdown("test")
    code, msg = err(local_app.call("spdk_get_version"))
    assert code == errors.INVALID_STATE and "shutting down" in msg


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {"method": st.sampled_from(["test_dispatch_echo", "spdk_get_version", "log_set_flag", "rpc_get_methods",
                                "nope", "framework_get_config", "notify_get_notifications"])},
    optional={"jsonrpc": st.sampled_from(["2.0", "1.0"]), "id": json_values, "params": json_values},
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(json_values, requests, st.lists(requests, max_size=3)))
def test_random_json_never_breaks_the_dispatcher(local_app: LocalApp, req: Any) -> None:
    resp = local_app.handle(req)
    assert resp is None or isinstance(resp, dict | list)
    for r in resp if isinstance(resp, list) else [resp] if resp else []:
        assert r["jsonrpc"] == "2.0" and ("result" in r) != ("error" in r)
