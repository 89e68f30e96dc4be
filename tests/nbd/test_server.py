"""The NBD server over a bdev, in memory: a client codec talks to NbdConnection through a
fake transport; several connections share one export."""
from __future__ import annotations

import os
import struct
from typing import Any

from spydk.bdev import get_bdev
from spydk.nbd import spec
from spydk.nbd.server import NbdConnection, NbdServer
from tests.bdev.conftest import Env
from tests.raid.conftest import rpc

from .client import Parser, go, hello, option, request


class FakeTransport:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = False
        self.paused = False

    def writelines(self, bufs: Any) -> None:
        for b in bufs:
            self.sent += bytes(b)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, key: str) -> Any:
        return ("10.0.0.1", 1234) if key == "peername" else None


class Client:
    def __init__(self, env: Env, srv: NbdServer):
        self.env = env
        self.t = FakeTransport()
        self.conn = NbdConnection(srv)
        self.conn.connection_made(self.t)  # type: ignore[arg-type]
        self.p = Parser()

    def send(self, data: bytes) -> None:
        mv = memoryview(data)
        while len(mv):
            view = self.conn.get_buffer(-1)
            n = min(len(view), len(mv))
            view[:n] = mv[:n]
            mv = mv[n:]
            self.conn.buffer_updated(n)

    def pump(self, n: int) -> None:
        def have() -> bool:
            self.p.feed(bytes(self.t.sent))
            self.t.sent.clear()
            return len(self.p.buf) >= n
        self.env.until(have)


def test_two_connections_write_read_trim_flush(env: Env) -> None:
    rpc(env, "bdev_malloc_create", {"name": "M0", "num_blocks": 2048, "block_size": 512})
    srv = NbdServer()
    srv.add_export("disk", "M0")
    a, b = Client(env, srv), Client(env, srv)
    for c, structured in ((a, True), (b, False)):
        c.send(hello() + (option(spec.OPT_STRUCTURED_REPLY) if structured else b"") + go("disk"))
        c.pump(18)
        c.p.greeting()
        while True:
            c.pump(20)
            r = c.p.option_reply()
            assert r is not None
            if r[0] == spec.OPT_GO and r[1] == spec.REP_ACK:
                break
    data = os.urandom(8192)
    a.send(request(spec.CMD_WRITE, 1, 4096, 8192, data) + request(spec.CMD_FLUSH, 2, 0, 0))
    a.pump(40)
    assert a.p.chunk() == (1, spec.REPLY_TYPE_NONE, 1, b"")
    assert a.p.chunk() == (1, spec.REPLY_TYPE_NONE, 2, b"")
    b.send(request(spec.CMD_READ, 3, 4096, 8192))     # the other connection sees it
    b.pump(16 + 8192)
    assert b.p.simple_reply(8192) == (0, 3, data)
    b.send(request(spec.CMD_WRITE_ZEROES, 4, 4096, 4096) + request(spec.CMD_READ, 5, 4096, 8192))
    b.pump(16 + 16 + 8192)
    assert b.p.simple_reply() == (0, 4, b"")
    assert b.p.simple_reply(8192) == (0, 5, bytes(4096) + data[4096:])
    a.send(request(spec.CMD_READ, 6, 1 << 20, 512))   # beyond the end: refused, still connected
    a.pump(20)
    flags, typ, cookie, payload = a.p.chunk()  # type: ignore[misc]
    assert (typ, cookie, struct.unpack(">I", payload[:4])[0]) == (spec.REPLY_TYPE_ERROR, 6, spec.EINVAL)
    a.send(request(spec.CMD_READ, 7, 0, 512, magic=0x1))   # garbage: this connection ends
    env.until(lambda: a.t.closed)
    b.send(request(spec.CMD_READ, 8, 4096, 512))
    b.pump(16 + 512)
    assert b.p.simple_reply(512)[2] == bytes(512)  # type: ignore[index]
    b.send(request(spec.CMD_DISC, 9, 0, 0))
    env.until(lambda: b.t.closed)
    for c in (a, b):
        c.conn.connection_lost(None)
    env.drain()
    assert not get_bdev("M0")._descs  # type: ignore[union-attr]


def test_export_removed_disconnects_its_clients(env: Env) -> None:
    rpc(env, "bdev_malloc_create", {"name": "M1", "num_blocks": 64, "block_size": 512})
    srv = NbdServer()
    srv.add_export("x", "M1")
    c = Client(env, srv)
    c.send(hello() + option(spec.OPT_EXPORT_NAME, b"x"))
    c.pump(18 + 10)
    srv.remove_export("x")
    env.until(lambda: c.t.closed)
    c.conn.connection_lost(None)
    assert srv.lookup("x") is None
