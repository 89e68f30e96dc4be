"""The trace_* RPCs, as SPDK names and shapes them (lib/trace/trace_rpc.c).

They live in the app layer because the trace layer sits below thread and rpc; imported by
spydk.apps.rpc so discovery registers them with the framework methods."""
from __future__ import annotations

from typing import Any

from spydk import trace
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import invalid_params
from spydk.rpc.registry import State
from spydk.trace.tpoints import GROUP_NAMES

ANY = State.STARTUP | State.RUNTIME
_NAME = Param("name", "string", required=True)
_MASK = Param("tpoint_mask", "uint64", required=True)


def _do(method: str, fn: Any, *args: Any) -> bool:
    try:
        fn(*args)
    except trace.TraceError as e:
        raise invalid_params(f"{method}: {e}") from None
    return True


@rpc_method("trace_enable_tpoint_group", [_NAME], states=ANY)
def trace_enable_tpoint_group(ctx: RpcContext, name: str) -> bool:
    """Turn on every trace point of a group ("all": of every group)."""
    return _do("trace_enable_tpoint_group", trace.enable_group, name)


@rpc_method("trace_disable_tpoint_group", [_NAME], states=ANY)
def trace_disable_tpoint_group(ctx: RpcContext, name: str) -> bool:
    """Turn off every trace point of a group ("all": of every group)."""
    return _do("trace_disable_tpoint_group", trace.disable_group, name)


@rpc_method("trace_set_tpoint_mask", [_NAME, _MASK], states=ANY)
def trace_set_tpoint_mask(ctx: RpcContext, name: str, tpoint_mask: int) -> bool:
    """Turn on the trace points of a group whose bits are set in tpoint_mask."""
    return _do("trace_set_tpoint_mask", trace.set_tpoint_mask, name, tpoint_mask)


@rpc_method("trace_clear_tpoint_mask", [_NAME, _MASK], states=ANY)
def trace_clear_tpoint_mask(ctx: RpcContext, name: str, tpoint_mask: int) -> bool:
    """Turn off the trace points of a group whose bits are set in tpoint_mask."""
    return _do("trace_clear_tpoint_mask", trace.clear_tpoint_mask, name, tpoint_mask)


@rpc_method("trace_get_tpoint_group_mask", states=ANY)
def trace_get_tpoint_group_mask(ctx: RpcContext) -> dict[str, Any]:
    """The group mask and, per group, whether it is enabled and its bit."""
    out: dict[str, Any] = {"tpoint_group_mask": f"{trace.group_mask():#x}"}
    for gid, name in sorted(GROUP_NAMES.items()):
        out[name] = {"enabled": trace.tpoint_mask(gid) != 0, "mask": f"{1 << gid:#x}"}
    return out


@rpc_method("trace_get_info", states=ANY)
def trace_get_info(ctx: RpcContext) -> dict[str, Any]:
    """Where the trace ring lives (tpoint_shm_path), the group mask and each group's tpoint mask."""
    out: dict[str, Any] = {"tpoint_shm_path": trace.shm_path(), "tpoint_group_mask": f"{trace.group_mask():#x}"}
    for gid, name in sorted(GROUP_NAMES.items()):
        out[name] = {"mask": f"{1 << gid:#x}", "tpoint_mask": f"{trace.tpoint_mask(gid):#x}"}
    return out


@rpc_method("trace_clear", states=ANY)
def trace_clear(ctx: RpcContext) -> bool:
    """Drop the records in the trace ring."""
    trace.clear()
    return True
