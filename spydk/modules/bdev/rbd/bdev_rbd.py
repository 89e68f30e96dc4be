"""The Ceph RBD bdev (SPDK's module/bdev/rbd): an RBD image as a bdev, on librbd's
asynchronous API.

Clusters registered with ``bdev_rbd_register_cluster`` are one librados connection shared
by every bdev created with ``cluster_name``; a bdev created without one gets its own
connection (``user_id`` + ``config``, as SPDK). Each spydk thread using the bdev has its
own completion eventfd (librbd.Completions); READ/WRITE (vectored, no copies), UNMAP
(discard), WRITE_ZEROES, FLUSH go straight to librbd, RESET waits for a flush.
"""
from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from ctypes import byref, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any

from spydk.bdev import Bdev, BdevError, BdevIO, BdevModule, get_bdev, register_bdev, register_module
from spydk.bdev.io import FAILED, FLUSH, NOMEM, READ, RESET, SUCCESS, UNMAP, WRITE, WRITE_ZEROES
from spydk.modules.bdev.rbd import librbd
from spydk.thread import IoChannel, get_reactor, io_device_register, io_device_unregister

log = logging.getLogger("spydk.bdev.rbd")


@dataclass
class ClusterConfig:
    name: str
    user_id: str | None = None
    config_param: dict[str, str] | None = None
    config_file: str | None = None
    key_file: str | None = None
    core_mask: str | None = None
    cluster: librbd.Cluster | None = None
    users: set[str] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cluster_name": self.name}
        if self.user_id:
            out["user_id"] = self.user_id
        if self.config_param:
            out["config_param"] = dict(self.config_param)
        if self.config_file:
            out["config_file"] = self.config_file
        if self.key_file:
            out["key_file"] = self.key_file
        if self.core_mask:
            out["core_mask"] = self.core_mask
        return out


class RbdModule(BdevModule):
    name = "rbd"

    def __init__(self) -> None:
        self.clusters: dict[str, ClusterConfig] = {}
        self.count = 0

    def config_json(self) -> list[dict[str, Any]]:
        out = []
        for c in self.clusters.values():
            p: dict[str, Any] = {"name": c.name}
            for k in ("user_id", "config_param", "config_file", "key_file", "core_mask"):
                v = getattr(c, k)
                if v:
                    p[k] = v
            out.append({"method": "bdev_rbd_register_cluster", "params": p})
        return out


module = register_module(RbdModule())


class RbdChannel:
    __slots__ = ("cpl",)

    def __init__(self, cpl: librbd.Completions):
        self.cpl = cpl


