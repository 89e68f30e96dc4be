"""Fixtures for RPC tests: an in-process app without a socket, and one with a socket."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from spydk.apps.app import App, AppOptions
from spydk.testing import AppHarness


class LocalApp:
    """An App without an RPC server on a private loop in this thread; call() dispatches."""

    def __init__(self, **opts: Any):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.app = App(AppOptions(rpc_socket=None, subsystems=opts.pop("subsystems", ()), **opts))
        self.loop.run_until_complete(self.app.start())

    def handle(self, req: Any) -> Any:
        return self.loop.run_until_complete(self.app.dispatcher.handle(req))

    def call(self, method: str, params: Any = None, id_: Any = 1) -> Any:
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
        if params is not None:
            req["params"] = params
        return self.handle(req)

    def close(self) -> None:
        self.app.shutdown()
        self.loop.run_until_complete(self.app.wait_shutdown())
        self.loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture
def local_app() -> Iterator[LocalApp]:
    a = LocalApp()
    yield a
    a.close()


@pytest.fixture
def harness() -> Iterator[AppHarness]:
    with AppHarness(subsystems=()) as h:
        yield h
