"""virtio-blk over vhost-user, as a bdev.

``VirtioUserDev`` is the connection: a Unix socket to the back end, the shared memfd with
the rings and bounce buffers, kick and call eventfds (calls are readers on the reactor's
event loop). ``VirtioBlkBdev`` turns bdev I/O into virtio-blk requests: each request
owns a slot (header, status byte, data area) in shared memory; data is copied between
the caller's buffers and the slot, since only the memfd is visible to the back end.
"""
from __future__ import annotations

import array
import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from spydk.bdev import Bdev, BdevError, BdevIO, BdevModule, register_bdev, register_module
from spydk.bdev.io import FAILED, FLUSH, NOMEM, READ, RESET, SUCCESS, UNMAP, WRITE, WRITE_ZEROES
from spydk.thread import Thread, get_reactor, get_thread, io_device_register, io_device_unregister
from spydk.vhost.codec import MAX_FDS_PER_MSG, ProtocolError, close_quietly
from spydk.vhost.frontend import BackendInfo, FrontendSession, SharedMemory
from spydk.vhost.spec import (
    BLK_CONFIG,
    BLK_DISCARD_SEG,
    BLK_F_BLK_SIZE,
    BLK_F_DISCARD,
    BLK_F_FLUSH,
    BLK_F_MQ,
    BLK_F_RO,
    BLK_F_SEG_MAX,
    BLK_F_WRITE_ZEROES,
    BLK_REQ_HDR,
    BLK_T_DISCARD,
    BLK_T_FLUSH,
    BLK_T_IN,
    BLK_T_OUT,
    BLK_T_WRITE_ZEROES,
    F_RING_INDIRECT_DESC,
    SECTOR,
    bit,
)
from spydk.vhost.virtqueue import DriverQueue

log = logging.getLogger("spydk.bdev.virtio")

SLOT_DATA = 128 * 1024
# request header (16), discard segment (16), status (1) at 32, indirect table (3 x 16) at 64
SLOT_HDR = 128
TABLE_OFF = 64
DRIVER_FEATURES = (bit(F_RING_INDIRECT_DESC) | bit(BLK_F_SEG_MAX) | bit(BLK_F_BLK_SIZE) | bit(BLK_F_FLUSH) | bit(BLK_F_RO)
                   | bit(BLK_F_DISCARD) | bit(BLK_F_WRITE_ZEROES) | bit(BLK_F_MQ))
_FD_SPACE = socket.CMSG_SPACE(MAX_FDS_PER_MSG * 4)


class VirtioModule(BdevModule):
    name = "virtio_blk"


module = register_module(VirtioModule())


class Slot:
    __slots__ = ("index", "hdr_addr", "hdr", "data_addr", "data", "io")

    def __init__(self, index: int, hdr_addr: int, hdr: memoryview, data_addr: int, data: memoryview):
        self.index = index
        self.hdr_addr = hdr_addr
        self.hdr = hdr
        self.data_addr = data_addr
        self.data = data
        self.io: BdevIO | None = None


class VqState:
    __slots__ = ("q", "slots", "free", "inflight", "kick_fd", "call_fd")

    def __init__(self, q: DriverQueue, slots: list[Slot], kick_fd: int, call_fd: int):
        self.q = q
        self.slots = slots
        self.free = list(reversed(slots))
        self.inflight: dict[int, Slot] = {}
        self.kick_fd = kick_fd
        self.call_fd = call_fd


