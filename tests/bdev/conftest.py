"""Fixtures for bdev tests: a clean bdev registry, a memory-backed test module whose
behaviour (supported types, holding I/O, failures) each test sets, and helpers to run
code on the app thread."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import spydk.bdev  # noqa: F401  (registers modules, RPCs, notify types)
from spydk import notify
from spydk.bdev import Bdev, BdevDesc, open_ext, register_bdev
from spydk.bdev import registry as core
from spydk.bdev.io import FAILED, READ, RESET, SUCCESS, WRITE, BdevIO
from spydk.bdev.iobuf import pool
from spydk.bdev.module import BdevModule, _modules, register_module
from spydk.modules.bdev.malloc.malloc import module as malloc_module
from spydk.thread import io_device_register, is_io_device


class TestModule(BdevModule):
    name = "test"

    def io_device(self) -> Any:
        if not is_io_device(self):
            io_device_register(self, lambda d, ch: None, lambda d, ch: None, "test")
        return self


test_module = TestModule()


class TestDisk(Bdev):
    """A bytearray disk that records what it is asked to do."""

    def __init__(self, name: str, block_size: int = 512, num_blocks: int = 1024, *,
                 types: tuple[int, ...] = (READ, WRITE, RESET), **kw: Any):
        super().__init__(name, test_module, block_size, num_blocks, **kw)
        self.data = bytearray(block_size * num_blocks)
        self.types = set(types)
        self.io_device = test_module.io_device()
        self.log: list[tuple[int, int, int]] = []     # (type, offset, num) as submitted
        self.hold = False                             # keep I/O pending until release()
        self.held: list[BdevIO] = []
        self.fail_types: set[int] = set()
        self.destructed = False

    def io_type_supported(self, io_type: int) -> bool:
        return io_type in self.types

    def submit_request(self, ctx: Any, io: BdevIO) -> None:
        self.log.append((io.type, io.offset_blocks, io.num_blocks))
        if io.type in self.fail_types:
            io.complete(FAILED)
            return
        off = io.offset_blocks * self.block_size
        mv = memoryview(self.data)[off:off + io.nbytes]
        if io.type == READ:
            io.scatter(mv)
        elif io.type == WRITE:
            io.gather_into(mv)
        if self.hold and io.type != RESET:
            self.held.append(io)
            return
        io.complete(SUCCESS)

    def release(self) -> None:
        held, self.held = self.held, []
        for io in held:
            io.complete(SUCCESS)

    def destruct(self, done: Callable[[int], Any]) -> None:
        self.destructed = True
        done(0)


class Env:
    def __init__(self, rh: Any):
        self.rh = rh
        self.thread = rh.thread
        self.events: list[tuple[Any, str]] = []

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args) on the app thread and return its result (awaited, on that thread,
        when fn is a coroutine function, as the RPC dispatcher does)."""
        res = self.rh.run(self.rh.reactor.call_on(self.thread, fn, *args))
        if inspect.isawaitable(res):
            from spydk.apps.app import on_thread  # tests may reach above the bdev layer
            res = self.rh.run(on_thread(res, self.thread))
        return res

    def drain(self) -> None:
        self.rh.drain()

    def until(self, cond: Callable[[], bool]) -> None:
        self.rh.run_until(cond)

    def disk(self, name: str = "T0", **kw: Any) -> TestDisk:
        d = TestDisk(name, **kw)
        self.call(register_bdev, d)
        return d

    def open(self, name: str, write: bool = True) -> BdevDesc:
        return self.call(open_ext, name, write, self.event_cb)  # type: ignore[no-any-return]

    def event_cb(self, ev: Any, bdev: Bdev, ctx: Any) -> None:
        self.events.append((ev, bdev.name))

    def io(self, submit: Callable[..., int], *args: Any) -> tuple[bool, BdevIO | None, bytes, int]:
        """Submit one I/O on the app thread, wait for it: (success, status, data read)."""
        out: dict[str, Any] = {}

        def cb(io: BdevIO, ok: bool, arg: Any) -> None:
            out["ok"] = ok
            out["status"] = io.status
            out["data"] = io.data() if io.iovs is not None else b""

        def go() -> None:
            out["rc"] = submit(*args, cb, None)
            if out["rc"] != 0:
                out["ok"] = False
        self.call(go)
        self.until(lambda: "ok" in out)
        return out["ok"], out.get("status"), out.get("data", b""), out["rc"]


@pytest.fixture
def env(rh: Any, request: pytest.FixtureRequest) -> Iterator[Env]:
    core._reset_for_tests()
    notify._reset_for_tests()
    pool.__init__()  # type: ignore[misc]
    malloc_module.count = 0
    if "test" not in _modules:
        register_module(test_module)
    # The bdev layer's own tests count every I/O a bdev sees: for them, hide modules that read
    # new bdevs on examine (lvol, raid look for their super blocks) when another test file has
    # loaded them. Module tests that reuse this fixture (raid, lvol) keep them.
    own = request.path.parent.name == "bdev"
    readers = {n: m for n, m in _modules.items() if own and m.has_examine_disk() and n != "test"}
    for n in readers:
        del _modules[n]
    try:
        yield Env(rh)
    finally:
        _modules.update(readers)
        core._reset_for_tests()
