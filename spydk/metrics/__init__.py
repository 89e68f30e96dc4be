"""Prometheus exporter: ``http://ADDR:PORT/metrics`` on the app's own event loop.

Opt-in: ``--metrics ADDR:PORT`` on the target apps, or the ``metrics_start_exporter`` /
``metrics_stop_exporter`` RPCs. It binds loopback addresses only unless asked with
``allow_remote`` (the endpoint has no authentication). The HTTP server is a small asyncio
server (no thread of its own, as library code must not start threads); each scrape
gathers the stats RPCs on the app thread (see collector.py) and the process metrics of
prometheus_client's ProcessCollector (memory, CPU, open files). prometheus_client and the
collector are imported when an exporter starts: the RPCs of this package are registered by every
target, which should not pay for an HTTP stack it may never serve.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spydk import log as spydk_log

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = spydk_log.get_logger("metrics")
MAX_REQUEST = 8192
READ_TIMEOUT_S = 10.0


class MetricsError(ValueError):
    """Bad address, refused bind, or exporter state (message says what to do)."""


def parse_address(text: str) -> tuple[str, int]:
    """"ADDR:PORT" or "[v6]:PORT" -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise MetricsError(f"{text!r}: write an IPv6 address as [ADDR]:PORT")
        port_s = rest[1:]
    else:
        host, sep, port_s = t.rpartition(":")
        if not sep:
            raise MetricsError(f"{text!r} has no port; write ADDR:PORT, e.g. 127.0.0.1:9464")
    try:
        port = int(port_s)
    except ValueError:
        raise MetricsError(f"{text!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise MetricsError(f"{text!r}: port {port} is out of range 0..65535")
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class _Bridge:
    """Collector for prometheus_client: yields what the last async gather produced."""

    def __init__(self) -> None:
        self.metrics: list[Any] = []

    def collect(self) -> Any:
        return iter(self.metrics)


@dataclass
class Exporter:
    app: Any
    host: str
    port: int
    server: asyncio.base_events.Server
    registry: CollectorRegistry
    bridge: _Bridge
    scrapes: int = 0

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}/metrics"

    def info(self) -> dict[str, Any]:
        return {"enabled": True, "address": self.host, "port": self.port, "url": self.url,
                "scrapes": self.scrapes}

    async def render(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        from spydk.metrics import collector
        self.bridge.metrics = await collector.collect(self.app)
        try:
            return generate_latest(self.registry)
        finally:
            self.bridge.metrics = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"not found; try /metrics\n"
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"only GET /metrics\n"
        else:
            path = parts[1].split("?", 1)[0]
            if path == "/metrics":
                from prometheus_client.exposition import CONTENT_TYPE_LATEST
                try:
                    body = await self.render()
                    status, ctype = "200 OK", CONTENT_TYPE_LATEST
                    self.scrapes += 1
                except Exception as e:  # a broken collector must not take the target down
                    log.error("metrics scrape failed: %s", e)
                    status, body = "500 Internal Server Error", f"scrape failed: {e}\n".encode()
            elif path == "/":
                status, ctype = "200 OK", "text/html; charset=utf-8"
                body = b'<html><body><a href="/metrics">spydk metrics</a></body></html>\n'
        hdr = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
               f"Connection: close\r\n\r\n").encode()
        try:
            writer.write(hdr if parts and parts[0] == "HEAD" else hdr + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


_exporter: Exporter | None = None
_starting = False


async def start(app: Any, address: str, port: int | None = None, *, allow_remote: bool = False) -> Exporter:
    """Start serving; ``address`` is "ADDR:PORT", or ADDR with ``port`` given."""
    global _exporter, _starting
    if _exporter is not None or _starting:
        cur = f" at {_exporter.url}" if _exporter else ""
        raise MetricsError(f"the metrics exporter is already running{cur}; stop it first "
                           f"(metrics_stop_exporter)")
    host, p = (address, port) if port is not None else parse_address(address)
    if not allow_remote and not is_loopback(host):
        raise MetricsError(f"refusing to serve metrics on non-loopback address {host!r}: the endpoint "
                           f"has no authentication; use 127.0.0.1, or allow it explicitly "
                           f"(--metrics-allow-remote, or allow_remote=true)")
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector
    _starting = True
    try:
        registry = CollectorRegistry(auto_describe=False)
        bridge = _Bridge()
        registry.register(bridge)  # type: ignore[arg-type]
        ProcessCollector(registry=registry)
        exp: Exporter | None = None

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            assert exp is not None
            await exp.handle(r, w)
        try:
            server = await asyncio.start_server(handle, host, p, limit=MAX_REQUEST, reuse_address=True)
        except OSError as e:
            raise MetricsError(f"cannot listen on {host}:{p}: {e.strerror or e}") from None
        bound = server.sockets[0].getsockname()[1] if server.sockets else p
        exp = Exporter(app, host, bound, server, registry, bridge)
        _exporter = exp
    finally:
        _starting = False
    spydk_log.notice(log, "serving Prometheus metrics at %s", exp.url)
    return exp


def stop_exporter() -> bool:
    """Stop serving (False when it was not running)."""
    global _exporter
    if _exporter is None:
        return False
    _exporter.server.close()
    spydk_log.notice(log, "stopped the metrics exporter at %s", _exporter.url)
    _exporter = None
    return True


def exporter() -> Exporter | None:
    return _exporter


__all__ = ["Exporter", "MetricsError", "exporter", "is_loopback", "parse_address", "start", "stop_exporter"]
