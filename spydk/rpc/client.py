"""JSON-RPC clients for spydk (and SPDK) applications.

    with Client("/var/tmp/spdk.sock") as c:
        c.call("bdev_get_bdevs", {"name": "Malloc0"})
        c.bdev_get_bdevs(name="Malloc0")          # same; None-valued arguments are left out

    async with AsyncClient("/var/tmp/spdk.sock") as c:
        await c.call("spdk_get_version")
        await asyncio.gather(c.bdev_get_bdevs(), c.thread_get_stats())   # pipelined

Server errors raise ``RpcError`` (code, message). Transport problems raise ``ClientError``:
``NoServerError`` when nothing listens at the path, ``RpcTimeout`` when no answer comes.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from spydk.rpc.errors import RpcError
from spydk.rpc.framing import MAX_REQUEST, JsonStreamDecoder

DEFAULT_SOCKET = "/var/tmp/spdk.sock"
DEFAULT_TIMEOUT = 60.0
# Responses can be larger than requests (bdev_get_bdevs with many bdevs).
MAX_RESPONSE = 16 * MAX_REQUEST


class ClientError(Exception):
    """The call could not be made or completed (no server, closed connection, timeout)."""


class NoServerError(ClientError):
    def __init__(self, path: str):
        super().__init__(f"no SPDK application is listening at {path}; start one with `spydk tgt` or pass -s PATH")
        self.path = path


class RpcTimeout(ClientError):
    pass


def _strip_none(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _request(method: str, params: Any, id_: int) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params:
        req["params"] = params
    return req


def _result(resp: Any, method: str) -> Any:
    if not isinstance(resp, dict):
        raise ClientError(f"{method}: malformed response from the server: {resp!r:.200}")
    err = resp.get("error")
    if err is not None:
        code = err.get("code", 0) if isinstance(err, dict) else 0
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        raise RpcError(code, message)
    return resp.get("result")


def _connect_error(path: str, e: OSError) -> ClientError:
    if isinstance(e, FileNotFoundError | ConnectionRefusedError):
        return NoServerError(path)
    return ClientError(f"cannot connect to {path}: {e.strerror or e}")


class Client:
    """Blocking client over a Unix socket; one request at a time."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT, *,
                 connect_retries: int = 0):
        self.path = path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._decoder = JsonStreamDecoder(MAX_RESPONSE)
        self._ready: list[Any] = []
        self._sock: socket.socket | None = None
        for attempt in range(connect_retries + 1):
            try:
                self._connect()
                break
            except NoServerError:
                if attempt == connect_retries:
                    raise
                time.sleep(0.2)

    def _connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise _connect_error(self.path, e) from None
        self._sock = s

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result; raises RpcError or ClientError."""
        id_ = next(self._ids)
        resp = self._roundtrip(json.dumps(_request(method, params, id_)).encode(), method)
        return _result(resp, method)

    def call_batch(self, calls: list[tuple[str, dict[str, Any] | None]]) -> list[Any]:
        """Send a JSON-RPC batch; returns the response objects (results and errors) in order."""
        reqs = [_request(m, p, next(self._ids)) for m, p in calls]
        resp = self._roundtrip(json.dumps(reqs).encode(), "batch")
        if not isinstance(resp, list):
            raise ClientError(f"batch: expected an array of responses, got {resp!r:.200}")
        by_id = {r.get("id"): r for r in resp if isinstance(r, dict)}
        return [by_id.get(r["id"]) for r in reqs]

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests of the server's framing)."""
        if self._sock is None:
            raise ClientError("the connection is closed")
        self._sock.sendall(data)

    def recv_response(self, what: str = "response") -> Any:
        """Wait for the next JSON value from the server."""
        if self._ready:
            return self._ready.pop(0)
        sock = self._sock
        if sock is None:
            raise ClientError("the connection is closed")
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RpcTimeout(f"{what}: no answer from {self.path} within {self.timeout:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(256 * 1024)
            except TimeoutError:
                raise RpcTimeout(f"{what}: no answer from {self.path} within {self.timeout:g} s") from None
            except OSError as e:
                self.close()
                raise ClientError(f"{what}: connection to {self.path} failed: {e.strerror or e}") from None
            if not data:
                self.close()
                raise ClientError(f"{what}: {self.path} closed the connection without answering")
            self._ready.extend(self._decoder.feed(data))
            if self._decoder.error is not None:
                self.close()
                raise ClientError(f"{what}: unreadable answer from {self.path}: {self._decoder.error}")
            if self._ready:
                return self._ready.pop(0)

    def _roundtrip(self, data: bytes, what: str) -> Any:
        if self._sock is None:
            raise ClientError(f"{what}: the connection to {self.path} is closed")
        try:
            self._sock.sendall(data)
        except OSError as e:
            self.close()
            raise ClientError(f"{what}: cannot send to {self.path}: {e.strerror or e}") from None
        return self.recv_response(what)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def method(**kwargs: Any) -> Any:
            return self.call(name, _strip_none(kwargs))
        method.__name__ = name
        return method


class AsyncClient:
    """asyncio client; concurrent calls share one connection (pipelined, matched by id)."""

    def __init__(self, path: str = DEFAULT_SOCKET, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._read_task: asyncio.Task[None] | None = None
        self._closed_error: ClientError | None = None

    async def connect(self) -> AsyncClient:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(self.path, limit=256 * 1024)
        except OSError as e:
            raise _connect_error(self.path, e) from None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._read_task is not None:
            self._read_task.cancel()
            try:
                await self._read_task
            except (asyncio.CancelledError, Exception):
                pass
            self._read_task = None
        self._fail_all(ClientError("the connection was closed"))

    def _fail_all(self, err: ClientError) -> None:
        self._closed_error = err
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        decoder = JsonStreamDecoder(MAX_RESPONSE)
        while True:
            data = await self._reader.read(256 * 1024)
            if not data:
                self._fail_all(ClientError(f"{self.path} closed the connection"))
                return
            for resp in decoder.feed(data):
                key = resp.get("id") if isinstance(resp, dict) else (
                    resp[0].get("id") if isinstance(resp, list) and resp and isinstance(resp[0], dict) else None)
                fut = self._pending.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
            if decoder.error is not None:
                self._fail_all(ClientError(f"unreadable answer from {self.path}: {decoder.error}"))
                return

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self._writer is None:
            if self._closed_error is not None:
                raise self._closed_error
            await self.connect()
        assert self._writer is not None
        id_ = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        self._writer.write(json.dumps(_request(method, params, id_)).encode())
        try:
            await self._writer.drain()
            resp = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise RpcTimeout(f"{method}: no answer from {self.path} within {self.timeout:g} s") from None
        except OSError as e:
            raise ClientError(f"{method}: connection to {self.path} failed: {e.strerror or e}") from None
        finally:
            self._pending.pop(id_, None)
        return _result(resp, method)

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if name.startswith("_"):
            raise AttributeError(name)

        async def method(**kwargs: Any) -> Any:
            return await self.call(name, _strip_none(kwargs))
        method.__name__ = name
        return method