class RbdBdev(Bdev):
    def __init__(self, name: str, block_size: int, size: int, pool: str, image_name: str,
                 cluster: librbd.Cluster, own_cluster: bool, cluster_name: str | None,
                 user_id: str | None, config: dict[str, str] | None, uuid: str | None, read_only: bool):
        super().__init__(name, module, block_size, size // block_size, uuid=uuid, product_name="Ceph Rbd Disk")
        self.pool = pool
        self.image_name = image_name
        self.cluster = cluster
        self.own_cluster = own_cluster
        self.cluster_name = cluster_name
        self.user_id = user_id
        self.config = config
        self.read_only = read_only
        self.failing = False       # the last librbd I/O failed (errors are logged once per run)
        self.io_errors = 0
        self.ioctx: c_void_p | None = None
        self.image = c_void_p()
        self.io_device = self._dev = _RbdDevice(name)
        _, self.rbd = librbd.load()

    # -- channels: one completion eventfd per thread -----------------------------------------

    def register_channels(self) -> None:
        io_device_register(self._dev, self._create_ch, self._destroy_ch, f"rbd_{self.name}")

    def _create_ch(self, dev: Any, ioch: IoChannel) -> None:
        r = get_reactor()
        t = ioch.thread
        ioch.ctx = RbdChannel(librbd.Completions(lambda fd, fn: r.add_reader(fd, t, fn), r.remove_reader))

    def _destroy_ch(self, dev: Any, ioch: IoChannel) -> None:
        ioch.ctx.cpl.close()

    # -- I/O -----------------------------------------------------------------------------------

    def io_type_supported(self, io_type: int) -> bool:
        if self.read_only:
            return io_type in (READ, FLUSH, RESET)
        return io_type in (READ, WRITE, UNMAP, FLUSH, RESET, WRITE_ZEROES)

    def submit_request(self, ctx: RbdChannel, io: BdevIO) -> None:
        t = io.type
        off = io.offset_blocks * self.block_size
        n = io.nbytes
        rbd = self.rbd
        cpl = ctx.cpl
        done = _Done(io, self)
        try:
            if t == READ or t == WRITE:
                arr, cnt, keep = librbd.iovecs(io.iovs or [], t == READ)
                comp = cpl.new(done, keep)
                rc = (rbd.rbd_aio_readv if t == READ else rbd.rbd_aio_writev)(self.image, arr, cnt, off, comp)
            elif t == UNMAP:
                comp = cpl.new(done)
                rc = rbd.rbd_aio_discard(self.image, off, n, comp)
            elif t == WRITE_ZEROES:
                comp = cpl.new(done)
                rc = rbd.rbd_aio_write_zeroes(self.image, off, n, comp, 0, 0)
            else:   # FLUSH, and RESET: nothing to abort in librbd; a flush drains what is in flight
                comp = cpl.new(done)
                rc = rbd.rbd_aio_flush(self.image, comp)
        except librbd.LibError:
            io.complete(NOMEM)
            return
        if rc < 0:
            cpl.cancel(comp)
            self.io_failed(rc)
            io.complete(FAILED)

    # -- errors: said once per run of failures, not per I/O -------------------------------------

    def io_failed(self, rc: int) -> None:
        self.io_errors += 1
        if self.failing:
            return
        self.failing = True
        code = -rc
        name = errno.errorcode.get(code, str(code))
        hint = (": no OSD answered within rados_osd_op_timeout; I/O succeeds again once the OSDs are back"
                if code == errno.ETIMEDOUT else "")
        log.error("rbd bdev %s (image %s/%s): librbd I/O failed with %s (%s)%s", self.name, self.pool,
                  self.image_name, name, os.strerror(code), hint)

    def io_recovered(self) -> None:
        self.failing = False
        log.warning("rbd bdev %s (image %s/%s): librbd I/O succeeds again (%d failed I/Os so far)", self.name,
                    self.pool, self.image_name, self.io_errors)

    # -- lifetime -------------------------------------------------------------------------------

    def destruct(self, done: Callable[[int], Any]) -> None:
        t = get_reactor().app_thread
        assert t is not None

        def closed(_rc: int) -> None:
            def fin(_d: Any) -> None:
                self._release_cluster()
                done(0)
            io_device_unregister(self._dev, fin)
        _close_image(self, closed)

    def _release_cluster(self) -> None:
        if self.ioctx is not None:
            librbd.load()[0].rados_ioctx_destroy(self.ioctx)
            self.ioctx = None
        if self.own_cluster:
            self.cluster.shutdown()
        elif self.cluster_name in module.clusters:
            module.clusters[self.cluster_name].users.discard(self.name)

    def dump_info_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"pool_name": self.pool, "rbd_name": self.image_name}
        if self.cluster_name:
            d["cluster_name"] = self.cluster_name
        else:
            if self.user_id:
                d["user_id"] = self.user_id
            if self.config:
                d["config"] = dict(self.config)
        return {"rbd": d}

    def write_config_json(self) -> dict[str, Any]:
        p: dict[str, Any] = {"name": self.name, "pool_name": self.pool, "rbd_name": self.image_name,
                             "block_size": self.block_size, "uuid": str(self.uuid)}
        if self.cluster_name:
            p["cluster_name"] = self.cluster_name
        else:
            if self.user_id:
                p["user_id"] = self.user_id
            if self.config:
                p["config"] = dict(self.config)
        if self.read_only:
            p["read_only"] = True
        return {"method": "bdev_rbd_create", "params": p}

    def resize_mib(self, new_size_mib: int, cb: Callable[[int], Any]) -> None:
        cur = self.num_blocks * self.block_size
        new = new_size_mib * 1024 * 1024
        if new < cur:
            raise BdevError(errno.EINVAL, f"new_size {new_size_mib} MiB is smaller than the current "
                                          f"{cur // (1024 * 1024)} MiB: rbd bdevs only grow")
        rc = self.rbd.rbd_resize(self.image, c_uint64(new))
        if rc < 0:
            raise BdevError(-rc, f"resizing image {self.pool}/{self.image_name}: rc {rc}")
        self.notify_blockcnt_change(new // self.block_size)
        cb(0)


class _RbdDevice:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class _Done:
    """Turns librbd's return value into the I/O's completion."""

    __slots__ = ("io", "bdev")

    def __init__(self, io: BdevIO, bdev: RbdBdev):
        self.io = io
        self.bdev = bdev

    def __call__(self, rc: int) -> None:
        if rc >= 0:
            if self.bdev.failing:
                self.bdev.io_recovered()
            self.io.complete(SUCCESS)
        else:
            self.bdev.io_failed(rc)
            self.io.complete(FAILED)


# app-thread completions for open/close, per reactor (tests make one reactor per test)
_ctl: dict[int, librbd.Completions] = {}


def _control() -> librbd.Completions:
    r = get_reactor()
    c = _ctl.get(id(r))
    if c is None:
        t = r.app_thread
        assert t is not None
        for old in _ctl.values():
            old.close_quietly()
        _ctl.clear()
        c = _ctl[id(r)] = librbd.Completions(lambda fd, fn: r.add_reader(fd, t, fn), r.remove_reader)
    return c


def _close_image(b: RbdBdev, cb: Callable[[int], Any]) -> None:
    if not b.image:
        cb(0)
        return
    ctl = _control()
    comp = ctl.new(cb)
    rc = b.rbd.rbd_aio_close(b.image, comp)
    b.image = c_void_p()
    if rc < 0:
        ctl.cancel(comp)
        cb(rc)


def open_image(b: RbdBdev, cb: Callable[[int], Any]) -> None:
    assert b.ioctx is not None
    ctl = _control()
    comp = ctl.new(cb, b)
    fn = b.rbd.rbd_aio_open_read_only if b.read_only else b.rbd.rbd_aio_open
    rc = fn(b.ioctx, b.image_name.encode(), byref(b.image), None, comp)
    if rc < 0:
        ctl.cancel(comp)
        cb(rc)


def image_size(b: RbdBdev) -> int:
    size = c_uint64()
    librbd.check(b.rbd.rbd_get_size(b.image, byref(size)), "rbd_get_size")
    return int(size.value)


def next_name() -> str:
    while True:
        n = f"Ceph{module.count}"
        module.count += 1
        if get_bdev(n) is None:
            return n


def register(b: RbdBdev) -> None:
    b.register_channels()
    try:
        register_bdev(b)
    except BdevError:
        io_device_unregister(b._dev)
        raise
