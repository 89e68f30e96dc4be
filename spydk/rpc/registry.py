"""The RPC method registry (SPDK's SPDK_RPC_REGISTER).

    @rpc_method("bdev_malloc_create", [
        Param("name", "string"),
        Param("block_size", "uint32", required=True),
        Param("num_blocks", "uint64", required=True),
    ])
    def bdev_malloc_create(ctx: RpcContext, *, block_size: int, num_blocks: int, name: str | None = None):
        ...
        return bdev.name

The handler gets the context plus the decoded parameters as keyword arguments. It returns
a JSON value, or an awaitable of one (a slow method awaits instead of blocking the
reactor), or raises RpcError.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from spydk.rpc.schema import Param, Schema

if TYPE_CHECKING:
    from spydk.thread import Reactor, Thread


class State(enum.IntFlag):
    """When a method may run: before framework_start_init (STARTUP), after it (RUNTIME)."""

    STARTUP = 1
    RUNTIME = 2
    ANY = 3


STARTUP = State.STARTUP
RUNTIME = State.RUNTIME


class AppContext(Protocol):
    """The application as RPC handlers and subsystem hooks see it.

    spydk.apps.app.App implements it. Lower layers (rpc, init, bdev, iscsi, ...) type against
    this protocol instead of importing the app, which sits above all of them.
    """

    opts: Any
    reactor: Reactor | None
    thread: Thread | None            # "app_thread": where handlers and hooks run
    subsystems: list[Any]            # spydk.init.Subsystem objects selected for this app

    @property
    def rpc_state(self) -> State: ...

    @property
    def shutting_down(self) -> bool: ...

    async def run_on_app_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    async def start_init(self) -> None: ...

    async def wait_init(self) -> None: ...

    def shutdown(self, reason: str = "") -> None: ...


@dataclass
class RpcContext:
    """What a handler may need besides its parameters."""

    app: AppContext
    method: str = ""
    request_id: Any = None
    peer: Any = None


Handler = Callable[..., Any]


@dataclass
class RpcMethod:
    name: str
    handler: Handler
    schema: Schema
    states: State = State.RUNTIME
    aliases: tuple[str, ...] = ()
    description: str = ""
    deprecated_alias_of: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_methods: dict[str, RpcMethod] = {}


def rpc_method(name: str, params: Sequence[Param] = (), *, states: State = State.RUNTIME,
               aliases: Sequence[str] = (), description: str = "") -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of RPC ``name``."""
    def register(fn: Handler) -> Handler:
        if name in _methods:
            raise ValueError(f"RPC method {name!r} is registered twice")
        m = RpcMethod(name, fn, Schema(tuple(params)), states, tuple(aliases),
                      description or (fn.__doc__ or "").strip().split("\n")[0])
        _methods[name] = m
        for a in aliases:
            _methods[a] = RpcMethod(a, fn, m.schema, states, (), m.description, deprecated_alias_of=name)
        return fn
    return register


def get_method(name: str) -> RpcMethod | None:
    return _methods.get(name)


def all_methods(include_aliases: bool = False) -> list[RpcMethod]:
    return [m for m in _methods.values() if include_aliases or m.deprecated_alias_of is None]
