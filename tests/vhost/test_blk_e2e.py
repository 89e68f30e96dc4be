"""spydk's virtio initiator bdev against spydk's vhost-blk controller, in one process over a
real Unix socket (SCM_RIGHTS, memfd, eventfds on the reactor)."""
from __future__ import annotations

import asyncio
import os
import socket

from spydk.bdev.awaitable import AsyncDesc
from spydk.modules.bdev.malloc import create_malloc_disk
from spydk.modules.bdev.virtio.virtio_blk import attach_blk
from spydk.vhost.blk import VhostBlkController
from spydk.vhost.codec import encode
from spydk.vhost.spec import U64, Req

from .conftest import Env


def _setup(env: Env, name: str = "vhost.0", bdev: str = "M0", blocks: int = 2048) -> VhostBlkController:
    def mk() -> VhostBlkController:
        create_malloc_disk(bdev, 512, blocks)
        c = VhostBlkController(name, env.sock_dir, bdev)
        c.listen()
        return c
    return env.call(mk)


async def _on_thread(env: Env, coro_fn):  # type: ignore[no-untyped-def]
    fut = env.rh.reactor.call_on(env.thread, lambda: asyncio.ensure_future(coro_fn()))
    return await (await fut)


def test_read_write_unmap_through_vhost(env: Env) -> None:
    ctrl = _setup(env)

    async def go() -> None:
        b = await attach_blk("VirtioBlk0", str(env.sock_dir / "vhost.0"), 1, 64)
        assert b.num_blocks == 2048 and b.block_size == 512
        a = await AsyncDesc.open("VirtioBlk0", write=True)
        pattern = os.urandom(256 * 1024)          # larger than a slot: the layer splits it
        await a.write(4096, pattern)
        assert await a.read(4096, len(pattern)) == pattern
        # the data reached the malloc disk behind the controller
        m = await AsyncDesc.open("M0")
        assert await m.read(4096, 4096) == pattern[:4096]
        await a.unmap(4096, 8192)
        assert await a.read(4096, 8192) == bytes(8192)
        await a.write_zeroes(4096 + 8192, 4096)
        assert await a.read(4096 + 8192, 4096) == bytes(4096)
        await a.flush()
        # many in flight at once: more than the queue's slots (NOMEM retry) and coalesced calls
        bufs = [os.urandom(4096) for _ in range(40)]
        await asyncio.gather(*(a.write(i * 4096, bufs[i]) for i in range(40)))
        got = await asyncio.gather(*(a.read(i * 4096, 4096) for i in range(40)))
        assert got == bufs
        await a.close()
        await m.close()
    env.run(_on_thread(env, go))
    assert ctrl.session is not None and ctrl.session.failed is None
    info = env.call(ctrl.info)
    assert info["backend_specific"]["block"]["bdev"] == "M0" and info["sessions"]


def test_malformed_front_end_fails_alone(env: Env) -> None:
    good = _setup(env, "good.0", "G0")
    bad = _setup(env, "bad.0", "B0")

    async def go() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(env.sock_dir / "bad.0"))
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(s, encode(Req.GET_FEATURES))
        hdr = await loop.sock_recv(s, 20)
        assert len(hdr) == 20
        # a request with version 2 in its flags: the connection is closed
        await loop.sock_sendall(s, b"\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00")
        assert await asyncio.wait_for(loop.sock_recv(s, 1), 5) == b""
        s.close()
        # the other controller still serves I/O, and the bad one accepts a new front end
        await attach_blk("V1", str(env.sock_dir / "good.0"), 1, 16)
        a = await AsyncDesc.open("V1", write=True)
        await a.write(0, b"x" * 512)
        assert await a.read(0, 512) == b"x" * 512
        await a.close()
        b2 = await attach_blk("V2", str(env.sock_dir / "bad.0"), 1, 16)
        assert b2.num_blocks == 2048
    env.run(_on_thread(env, go))
    assert good.session is not None and good.session.failed is None
    assert bad.session is not None


def test_set_features_with_unoffered_bits_closes(env: Env) -> None:
    _setup(env)

    async def go() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(env.sock_dir / "vhost.0"))
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(s, encode(Req.SET_FEATURES, U64.pack(1 << 63)))
        assert await asyncio.wait_for(loop.sock_recv(s, 1), 5) == b""
        s.close()
    env.run(_on_thread(env, go))


def test_requests_in_flight_fail_when_the_back_end_goes_away(env: Env) -> None:
    """The back end drops the connection while requests wait in a delay bdev behind it:
    they fail at once (they used to wait forever), later ones fail too."""
    from spydk.bdev import BdevError
    from spydk.modules.bdev.delay.delay import create_delay

    def mk() -> VhostBlkController:
        create_malloc_disk("M0", 512, 2048)
        create_delay("M0", "D0", 300_000, 300_000, 300_000, 300_000)
        c = VhostBlkController("vhost.0", env.sock_dir, "D0")
        c.listen()
        return c
    ctrl = env.call(mk)

    async def go() -> None:
        await attach_blk("VirtioBlk0", str(env.sock_dir / "vhost.0"), 1, 16)
        a = await AsyncDesc.open("VirtioBlk0", write=True)
        reads = [asyncio.ensure_future(a.read(i * 4096, 4096)) for i in range(8)]
        await asyncio.sleep(0.05)           # the requests reach the delay bdev
        ctrl.disconnect()
        results = await asyncio.wait_for(asyncio.gather(*reads, return_exceptions=True), 5)
        assert all(isinstance(r, BdevError) for r in results), results
        try:
            await a.read(0, 4096)
            raise AssertionError("a read after the connection loss succeeded")
        except BdevError:
            pass
        await a.close()
    env.run(_on_thread(env, go))


def test_malloc_requests_complete_within_their_kick(env: Env) -> None:
    """Reads and writes a malloc bdev finishes during submission complete inside the kick
    handler: no bdev completion message, no flush message (one wake-up per kick), and the
    interrupt still reaches the front end (its requests finish with the right data)."""
    ctrl = _setup(env)
    sent: list[str] = []
    flushes = [0]

    async def go() -> None:
        await attach_blk("VirtioBlk0", str(env.sock_dir / "vhost.0"), 1, 64)
        a = await AsyncDesc.open("VirtioBlk0", write=True)
        thread = env.thread
        real_send, real_flush = thread.send_msg, ctrl._flush

        def send_msg(fn, *args):  # type: ignore[no-untyped-def]
            if fn == ctrl._flush:
                sent.append("flush")
            elif getattr(fn, "__self__", None) is ctrl.ch:
                sent.append("bdev completion")
            real_send(fn, *args)

        def flush(arg=None):  # type: ignore[no-untyped-def]
            flushes[0] += 1
            return real_flush(arg)
        thread.send_msg = send_msg  # type: ignore[method-assign]
        ctrl._flush = flush  # type: ignore[method-assign]
        try:
            bufs = [os.urandom(4096) for _ in range(16)]
            await asyncio.gather(*(a.write(i * 4096, bufs[i]) for i in range(16)))
            assert await asyncio.gather(*(a.read(i * 4096, 4096) for i in range(16))) == bufs
        finally:
            del thread.send_msg
            del ctrl._flush
        await a.close()
    env.run(_on_thread(env, go))
    assert sent == []
    assert flushes[0] >= 2
