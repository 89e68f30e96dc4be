"""The JSON-RPC 2.0 server on a Unix socket, and the dispatcher behind it.

``Dispatcher`` turns one decoded request (object or batch array) into a response; it knows
nothing about sockets, so the config loader and tests call it directly. ``RpcServer``
owns the listening socket: one asyncio task per connection reads bytes, cuts them into
requests (``framing.JsonStreamDecoder``), and answers them one after another, so
pipelined requests are answered in order.

Handlers run on the app thread (see ``App.run_on_app_thread``): a plain function as a
message on that Thread; a coroutine as an asyncio task that makes the app thread current
for each of its steps. A slow handler awaits; it never blocks the reactor.
"""
from __future__ import annotations

import asyncio
import contextlib
import difflib
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from spydk.log import get_logger
from spydk.rpc import errors
from spydk.rpc.errors import RpcError
from spydk.rpc.framing import JsonStreamDecoder
from spydk.rpc.registry import AppContext, RpcContext, RpcMethod, State, all_methods, get_method

log = get_logger("rpc")

DEFAULT_SOCKET = "/var/tmp/spdk.sock"
# More than SPDK's 64: test suites open many clients at once. Extra ones are closed at once.
MAX_CONNECTIONS = 256
READ_CHUNK = 256 * 1024
# Bursts of clients (a test suite, a CSI node restart) connect faster than we accept.
LISTEN_BACKLOG = 1024

_JSON_TYPES_ID = (str, int, float, type(None))


def _error(id_: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}}


def state_name(state: State) -> str:
    return {State.STARTUP: "STARTUP", State.RUNTIME: "RUNTIME"}.get(state, "SHUTDOWN")


