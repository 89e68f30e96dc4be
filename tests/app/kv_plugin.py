"""Test-only plugin (loaded through SPYDK_PLUGINS): two subsystems with config and fini.

"test_kv" keeps key/values set by the RUNTIME method test_kv_set and writes them back in
its config dump; "test_opts" has a STARTUP-only method. fini appends to $SPYDK_TEST_MARKER.
"""
from __future__ import annotations

import os
from typing import Any

from spydk.init.subsystem import Subsystem, register_subsystem
from spydk.rpc.registry import RpcContext, State, rpc_method
from spydk.rpc.schema import Param

_kv: dict[str, int] = {}
_opts: dict[str, Any] = {"depth": 1}
_events: list[str] = []


def _mark(what: str) -> None:
    _events.append(what)
    path = os.environ.get("SPYDK_TEST_MARKER")
    if path:
        with open(path, "a") as f:
            f.write(what + "\n")


@rpc_method("test_opts_set", [Param("depth", "uint32", required=True)], states=State.STARTUP)
def test_opts_set(ctx: RpcContext, depth: int) -> bool:
    _opts["depth"] = depth
    return True


@rpc_method("test_kv_set", [Param("key", "string", required=True), Param("value", "int64", required=True)])
def test_kv_set(ctx: RpcContext, key: str, value: int) -> bool:
    _kv[key] = value
    _mark(f"set {key} depth={_opts['depth']}")
    return True


def _opts_config(app: Any) -> list[dict[str, Any]]:
    return [{"method": "test_opts_set", "params": {"depth": _opts["depth"]}}]


def _kv_config(app: Any) -> list[dict[str, Any]]:
    return [{"method": "test_kv_set", "params": {"key": k, "value": v}} for k, v in _kv.items()]


register_subsystem(Subsystem("test_opts", init=lambda app: _mark("init test_opts"),
                             fini=lambda app: _mark("fini test_opts"), config=_opts_config))
register_subsystem(Subsystem("test_kv", depends_on=("test_opts",), init=lambda app: _mark("init test_kv"),
                             fini=lambda app: _mark("fini test_kv"), config=_kv_config))
