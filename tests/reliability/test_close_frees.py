"""A closed NVMe/TCP or iSCSI connection is freed when it closes, not when the cyclic garbage
collector next runs: with the collector disabled, every connection object (and its codec,
queue pair and receive buffers) must be gone once the target has seen the close.  A reference
cycle anywhere in a connection's objects keeps them all, buffers included, until a collection
(docs/reliability.md, "Connections held at once")."""
from __future__ import annotations

import gc
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from spydk.iscsi import conn as iscsi_conn
from spydk.iscsi import socket_io
from spydk.nvmf.transports import tcp as transport_tcp
from tests.reliability.test_limits import Target
from tests.reliability.test_limits import tgt as tgt  # noqa: F401  (the module's target)

ROUNDS = 10  # NVMe/TCP host (admin + I/O queue) and iSCSI session opened, used, closed


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[weakref.ref[Any]]]:
    """Weak references to every connection object created while the test runs."""
    refs: list[weakref.ref[Any]] = []
    for cls in (transport_tcp.TcpConnection, socket_io.IscsiProtocol, iscsi_conn.Connection):
        orig = cls.__init__

        def init(self: Any, *a: Any, _orig: Any = orig, **k: Any) -> None:
            _orig(self, *a, **k)
            refs.append(weakref.ref(self))
        monkeypatch.setattr(cls, "__init__", init)
    yield refs


def alive(refs: list[weakref.ref[Any]]) -> list[str]:
    return [type(o).__name__ for o in (r() for r in refs) if o is not None]


def test_closed_connections_are_freed_without_the_cyclic_gc(
        tgt: Target, watched: list[weakref.ref[Any]]) -> None:  # noqa: F811
    gc.collect()
    tracemalloc.start()
    gc.disable()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(ROUNDS):
            tgt.nvme_verify()
            tgt.iscsi_verify()
        # The clients have closed; the target handles each close on its own thread.
        deadline = time.monotonic() + 20
        while alive(watched) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = alive(watched)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        gc.enable()
        tracemalloc.stop()
    print(f"closed-connection objects alive: {len(left)}; traced memory grew by {grown} bytes")
    assert len(watched) >= 4 * ROUNDS  # 2 TcpConnections, an IscsiProtocol and a Connection each
    assert not left, f"{len(left)} closed connection objects still alive without gc.collect(): {left}"
    # Each NVMe/TCP connection alone held about 260 KiB of receive buffers until a collection.
    assert grown < 1 << 20, f"traced memory grew by {grown} bytes over {ROUNDS} rounds"
