"""spydk's virtio-scsi initiator (bdev_virtio_attach_controller dev_type scsi) against
spydk's vhost-scsi controller, in one process over a real Unix socket: the scan finds the
targets, READ/WRITE/UNMAP/SYNCHRONIZE CACHE reach the disks, a failing disk's sense data
becomes a named error; plus byte vectors for the sense decoder."""
from __future__ import annotations

import asyncio
import os

import pytest

from spydk.bdev import BdevError, get_bdev
from spydk.bdev.awaitable import AsyncDesc
from spydk.bdev.registry import unregister_bdev
from spydk.modules.bdev.error.error import create_error_bdev, inject_error
from spydk.modules.bdev.malloc import create_malloc_disk
from spydk.modules.bdev.virtio.virtio_scsi import (
    VirtioScsiBdev,
    attach_scsi,
    controllers,
    describe_sense,
)
from spydk.vhost.scsi import VhostScsiController

from .conftest import Env


def test_describe_sense_fixed_and_descriptor() -> None:
    fixed = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0])
    assert describe_sense(fixed) == (5, 0x2100, "ILLEGAL_REQUEST, LBA_OUT_OF_RANGE (21h/00h)")
    desc = bytes([0x72, 0x03, 0x11, 0x00, 0, 0, 0, 0])
    assert describe_sense(desc) == (3, 0x1100, "MEDIUM_ERROR, UNRECOVERED_READ_ERROR (11h/00h)")
    assert describe_sense(bytes([0x72, 0x0D, 0x99, 0x01]))[2] == "sense key 0xd, ASC/ASCQ (99h/01h)"
    assert describe_sense(b"")[2] == "no sense data"
    assert "unknown format" in describe_sense(bytes([0x12, 0, 0]))[2]


async def _on_thread(env: Env, coro_fn):  # type: ignore[no-untyped-def]
    fut = env.rh.reactor.call_on(env.thread, lambda: asyncio.ensure_future(coro_fn()))
    return await (await fut)


def _unregister(b: VirtioScsiBdev) -> asyncio.Future[int]:
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    unregister_bdev(b, lambda rc: done.set_result(rc))
    return done


def test_scan_io_and_sense_through_vhost_scsi(env: Env) -> None:
    def mk() -> VhostScsiController:
        create_malloc_disk("M0", 512, 8192)
        create_malloc_disk("M1", 4096, 512)
        create_error_bdev("M1")
        c = VhostScsiController("scsi.0", env.sock_dir)
        c.add_target(0, "M0")
        c.add_target(3, "EE_M1")
        c.listen()
        return c
    ctrl = env.call(mk)

    async def go() -> None:
        bs = await attach_scsi("VirtioScsi0", str(env.sock_dir / "scsi.0"), 2, 32)
        assert [b.name for b in bs] == ["VirtioScsi0t0", "VirtioScsi0t3"]
        b0, b3 = bs
        assert (b0.block_size, b0.num_blocks) == (512, 8192)
        assert (b3.block_size, b3.num_blocks) == (4096, 512)
        assert "VirtioScsi0" in controllers()
        a = await AsyncDesc.open("VirtioScsi0t0", write=True)
        pattern = os.urandom(300 * 1024)          # more than a slot: the bdev layer splits it
        await a.write(8192, pattern)
        assert await a.read(8192, len(pattern)) == pattern
        m = await AsyncDesc.open("M0")
        assert await m.read(8192, 4096) == pattern[:4096]
        assert b0.unmap    # the LUN reports thin provisioning: UNMAP reaches the malloc disk
        await a.unmap(8192, 16384)
        assert await m.read(8192, 16384) == bytes(16384)
        await a.flush()
        bufs = [os.urandom(4096) for _ in range(80)]   # more than the 2 x 32 slots in flight
        await asyncio.gather(*(a.write(i * 4096, bufs[i]) for i in range(80)))
        assert await asyncio.gather(*(a.read(i * 4096, 4096) for i in range(80))) == bufs
        # the second target, 4 KiB blocks, behind an error bdev
        a3 = await AsyncDesc.open("VirtioScsi0t3", write=True)
        blk = os.urandom(8192)
        await a3.write(4096, blk)
        assert await a3.read(4096, 8192) == blk
        inject_error("EE_M1", "read", "failure", 1)
        with pytest.raises(BdevError):
            await a3.read(0, 4096)
        assert len(b3.sense_counts) == 1 and b3.last_sense.startswith("MEDIUM_ERROR")
        assert b3.dump_info_json()["virtio"]["errors"] == {b3.last_sense: 1}
        assert await a3.read(4096, 8192) == blk          # only that request failed
        cfg = [b0.write_config_json(), b3.write_config_json()]
        assert cfg[1] is None and cfg[0] is not None and cfg[0]["params"]["dev_type"] == "scsi"
        for d in (a, a3, m):
            await d.close()
        assert await _unregister(b0) == 0
        assert "VirtioScsi0" in controllers()            # one target left
        assert await _unregister(b3) == 0
        assert "VirtioScsi0" not in controllers() and get_bdev("VirtioScsi0t3") is None
    env.run(_on_thread(env, go))
    assert ctrl.session is None or ctrl.session.failed is None


def test_attach_to_missing_socket_names_it(env: Env) -> None:
    async def go() -> None:
        with pytest.raises(BdevError, match="cannot connect to vhost-user socket"):
            await attach_scsi("VS", str(env.sock_dir / "nothing"), 1, 16)
        assert "VS" not in controllers()
    env.run(_on_thread(env, go))


def test_back_end_without_config_space(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPDK's vhost-scsi does not offer the CONFIG protocol feature: the scsi initiator
    then scans every target it would (64) itself; virtio-blk needs the capacity and refuses."""
    from spydk.modules.bdev.virtio.virtio_blk import attach_blk
    from spydk.vhost import session
    from spydk.vhost.blk import VhostBlkController
    from spydk.vhost.spec import ProtoFeature, bit
    monkeypatch.setattr(session, "PROTOCOL_FEATURES", session.PROTOCOL_FEATURES & ~bit(ProtoFeature.CONFIG))

    def mk() -> None:
        create_malloc_disk("M0", 512, 1024)
        create_malloc_disk("M1", 512, 1024)
        c = VhostScsiController("scsi.0", env.sock_dir)
        c.add_target(5, "M0")
        c.listen()
        VhostBlkController("blk.0", env.sock_dir, "M1").listen()
    env.call(mk)

    async def go() -> None:
        bs = await attach_scsi("VS", str(env.sock_dir / "scsi.0"), 1, 16)
        assert [b.name for b in bs] == ["VSt5"]
        a = await AsyncDesc.open("VSt5", write=True)
        await a.write(0, b"\x5a" * 512)
        assert await a.read(0, 512) == b"\x5a" * 512
        await a.close()
        assert await _unregister(bs[0]) == 0
        with pytest.raises(BdevError, match="CONFIG protocol feature"):
            await attach_blk("VB", str(env.sock_dir / "blk.0"), 1, 16)
    env.run(_on_thread(env, go))
