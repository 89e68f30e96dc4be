"""A hostile front end against spydk's vhost-blk controller over a real socket: a memory
table with overlapping regions, a descriptor chain that loops, one that points past the
end of guest memory. Each time that device's connection is dropped with the reason logged,
nothing outside the described memory is written, and another controller keeps serving
I/O all along; the bad controller accepts the next front end."""
from __future__ import annotations

import array
import asyncio
import logging
import os
import socket

import pytest

from spydk.bdev.awaitable import AsyncDesc
from spydk.modules.bdev.malloc import create_malloc_disk
from spydk.modules.bdev.virtio.virtio_blk import DRIVER_FEATURES, VirtioUserDev, attach_blk
from spydk.vhost.blk import VhostBlkController
from spydk.vhost.codec import encode
from spydk.vhost.frontend import SharedMemory
from spydk.vhost.spec import (
    BLK_CONFIG,
    BLK_REQ_HDR,
    BLK_T_IN,
    DESC,
    DESC_F_NEXT,
    DESC_F_WRITE,
    MEM_HDR,
    MEM_REGION,
    Req,
)

from .conftest import Env


def _controller(env: Env, name: str, bdev: str) -> VhostBlkController:
    def mk() -> VhostBlkController:
        create_malloc_disk(bdev, 512, 2048)
        c = VhostBlkController(name, env.sock_dir, bdev)
        c.listen()
        return c
    return env.call(mk)


async def _on_thread(env: Env, coro_fn):  # type: ignore[no-untyped-def]
    fut = env.rh.reactor.call_on(env.thread, lambda: asyncio.ensure_future(coro_fn()))
    return await (await fut)


async def _until_closed(dev: VirtioUserDev) -> None:
    """The back end drops the connection: the front end's reader sees EOF."""
    for _ in range(500):
        if dev.sock is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the controller kept the connection of a front end that sent a bad chain")


async def _still_serves(a: AsyncDesc, n: int) -> None:
    data = bytes([n]) * 4096
    await a.write(n * 4096, data)
    assert await a.read(n * 4096, 4096) == data


def test_bad_chains_and_tables_fail_that_device_alone(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    _controller(env, "good.0", "G0")
    _controller(env, "bad.0", "B0")
    bad_sock = str(env.sock_dir / "bad.0")

    async def go() -> None:
        await attach_blk("Good", str(env.sock_dir / "good.0"), 1, 16)
        good = await AsyncDesc.open("Good", write=True)
        await _still_serves(good, 1)

        # 1. a memory table whose two regions overlap: refused, connection closed
        mem = SharedMemory(1 << 20)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(bad_sock)
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(s, encode(Req.SET_OWNER))
        table = (MEM_HDR.pack(2, 0) + MEM_REGION.pack(0, 1 << 20, 0x7F00_0000_0000, 0)
                 + MEM_REGION.pack(1 << 19, 1 << 20, 0x7F10_0000_0000, 0))
        s.sendmsg([encode(Req.SET_MEM_TABLE, table)],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [mem.fd, mem.fd]))])
        assert await asyncio.wait_for(loop.sock_recv(s, 64), 5) == b""
        s.close()
        mem.close()
        await _still_serves(good, 2)

        # 2. and 3. a chain that loops; a chain whose data buffer runs past guest memory
        for case in ("loop", "outside"):
            dev = VirtioUserDev("Evil", bad_sock, 1, 16, DRIVER_FEATURES, BLK_CONFIG.size)
            await dev.connect()
            v = dev.vqs[0]
            q = v.q
            slot = v.slots[0]
            BLK_REQ_HDR.pack_into(slot.hdr, 0, BLK_T_IN, 0, 0)
            end = dev.mem.size
            tail = dev.mem.view[end - 512:end]
            tail[:] = b"\xA5" * 512                      # must stay untouched
            if case == "loop":
                head = q.add([(slot.hdr_addr, 16, False), (slot.data_addr, 512, True),
                              (slot.hdr_addr + 32, 1, True)])
                assert head is not None
                # the last descriptor chains back to the second: 2 -> 3 -> 2 -> ...
                second = DESC.unpack_from(q.view, 16 * head)[3]
                last = DESC.unpack_from(q.view, 16 * second)[3]
                DESC.pack_into(q.view, 16 * last, slot.hdr_addr + 32, 1, DESC_F_WRITE | DESC_F_NEXT, second)
            else:
                # 4 KiB read into the last 512 bytes of guest memory and 3.5 KiB beyond it
                head = q.add([(slot.hdr_addr, 16, False), (end - 512, 4096, True),
                              (slot.hdr_addr + 32, 1, True)])
                assert head is not None
            os.eventfd_write(v.kick_fd, 1)
            await _until_closed(dev)
            assert bytes(tail) == b"\xA5" * 512
            tail.release()
            dev.close()
            await _still_serves(good, 3 if case == "loop" else 4)

        # the bad controller takes the next (well-behaved) front end
        b2 = await attach_blk("Again", bad_sock, 1, 16)
        again = await AsyncDesc.open("Again", write=True)
        await _still_serves(again, 5)
        await again.close()
        await good.close()
        assert b2.num_blocks == 2048

    with caplog.at_level(logging.INFO):
        env.run(_on_thread(env, go))
    text = caplog.text
    assert "overlap" in text, text
    assert "loops" in text, text
    assert "outside guest memory" in text, text
