"""vhost-scsi: SCSI targets (each one bdev as LUN 0) served as a virtio-scsi device
(virtio 1.1 section 5.6), on the SCSI layer the iSCSI target uses.

Queues: 0 control (task management, asynchronous notification queries), 1 events (left
untouched: hot-plug events are not sent), 2.. requests. Write data reaches the SCSI layer
as guest-memory views (zero copy); read data the LU produced is copied into the guest's
buffers.
"""
from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

from spydk.bdev import BdevError
from spydk.scsi.bdev_backend import BdevBackend, open_bdev_backend
from spydk.scsi.device import ScsiDevice
from spydk.scsi.task import DataDir, ScsiTask, TmfFunction
from spydk.vhost.blk import take
from spydk.vhost.controller import RingState, VhostController, VhostError
from spydk.vhost.spec import (
    SCSI_CDB_SIZE,
    SCSI_CONFIG,
    SCSI_F_CHANGE,
    SCSI_F_HOTPLUG,
    SCSI_REQ_HDR,
    SCSI_RESP_HDR,
    SCSI_S_BAD_TARGET,
    SCSI_S_FUNCTION_REJECTED,
    SCSI_S_FUNCTION_SUCCEEDED,
    SCSI_S_OK,
    SCSI_SENSE_SIZE,
    SCSI_T_AN_QUERY,
    SCSI_T_AN_SUBSCRIBE,
    SCSI_T_TMF,
    bit,
)
from spydk.vhost.virtqueue import Chain

log = logging.getLogger("spydk.vhost")

MAX_TARGETS = 8
REQUEST_QUEUES = 8
_REQ_SIZE = SCSI_REQ_HDR.size + SCSI_CDB_SIZE        # 51
_RESP_SIZE = SCSI_RESP_HDR.size + SCSI_SENSE_SIZE    # 108
_TMF_LUN_RESET = 3   # VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET
_TMF_ABORT_TASK = 0


def _write(views: list[memoryview], data: bytes | memoryview) -> int:
    """Copy data into the views in order; returns the bytes copied."""
    pos = 0
    n = len(data)
    for v in views:
        if pos >= n:
            break
        k = min(len(v), n - pos)
        v[:k] = data[pos:pos + k]
        pos += k
    return pos


class ScsiTarget:
    def __init__(self, num: int, name: str, bdev_name: str, backend: BdevBackend):
        self.num = num
        self.name = name
        self.bdev_name = bdev_name
        self.backend = backend
        self.device = ScsiDevice(name, num)
        self.device.add_lun(0, backend)  # type: ignore[arg-type]

    def info(self) -> dict[str, Any]:
        return {"scsi_dev_num": self.num, "id": self.num, "target_name": self.name,
                "luns": [{"id": 0, "bdev_name": self.bdev_name}]}


