"""Subsystem registry (SPDK_SUBSYSTEM_REGISTER / SPDK_SUBSYSTEM_DEPEND).

A subsystem is a library's glue to the app: init and fini hooks and a config dump that
``framework_get_config`` returns and ``save_config`` writes. Subsystems are initialized in
dependency order and finalized in reverse.

    register_subsystem(Subsystem("bdev", depends_on=("accel", "iobuf"),
                                 init=bdev_init, fini=bdev_fini, config=bdev_config))
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from spydk.rpc.registry import AppContext

# Hooks get the application (an AppContext: the app passes itself in).
InitFn = Callable[[AppContext], Awaitable[None] | None]
ConfigFn = Callable[[AppContext], list[dict[str, Any]]]


@dataclass
class Subsystem:
    name: str
    depends_on: tuple[str, ...] = ()
    init: InitFn | None = None
    fini: InitFn | None = None
    # Returns [{"method": ..., "params": {...}}, ...]: replaying it rebuilds the state.
    config: ConfigFn | None = None


_registry: dict[str, Subsystem] = {}


def register_subsystem(s: Subsystem) -> Subsystem:
    if s.name in _registry:
        raise ValueError(f"subsystem {s.name!r} is registered twice")
    _registry[s.name] = s
    return s


def get_subsystem(name: str) -> Subsystem | None:
    return _registry.get(name)


def all_subsystems() -> list[Subsystem]:
    return list(_registry.values())


def sorted_subsystems(names: Iterable[str] | None = None) -> list[Subsystem]:
    """The named subsystems plus everything they depend on, dependencies first.

    Ties keep registration order, so the order is stable from run to run.
    """
    wanted = list(_registry) if names is None else list(names)
    order: list[Subsystem] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, chain: tuple[str, ...]) -> None:
        s = _registry.get(name)
        if s is None:
            via = f" (needed by {chain[-1]})" if chain else ""
            raise ValueError(f"unknown subsystem {name!r}{via}")
        st = state.get(name)
        if st == 2:
            return
        if st == 1:
            raise ValueError(f"subsystem dependency cycle: {' -> '.join(chain + (name,))}")
        state[name] = 1
        for d in s.depends_on:
            visit(d, chain + (name,))
        state[name] = 2
        order.append(s)

    for n in wanted:
        visit(n, ())
    return order
