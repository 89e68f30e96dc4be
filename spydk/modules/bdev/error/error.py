"""The error bdev (SPDK's module/bdev/error): a pass-through that fails I/O on request.

    bdev_error_create base_name [uuid]     -> "EE_<base_name>"
    bdev_error_delete name
    bdev_error_inject_error name io_type error_type [num] [queue_depth]
                            [corrupt_offset] [corrupt_value] [nvme_sct] [nvme_sc]
    bdev_error_resume_pending name

io_type: read, write, unmap, flush, all, or clear (drop every injection). error_type:
failure (complete with FAILED), nomem (NOMEM: the layer retries it later), pending (hold
it until bdev_error_resume_pending or deletion), corrupt_data (XOR corrupt_value into
the byte at corrupt_offset: of the data written, or of the data read after the base
read it), nvme_failure (complete with the NVMe status nvme_sct/nvme_sc). Each injection
hits the next ``num`` matching I/O (default 1); with ``queue_depth`` it hits only while
at least that many I/O are outstanding on the channel.
"""
from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.bdev.bdev import BdevError, get_bdev, register_bdev, unregister_bdev_by_name
from spydk.bdev.io import FAILED, FLUSH, NOMEM, READ, SUCCESS, UNMAP, WRITE, BdevIO
from spydk.bdev.module import BdevModule, register_module
from spydk.bdev.vbdev import BaseHandle, StackedBdev, VChannel

IO_TYPES = {"read": READ, "write": WRITE, "unmap": UNMAP, "flush": FLUSH}
ERROR_TYPES = ("failure", "pending", "corrupt_data", "nomem", "nvme_failure")


@dataclass
class Injection:
    error_type: str
    num: int
    queue_depth: int = 0
    corrupt_offset: int = 0
    corrupt_value: int = 0
    nvme_sct: int = 0
    nvme_sc: int = 0


class ErrorModule(BdevModule):
    name = "error"


module = register_module(ErrorModule())


class ErrorBdev(StackedBdev):
    def __init__(self, name: str, handle: BaseHandle, uuid: str | None):
        super().__init__(name, module, handle, uuid=uuid, product_name="Error Injection Disk")
        self.injections: dict[int, Injection] = {}
        self.pending: list[BdevIO] = []

    def submit_request(self, ctx: VChannel, io: BdevIO) -> None:
        inj = self.injections.get(io.type) if self.injections else None
        if inj is None or (inj.queue_depth and io.ch.outstanding < inj.queue_depth):
            self.forward(ctx, io)
            return
        inj.num -= 1
        if inj.num <= 0:
            del self.injections[io.type]
        et = inj.error_type
        if et == "failure":
            io.complete(FAILED)
        elif et == "nomem":
            io.complete(NOMEM)
        elif et == "nvme_failure":
            io.complete_nvme(0, inj.nvme_sct, inj.nvme_sc)
        elif et == "pending":
            self.pending.append(io)
        else:  # corrupt_data
            if io.type == WRITE:
                _corrupt(io, inj)
                self.forward(ctx, io)
            else:
                io.driver_ctx = inj
                self.forward(ctx, io)

    def base_done(self, child: BdevIO, ok: bool, io: BdevIO) -> None:
        inj = io.driver_ctx
        if inj is not None:
            io.driver_ctx = None
            if ok:
                _corrupt(io, inj)
        super().base_done(child, ok, io)

    def inject(self, io_type: str, inj: Injection | None) -> None:
        if io_type == "clear":
            self.injections.clear()
            return
        types = list(IO_TYPES.values()) if io_type == "all" else [IO_TYPES[io_type]]
        for t in types:
            if inj is None:
                self.injections.pop(t, None)
            else:
                self.injections[t] = Injection(**vars(inj))

    def resume_pending(self, status: int = SUCCESS) -> None:
        """Send the held I/O on to the base (or fail them with ``status`` != SUCCESS)."""
        held, self.pending = self.pending, []
        for io in held:
            if status == SUCCESS:
                self.forward(io.ch.module_ch.ctx, io)
            else:
                io.complete(status)

    def destruct(self, done: Callable[[int], Any]) -> None:
        self.resume_pending(FAILED)
        super().destruct(done)

    def write_config_json(self) -> dict[str, Any]:
        return {"method": "bdev_error_create", "params": {"base_name": self.handle.base.name,
                                                          "uuid": str(self.uuid)}}


def _corrupt(io: BdevIO, inj: Injection) -> None:
    pos = inj.corrupt_offset
    for iov in io.iovs or ():
        n = len(iov)
        if pos < n:
            v = memoryview(iov)
            v[pos] ^= inj.corrupt_value
            return
        pos -= n


def create_error_bdev(base_name: str, uuid: str | None = None) -> str:
    if not base_name:
        raise BdevError(errno.EINVAL, "base_name must not be empty")
    if get_bdev(base_name) is None:
        raise BdevError(errno.ENODEV, f"base_name {base_name!r}: bdev does not exist")
    name = f"EE_{base_name}"
    if get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev name {name!r} already exists")
    handle = BaseHandle(module, base_name)
    bdev = ErrorBdev(name, handle, uuid)
    try:
        register_bdev(bdev)
    except BdevError:
        bdev.destruct(lambda rc: None)
        raise
    return name


def _error_bdev(name: str) -> ErrorBdev:
    b = get_bdev(name)
    if not isinstance(b, ErrorBdev):
        raise BdevError(errno.ENODEV, f"error bdev {name!r} does not exist")
    return b


def inject_error(name: str, io_type: str, error_type: str, num: int = 1, queue_depth: int = 0,
                 corrupt_offset: int = 0, corrupt_value: int = 0, nvme_sct: int = 0,
                 nvme_sc: int = 0) -> None:
    b = _error_bdev(name)
    if io_type not in IO_TYPES and io_type not in ("all", "clear"):
        raise BdevError(errno.EINVAL, f"io_type {io_type!r} is not one of read, write, unmap, flush, all, clear")
    if error_type not in ERROR_TYPES:
        raise BdevError(errno.EINVAL, f"error_type {error_type!r} is not one of {', '.join(ERROR_TYPES)}")
    if num < 0:
        raise BdevError(errno.EINVAL, f"num must not be negative, got {num}")
    if error_type == "corrupt_data" and not corrupt_value:
        raise BdevError(errno.EINVAL, "corrupt_value must be non-zero for error_type corrupt_data")
    if error_type == "corrupt_data" and io_type not in ("read", "write", "clear"):
        raise BdevError(errno.EINVAL, f"corrupt_data needs io_type read or write, not {io_type!r}")
    if corrupt_offset >= b.block_size * b.num_blocks:
        raise BdevError(errno.EINVAL, f"corrupt_offset {corrupt_offset} is beyond the bdev")
    inj = None if num == 0 else Injection(error_type, num or 1, queue_depth, corrupt_offset, corrupt_value,
                                          nvme_sct, nvme_sc)
    b.inject(io_type, inj)


def delete_error_bdev(name: str, cb: Callable[[int], Any]) -> None:
    _error_bdev(name)
    unregister_bdev_by_name(name, module, cb)
