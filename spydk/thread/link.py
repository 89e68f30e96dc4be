"""A link between two reactors of one app: the wire codec on a Unix socketpair.

Frames queued during a loop turn leave in one ``sendmsg`` (batched), descriptors with them
(SCM_RIGHTS). Calls are named operations looked up in a handler table (``ops``); a handler
gets the call's arguments and ``fds=`` (the descriptors that came with it, now owned by the
handler) and returns a value or an awaitable; the value (or the exception's message) goes
back to the caller's future.

    link = Link(sock, loop, ops, on_close=lost)
    fut = link.call("reactor_stats")             # -> asyncio.Future
    link.notify("conn", "nvmf", fds=[fd])        # fire and forget, the fd passed along

Handlers are run through ``run``: the app wraps it so a handler runs on a spydk Thread.
"""
from __future__ import annotations

import array
import asyncio
import inspect
import os
import pickle
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from spydk.log import get_logger
from spydk.thread.wire import (
    KIND_CALL,
    KIND_ERROR,
    KIND_NOTIFY,
    KIND_REPLY,
    MAX_FDS,
    FrameDecoder,
    FrameEncoder,
    WireError,
)

log = get_logger("thread")

Handler = Callable[..., Any]
Runner = Callable[[Callable[[], Any]], Awaitable[Any]]


class RemoteError(Exception):
    """The handler on the other reactor raised; the message is its error."""


class LinkClosed(ConnectionError):
    """The other reactor's process is gone (or the link was closed)."""


async def _run_inline(fn: Callable[[], Any]) -> Any:
    res = fn()
    if inspect.isawaitable(res):
        res = await res
    return res


