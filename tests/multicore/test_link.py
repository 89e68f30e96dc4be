"""Two links on a socketpair in one loop: calls, notifications, errors, descriptor passing."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from spydk.thread.link import Link, LinkClosed, RemoteError


def _pair(ops_a, ops_b, closed=None):
    loop = asyncio.get_running_loop()
    sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a = Link(sa, loop, ops_a, name="a", on_close=closed)
    b = Link(sb, loop, ops_b, name="b")
    return a, b


def test_call_reply_error_and_unknown_op():
    async def main():
        async def slow(x, *, fds):
            await asyncio.sleep(0)
            return x * 2

        def boom(*, fds):
            raise ValueError("no such bdev")
        a, b = _pair({}, {"double": lambda x, *, fds: x + x, "slow": slow, "boom": boom})
        assert await a.call("double", 21) == 42
        assert await a.call("slow", 4) == 8
        with pytest.raises(RemoteError, match="boom: no such bdev"):
            await a.call("boom")
        with pytest.raises(RemoteError, match="no operation 'nope'.*known: boom, double, slow"):
            await a.call("nope")
        a.close()
        b.close()
    asyncio.run(main())


def test_many_messages_are_batched():
    async def main():
        got = []
        a, b = _pair({}, {"m": lambda i, *, fds: got.append(i)})
        for i in range(1000):
            a.notify("m", i)
        await a.call("m", -1)
        assert got == [*range(1000), -1]
        assert a.batches_out < 10
        a.close()
        b.close()
    asyncio.run(main())


def test_descriptor_passing():
    async def main():
        r, w = os.pipe()

        def take(*, fds):
            (fd,) = fds
            os.write(fd, b"hello")
            os.close(fd)
            return True
        a, b = _pair({}, {"take": take})
        assert await a.call("take", fds=[w])
        os.close(w)
        assert os.read(r, 5) == b"hello"
        os.close(r)
        a.close()
        b.close()
    asyncio.run(main())


def test_peer_gone_fails_pending_calls_and_reports_once():
    async def main():
        lost = []
        never = asyncio.Event()
        a, b = _pair({}, {"hang": lambda *, fds: never.wait()}, closed=lost.append)
        fut = a.call("hang")
        await asyncio.sleep(0.01)
        b.close()
        with pytest.raises(LinkClosed, match="went away"):
            await fut
        assert lost == ["the other end closed the link"]
        with pytest.raises(LinkClosed):
            await a.call("hang")
        with pytest.raises(LinkClosed):
            a.notify("hang")
    asyncio.run(main())


def test_corrupt_stream_closes_the_link():
    async def main():
        lost = []
        loop = asyncio.get_running_loop()
        sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a = Link(sa, loop, {}, on_close=lost.append)
        sb.send(b"\x00" * 8 + b"\x09\x00\x00\x00")
        for _ in range(100):
            if lost:
                break
            await asyncio.sleep(0.01)
        assert lost and "kind 9" in lost[0]
        assert a.closed
        sb.close()
    asyncio.run(main())


def test_descriptors_queued_behind_a_backlog_go_with_their_own_frames():
    # A socket that cannot take a big message leaves a backlog; descriptors sent after it must
    # neither be lost nor ride on another frame's bytes.
    async def main():
        loop = asyncio.get_running_loop()
        sa, sb = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sa.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sb.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        got: list[tuple[str, bytes]] = []

        def take(tag, *, fds):
            for fd in fds:
                got.append((tag, os.read(fd, 16)))
                os.close(fd)
            if not fds:
                got.append((tag, b""))
        a = Link(sa, loop, {}, name="a")
        a.notify("take", "big" + "x" * (4 << 20))     # far more than the socket takes at once
        a.flush()
        assert a._backlog, "the test needs a backlog to exist"
        pipes = []
        for i in range(3):
            r, w = os.pipe()
            os.write(w, f"pipe{i}".encode())
            os.close(w)
            pipes.append(r)
            a.notify("take", f"fd{i}", fds=[r])
        a.notify("take", "last")
        b = Link(sb, loop, {"take": take}, name="b")   # the reader starts only now
        for _ in range(2000):
            if len(got) == 5:
                break
            await asyncio.sleep(0.001)
        assert [t[:3] for t, _ in got] == ["big", "fd0", "fd1", "fd2", "las"]
        assert [d for _, d in got[1:4]] == [b"pipe0", b"pipe1", b"pipe2"]
        for r in pipes:
            os.close(r)
        a.close()
        b.close()
    asyncio.run(main())
