"""The NBD network server: exports of spydk bdevs to any NBD client (qemu-img, nbd-client,
nbdcopy), over TCP listeners started by RPC. Not in SPDK, which only has the kernel export.

Each connection is an ``asyncio.BufferedProtocol`` feeding the sans-IO codec (codec.py)
and running the requests on the app thread's bdev channel of its export; replies go out
in one ``writelines`` per batch. Requests in flight per connection are capped
(``MAX_INFLIGHT``): beyond it the connection stops reading until replies went out.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass
from typing import Any

from spydk.bdev import BdevError, BdevEvent, BdevIO, get_bdev, open_ext
from spydk.bdev.io import FLUSH, UNMAP, WRITE_ZEROES
from spydk.nbd import spec
from spydk.nbd.codec import (
    Disconnect,
    Export,
    NbdServerConnection,
    ProtocolError,
    Request,
    TransmissionStarted,
)
from spydk.thread import Thread, get_reactor, set_thread

log = logging.getLogger("spydk.nbd")

MAX_INFLIGHT = 128


@dataclass
class ExportConfig:
    name: str
    bdev_name: str
    read_only: bool = False
    description: str = ""


class NbdServer:
    """Exports and listeners (one per process: ``server``)."""

    def __init__(self) -> None:
        self.exports: dict[str, ExportConfig] = {}
        self.listeners: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.connections: set[NbdConnection] = set()

    def lookup(self, name: str) -> Export | None:
        c = self.exports.get(name)
        if c is None and name == "" and len(self.exports) == 1:
            c = next(iter(self.exports.values()))     # the default export
        if c is None:
            return None
        b = get_bdev(c.bdev_name)
        if b is None:
            return None
        return Export(c.name, b.num_blocks * b.block_size, b.block_size, c.read_only,
                      can_trim=b.supports(UNMAP), can_write_zeroes=b.supports(WRITE_ZEROES),
                      can_flush=b.supports(FLUSH), description=c.description)

    def names(self) -> list[str]:
        return list(self.exports)

    def add_export(self, name: str, bdev_name: str, read_only: bool = False, description: str = "") -> None:
        if not name:
            raise BdevError(errno.EINVAL, "name must not be empty")
        if len(name.encode()) > spec.MAX_NAME:
            raise BdevError(errno.EINVAL, f"name is longer than {spec.MAX_NAME} bytes")
        if name in self.exports:
            raise BdevError(errno.EEXIST, f"NBD export {name!r} already exists")
        if get_bdev(bdev_name) is None:
            raise BdevError(errno.ENODEV, f"bdev_name {bdev_name!r}: bdev does not exist")
        self.exports[name] = ExportConfig(name, bdev_name, read_only, description)

    def remove_export(self, name: str) -> None:
        if self.exports.pop(name, None) is None:
            raise BdevError(errno.ENODEV, f"NBD export {name!r} does not exist")
        for c in list(self.connections):
            if c.export is not None and c.export.name == name:
                c.close(f"export {name} removed")

    async def listen(self, host: str, port: int) -> int:
        """Start a listener; returns the port (useful with port 0)."""
        if (host, port) in self.listeners:
            raise BdevError(errno.EEXIST, f"already listening on {host}:{port}")
        loop = asyncio.get_running_loop()
        try:
            srv = await loop.create_server(lambda: NbdConnection(self), host, port, reuse_address=True)
        except OSError as e:
            raise BdevError(e.errno or errno.EIO, f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        real = srv.sockets[0].getsockname()[1] if srv.sockets else port
        self.listeners[(host, real)] = srv
        log.info("NBD server listening on %s:%d", host, real)
        return int(real)

    async def stop_listen(self, host: str, port: int) -> None:
        srv = self.listeners.pop((host, port), None)
        if srv is None:
            raise BdevError(errno.ENODEV, f"no NBD listener on {host}:{port}")
        srv.close()
        await srv.wait_closed()

    async def stop(self) -> None:
        for key in list(self.listeners):
            await self.stop_listen(*key)
        for c in list(self.connections):
            c.close("server stopped")
        self.exports.clear()

    def config_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (host, port) in self.listeners:
            out.append({"method": "nbd_server_listen", "params": {"host": host, "port": port}})
        for c in self.exports.values():
            p: dict[str, Any] = {"name": c.name, "bdev_name": c.bdev_name, "read_only": c.read_only}
            if c.description:
                p["description"] = c.description
            out.append({"method": "nbd_server_start_export", "params": p})
        return out


server = NbdServer()


class NbdConnection(asyncio.BufferedProtocol):
    def __init__(self, srv: NbdServer, codec: NbdServerConnection | None = None, export: Export | None = None):
        self.srv = srv
        self.codec = codec or NbdServerConnection(srv.lookup, srv.names)
        self.transport: asyncio.Transport | None = None
        self.thread: Thread | None = None
        self.export: Export | None = export
        self.desc: Any = None
        self.ch: Any = None
        self.inflight = 0
        self.paused = False
        self.closing = False
        self.peer = ""
        self.lost = False
        self.on_closed: Any = None

    # -- asyncio -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.thread = get_reactor().app_thread
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.srv.connections.add(self)
        if self.export is not None:      # kernel export: transmission from the start
            self._run(self._open, self.export)
        self._flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.codec.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        events = self.codec.buffer_updated(nbytes)
        if events:
            self._run(self._handle, events)
        self._flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.lost = True
        self.srv.connections.discard(self)
        if self.inflight == 0:
            self._run(self._release)   # else when the last request in flight finishes

    # -- app thread ------------------------------------------------------------------------------

    def _run(self, fn: Any, *args: Any) -> None:
        prev = set_thread(self.thread)
        try:
            fn(*args)
        finally:
            set_thread(prev)

    def _handle(self, events: list[Any]) -> None:
        for ev in events:
            if type(ev) is Request:
                self._submit(ev)
            elif isinstance(ev, TransmissionStarted):
                self._open(ev.export)
            elif isinstance(ev, ProtocolError):
                log.warning("NBD %s: %s; closing the connection", self.peer, ev.message)
                self.close(ev.message)
            elif isinstance(ev, Disconnect):
                self.close(ev.reason)

    def _open(self, exp: Export) -> None:
        self.export = exp
        cfg = self.srv.exports.get(exp.name)
        name = cfg.bdev_name if cfg is not None else exp.name
        try:
            self.desc = open_ext(name, not exp.read_only, self._event)
        except BdevError as e:
            log.error("NBD %s: cannot open %s: %s", self.peer, name, e.message)
            self.close(e.message)
            return
        self.ch = self.desc.get_io_channel()

    def _event(self, ev: BdevEvent, bdev: Any, ctx: Any) -> None:
        if ev == BdevEvent.REMOVE:
            self.close(f"bdev {bdev.name} removed")

    def _submit(self, r: Request) -> None:
        d, ch = self.desc, self.ch
        if d is None or self.closing:
            self.codec.reply_error(r.cookie, spec.ESHUTDOWN, "export is gone")
            return
        bs = self.export.block_size if self.export else 512
        t = r.type
        self.inflight += 1
        if t == spec.CMD_READ:
            buf = bytearray(r.length)
            rc = d.read_blocks(ch, buf, r.offset // bs, r.length // bs, self._read_done, (r, buf))
        elif t == spec.CMD_WRITE:
            rc = d.write_blocks(ch, r.data, r.offset // bs, r.length // bs, self._done, r)
        elif t == spec.CMD_FLUSH:
            rc = d.flush_blocks(ch, 0, d.bdev.num_blocks, self._done, r)
        elif t == spec.CMD_TRIM:
            rc = d.unmap_blocks(ch, r.offset // bs, r.length // bs, self._done, r) if r.length else 0
            if not r.length:
                self._reply(r.cookie, 0)
        else:  # WRITE_ZEROES
            rc = d.write_zeroes_blocks(ch, r.offset // bs, r.length // bs, self._done, r) if r.length else 0
            if not r.length:
                self._reply(r.cookie, 0)
        if rc:
            self._reply(r.cookie, spec.ENOMEM if rc == -errno.ENOMEM else
                        spec.ENOTSUP if rc == -errno.ENOTSUP else spec.EIO)
        elif self.inflight >= MAX_INFLIGHT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _reply(self, cookie: int, err: int) -> None:
        self.inflight -= 1
        self.codec.reply(cookie, err)
        self._after_reply()

    def _after_reply(self) -> None:
        if self.paused and self.inflight < MAX_INFLIGHT // 2 and self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()
        self._flush()

    def _done(self, io: BdevIO, ok: bool, r: Request) -> None:
        self.inflight -= 1
        self.codec.reply(r.cookie, 0 if ok else spec.EIO)
        self._after_reply()

    def _read_done(self, io: BdevIO, ok: bool, arg: tuple[Request, bytearray]) -> None:
        r, buf = arg
        self.inflight -= 1
        if ok:
            self.codec.reply_read(r.cookie, r.offset, buf)
        else:
            self.codec.reply_error(r.cookie, spec.EIO, "read failed")
        self._after_reply()

    def _flush(self) -> None:
        if self.lost:
            self.codec.data_to_send()
            if self.inflight == 0:
                self._release()
            return
        out = self.codec.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)
        if self.closing and self.inflight == 0 and self.transport is not None:
            self.transport.close()

    def close(self, why: str = "") -> None:
        if not self.closing:
            log.info("NBD %s: closing (%s)", self.peer, why)
        self.closing = True
        self._flush()

    def _release(self) -> None:
        if self.desc is not None:
            if self.ch is not None:
                self.desc.put_io_channel(self.ch)
                self.ch = None
            self.desc.close()
            self.desc = None
        if self.on_closed is not None:
            cb, self.on_closed = self.on_closed, None
            cb()