class Link:
    RECV_SIZE = 256 << 10

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, ops: dict[str, Handler],
                 *, name: str = "link", run: Runner = _run_inline,
                 on_close: Callable[[str], None] | None = None, inline: frozenset[str] | set[str] = frozenset()):
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop
        self.ops = ops
        self.name = name
        self._run = run
        self._inline = inline   # ops cheap and safe to run right in the read callback (no task)
        self._on_close = on_close
        self._enc = FrameEncoder()
        self._dec = FrameDecoder()
        self._out: list[bytes] = []          # frames of this loop turn
        self._out_fds: list[int] = []
        # bytes a full socket did not take, in segments: [data, descriptors still to pass with it]
        self._backlog: deque[list[Any]] = deque()
        self._flush_scheduled = False
        self._next_id = 1
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.closed = False
        self.frames_in = 0
        self.frames_out = 0
        self.batches_out = 0
        loop.add_reader(sock.fileno(), self._readable)

    # -- sending ----------------------------------------------------------------------

    def call(self, op: str, *args: Any, fds: list[int] | tuple[int, ...] = ()) -> asyncio.Future[Any]:
        """Run ``op`` on the other reactor; the future gets its result (or RemoteError/LinkClosed)."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.closed:
            fut.set_exception(LinkClosed(f"{self.name}: the other reactor is gone; cannot call {op!r}"))
            return fut
        cid = self._next_id
        self._next_id = (cid + 1) & 0xFFFFFFFF or 1
        self._calls[cid] = fut
        self._queue(KIND_CALL, cid, pickle.dumps((op, args), pickle.HIGHEST_PROTOCOL), fds)
        return fut

    def notify(self, op: str, *args: Any, fds: list[int] | tuple[int, ...] = ()) -> None:
        """Run ``op`` on the other reactor, no answer (a cross-reactor message)."""
        if self.closed:
            raise LinkClosed(f"{self.name}: the other reactor is gone; cannot send {op!r}")
        self._queue(KIND_NOTIFY, 0, pickle.dumps((op, args), pickle.HIGHEST_PROTOCOL), fds)

    def _queue(self, kind: int, cid: int, payload: bytes, fds: list[int] | tuple[int, ...]) -> None:
        bufs, fdl = self._enc.frame(kind, cid, payload, fds)
        if fdl and self._out_fds:
            self._flush()   # descriptors ride on the first byte of a sendmsg: one frame's worth per batch
        self._out += bufs
        self._out_fds += fdl
        self.frames_out += 1
        if fdl:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def flush(self) -> None:
        """Send what is queued now instead of at the end of this loop turn."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._out:
            return
        bufs, fds = self._out, self._out_fds
        self._out, self._out_fds = [], []
        if self._backlog:   # the writer callback drains it; keep order, descriptors with their bytes
            self._park(b"".join(bufs), fds)
            return
        if len(bufs) > 64:   # IOV_MAX is 1024; one joined buffer is cheaper than many small ones anyway
            bufs = [b"".join(bufs)]
        total = sum(len(b) for b in bufs)
        try:
            sent = self.sock.sendmsg(bufs, self._rights(fds))
        except (BlockingIOError, InterruptedError):
            sent = 0   # nothing left, descriptors included: they wait with their bytes
        except OSError as e:
            self._lost(f"send failed: {e}")
            return
        self.batches_out += 1
        if sent < total:
            self._park(b"".join(bufs)[sent:], [] if sent else fds)
            self.loop.add_writer(self.sock.fileno(), self._writable)

    @staticmethod
    def _rights(fds: list[int]) -> list[tuple[int, int, array.array[int]]]:
        return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []

    def _park(self, data: bytes, fds: list[int]) -> None:
        """Queue bytes the socket did not take. A segment's descriptors leave with its first
        byte, so bytes with descriptors start a segment of their own; plain bytes join the
        last segment."""
        if fds or not self._backlog:
            self._backlog.append([bytearray(data), fds])
        else:
            self._backlog[-1][0] += data

    def _writable(self) -> None:
        while self._backlog:
            seg = self._backlog[0]
            data, fds = seg
            try:
                sent = self.sock.sendmsg([data], self._rights(fds)) if fds else self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._lost(f"send failed: {e}")
                return
            seg[1] = []   # passed with the first byte
            del data[:sent]
            if data:
                return
            self._backlog.popleft()
        self.loop.remove_writer(self.sock.fileno())
        if self._out:
            self._flush()

    # -- receiving --------------------------------------------------------------------

    def _readable(self) -> None:
        fds: list[int] = []
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(self.RECV_SIZE, socket.CMSG_SPACE(MAX_FDS * 4 * 8))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(f"receive failed: {e}")
            return
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(cdata[: len(cdata) - len(cdata) % a.itemsize])
                fds.extend(a)
        if fds:
            self._dec.add_fds(fds)
        if not data:
            self._lost("the other end closed the link")
            return
        try:
            frames = self._dec.feed(data)
        except WireError as e:
            self._lost(str(e))
            return
        self.frames_in += len(frames)
        for f in frames:
            if f.kind in (KIND_REPLY, KIND_ERROR):
                fut = self._calls.pop(f.call_id, None)
                if fut is None or fut.done():
                    continue
                if f.kind == KIND_REPLY:
                    fut.set_result(pickle.loads(f.payload))
                else:
                    fut.set_exception(RemoteError(pickle.loads(f.payload)))
                continue
            op, args = pickle.loads(f.payload)
            self._dispatch(f.kind, f.call_id, op, args, f.fds)

    def _dispatch(self, kind: int, cid: int, op: str, args: tuple[Any, ...], fds: list[int]) -> None:
        fn = self.ops.get(op)
        if fn is None:
            for fd in fds:
                os.close(fd)
            msg = f"{self.name}: no operation {op!r} on this reactor (known: {', '.join(sorted(self.ops))})"
            if kind == KIND_CALL:
                self._queue(KIND_ERROR, cid, pickle.dumps(msg), ())
            else:
                log.error("%s", msg)
            return
        if op in self._inline:
            try:
                res = fn(*args, fds=fds)
            except Exception as e:
                if kind == KIND_CALL:
                    self._queue(KIND_ERROR, cid, pickle.dumps(f"{op}: {e}"), ())
                else:
                    log.error("%s: operation %s failed: %s", self.name, op, e)
                return
            if kind != KIND_CALL:
                return
            if not inspect.isawaitable(res):
                self._queue(KIND_REPLY, cid, pickle.dumps(res, pickle.HIGHEST_PROTOCOL), ())
                return
            task = asyncio.ensure_future(res, loop=self.loop)
        else:
            task = asyncio.ensure_future(self._run(lambda: fn(*args, fds=fds)), loop=self.loop)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, kind, cid, op))

    def _done(self, task: asyncio.Future[Any], kind: int, cid: int, op: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            err: BaseException | None = LinkClosed("cancelled")
        else:
            err = task.exception()
        if kind != KIND_CALL:
            if err is not None and not isinstance(err, LinkClosed):
                log.error("%s: operation %s failed: %s", self.name, op, err)
            return
        if self.closed:
            return
        if err is not None:
            self._queue(KIND_ERROR, cid, pickle.dumps(f"{op}: {err}"), ())
            return
        try:
            payload = pickle.dumps(task.result(), pickle.HIGHEST_PROTOCOL)
        except Exception as e:   # an unpicklable result is the handler's bug: say which
            self._queue(KIND_ERROR, cid, pickle.dumps(f"{op}: result cannot cross reactors: {e}"), ())
            return
        self._queue(KIND_REPLY, cid, payload, ())

    # -- end --------------------------------------------------------------------------

    def _lost(self, why: str) -> None:
        if self.closed:
            return
        self.close()
        if self._on_close is not None:
            self._on_close(why)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.sock.fileno()
        if fd >= 0:
            self.loop.remove_reader(fd)
            if self._backlog:
                self.loop.remove_writer(fd)
        self.sock.close()
        for fd in self._dec.pending_fds():
            os.close(fd)
        calls, self._calls = self._calls, {}
        for fut in calls.values():
            if not fut.done():
                fut.set_exception(LinkClosed(f"{self.name}: the other reactor went away before answering"))
