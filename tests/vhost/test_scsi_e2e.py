"""vhost-scsi in one process: spydk's vhost-user front end drives a VhostScsiController over
a real Unix socket; INQUIRY, READ CAPACITY, WRITE/READ through the request queue, a bad
target, and a task management request on the control queue."""
from __future__ import annotations

import asyncio
import os
import struct

from spydk.modules.bdev.malloc import create_malloc_disk
from spydk.modules.bdev.virtio.virtio_blk import VirtioUserDev
from spydk.vhost.scsi import VhostScsiController
from spydk.vhost.spec import F_RING_INDIRECT_DESC, SCSI_CONFIG, SCSI_REQ_HDR, SCSI_RESP_HDR, SCSI_S_BAD_TARGET

from .conftest import Env

RESP = SCSI_RESP_HDR.size + 96


def _lun(target: int) -> bytes:
    return bytes((1, target, 0x40, 0, 0, 0, 0, 0))


def test_scsi_commands(env: Env) -> None:
    def mk() -> VhostScsiController:
        create_malloc_disk("S0", 512, 4096)
        c = VhostScsiController("scsi.0", env.sock_dir)
        assert c.add_target(-1, "S0") == 0
        c.listen()
        return c
    ctrl = env.call(mk)
    results: dict[int, tuple[int, bytes]] = {}

    async def go() -> None:
        dev = VirtioUserDev("fe", str(env.sock_dir / "scsi.0"), 3, 64, 1 << F_RING_INDIRECT_DESC,
                            SCSI_CONFIG.size)
        info = await dev.connect()
        assert SCSI_CONFIG.unpack(info.config)[8] == 7      # max_target
        done = asyncio.get_running_loop().create_future()

        def used(v, slot, written):  # type: ignore[no-untyped-def]
            results[slot.index] = (written, bytes(slot.data[:RESP + 4096]))
            if len(results) == expected and not done.done():
                done.set_result(None)
        dev.on_used = used
        v = dev.vqs[2]
        data = os.urandom(4096)

        def req(i: int, target: int, cdb: bytes, out: bytes = b"", din: int = 0) -> None:
            s = v.slots[i]
            s.hdr[:SCSI_REQ_HDR.size + 32] = SCSI_REQ_HDR.pack(_lun(target), i, 0, 0, 0) + cdb.ljust(32, b"\0")
            bufs = [(s.hdr_addr, 51, False)]
            if out:
                s.data[RESP:RESP + len(out)] = out
                bufs.append((s.data_addr + RESP, len(out), False))
            bufs.append((s.data_addr, RESP, True))
            if din:
                bufs.append((s.data_addr + RESP, din, True))
            assert dev.submit(v, s, bufs)
        expected = 4
        req(0, 0, bytes((0x12, 0, 0, 0, 96, 0)), din=96)                       # INQUIRY
        req(1, 0, bytes((0x9E, 0x10)) + bytes(8) + struct.pack(">I", 32) + b"\0\0", din=32)  # READ CAPACITY(16)
        req(2, 0, bytes((0x2A, 0)) + struct.pack(">IBHB", 8, 0, 8, 0), out=data)  # WRITE(10) 8 blocks at 8
        req(3, 5, bytes((0x12, 0, 0, 0, 96, 0)), din=96)                       # no target 5
        await asyncio.wait_for(done, 10)
        w, buf = results[0]
        assert w == RESP + 96 and buf[RESP + 8:RESP + 13] == b"SPYDK"          # vendor
        _, _, _, status, response = SCSI_RESP_HDR.unpack_from(buf)
        assert (status, response) == (0, 0)
        assert struct.unpack_from(">QI", results[1][1], RESP) == (4095, 512)
        assert SCSI_RESP_HDR.unpack_from(results[2][1])[3:] == (0, 0)
        assert results[3][0] == RESP and SCSI_RESP_HDR.unpack_from(results[3][1])[4] == SCSI_S_BAD_TARGET
        results.clear()
        done = asyncio.get_running_loop().create_future()
        expected = 1
        req(4, 0, bytes((0x28, 0)) + struct.pack(">IBHB", 8, 0, 8, 0), din=4096)  # READ(10)
        await asyncio.wait_for(done, 10)
        written, buf = results[4]
        assert written == RESP + 4096 and buf[RESP:RESP + 4096] == data
        dev.close()

    async def on_thread() -> None:
        fut = env.rh.reactor.call_on(env.thread, lambda: asyncio.ensure_future(go()))
        await (await fut)
    env.run(on_thread())
    assert ctrl.session is None or ctrl.session.failed is None
