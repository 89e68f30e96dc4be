"""virtio-scsi over vhost-user, as bdevs: one bdev per target that has a disk at LUN 0.

The device's queues are control (0), event (1) and the request queues (2..). The scan
sends INQUIRY, TEST UNIT READY, READ CAPACITY and the logical block provisioning VPD page
to LUN 0 of every target the config space allows; each disk found becomes the bdev
``<controller>t<target>`` (SPDK's naming). Block I/O becomes READ/WRITE(10) or (16),
SYNCHRONIZE CACHE(10) and, when the LUN reports thin provisioning with UNMAP, UNMAP.
A CHECK CONDITION fails the I/O; its sense (key, ASC/ASCQ) is logged once per distinct
value, counted and shown by ``bdev_get_bdevs`` under ``driver_specific``.

Each request owns a slot (request header and CDB, response and sense, an indirect table)
and a data area in the shared memory, as for virtio-blk.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import struct
from collections.abc import Callable
from typing import Any

from spydk.bdev import Bdev, BdevError, BdevIO, BdevModule, register_bdev, register_module
from spydk.bdev.io import FAILED, FLUSH, NOMEM, READ, RESET, SUCCESS, UNMAP, WRITE
from spydk.modules.bdev.virtio.virtio_blk import SLOT_DATA, Slot, VirtioUserDev, VqState
from spydk.scsi.spec import Asc, Op, SaIn16, SenseKey
from spydk.thread import get_thread, io_device_register, io_device_unregister, set_thread
from spydk.vhost.frontend import BackendInfo
from spydk.vhost.spec import (
    F_RING_INDIRECT_DESC,
    SCSI_CDB_SIZE,
    SCSI_CONFIG,
    SCSI_REQ_HDR,
    SCSI_RESP_HDR,
    SCSI_S_OK,
    SCSI_SENSE_SIZE,
    bit,
)

log = logging.getLogger("spydk.bdev.virtio")

# slot header: request (19) + CDB (32) at 0, response (12) + sense (96) at 64,
# indirect table (4 x 16) at 176
REQ_LEN = SCSI_REQ_HDR.size + SCSI_CDB_SIZE
RESP_OFF = 64
RESP_LEN = SCSI_RESP_HDR.size + SCSI_SENSE_SIZE
TABLE_OFF = 176
SLOT_HDR = 256
FIXED_QUEUES = 2          # control and event queues come before the request queues
MAX_SCAN_TARGETS = 64     # SPDK scans at most this many targets too
DRIVER_FEATURES = bit(F_RING_INDIRECT_DESC)

STATUS_GOOD = 0x00
STATUS_CHECK_CONDITION = 0x02

_CDB10 = struct.Struct(">BBIBHB")       # opcode, flags, lba, group, blocks, control
_CDB16 = struct.Struct(">BBQIBB")       # opcode, flags, lba, blocks, group, control
_UNMAP_CDB = struct.Struct(">B5xBHB")   # opcode, group, parameter list length, control
_UNMAP_HDR = struct.Struct(">HH4x")
_UNMAP_DESC = struct.Struct(">QI4x")
assert _CDB10.size == 10 and _CDB16.size == 16 and _UNMAP_CDB.size == 10


class VirtioScsiModule(BdevModule):
    name = "virtio_scsi"


module = register_module(VirtioScsiModule())


def describe_sense(sense: bytes | memoryview) -> tuple[int, int, str]:
    """(sense key, ASC<<8|ASCQ, text) of fixed- or descriptor-format sense data."""
    if len(sense) < 2:
        return 0, 0, "no sense data"
    code = sense[0] & 0x7F
    if code in (0x72, 0x73) and len(sense) >= 4:
        key, asc = sense[1] & 0xF, (sense[2] << 8) | sense[3]
    elif code in (0x70, 0x71) and len(sense) >= 14:
        key, asc = sense[2] & 0xF, (sense[12] << 8) | sense[13]
    elif code in (0x70, 0x71) and len(sense) >= 3:
        key, asc = sense[2] & 0xF, 0
    else:
        return 0, 0, f"sense data of unknown format {sense[0]:#04x}"
    try:
        kname = SenseKey(key).name
    except ValueError:
        kname = f"sense key {key:#x}"
    try:
        aname = Asc(asc).name
    except ValueError:
        aname = "ASC/ASCQ"
    return key, asc, f"{kname}, {aname} ({asc >> 8:02x}h/{asc & 0xFF:02x}h)"


class ScsiResult:
    __slots__ = ("response", "status", "sense", "data")

    def __init__(self, response: int, status: int, sense: bytes, data: bytes):
        self.response = response
        self.status = status
        self.sense = sense
        self.data = data

    @property
    def good(self) -> bool:
        return self.response == SCSI_S_OK and self.status == STATUS_GOOD

    def why(self) -> str:
        if self.response != SCSI_S_OK:
            return f"virtio-scsi response {self.response}"
        if self.status == STATUS_CHECK_CONDITION:
            return describe_sense(self.sense)[2]
        return f"SCSI status {self.status:#04x}"


def _lun(target: int) -> bytes:
    return bytes((1, target, 0, 0, 0, 0, 0, 0))


class VirtioScsiDev:
    """A vhost-user-scsi connection and its request queues, shared by its bdevs."""

    def __init__(self, name: str, path: str, vq_count: int, vq_size: int):
        self.name = name
        self.dev = VirtioUserDev(name, path, vq_count + FIXED_QUEUES, vq_size, DRIVER_FEATURES,
                                 SCSI_CONFIG.size, slot_hdr=SLOT_HDR, config_optional=True)
        self.vq_count = vq_count
        self.vq_size = vq_size
        self.path = path
        self.reqqs = self.dev.vqs[FIXED_QUEUES:]
        self.dev.on_used = self._used
        self.bdevs: dict[int, VirtioScsiBdev] = {}
        self._rr = 0

    @property
    def closed(self) -> bool:
        return self.dev.closed or self.dev.sock is None

    def pick(self) -> VqState:
        q = self.reqqs
        v = q[self._rr % len(q)]
        self._rr += 1
        return v

    def post(self, v: VqState, slot: Slot, target: int, cdb: bytes | memoryview,
             out_len: int, in_len: int) -> bool:
        """Post one command: CDB, then data-out (``out_len`` bytes of the slot's data area)
        or data-in (``in_len`` bytes into it)."""
        hdr = slot.hdr
        SCSI_REQ_HDR.pack_into(hdr, 0, _lun(target), slot.index, 0, 0, 0)
        n = len(cdb)
        hdr[SCSI_REQ_HDR.size:SCSI_REQ_HDR.size + n] = cdb
        hdr[SCSI_REQ_HDR.size + n:REQ_LEN] = bytes(SCSI_CDB_SIZE - n)
        hdr[RESP_OFF:RESP_OFF + SCSI_RESP_HDR.size] = bytes(SCSI_RESP_HDR.size)
        hdr[RESP_OFF + 11] = 0xFF          # response stays 0xFF unless the device answers
        ha = slot.hdr_addr
        bufs = [(ha, REQ_LEN, False)]
        if out_len:
            bufs.append((slot.data_addr, out_len, False))
        bufs.append((ha + RESP_OFF, RESP_LEN, True))
        if in_len:
            bufs.append((slot.data_addr, in_len, True))
        return self.dev.submit(v, slot, bufs, TABLE_OFF)

    def _used(self, v: VqState, slot: Slot, written: int) -> None:
        io = slot.io
        slot.io = None
        v.free.append(slot)
        if io is None:
            return
        if isinstance(io, BdevIO):
            bdev = io.bdev
            assert isinstance(bdev, VirtioScsiBdev)
            bdev.done(slot, io)
        else:
            io(slot)                       # a scan command's callback

    async def command(self, target: int, cdb: bytes, in_len: int = 0) -> ScsiResult:
        """Send one CDB outside the I/O path (the scan), waiting for a free slot."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ScsiResult] = loop.create_future()
        v = self.reqqs[0]
        while not v.free:
            await asyncio.sleep(0.001)
        if self.closed:
            raise BdevError(errno.EIO, f"{self.name}: the vhost-user connection is closed")
        slot = v.free.pop()

        def done(s: Slot) -> None:
            h = s.hdr
            sense_len, _resid, _sq, status, response = SCSI_RESP_HDR.unpack_from(h, RESP_OFF)
            sense = bytes(h[RESP_OFF + SCSI_RESP_HDR.size:RESP_OFF + SCSI_RESP_HDR.size
                            + min(sense_len, SCSI_SENSE_SIZE)])
            if not fut.done():
                fut.set_result(ScsiResult(response, status, sense, bytes(s.data[:in_len])))
        slot.io = done  # type: ignore[assignment]
        if not self.post(v, slot, target, cdb, 0, in_len):
            slot.io = None
            v.free.append(slot)
            raise BdevError(errno.EIO, f"{self.name}: the request queue is full during the scan")
        return await asyncio.wait_for(fut, 10)

    async def scan(self, info: BackendInfo) -> list[tuple[int, int, int, bool, int]]:
        """(target, block size, blocks, unmap supported, max unmap blocks) of each disk."""
        if info.config:
            max_target = min(SCSI_CONFIG.unpack(info.config[:SCSI_CONFIG.size].ljust(SCSI_CONFIG.size, b"\0"))[8],
                             MAX_SCAN_TARGETS - 1)
        else:     # no config space offered (SPDK's vhost-scsi): scan every target we would
            max_target = MAX_SCAN_TARGETS - 1
        found = []
        for t in range(max_target + 1):
            r = await self.command(t, bytes((Op.INQUIRY, 0, 0, 0, 96, 0)), 96)
            if not r.good or not r.data or r.data[0] & 0xE0 or r.data[0] & 0x1F:
                continue          # no target, no LUN 0, or not a direct-access block device
            for _ in range(3):    # the first commands may see a unit attention
                r = await self.command(t, bytes(6))
                if r.good:
                    break
            if not r.good:
                log.warning("%s: target %d is not ready (%s); skipped", self.name, t, r.why())
                continue
            disk = await self._capacity(t)
            if disk is not None:
                found.append((t, *disk))
        return found

    async def _capacity(self, t: int) -> tuple[int, int, bool, int] | None:
        r = await self.command(t, bytes((Op.SERVICE_ACTION_IN_16, SaIn16.READ_CAPACITY_16)) + bytes(8)
                               + (32).to_bytes(4, "big") + bytes(2), 32)
        lbpme = False
        if r.good:
            last, bs = struct.unpack_from(">QI", r.data)
            lbpme = bool(r.data[14] & 0x80)
        else:
            r = await self.command(t, bytes((Op.READ_CAPACITY_10,)) + bytes(9), 8)
            if not r.good:
                log.warning("%s: READ CAPACITY of target %d failed (%s); skipped", self.name, t, r.why())
                return None
            last, bs = struct.unpack_from(">II", r.data)
        if bs < 512 or bs & (bs - 1) or bs > SLOT_DATA:
            log.warning("%s: target %d reports block size %d; skipped", self.name, t, bs)
            return None
        unmap, max_unmap = False, 0xFFFFFFFF
        if lbpme:
            r = await self.command(t, bytes((Op.INQUIRY, 1, 0xB2, 0, 64, 0)), 64)
            unmap = r.good and len(r.data) > 5 and bool(r.data[5] & 0x80)
            r = await self.command(t, bytes((Op.INQUIRY, 1, 0xB0, 0, 64, 0)), 64)
            if r.good and len(r.data) >= 28:
                lim = int.from_bytes(r.data[20:24], "big")
                if lim:
                    max_unmap = lim
        return bs, last + 1, unmap, max_unmap

    def unregistered(self, target: int) -> None:
        self.bdevs.pop(target, None)
        if not self.bdevs:
            self.close()

    def close(self) -> None:
        if _controllers.get(self.name) is self:
            del _controllers[self.name]
            io_device_unregister(self)
        self.dev.close()


class VirtioScsiBdev(Bdev):
    """LUN 0 of one target of a virtio-scsi device."""

    def __init__(self, sdev: VirtioScsiDev, target: int, block_size: int, num_blocks: int,
                 unmap: bool, max_unmap: int):
        super().__init__(f"{sdev.name}t{target}", module, block_size, num_blocks,
                         product_name="Virtio SCSI Disk", max_rw_blocks=SLOT_DATA // block_size)
        self.sdev = sdev
        self.target = target
        self.unmap = unmap
        self.max_unmap = max_unmap
        self.io_device = sdev
        self.sense_counts: dict[str, int] = {}
        self.last_sense = ""

    def io_type_supported(self, io_type: int) -> bool:
        if io_type in (READ, WRITE, FLUSH, RESET):
            return True
        return io_type == UNMAP and self.unmap

    def submit_request(self, ctx: Any, io: BdevIO) -> int | None:
        sdev = self.sdev
        if sdev.closed:
            return FAILED
        t = io.type
        if t == RESET:
            return SUCCESS
        v = sdev.pick()
        if not v.free:
            return NOMEM
        slot = v.free.pop()
        lba, n = io.offset_blocks, io.num_blocks
        out_len = in_len = 0
        if t == READ or t == WRITE:
            if lba > 0xFFFFFFFF or n > 0xFFFF:
                cdb = _CDB16.pack(Op.READ_16 if t == READ else Op.WRITE_16, 0, lba, n, 0, 0)
            else:
                cdb = _CDB10.pack(Op.READ_10 if t == READ else Op.WRITE_10, 0, lba, 0, n, 0)
            if t == READ:
                in_len = io.nbytes
            else:
                out_len = io.nbytes
                io.gather_into(slot.data[:out_len])
        elif t == FLUSH:
            cdb = _CDB10.pack(Op.SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0)
        elif t == UNMAP:
            out_len = self._unmap_list(slot.data, lba, n)
            if not out_len:
                v.free.append(slot)
                return FAILED
            cdb = _UNMAP_CDB.pack(Op.UNMAP, 0, out_len, 0)
        else:
            v.free.append(slot)
            return FAILED
        slot.io = io
        if not sdev.post(v, slot, self.target, cdb, out_len, in_len):
            slot.io = None
            v.free.append(slot)
            return NOMEM
        return None

    def _unmap_list(self, buf: memoryview, lba: int, n: int) -> int:
        step = self.max_unmap
        count = (n + step - 1) // step
        size = 8 + 16 * count
        if size > len(buf) or size > 0xFFFF:
            return 0
        _UNMAP_HDR.pack_into(buf, 0, size - 2, size - 8)
        off = 8
        while n:
            k = min(n, step)
            _UNMAP_DESC.pack_into(buf, off, lba, k)
            lba += k
            n -= k
            off += 16
        return size

    def done(self, slot: Slot, io: BdevIO) -> None:
        h = slot.hdr
        status, response = h[RESP_OFF + 10], h[RESP_OFF + 11]
        if response == SCSI_S_OK and status == STATUS_GOOD:
            if io.type == READ:
                io.scatter(slot.data[:io.nbytes])
            io.complete(SUCCESS)
            return
        self._error(h, io, response, status)
        io.complete(FAILED)

    def _error(self, h: memoryview, io: BdevIO, response: int, status: int) -> None:
        if response != SCSI_S_OK:
            why = f"virtio-scsi response {response}"
        elif status == STATUS_CHECK_CONDITION:
            sense_len = int.from_bytes(h[RESP_OFF:RESP_OFF + 4], "little")
            s = RESP_OFF + SCSI_RESP_HDR.size
            why = describe_sense(h[s:s + min(sense_len, SCSI_SENSE_SIZE)])[2]
        else:
            why = f"SCSI status {status:#04x}"
        seen = self.sense_counts.get(why, 0)
        self.sense_counts[why] = seen + 1
        self.last_sense = why
        if not seen:   # once per distinct error, not per I/O
            log.error("%s: %s of %d blocks at LBA %d failed: %s", self.name,
                      {READ: "read", WRITE: "write", FLUSH: "flush", UNMAP: "unmap"}.get(io.type, "I/O"),
                      io.num_blocks, io.offset_blocks, why)

    def destruct(self, done: Callable[[int], Any]) -> None:
        self.sdev.unregistered(self.target)
        done(0)

    def dump_info_json(self) -> dict[str, Any]:
        d = self.sdev
        out: dict[str, Any] = {"virtio": {"vq_count": d.vq_count, "vq_size": d.vq_size, "type": "user",
                                          "socket": d.path, "target": self.target}}
        if self.sense_counts:
            out["virtio"]["errors"] = dict(self.sense_counts)
        return out

    def write_config_json(self) -> dict[str, Any] | None:
        d = self.sdev       # one attach recreates every target: the lowest one writes it
        if self.target != min(d.bdevs, default=self.target):
            return None
        return {"method": "bdev_virtio_attach_controller", "params": {
            "name": d.name, "trtype": "user", "traddr": d.path, "dev_type": "scsi",
            "vq_count": d.vq_count, "vq_size": d.vq_size}}


_controllers: dict[str, VirtioScsiDev] = {}


def controllers() -> dict[str, VirtioScsiDev]:
    return _controllers


async def attach_scsi(name: str, path: str, vq_count: int = 1, vq_size: int = 512) -> list[VirtioScsiBdev]:
    from spydk.bdev import get_bdev
    if name in _controllers:
        raise BdevError(errno.EEXIST, f"virtio controller {name!r} already exists")
    thread = get_thread()
    sdev = VirtioScsiDev(name, path, vq_count, vq_size)
    info = await sdev.dev.connect()
    try:
        disks = await sdev.scan(info)
    except BaseException:
        sdev.dev.close()
        raise
    resumed_on = get_thread()
    if thread is not None:
        set_thread(thread)
    made: list[VirtioScsiBdev] = []
    try:
        # the controller stays (and is listed, and detachable) even when no disk was found
        io_device_register(sdev, lambda d, ch: None, lambda d, ch: None, f"virtio_scsi_{name}")
        _controllers[name] = sdev
        for t, bs, blocks, unmap, max_unmap in disks:
            if get_bdev(f"{name}t{t}") is not None:
                log.error("%s: bdev %st%d already exists; target %d skipped", name, name, t, t)
                continue
            b = VirtioScsiBdev(sdev, t, bs, blocks, unmap, max_unmap)
            sdev.bdevs[t] = b
            register_bdev(b)
            made.append(b)
    finally:
        if thread is not None:
            set_thread(resumed_on)
    return made