class VhostScsiController(VhostController):
    kind = "scsi"

    def __init__(self, name: str, socket_dir: Path, *, cpumask: int = 1):
        super().__init__(name, socket_dir, cpumask)
        self.targets: dict[int, ScsiTarget] = {}
        self.initiator_port = f"{name},i"
        self.target_port = f"{name},t"

    # -- targets --------------------------------------------------------------------------

    def add_target(self, num: int, bdev_name: str) -> int:
        if num < 0:
            free = [i for i in range(MAX_TARGETS) if i not in self.targets]
            if not free:
                raise VhostError(f"controller {self.name} has all {MAX_TARGETS} targets in use", errno.ENOSPC)
            num = free[0]
        if num >= MAX_TARGETS:
            raise VhostError(f"scsi_target_num {num} is out of range 0..{MAX_TARGETS - 1}")
        if num in self.targets:
            raise VhostError(f"controller {self.name} already has target {num}", errno.EEXIST)
        try:
            backend = open_bdev_backend(bdev_name)
        except BdevError as e:
            raise VhostError(f"controller {self.name}: {e.message}", e.errno) from None
        backend.on_remove = lambda b, n=num: self._bdev_removed(n)
        self.targets[num] = ScsiTarget(num, f"Target {num}", bdev_name, backend)
        return num

    def remove_target(self, num: int) -> None:
        t = self.targets.pop(num, None)
        if t is None:
            raise VhostError(f"controller {self.name} has no target {num}", errno.ENODEV)
        t.device.remove_lun(0)
        t.backend.close()

    def _bdev_removed(self, num: int) -> None:
        log.warning("%s: the bdev of target %d is being removed", self.name, num)
        if num in self.targets:
            self.remove_target(num)

    def close(self, done: Any) -> None:
        def after() -> None:
            for num in list(self.targets):
                self.remove_target(num)
            done()
        super().close(after)

    # -- device ---------------------------------------------------------------------------

    def max_queues(self) -> int:
        return 2 + REQUEST_QUEUES

    def device_features(self) -> int:
        # QEMU's vhost-user-scsi always asks for HOTPLUG and CHANGE; offering them only
        # means the guest may post event buffers (none are sent: add/remove_target at run
        # time needs a rescan in the guest)
        return bit(SCSI_F_HOTPLUG) | bit(SCSI_F_CHANGE)

    def config_space(self) -> bytes:
        return SCSI_CONFIG.pack(REQUEST_QUEUES, 126, 0xFFFF, 128, 16, SCSI_SENSE_SIZE, SCSI_CDB_SIZE,
                                0, MAX_TARGETS - 1, 0)

    def processes(self, index: int) -> bool:
        return index != 1

    def config_entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"method": "vhost_create_scsi_controller", "params": {
            "ctrlr": self.name, "cpumask": f"0x{self.cpumask:x}"}}]
        for t in self.targets.values():
            out.append({"method": "vhost_scsi_controller_add_target", "params": {
                "ctrlr": self.name, "scsi_target_num": t.num, "bdev_name": t.bdev_name}})
        return out + self.coalescing_entries()

    def backend_info(self) -> dict[str, Any]:
        return {"scsi": [t.info() for t in self.targets.values()]}

    # -- requests -------------------------------------------------------------------------

    def handle_chain(self, rs: RingState, chain: Chain) -> None:
        if rs.vring.index == 0:
            self._control(rs, chain)
            return
        hdr, data_out = take(chain.readable, _REQ_SIZE)
        resp_views = chain.writable
        if len(hdr) < _REQ_SIZE or sum(len(v) for v in resp_views) < SCSI_RESP_HDR.size:
            self.fail(rs, f"request {chain.head}: header or response too short")
            rs.outstanding -= 1
            return
        lun_raw, tag, _attr, _prio, _crn = SCSI_REQ_HDR.unpack_from(hdr)
        target = self.targets.get(lun_raw[1]) if lun_raw[0] == 1 else None
        if target is None:   # the SCSI layer answers for missing LUNs of a present target
            self._respond(rs, chain.head, resp_views, SCSI_S_BAD_TARGET, 0, b"", 0, 0)
            return
        # skip the response header in the writable views: data-in follows it
        _skipped, data_in = take(chain.writable, _RESP_SIZE)
        task = ScsiTask()
        task.lun = ((lun_raw[2] & 0x3F) << 8) | lun_raw[3]
        task.cdb = hdr[SCSI_REQ_HDR.size:]
        task.tag = tag
        task.initiator_port = self.initiator_port
        task.target_port = self.target_port
        out_len = sum(len(v) for v in data_out)
        in_len = sum(len(v) for v in data_in)
        if out_len:
            task.dxfer_dir = DataDir.TO_DEVICE
            task.transfer_length = out_len
            task.data_out = data_out
        elif in_len:
            task.dxfer_dir = DataDir.FROM_DEVICE
            task.transfer_length = in_len
        task.ctx = (rs, chain.head, chain.writable, data_in, in_len, out_len)
        task.on_complete = self._task_done
        target.device.execute(task)

    def _task_done(self, task: ScsiTask) -> None:
        ctx: tuple[RingState, int, list[memoryview], list[memoryview], int, int] = task.ctx  # type: ignore[assignment]
        rs, head, writable, data_in, in_len, out_len = ctx
        n = 0
        if task.data_in_length and in_len:
            want = min(task.data_in_length, in_len)
            pos = 0
            views = data_in
            for buf in task.data_in:
                if pos >= want:
                    break
                chunk = memoryview(buf)[:want - pos]
                k = _write(views, chunk)
                pos += k
                _, views = take(views, k)
            n = pos
        if task.dxfer_dir == DataDir.FROM_DEVICE:
            resid = max(0, in_len - n)
        elif task.dxfer_dir == DataDir.TO_DEVICE and task.write_length >= 0:
            resid = max(0, out_len - task.write_length)
        else:
            resid = 0
        self._respond(rs, head, writable, SCSI_S_OK, task.status, task.sense, resid, n)

    def _respond(self, rs: RingState, head: int, writable: list[memoryview], response: int,
                 status: int, sense_data: bytes, resid: int, data_len: int) -> None:
        sense_data = sense_data[:SCSI_SENSE_SIZE]
        resp = SCSI_RESP_HDR.pack(len(sense_data), resid, 0, status, response) + sense_data
        _write(writable, resp)
        self.complete(rs, head, _RESP_SIZE + data_len)

    def _control(self, rs: RingState, chain: Chain) -> None:
        hdr, _ = take(chain.readable, 4)
        typ = int.from_bytes(hdr, "little") if len(hdr) == 4 else -1
        if typ == SCSI_T_TMF:
            req, _ = take(chain.readable, 24)
            if len(req) < 24:
                self.fail(rs, f"control request {chain.head} is too short")
                rs.outstanding -= 1
                return
            subtype = int.from_bytes(req[4:8], "little")
            lun_raw = req[8:16]
            tag = int.from_bytes(req[16:24], "little")
            target = self.targets.get(lun_raw[1]) if lun_raw[0] == 1 else None
            if target is None:
                self._control_done(rs, chain, SCSI_S_BAD_TARGET)
                return
            fn = {_TMF_ABORT_TASK: TmfFunction.ABORT_TASK,
                  _TMF_LUN_RESET: TmfFunction.LOGICAL_UNIT_RESET}.get(subtype)
            if fn is None:
                self._control_done(rs, chain, SCSI_S_FUNCTION_REJECTED)
                return
            lun = ((lun_raw[2] & 0x3F) << 8) | lun_raw[3]
            target.device.task_mgmt(fn, lun, tag, self.initiator_port,
                                    lambda resp: self._control_done(rs, chain, SCSI_S_FUNCTION_SUCCEEDED))
        elif typ in (SCSI_T_AN_QUERY, SCSI_T_AN_SUBSCRIBE):
            # no asynchronous notifications: event_actual 0, response OK
            n = _write(chain.writable, bytes(5))
            self.complete(rs, chain.head, n)
        else:
            self._control_done(rs, chain, SCSI_S_FUNCTION_REJECTED)

    def _control_done(self, rs: RingState, chain: Chain, response: int) -> None:
        n = _write(chain.writable, bytes((response,)))
        self.complete(rs, chain.head, n)
