"""Which RPC methods a multi-core app repeats on every worker reactor, and how.

A config-changing method runs on the main reactor first; if it succeeded and is declared
here, the app sends the same call (method and params) to every worker, in order, and
answers the client once each applied it (docs/architecture.md, "Several cores"). Methods
not declared here change the main reactor only: their objects (e.g. an lvol or a raid bdev)
exist on main alone.

    replicated("bdev_null_create")
    replicated("bdev_malloc_create", share=memfd_of_result, adopt=use_memfd)

``share(params, result) -> (params, fds)`` runs on main after the method: it may fix the
params (an auto-generated name) and pass descriptors (a malloc disk's memfd) along.
``adopt(params, fds)`` runs on the worker before the method: it takes the descriptors.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Share = Callable[[Any, Any], tuple[Any, list[int]]]
Adopt = Callable[[Any, list[int]], None]


@dataclass(frozen=True)
class Replicated:
    method: str
    share: Share | None = None
    adopt: Adopt | None = None


_methods: dict[str, Replicated] = {}


def replicated(method: str, *, share: Share | None = None, adopt: Adopt | None = None) -> None:
    _methods[method] = Replicated(method, share, adopt)


def replication_of(method: str) -> Replicated | None:
    return _methods.get(method)


def replicated_methods() -> list[str]:
    return sorted(_methods)
