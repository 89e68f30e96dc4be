"""Building blocks for virtual bdevs stacked on another bdev (passthru, delay, error, split).

    BaseHandle   one write descriptor on the base bdev, claimed EXCL_WRITE by the module,
                 and an io_device whose per-thread channel holds the base's channel;
                 shared by every vbdev built on that base (split parts), closed when the
                 last one is destructed; a hot-removed base unregisters them all.
    StackedBdev  a Bdev that forwards each I/O to the base at ``offset_blocks`` and
                 completes it with the base's status (override ``submit_request`` or
                 ``base_done`` to add behaviour).
"""
from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from typing import Any

from spydk.bdev.bdev import Bdev, BdevError, BdevEvent
from spydk.bdev.channel import BdevChannel
from spydk.bdev.desc import BdevDesc
from spydk.bdev.io import (
    COMPARE,
    COMPARE_AND_WRITE,
    FAILED,
    FLUSH,
    NOMEM,
    READ,
    RESET,
    UNMAP,
    WRITE,
    WRITE_ZEROES,
    BdevIO,
)
from spydk.bdev.module import BdevModule
from spydk.bdev.registry import get_bdev, open_ext, unregister_bdev
from spydk.thread import IoChannel, Thread, io_device_register, io_device_unregister

log = logging.getLogger("spydk.bdev")


def build_waiting(kind: str, configs: Iterable[Any], bdev: Bdev, build: Callable[[Any], Any]) -> None:
    """Examine hook of a vbdev module: build every configured vbdev (``name``,
    ``base_bdev_name``) whose base is ``bdev`` and that does not exist yet, so vbdevs can be
    created, or replayed from a config, before their base appears."""
    for c in list(configs):
        if c.base_bdev_name in (bdev.name, *bdev.aliases) and get_bdev(c.name) is None:
            try:
                build(c)
            except BdevError as e:
                log.error("%s %s on %s: %s", kind, c.name, bdev.name, e.message)

_FORWARDED = (READ, WRITE, UNMAP, FLUSH, RESET, WRITE_ZEROES, COMPARE, COMPARE_AND_WRITE)


class VChannel:
    """A thread's context for the vbdevs of one base: the base channel plus module state."""

    __slots__ = ("base_ch", "thread", "state")

    def __init__(self, base_ch: BdevChannel, thread: Thread):
        self.base_ch = base_ch
        self.thread = thread
        self.state: Any = None


class BaseHandle:
    def __init__(self, module: BdevModule, base_name: str,
                 channel_init: Callable[[VChannel], Any] | None = None,
                 channel_fini: Callable[[VChannel], Any] | None = None):
        self.module = module
        self.users: list[Bdev] = []
        self.channel_init = channel_init
        self.channel_fini = channel_fini
        self.desc: BdevDesc = open_ext(base_name, True, self._event)
        try:
            self.desc.bdev.claim(module, self.desc)
        except BdevError:
            self.desc.close()
            raise
        self.base = self.desc.bdev
        io_device_register(self, self._create, self._destroy, f"{module.name}_{base_name}")

    def _create(self, dev: Any, ioch: IoChannel) -> None:
        vch = VChannel(self.desc.get_io_channel(), ioch.thread)
        if self.channel_init is not None:
            self.channel_init(vch)
        ioch.ctx = vch

    def _destroy(self, dev: Any, ioch: IoChannel) -> None:
        vch: VChannel = ioch.ctx
        if self.channel_fini is not None:
            self.channel_fini(vch)
        self.desc.put_io_channel(vch.base_ch)

    def _event(self, ev: BdevEvent, bdev: Bdev, ctx: Any) -> None:
        if ev == BdevEvent.REMOVE:
            for u in list(self.users):
                try:
                    unregister_bdev(u)
                except BdevError:
                    pass  # already going

    def user_gone(self, user: Bdev, done: Callable[[int], Any]) -> None:
        """Called from a user's destruct: the last one closes the base."""
        if user in self.users:
            self.users.remove(user)
        if self.users:
            done(0)
            return

        def unregistered(_dev: Any) -> None:
            try:
                self.base.release_claim(self.module)
            except BdevError:
                pass
            self.desc.close()
            done(0)
        io_device_unregister(self, unregistered)


class StackedBdev(Bdev):
    def __init__(self, name: str, module: BdevModule, handle: BaseHandle, *, offset_blocks: int = 0,
                 num_blocks: int | None = None, uuid: str | None = None, product_name: str = ""):
        base = handle.base
        super().__init__(name, module, base.block_size,
                         base.num_blocks - offset_blocks if num_blocks is None else num_blocks,
                         uuid=uuid, product_name=product_name, write_cache=base.write_cache,
                         optimal_io_boundary=base.optimal_io_boundary,
                         split_on_optimal_io_boundary=base.split_on_optimal_io_boundary,
                         physical_block_size=base.physical_block_size)
        self.handle = handle
        self.offset_blocks = offset_blocks
        self.io_device = handle
        handle.users.append(self)
        self._done = self.base_done

    def io_type_supported(self, io_type: int) -> bool:
        if io_type == RESET:
            return True
        return io_type in _FORWARDED and self.handle.base.supports(io_type)

    def submit_request(self, ctx: VChannel, io: BdevIO) -> None:
        self.forward(ctx, io)

    def forward(self, ctx: VChannel, io: BdevIO) -> None:
        """Send ``io`` to the base; base_done(child, ok, io) finishes it."""
        d = self.handle.desc
        ch = ctx.base_ch
        t = io.type
        off = io.offset_blocks + self.offset_blocks
        n = io.num_blocks
        if t == READ:
            rc = d.readv_blocks(ch, io.iovs, off, n, self._done, io)  # type: ignore[arg-type]
        elif t == WRITE:
            rc = d.writev_blocks(ch, io.iovs, off, n, self._done, io)  # type: ignore[arg-type]
        elif t == UNMAP:
            rc = d.unmap_blocks(ch, off, n, self._done, io)
        elif t == WRITE_ZEROES:
            rc = d.write_zeroes_blocks(ch, off, n, self._done, io)
        elif t == FLUSH:
            rc = d.flush_blocks(ch, off, n, self._done, io)
        elif t == RESET:
            rc = d.reset(ch, self._done, io)
        elif t == COMPARE:
            rc = d.comparev_blocks(ch, io.iovs, off, n, self._done, io)  # type: ignore[arg-type]
        elif t == COMPARE_AND_WRITE:
            rc = d.compare_and_write_blocks(ch, io.compare_iovs, io.iovs, off, n,  # type: ignore[arg-type]
                                            self._done, io)
        else:
            rc = -errno.ENOTSUP
        if rc:
            io.complete(NOMEM if rc == -errno.ENOMEM else FAILED)

    def base_done(self, child: BdevIO, ok: bool, io: BdevIO) -> None:
        if child.nvme_sct or child.nvme_sc:
            io.complete_nvme(child.nvme_cdw0, child.nvme_sct, child.nvme_sc)
        else:
            io.complete(child.status)

    def destruct(self, done: Callable[[int], Any]) -> None:
        self.handle.user_gone(self, done)
