"""The delay bdev (SPDK's module/bdev/delay): adds latency to reads and writes of a base.

    bdev_delay_create base_bdev_name name avg_read p99_read avg_write p99_write [uuid]
    bdev_delay_delete name
    bdev_delay_update_latency delay_bdev_name latency_type latency_us

Latencies are microseconds. One I/O in a hundred gets the p99 latency, the others the
average. The base completes at its own pace; the completion is then held in a per-channel
queue until its deadline and released by a timed poller that exists only while something
is held (nothing sleeps, an idle delay bdev costs nothing). Other I/O types pass through.
"""
from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.bdev import Bdev, BdevError, get_bdev, register_bdev, unregister_bdev_by_name
from spydk.bdev.io import READ, WRITE, BdevIO
from spydk.bdev.module import BdevModule, register_module
from spydk.bdev.vbdev import BaseHandle, StackedBdev, VChannel, build_waiting

log = logging.getLogger("spydk.bdev")

LATENCY_TYPES = ("avg_read", "p99_read", "avg_write", "p99_write")
P99_EVERY = 100


@dataclass
class DelayConfig:
    name: str
    base_bdev_name: str
    latencies_us: list[int]          # in LATENCY_TYPES order
    uuid: str | None


def _check_latencies(lat: list[int]) -> None:
    for kind, v in zip(LATENCY_TYPES, lat, strict=True):
        if v < 0:
            raise BdevError(errno.EINVAL, f"{kind}_latency must not be negative, got {v}")
    if lat[1] < lat[0]:
        raise BdevError(errno.EINVAL, f"p99_read_latency {lat[1]} is below avg_read_latency {lat[0]}")
    if lat[3] < lat[2]:
        raise BdevError(errno.EINVAL, f"p99_write_latency {lat[3]} is below avg_write_latency {lat[2]}")


class DelayModule(BdevModule):
    name = "delay"

    def __init__(self) -> None:
        self.configs: dict[str, DelayConfig] = {}

    def fini(self) -> None:
        # The configs belong to this app instance: forget them at shutdown, so a later app
        # in the same process (tests, embedding) does not re-create these bdevs on examine.
        self.configs.clear()

    def config_json(self) -> list[dict[str, Any]]:
        out = []
        for c in self.configs.values():
            b = get_bdev(c.name)
            p: dict[str, Any] = {"base_bdev_name": c.base_bdev_name, "name": c.name}
            for kind, v in zip(LATENCY_TYPES, c.latencies_us, strict=True):
                p[f"{kind}_latency"] = v
            uuid = str(b.uuid) if isinstance(b, DelayBdev) else c.uuid
            if uuid:
                p["uuid"] = uuid
            out.append({"method": "bdev_delay_create", "params": p})
        return out

    def examine_config(self, bdev: Bdev) -> None:
        build_waiting("delay", self.configs.values(), bdev, _build)


module = register_module(DelayModule())


class _Held:
    """A channel's held completions: one FIFO per latency type (deadlines rise in each)."""

    __slots__ = ("queues", "poller", "count")

    def __init__(self) -> None:
        self.queues: tuple[deque[tuple[int, BdevIO, int]], ...] = (deque(), deque(), deque(), deque())
        self.poller: Any = None
        self.count = 0


class DelayBdev(StackedBdev):
    def __init__(self, cfg: DelayConfig, handle: BaseHandle):
        super().__init__(cfg.name, module, handle, uuid=cfg.uuid, product_name="delay")
        self.cfg = cfg
        self.seq = 0
        self._now = time.monotonic_ns

    def latency_ns(self, kind: int) -> int:
        return self.cfg.latencies_us[kind] * 1000

    def submit_request(self, ctx: VChannel, io: BdevIO) -> None:
        if ctx.state is None:
            ctx.state = _Held()
        self.forward(ctx, io)

    def base_done(self, child: BdevIO, ok: bool, io: BdevIO) -> None:
        t = io.type
        if t != READ and t != WRITE:
            super().base_done(child, ok, io)
            return
        self.seq += 1
        kind = (0 if t == READ else 2) + (1 if self.seq % P99_EVERY == 0 else 0)
        lat = self.cfg.latencies_us[kind]
        if not lat:
            io.complete(child.status)
            return
        held: _Held = io.ch.module_ch.ctx.state
        held.queues[kind].append((self._now() + lat * 1000, io, child.status))
        held.count += 1
        if held.poller is None:
            period = max(10, min(1000, min(v for v in self.cfg.latencies_us if v) // 10))
            held.poller = io.ch.thread.poller_register(self._release, held, period, "delay_release")

    def _release(self, held: _Held) -> int:
        now = self._now()
        n = 0
        for q in held.queues:
            while q and q[0][0] <= now:
                _, io, status = q.popleft()
                n += 1
                io.complete(status)
        held.count -= n
        if not held.count and held.poller is not None:
            held.poller.unregister()
            held.poller = None
        return n


def _channel_fini(vch: VChannel) -> None:
    held: _Held | None = vch.state
    if held is None:
        return
    if held.poller is not None:
        held.poller.unregister()
        held.poller = None
    for q in held.queues:  # the channel is going away: finish what it still holds
        while q:
            _, io, status = q.popleft()
            io.complete(status)
    held.count = 0


def _build(c: DelayConfig) -> DelayBdev:
    handle = BaseHandle(module, c.base_bdev_name, channel_fini=_channel_fini)
    bdev = DelayBdev(c, handle)
    try:
        register_bdev(bdev)
    except BdevError:
        bdev.destruct(lambda rc: None)
        raise
    return bdev


def create_delay(base_bdev_name: str, name: str, avg_read_latency: int, p99_read_latency: int,
                 avg_write_latency: int, p99_write_latency: int, uuid: str | None = None) -> str:
    if not name:
        raise BdevError(errno.EINVAL, "name must not be empty")
    if name in module.configs or get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"bdev name {name!r} already exists")
    lat = [avg_read_latency, p99_read_latency, avg_write_latency, p99_write_latency]
    _check_latencies(lat)
    c = DelayConfig(name, base_bdev_name, lat, uuid)
    if get_bdev(base_bdev_name) is not None:
        _build(c)
    module.configs[name] = c
    return name


def update_latency(delay_bdev_name: str, latency_type: str, latency_us: int) -> None:
    c = module.configs.get(delay_bdev_name)
    if c is None or not isinstance(get_bdev(delay_bdev_name), DelayBdev):
        raise BdevError(errno.ENODEV, f"delay bdev {delay_bdev_name!r} does not exist")
    if latency_type not in LATENCY_TYPES:
        raise BdevError(errno.EINVAL, f"latency_type {latency_type!r} is not one of {', '.join(LATENCY_TYPES)}")
    lat = list(c.latencies_us)
    lat[LATENCY_TYPES.index(latency_type)] = latency_us
    _check_latencies(lat)
    c.latencies_us[:] = lat


def delete_delay(name: str, cb: Callable[[int], Any]) -> None:
    c = module.configs.pop(name, None)
    if c is None:
        raise BdevError(errno.ENODEV, f"delay bdev {name!r} does not exist")
    if get_bdev(name) is None:
        cb(0)
        return
    unregister_bdev_by_name(name, module, cb)
