"""Shared fixtures: a fresh event loop and reactor per test."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from spydk.thread import Reactor, Thread, init_reactor
from spydk.thread.io_channel import _reset_for_tests


class ReactorHarness:
    def __init__(self, loop: asyncio.AbstractEventLoop, reactor: Reactor):
        self.loop = loop
        self.reactor = reactor
        self.thread: Thread = reactor.create_thread("app_thread")

    def run_until(self, cond: Callable[[], bool], timeout: float = 10.0) -> None:
        """Spin the loop until cond() holds (fails the test after ``timeout`` seconds)."""
        async def wait() -> None:
            while not cond():
                await asyncio.sleep(0)
        self.loop.run_until_complete(asyncio.wait_for(wait(), timeout))

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def drain(self) -> None:
        """Run until no thread has queued messages or due work."""
        self.run_until(lambda: not any(t.has_pending() for t in self.reactor.threads))
        self.run_until(lambda: True)


@pytest.fixture(autouse=True)
def _no_leaked_current_thread() -> Iterator[None]:
    """A test that enters a spydk Thread by hand must not leave it current for the next test."""
    from spydk.thread.thread import set_thread
    prev = set_thread(None)
    yield
    set_thread(prev)


@pytest.fixture
def rh() -> Iterator[ReactorHarness]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _reset_for_tests()
    reactor = init_reactor(loop)
    h = ReactorHarness(loop, reactor)
    yield h
    reactor.stop()
    loop.close()
    asyncio.set_event_loop(None)
    _reset_for_tests()
