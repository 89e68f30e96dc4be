"""Fixtures: a malloc bdev opened as a blobstore device, and helpers to run blobstore
coroutines and blob I/O on the app thread."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import spydk.bdev  # noqa: F401  (registers the modules)
from spydk.apps.app import on_thread
from spydk.bdev import open_ext
from spydk.bdev import registry as core
from spydk.blob import OP_READ, OP_WRITE, BdevBsDev, Blob, Blobstore
from spydk.modules.bdev.malloc import create_malloc_disk


class BlobEnv:
    def __init__(self, rh: Any):
        self.rh = rh
        self.thread = rh.thread

    def run(self, coro: Any) -> Any:
        return self.rh.run(on_thread(coro, self.thread))

    def call(self, fn: Any, *args: Any) -> Any:
        return self.rh.run(self.rh.reactor.call_on(self.thread, fn, *args))

    def malloc(self, name: str = "M0", size_mb: int = 64, block_size: int = 512) -> BdevBsDev:
        self.call(create_malloc_disk, name, block_size, size_mb * 1024 * 1024 // block_size)
        return self.dev(name)

    def dev(self, name: str) -> BdevBsDev:
        def mk() -> BdevBsDev:
            desc = open_ext(name, True, lambda *a: None)
            return BdevBsDev(desc, self.thread)
        return self.call(mk)  # type: ignore[no-any-return]

    def io(self, bs: Blobstore, blob: Blob, op: int, offset: int, data_or_len: Any) -> tuple[bool, bytes]:
        out: dict[str, Any] = {}
        bsz = bs.block_size
        if op == OP_READ:
            buf = bytearray(data_or_len)
        else:
            buf = bytearray(data_or_len)

        def go() -> None:
            ch = bs.channel(self.thread)
            out["ch"] = ch

            def cb(ok: bool, _a: Any) -> None:
                out["ok"] = ok
            rc = blob.submit(ch, op, [memoryview(buf)], offset // bsz, len(buf) // bsz, cb, None)
            if rc:
                out["ok"] = False
        self.call(go)
        self.rh.run_until(lambda: "ok" in out)
        self.call(out["ch"].close)
        return out["ok"], bytes(buf)

    def write(self, bs: Blobstore, blob: Blob, offset: int, data: bytes) -> None:
        ok, _ = self.io(bs, blob, OP_WRITE, offset, data)
        assert ok

    def read(self, bs: Blobstore, blob: Blob, offset: int, length: int) -> bytes:
        ok, data = self.io(bs, blob, OP_READ, offset, length)
        assert ok
        return data


@pytest.fixture
def benv(rh: Any) -> Iterator[BlobEnv]:
    core._reset_for_tests()
    yield BlobEnv(rh)
    core._reset_for_tests()