class Dispatcher:
    """Validates requests, checks the state, decodes params and runs handlers."""

    def __init__(self, app: AppContext):
        self.app = app
        self._warned_aliases: set[str] = set()
        # Set by a multi-core app: called after a method succeeded on the main reactor, before
        # the answer; applies it on the other reactors (or raises RpcError saying which failed).
        self.replicate: Callable[[str, Any, Any], Awaitable[None]] | None = None

    async def handle(self, req: Any, peer: Any = None) -> Any:
        """Response for one request or batch; None when nothing is to be sent back."""
        if isinstance(req, list):
            if not req:
                return _error(None, errors.INVALID_REQUEST, "empty batch: a batch must hold at least one request")
            out = []
            for r in req:
                resp = await self._one(r, peer)
                if resp is not None:
                    out.append(resp)
            return out or None
        return await self._one(req, peer)

    async def _one(self, req: Any, peer: Any) -> dict[str, Any] | None:
        if not isinstance(req, dict):
            return _error(None, errors.INVALID_REQUEST, "a request must be a JSON object")
        id_ = req.get("id")
        notification = "id" not in req
        if not isinstance(id_, _JSON_TYPES_ID) or isinstance(id_, bool):
            return _error(None, errors.INVALID_REQUEST, "'id' must be a string, a number or null")
        if "jsonrpc" in req and req["jsonrpc"] != "2.0":
            return _error(id_, errors.INVALID_REQUEST, "'jsonrpc' must be \"2.0\"")
        method = req.get("method")
        if not isinstance(method, str):
            return _error(id_, errors.INVALID_REQUEST, "'method' must be a string")
        params = req.get("params")
        if params is not None and not isinstance(params, dict | list):
            return _error(id_, errors.INVALID_REQUEST, "'params' must be an object, an array or null")
        extra = set(req) - {"jsonrpc", "id", "method", "params"}
        if extra:
            return _error(id_, errors.INVALID_REQUEST, f"unknown member(s) in request: {', '.join(sorted(extra))}")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rpc request id=%r method=%s params=%s", id_, method, json.dumps(params)[:2000])
        try:
            result = await self.call(method, params, id_=id_, peer=peer)
        except RpcError as e:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("rpc error id=%r method=%s code=%d: %s", id_, method, e.code, e.message)
            return None if notification else _error(id_, e.code, e.message)
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    def lookup(self, method: str) -> RpcMethod:
        m = get_method(method)
        if m is None:
            names = [x.name for x in all_methods(include_aliases=True)]
            close = difflib.get_close_matches(method, names, n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; rpc_get_methods lists them"
            raise RpcError(errors.METHOD_NOT_FOUND, f"Method not found: {method!r}{hint}")
        return m

    def check_state(self, m: RpcMethod) -> None:
        state = self.app.rpc_state
        if self.app.shutting_down:
            raise RpcError(errors.INVALID_STATE,
                           f"method {m.name!r} refused: the application is shutting down")
        if m.states & state:
            return
        if state == State.STARTUP:
            raise RpcError(errors.INVALID_STATE,
                           f"method {m.name!r} may only be called after the subsystems are initialized "
                           f"(current state: STARTUP, the app was started with --wait-for-rpc); "
                           f"call framework_start_init first")
        raise RpcError(errors.INVALID_STATE,
                       f"method {m.name!r} may only be called before the subsystems are initialized "
                       f"(current state: RUNTIME); start the app with --wait-for-rpc and call it "
                       f"before framework_start_init, or put it in the --json config")

    async def call(self, method: str, params: Any, *, id_: Any = None, peer: Any = None) -> Any:
        """Run one method with JSON params; returns its JSON result or raises RpcError."""
        m = self.lookup(method)
        self.check_state(m)
        if m.deprecated_alias_of and method not in self._warned_aliases:
            self._warned_aliases.add(method)
            log.warning("RPC method %s is deprecated; use %s", method, m.deprecated_alias_of)
        if isinstance(params, list):
            if params:
                raise RpcError(errors.INVALID_PARAMS,
                               f"{method}: parameters must be passed by name (an object), not as an array")
            params = None
        kwargs = m.schema.decode(params)
        ctx = RpcContext(self.app, method=method, request_id=id_, peer=peer)
        try:
            result = await self.app.run_on_app_thread(m.handler, ctx, **kwargs)
        except RpcError:
            raise
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            log.error("RPC %s failed with an unexpected %s", method, type(e).__name__, exc_info=True)
            raise RpcError(errors.INTERNAL_ERROR, f"{method}: internal error: {type(e).__name__}: {e}") from e
        if self.replicate is not None:
            await self.replicate(method, params, result)
        return result


class SocketInUse(Exception):
    pass


def _probe(path: str) -> bool:
    """True when something accepts connections at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class RpcServer:
    """Listens on a Unix socket and serves JSON-RPC requests through a Dispatcher."""

    def __init__(self, dispatcher: Dispatcher, path: str = DEFAULT_SOCKET,
                 max_connections: int = MAX_CONNECTIONS):
        self.dispatcher = dispatcher
        self.path = path
        self.max_connections = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections in the middle of a request
        self._lock_fd: int | None = None
        self.accepting = False
        self._closing = False

    async def start(self) -> None:
        """claim() (unless done) and listen."""
        if self._lock_fd is None:
            self.claim()
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path, limit=READ_CHUNK,
                                                              backlog=LISTEN_BACKLOG)
        except OSError as e:
            self._release_lock()
            raise SocketInUse(f"cannot listen on RPC socket {self.path}: {e.strerror}") from e
        self.accepting = True

    def claim(self) -> None:
        """Lock <path>.lock like SPDK; refuse a live server, remove a stale socket file.

        Raises SocketInUse. Separate from start() so an app checks this before it sets up
        anything else."""
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise SocketInUse(f"cannot create {lock_path}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SocketInUse(f"RPC socket {self.path} is in use by another running application "
                                  f"(it holds {lock_path}); stop it or pass -r/--rpc-socket PATH") from None
            raise SocketInUse(f"cannot lock {lock_path}: {e.strerror}") from e
        self._lock_fd = fd
        if os.path.exists(self.path):
            if _probe(self.path):
                self._release_lock()
                raise SocketInUse(f"RPC socket {self.path} is in use by a live server; stop it or pass "
                                  f"-r/--rpc-socket PATH")
            log.info("removing stale RPC socket %s", self.path)
            os.unlink(self.path)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path + ".lock")
            os.close(self._lock_fd)
            self._lock_fd = None

    def stop_accepting(self) -> None:
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening; connections waiting for a request are closed at once, those in the
        middle of one finish it and send the answer (bounded by ``grace`` seconds)."""
        self.stop_accepting()
        self._closing = True
        for t in self._conns - self._busy:
            t.cancel()
        if self._conns:
            _, pending = await asyncio.wait(set(self._conns), timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._release_lock()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= self.max_connections or not self.accepting:
            log.warning("refusing RPC connection: %d connections open (limit %d)",
                        len(self._conns), self.max_connections)
            writer.close()
            return
        self._conns.add(task)
        self._writers.add(writer)
        try:
            await self._connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # the server outlives any one bad connection
            log.error("RPC connection failed", exc_info=True)
        finally:
            self._conns.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = JsonStreamDecoder()
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            data = await reader.read(READ_CHUNK)
            if not data:
                return
            requests = decoder.feed(data)
            failure = decoder.error
            self._busy.add(task)
            try:
                for req in requests:
                    resp = await self.dispatcher.handle(req, peer=None)
                    if resp is not None:
                        await self._send(writer, resp)
                if failure is not None:
                    code = errors.INVALID_REQUEST if failure.invalid_request else errors.PARSE_ERROR
                    log.info("closing RPC connection: %s", failure.message)
                    await self._send(writer, _error(None, code, failure.message + "; closing the connection"))
                    return
            finally:
                self._busy.discard(task)

    async def _send(self, writer: asyncio.StreamWriter, resp: Any) -> None:
        try:
            data = json.dumps(resp).encode()
        except (TypeError, ValueError) as e:
            ids = [r.get("id") for r in resp] if isinstance(resp, list) else resp.get("id")
            log.error("RPC result is not JSON-serializable: %s", e)
            data = json.dumps(_error(ids if not isinstance(ids, list) else None, errors.INTERNAL_ERROR,
                                     f"internal error: result is not JSON-serializable: {e}")).encode()
        writer.write(data + b"\n")
        await writer.drain()