class VirtioUserDev:
    """A vhost-user connection driven by spydk as the front end."""

    def __init__(self, name: str, path: str, vq_count: int, vq_size: int, driver_features: int,
                 config_size: int, *, slot_hdr: int = SLOT_HDR, config_optional: bool = False):
        if vq_size < 4 or vq_size & (vq_size - 1) or vq_size > 32768:
            raise BdevError(errno.EINVAL, f"vq_size {vq_size} must be a power of two from 4 to 32768")
        if not 1 <= vq_count <= 64:
            raise BdevError(errno.EINVAL, f"vq_count {vq_count} must be between 1 and 64")
        self.name = name
        self.path = path
        self.vq_count = vq_count
        self.vq_size = vq_size
        self.thread: Thread = get_thread() or _app_thread()
        nslots = vq_size   # one ring descriptor per request (indirect tables)
        ring_bytes = _ring_bytes(vq_size)
        self.mem = SharedMemory(vq_count * (ring_bytes + 3 * 4096 + nslots * (slot_hdr + SLOT_DATA)))
        self.vqs: list[VqState] = []
        for _ in range(vq_count):
            base, view = self.mem.alloc(ring_bytes, 4096)
            q = DriverQueue(view, base, vq_size)
            hbase, hview = self.mem.alloc(nslots * slot_hdr, 4096)
            dbase, dview = self.mem.alloc(nslots * SLOT_DATA, 4096)
            slots = [Slot(i, hbase + i * slot_hdr, hview[i * slot_hdr:(i + 1) * slot_hdr],
                          dbase + i * SLOT_DATA, dview[i * SLOT_DATA:(i + 1) * SLOT_DATA])
                     for i in range(nslots)]
            kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.vqs.append(VqState(q, slots, kick, call))
        self.sock: socket.socket | None = None
        self.fe = FrontendSession(self._send, self.mem, [v.q for v in self.vqs],
                                  [v.kick_fd for v in self.vqs], [v.call_fd for v in self.vqs],
                                  driver_features, config_size, config_optional=config_optional)
        self.on_used: Callable[[VqState, Slot, int], None] | None = None
        self.closed = False

    async def connect(self, timeout: float = 10) -> BackendInfo:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise BdevError(e.errno or errno.EIO, f"cannot connect to vhost-user socket {self.path}: "
                                                  f"{e.strerror}") from None
        s.setblocking(False)
        self.sock = s
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BackendInfo] = loop.create_future()

        def ready(info: BackendInfo) -> None:
            if not fut.done():
                fut.set_result(info)

        def failed(why: str) -> None:
            if not fut.done():
                fut.set_exception(BdevError(errno.EIO, f"{self.name}: vhost-user setup failed: {why}"))
        self.fe.on_ready = ready
        self.fe.on_error = failed
        reactor = get_reactor()
        reactor.add_reader(s.fileno(), self.thread, self._readable)
        self.fe.start()
        try:
            info = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.close()
            raise BdevError(errno.ETIMEDOUT, f"{self.name}: no answer from {self.path} "
                                             f"within {timeout:g} s") from None
        except BdevError:
            self.close()
            raise
        for v in self.vqs:
            reactor.add_reader(v.call_fd, self.thread, self._caller(v))
        return info

    def _send(self, buf: bytes, fds: list[int]) -> None:
        if self.sock is None:
            return
        if fds:
            self.sock.sendmsg([buf], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            self.sock.sendall(buf)

    def _readable(self) -> None:
        s = self.sock
        if s is None:
            return
        try:
            data, anc, _f, _a = s.recvmsg(self.fe.decoder.wanted(), _FD_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            data, anc = b"", []
            log.error("%s: connection error: %s", self.name, e)
        fds: list[int] = []
        for level, typ, payload in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[:len(payload) - len(payload) % 4])
                fds.extend(a)
        if not data:
            for fd in fds:
                close_quietly(fd)
            if not self.closed:
                log.error("%s: the vhost-user back end at %s closed the connection", self.name, self.path)
                self.fe._fail("connection closed")
                self._drop_socket()
                self._fail_inflight()
            return
        try:
            self.fe.feed(data, fds)
        except ProtocolError as e:
            self.fe._fail(str(e))
            self._drop_socket()
            self._fail_inflight()

    def _fail_inflight(self) -> None:
        """The back end is gone: its rings will never answer, so every request in flight
        fails now (its status byte still holds the 0xFF put there before submission)
        instead of waiting forever."""
        for v in self.vqs:
            lost, v.inflight = list(v.inflight.values()), {}
            for slot in lost:
                if self.on_used is not None:
                    self.on_used(v, slot, 0)

    def _drop_socket(self) -> None:
        s, self.sock = self.sock, None
        if s is not None:
            try:
                get_reactor().remove_reader(s.fileno())
            except (ValueError, OSError):
                pass
            s.close()

    def submit(self, v: VqState, slot: Slot, bufs: list[tuple[int, int, bool]],
               table_off: int = TABLE_OFF) -> bool:
        head = v.q.add_indirect(slot.hdr_addr + table_off, slot.hdr[table_off:], bufs)
        if head is None:
            return False
        v.inflight[head] = slot
        if v.q.need_kick():
            os.eventfd_write(v.kick_fd, 1)
        return True

    def _caller(self, v: VqState) -> Callable[[], None]:
        return lambda: self._called(v)

    def _called(self, v: VqState) -> None:
        try:
            os.read(v.call_fd, 8)
        except (BlockingIOError, InterruptedError):
            pass
        v.q.poll_used(lambda head, written: self._used(v, head, written))

    def _used(self, v: VqState, head: int, written: int) -> None:
        slot = v.inflight.pop(head, None)
        if slot is not None and self.on_used is not None:
            self.on_used(v, slot, written)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._drop_socket()
        reactor = get_reactor()
        for v in self.vqs:
            try:
                reactor.remove_reader(v.call_fd)
            except (ValueError, OSError):
                pass
            close_quietly(v.kick_fd)
            close_quietly(v.call_fd)
        self.mem.close()


def _ring_bytes(num: int) -> int:
    return ((16 * num + 6 + 2 * num + 3) & ~3) + 6 + 8 * num


def _app_thread() -> Thread:
    t = get_reactor().app_thread
    if t is None:
        raise BdevError(errno.EINVAL, "no spydk thread to run the virtio device on")
    return t


class VirtioBlkBdev(Bdev):
    """A vhost-user-blk device's disk."""

    def __init__(self, name: str, dev: VirtioUserDev, info: BackendInfo):
        cfg = BLK_CONFIG.unpack(info.config[:BLK_CONFIG.size].ljust(BLK_CONFIG.size, b"\0"))
        capacity, _size_max, _seg_max = cfg[0], cfg[1], cfg[2]
        blk_size = cfg[6] if info.features & bit(BLK_F_BLK_SIZE) and cfg[6] else SECTOR
        if blk_size < SECTOR or blk_size & (blk_size - 1):
            raise BdevError(errno.EINVAL, f"{name}: the device reports block size {blk_size}")
        num_blocks = capacity * SECTOR // blk_size
        if not num_blocks:
            raise BdevError(errno.EINVAL, f"{name}: the device reports a capacity of 0")
        super().__init__(name, module, blk_size, num_blocks, product_name="VirtioBlk Disk",
                         max_rw_blocks=SLOT_DATA // blk_size)
        self.dev = dev
        self.features = info.features
        self.readonly = bool(info.features & bit(BLK_F_RO))
        self._rr = 0
        io_device_register(dev, lambda d, ch: None, lambda d, ch: None, f"virtio_blk_{name}")
        self.io_device = dev
        dev.on_used = self._used

    def io_type_supported(self, io_type: int) -> bool:
        f = self.features
        if io_type == READ or io_type == RESET:
            return True
        if self.readonly:
            return False
        if io_type == WRITE:
            return True
        if io_type == FLUSH:
            return bool(f & bit(BLK_F_FLUSH))
        if io_type == UNMAP:
            return bool(f & bit(BLK_F_DISCARD))
        if io_type == WRITE_ZEROES:
            return bool(f & bit(BLK_F_WRITE_ZEROES))
        return False

    def submit_request(self, ctx: Any, io: BdevIO) -> int | None:
        dev = self.dev
        if dev.closed or dev.sock is None:
            return FAILED
        t = io.type
        if t == RESET:
            return SUCCESS
        vqs = dev.vqs
        v = vqs[self._rr % len(vqs)]
        self._rr += 1
        if not v.free:
            return NOMEM
        slot = v.free.pop()
        hdr = slot.hdr
        ha = slot.hdr_addr
        sector = io.offset_blocks * self.block_size // SECTOR
        status = (ha + 32, 1, True)
        if t == READ:
            BLK_REQ_HDR.pack_into(hdr, 0, BLK_T_IN, 0, sector)
            bufs = [(ha, 16, False), (slot.data_addr, io.nbytes, True), status]
        elif t == WRITE:
            BLK_REQ_HDR.pack_into(hdr, 0, BLK_T_OUT, 0, sector)
            io.gather_into(slot.data[:io.nbytes])
            bufs = [(ha, 16, False), (slot.data_addr, io.nbytes, False), status]
        elif t == FLUSH:
            BLK_REQ_HDR.pack_into(hdr, 0, BLK_T_FLUSH, 0, 0)
            bufs = [(ha, 16, False), status]
        elif t == UNMAP or t == WRITE_ZEROES:
            BLK_REQ_HDR.pack_into(hdr, 0, BLK_T_DISCARD if t == UNMAP else BLK_T_WRITE_ZEROES, 0, 0)
            n = io.num_blocks * self.block_size // SECTOR
            if n > 0xFFFFFFFF:
                v.free.append(slot)
                return FAILED
            BLK_DISCARD_SEG.pack_into(hdr, 16, sector, n, 0)
            bufs = [(ha, 32, False), status]
        else:
            v.free.append(slot)
            return FAILED
        hdr[32] = 0xFF
        slot.io = io
        if not dev.submit(v, slot, bufs):
            slot.io = None
            v.free.append(slot)
            return NOMEM
        return None

    def _used(self, v: VqState, slot: Slot, written: int) -> None:
        io = slot.io
        slot.io = None
        v.free.append(slot)
        if io is None:
            return
        ok = slot.hdr[32] == 0
        if ok and io.type == READ:
            io.scatter(slot.data[:io.nbytes])
        io.complete(SUCCESS if ok else FAILED)

    def destruct(self, done: Callable[[int], Any]) -> None:
        io_device_unregister(self.dev)
        self.dev.close()
        done(0)

    def dump_info_json(self) -> dict[str, Any]:
        return {"virtio": {"vq_count": self.dev.vq_count, "vq_size": self.dev.vq_size,
                           "type": "user", "socket": self.dev.path}}

    def write_config_json(self) -> dict[str, Any]:
        return {"method": "bdev_virtio_attach_controller", "params": {
            "name": self.name, "trtype": "user", "traddr": self.dev.path, "dev_type": "blk",
            "vq_count": self.dev.vq_count, "vq_size": self.dev.vq_size}}


async def attach_blk(name: str, path: str, vq_count: int = 1, vq_size: int = 512) -> VirtioBlkBdev:
    from spydk.bdev import get_bdev
    if get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev {name!r} already exists")
    from spydk.thread import get_thread, set_thread
    thread = get_thread()  # registration (and the examine it starts) belongs on the caller's thread
    dev = VirtioUserDev(name, path, vq_count, vq_size, DRIVER_FEATURES, BLK_CONFIG.size)
    info = await dev.connect()
    resumed_on = get_thread()
    if thread is not None:
        set_thread(thread)  # a caller that awaits us outside the RPC dispatcher loses its thread
    try:
        bdev = VirtioBlkBdev(name, dev, info)
        register_bdev(bdev)
    except BaseException:
        dev.close()
        raise
    finally:
        if thread is not None:
            set_thread(resumed_on)
    return bdev
