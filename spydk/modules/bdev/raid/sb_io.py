"""Reading and writing raid superblocks on base bdevs (control plane, app thread)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk.bdev import Bdev, BdevError, BdevEvent, BdevIO, open_ext
from spydk.modules.bdev.raid import sb as sbm

if TYPE_CHECKING:
    from spydk.modules.bdev.raid.bdev_raid import BaseInfo, RaidBdev

log = logging.getLogger("spydk.bdev.raid")


def read_superblock(bdev_name: str, cb: Callable[[sbm.Superblock | None], Any]) -> None:
    """Read the superblock at the start of ``bdev_name``: cb(Superblock) or cb(None) when
    there is none (or it is damaged: logged)."""
    try:
        desc = open_ext(bdev_name, False, _ignore)
    except BdevError:
        cb(None)
        return
    bdev = desc.bdev
    ch = desc.get_io_channel()
    bs = bdev.block_size
    first = -(-sbm.HEADER.size // bs) * bs

    def finish(sb: sbm.Superblock | None) -> None:
        desc.put_io_channel(ch)
        desc.close()
        cb(sb)

    def read(nbytes: int, then: Callable[[bytes], Any]) -> None:
        if nbytes > bdev.num_blocks * bs:
            finish(None)
            return
        buf = bytearray(nbytes)

        def done(io: BdevIO, ok: bool, _arg: Any) -> None:
            if not ok:
                log.warning("raid: reading the superblock area of %s failed", bdev_name)
                finish(None)
            else:
                then(bytes(buf))
        if desc.read_blocks(ch, buf, 0, nbytes // bs, done, None):
            finish(None)

    def parse(data: bytes) -> None:
        try:
            length = sbm.needed_length(data)
        except sbm.SbError:
            finish(None)  # not a raid member: the common case, no noise
            return
        if length > len(data):
            read(-(-length // bs) * bs, parse)
            return
        try:
            finish(sbm.decode(data))
        except sbm.SbError as e:
            log.warning("raid: %s has a damaged superblock: %s", bdev_name, e)
            finish(None)
    read(first, parse)


def _ignore(ev: BdevEvent, bdev: Bdev, ctx: Any) -> None:
    pass


def write_superblock(raid: RaidBdev, targets: list[BaseInfo], data: bytes, cb: Callable[[int], Any]) -> None:
    """Write ``data`` at block 0 of each target through the raid's app-thread channel."""
    _write_all(raid, targets, data, cb)


def clear_superblocks(raid: RaidBdev, cb: Callable[[int], Any]) -> None:
    targets = [b for b in raid.bases if b.desc is not None]
    size = -(-raid.sb.length // raid.block_size) * raid.block_size if raid.sb else raid.block_size
    _write_all(raid, targets, bytes(size), cb)


def _write_all(raid: RaidBdev, targets: list[BaseInfo], data: bytes, cb: Callable[[int], Any]) -> None:
    rch = raid.app_ch
    left = [len(targets) + 1, 0]

    def one(io: BdevIO | None, ok: bool, b: Any) -> None:
        if not ok:
            left[1] = -5
            log.error("raid %s: writing the superblock to %s failed", raid.name, getattr(b, "name", "?"))
        left[0] -= 1
        if left[0] == 0:
            cb(left[1])
    for b in targets:
        ch = rch.chs[b.slot] if rch is not None else None
        d = b.desc
        if ch is None or d is None:
            d2 = b.desc
            if d2 is None:
                one(None, False, b)
                continue
            ch = d2.get_io_channel()   # a base not in the channels yet (being added)
            tmp = ch

            def done(io: BdevIO, ok: bool, b: Any, tmp: Any = tmp, d2: Any = d2) -> None:
                d2.put_io_channel(tmp)
                one(io, ok, b)
            if d2.write_blocks(ch, data, 0, len(data) // d2.bdev.block_size, done, b):
                d2.put_io_channel(tmp)
                one(None, False, b)
            continue
        if d.write_blocks(ch, data, 0, len(data) // d.bdev.block_size, one, b):
            one(None, False, b)
    one(None, True, None)
