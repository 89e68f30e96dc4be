"""SPDK's kernel NBD export: nbd_start_disk / nbd_stop_disk / nbd_get_disks.

A bdev becomes /dev/nbdX: one end of a socketpair goes to the Linux nbd driver through
its generic netlink interface (NBD_CMD_CONNECT, which returns at once; no thread parked in
NBD_DO_IT), the other end is served by the NBD server's connection code in transmission
mode (the driver speaks no handshake). Needs root and the nbd module (``modprobe nbd``).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from spydk.bdev import BdevError, get_bdev
from spydk.bdev.io import FLUSH, UNMAP, WRITE_ZEROES
from spydk.nbd import netlink as nl
from spydk.nbd.codec import Export, NbdServerConnection
from spydk.nbd.server import NbdConnection, server

log = logging.getLogger("spydk.nbd")
_DEV = re.compile(r"^/dev/nbd(\d+)$")


@dataclass
class KernelDisk:
    nbd_device: str
    bdev_name: str
    index: int
    conn: NbdConnection | None = None
    transport: Any = None


disks: dict[str, KernelDisk] = {}
_seq = [0]


def _check_module() -> None:
    if not os.path.exists("/sys/module/nbd"):
        raise BdevError(errno.ENODEV, "the nbd kernel module is not loaded on this host (run `modprobe nbd` "
                                      "as root; some kernels, e.g. in containers, do not have it)")


async def _genl(msg: bytes) -> list[tuple[int, int, int, dict[int, bytes]]]:
    """Send one request on a fresh generic netlink socket and read the answers up to the ack."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_GENERIC)
    s.setblocking(False)
    try:
        s.bind((0, 0))
        await loop.sock_sendall(s, msg)
        out: list[tuple[int, int, int, dict[int, bytes]]] = []
        while True:
            data = await asyncio.wait_for(loop.sock_recv(s, 65536), 10)
            msgs = nl.parse(data)
            out += msgs
            if any(t == nl.NLMSG_ERROR for t, *_ in msgs):
                return out
    finally:
        s.close()


async def _family() -> int:
    _seq[0] += 1
    for typ, _s, err, attrs in await _genl(nl.get_family(_seq[0])):
        if typ == nl.NLMSG_ERROR and err:
            raise BdevError(-err, "the kernel has no nbd netlink family (is the nbd module loaded?)")
        if nl.CTRL_ATTR_FAMILY_ID in attrs:
            return int.from_bytes(attrs[nl.CTRL_ATTR_FAMILY_ID][:2], "little")
    raise BdevError(errno.ENODEV, "the kernel did not report the nbd netlink family")


def _free_index() -> int:
    i = 0
    while True:
        if f"/dev/nbd{i}" not in disks and os.path.exists(f"/sys/block/nbd{i}") and \
                not os.path.exists(f"/sys/block/nbd{i}/pid"):
            return i
        if not os.path.exists(f"/sys/block/nbd{i}"):
            raise BdevError(errno.ENODEV, "no free /dev/nbdX device (load nbd with more nbds_max)")
        i += 1


async def start_disk(bdev_name: str, nbd_device: str | None = None) -> str:
    b = get_bdev(bdev_name)
    if b is None:
        raise BdevError(errno.ENODEV, f"bdev_name {bdev_name!r}: bdev does not exist")
    if nbd_device is not None:
        m = _DEV.match(nbd_device)
        if m is None:
            raise BdevError(errno.EINVAL, f"nbd_device {nbd_device!r} is not of the form /dev/nbdN")
        if nbd_device in disks:
            raise BdevError(errno.EBUSY, f"nbd_device {nbd_device} is already in use by bdev {disks[nbd_device].bdev_name}")
    _check_module()
    index = int(m.group(1)) if nbd_device is not None and m is not None else _free_index()
    dev = f"/dev/nbd{index}"
    exp = Export(bdev_name, b.num_blocks * b.block_size, b.block_size, can_trim=b.supports(UNMAP),
                 can_write_zeroes=b.supports(WRITE_ZEROES), can_flush=b.supports(FLUSH))
    family = await _family()
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    disk = KernelDisk(dev, bdev_name, index)
    loop = asyncio.get_running_loop()
    try:
        codec = NbdServerConnection(lambda n: None, kernel_export=exp)
        transport, conn = await loop.create_connection(lambda: NbdConnection(server, codec, exp), sock=mine)
        disk.conn, disk.transport = conn, transport
        _seq[0] += 1
        replies = await _genl(nl.connect(family, _seq[0], index, exp.size, exp.block_size,
                                         exp.tflags, theirs.fileno()))
    except BaseException:
        if disk.transport is not None:
            disk.transport.close()
        else:
            mine.close()
        raise
    finally:
        theirs.close()     # the driver holds its own reference now
    for typ, _s, err, _a in replies:
        if typ == nl.NLMSG_ERROR and err:
            disk.transport.close()
            raise BdevError(-err, f"the nbd driver refused {dev}: {os.strerror(-err)}")
    disks[dev] = disk
    log.info("bdev %s attached as %s", bdev_name, dev)
    return dev


async def stop_disk(nbd_device: str) -> None:
    disk = disks.get(nbd_device)
    if disk is None:
        raise BdevError(errno.ENODEV, f"nbd_device {nbd_device!r} is not started by this application")
    family = await _family()
    _seq[0] += 1
    await _genl(nl.disconnect(family, _seq[0], disk.index))
    del disks[nbd_device]
    if disk.transport is not None:
        disk.transport.close()


def stop_all() -> None:
    for d in list(disks.values()):
        if d.transport is not None:
            d.transport.close()   # the driver sees the socket close and fails the device
    disks.clear()


def get_disks(nbd_device: str | None = None) -> list[dict[str, Any]]:
    if nbd_device is not None and nbd_device not in disks:
        raise BdevError(errno.ENODEV, f"nbd_device {nbd_device!r} is not started by this application")
    return [{"nbd_device": d.nbd_device, "bdev_name": d.bdev_name} for d in disks.values()
            if nbd_device is None or d.nbd_device == nbd_device]


def config_json() -> list[dict[str, Any]]:
    return [{"method": "nbd_start_disk", "params": {"bdev_name": d.bdev_name, "nbd_device": d.nbd_device}}
            for d in disks.values()]
