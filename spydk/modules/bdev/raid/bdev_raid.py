"""The raid bdev (SPDK's module/bdev/raid): raid0, raid1, raid5f and concat over base bdevs.

A raid is *configuring* until every base it waits for is there, then *online* (its bdev
registered), *offline* when it lost more bases than its level survives. With a superblock
(``superblock: true``) every base carries SPDK's on-disk raid superblock (sb.py) and the
raid is found again by examine when its bases appear (after a restart, in any order); a
raid1 or raid5f keeps running degraded when a base fails or is removed, and
``bdev_raid_add_base_bdev`` rebuilds a new base while I/O continues (rebuild.py).

All raid state is changed on the app thread. spydk runs every lightweight thread of a
process on one OS thread, so the I/O path reads the slot tables (``read_slots``,
``write_slots``) and the rebuild lock directly instead of through per-channel copies.
"""
from __future__ import annotations

import errno
import logging
import uuid as _uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from spydk.bdev import (
    Bdev,
    BdevChannel,
    BdevDesc,
    BdevError,
    BdevEvent,
    BdevModule,
    get_bdev,
    open_ext,
    register_bdev,
    register_module,
    unregister_bdev,
)
from spydk.bdev.io import FAILED, FLUSH, READ, RESET, SUCCESS, UNMAP, WRITE, WRITE_ZEROES, BdevIO
from spydk.modules.bdev.raid import sb as sbm
from spydk.modules.bdev.raid.levels import BY_LEVEL, LEVEL_NAMES, LEVELS, LevelOps
from spydk.thread import (
    ChannelIter,
    IoChannel,
    for_each_channel,
    get_io_channel,
    get_reactor,
    get_thread,
    io_device_register,
    io_device_unregister,
    is_io_device,
    put_io_channel,
)

log = logging.getLogger("spydk.bdev.raid")

CONFIGURING, ONLINE, OFFLINE = "configuring", "online", "offline"
# base slot states
CONFIGURED, REBUILDING, MISSING, FAILED_SLOT = "configured", "rebuilding", "missing", "failed"


class Options:
    process_window_size_kb = 1024
    process_max_bandwidth_mb_sec = 0


options = Options()


class BaseInfo:
    """One slot of the array and the base bdev in it (if any)."""

    def __init__(self, slot: int, name: str | None = None, uuid: _uuid.UUID | None = None):
        self.slot = slot
        self.name = name                  # configured name (None: any bdev with ``uuid``)
        self.uuid = uuid                  # expected uuid (from a superblock), or the base's
        self.desc: BdevDesc | None = None
        self.state = MISSING
        self.data_offset = 0
        self.data_size = 0

    @property
    def bdev(self) -> Bdev | None:
        return self.desc.bdev if self.desc is not None else None


class RaidChannel:
    """A thread's context for one raid: the base channels and read-balancing counters."""

    __slots__ = ("raid", "thread", "chs", "reads", "lvl")

    def __init__(self, raid: RaidBdev, thread: Any):
        self.raid = raid
        self.thread = thread
        self.chs: list[BdevChannel | None] = [None] * raid.num_base_bdevs
        self.reads = [0] * raid.num_base_bdevs
        self.lvl: Any = None      # the level's per-channel state (raid5f: buffer pools)


class RaidIoDevice:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class RaidModule(BdevModule):
    name = "raid"

    def __init__(self) -> None:
        self.raids: dict[str, RaidBdev] = {}

    def config_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"method": "bdev_raid_set_options", "params": {
            "process_window_size_kb": options.process_window_size_kb,
            "process_max_bandwidth_mb_sec": options.process_max_bandwidth_mb_sec}}]
        return out

    def fini(self) -> None:
        self.raids.clear()

    def examine_config(self, bdev: Bdev) -> None:
        """A configured (non-superblock) raid waiting for this bdev by name takes it."""
        for raid in list(self.raids.values()):
            if raid.state != CONFIGURING:
                continue
            for b in raid.bases:
                if b.desc is None and b.name in (bdev.name, *bdev.aliases):
                    try:
                        raid.attach(b, bdev.name)
                    except BdevError as e:
                        log.error("raid %s: base %s: %s", raid.name, bdev.name, e.message)
                        return
                    raid.maybe_configure()
                    return

    def examine_disk(self, bdev: Bdev, done: Callable[[], Any]) -> None:
        if bdev.claimed or isinstance(bdev, RaidBdev):
            done()
            return
        from spydk.modules.bdev.raid.sb_io import read_superblock

        def got(sb: sbm.Superblock | None) -> None:
            try:
                if sb is not None:
                    found_superblock(bdev, sb)
            except BdevError as e:
                log.error("raid: superblock on %s: %s", bdev.name, e.message)
            done()
        read_superblock(bdev.name, got)


module = register_module(RaidModule())


class RaidBdev(Bdev):
    def __init__(self, name: str, ops: LevelOps, num_base_bdevs: int, strip_size_blocks: int,
                 strip_size_kb: int, uuid: _uuid.UUID | None, superblock: bool):
        # block size and size are known once the bases are there (configure)
        super().__init__(name, module, 512, 0, uuid=uuid, product_name="Raid Volume")
        self.ops = ops
        self.num_base_bdevs = num_base_bdevs
        self.strip_size = strip_size_blocks
        self.strip_size_kb = strip_size_kb
        self.superblock_enabled = superblock
        self.sb: sbm.Superblock | None = None
        self.bases = [BaseInfo(i) for i in range(num_base_bdevs)]
        self.state = CONFIGURING
        self.read_slots: tuple[int, ...] = ()
        self.write_slots: tuple[int, ...] = ()
        self.level_ctx: Any = None
        self.registered = False
        # the module's io_device (channels holding the base channels); the Bdev object
        # itself is the bdev layer's io_device
        self.io_device = RaidIoDevice(name)
        # rebuild: the window being copied, the writes held for it, in-flight write counts
        self.process: Any = None
        self.lock: tuple[int, int] | None = None
        self.waiting: deque[tuple[RaidChannel, BdevIO]] = deque()
        self.wgen = 0
        self.w_cur = 0       # writes in flight started in generation wgen
        self.w_old = 0       # writes in flight started earlier
        self.on_drained: Callable[[], Any] | None = None
        self.app_ch: RaidChannel | None = None
        self._app_ioch: IoChannel | None = None

    # -- bases --------------------------------------------------------------------------

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.ops.level]

    def attach(self, b: BaseInfo, bdev_name: str) -> None:
        """Open and claim ``bdev_name`` for slot ``b`` (not yet usable for I/O)."""
        desc = open_ext(bdev_name, True, self._base_event, b)
        try:
            desc.bdev.claim(module, desc)
        except BdevError:
            desc.close()
            raise
        b.desc = desc
        b.name = desc.bdev.name
        if b.uuid is None:
            b.uuid = desc.bdev.uuid
        if self.state == CONFIGURING:
            b.state = CONFIGURED

    def detach(self, b: BaseInfo) -> None:
        if b.desc is not None:
            try:
                b.desc.bdev.release_claim(module)
            except BdevError:
                pass
            b.desc.close()
            b.desc = None

    def num_discovered(self) -> int:
        return sum(1 for b in self.bases if b.desc is not None)

    def num_operational(self) -> int:
        if self.sb is not None and self.state == CONFIGURING:
            return sum(1 for s in self.sb.base_bdevs if s.state == sbm.SlotState.CONFIGURED)
        return sum(1 for b in self.bases if b.state == CONFIGURED)

    def _base_event(self, ev: BdevEvent, bdev: Bdev, b: BaseInfo) -> None:
        if ev == BdevEvent.REMOVE:
            self.remove_base(b, lambda rc: None, failed=False)

    def recompute_slots(self) -> None:
        self.read_slots = tuple(b.slot for b in self.bases if b.state == CONFIGURED)
        self.write_slots = tuple(b.slot for b in self.bases if b.state in (CONFIGURED, REBUILDING))

    # -- configure ------------------------------------------------------------------------

    def maybe_configure(self) -> None:
        if self.state != CONFIGURING:
            return
        if self.sb is None:
            if self.num_discovered() < self.num_base_bdevs:
                return
        elif self.num_discovered() < self.num_operational():
            return
        try:
            self.configure()
        except BdevError as e:
            log.error("raid %s: %s", self.name, e.message)

    def configure(self) -> None:
        present = [b for b in self.bases if b.desc is not None]
        bdevs = [b.bdev for b in present]
        bs = {d.block_size for d in bdevs if d is not None}
        if len(bs) != 1:
            raise BdevError(errno.EINVAL, f"raid {self.name}: base bdevs have different block sizes {sorted(bs)}")
        block_size = bs.pop()
        if self.sb is not None:            # assembled from a superblock: its layout rules
            if self.sb.block_size != block_size:
                raise BdevError(errno.EINVAL, f"raid {self.name}: superblock block size {self.sb.block_size} "
                                              f"differs from the bases' {block_size}")
            for b in self.bases:
                s = self.sb.base_bdevs[b.slot] if b.slot < len(self.sb.base_bdevs) else None
                if s is not None:
                    b.data_offset, b.data_size = s.data_offset, s.data_size
            # every slot has the same data size in raid0/raid1; concat keeps each one's
            self.block_size = block_size
            self.num_blocks = self.sb.raid_size
        else:
            for b in present:
                d = b.bdev
                assert d is not None
                off = 0
                if self.superblock_enabled:
                    off = -(-sbm.MIN_DATA_OFFSET_SIZE // block_size)
                    if d.optimal_io_boundary:
                        off = -(-off // d.optimal_io_boundary) * d.optimal_io_boundary
                if d.num_blocks <= off:
                    raise BdevError(errno.EINVAL, f"base bdev {d.name} ({d.num_blocks} blocks) is too small "
                                                  f"for a raid superblock area of {off} blocks")
                b.data_offset, b.data_size = off, d.num_blocks - off
            self.block_size = block_size
            if self.ops.needs_strip:
                self.strip_size = self.strip_size_kb * 1024 // block_size
                if self.strip_size < 1:
                    raise BdevError(errno.EINVAL, f"strip_size_kb {self.strip_size_kb} is smaller than "
                                                  f"the block size {block_size}")
            size, per = self.ops.sizes(self, [b.data_size for b in self.bases])
            if size < 1:
                raise BdevError(errno.EINVAL, f"raid {self.name}: base bdevs are smaller than one strip")
            for b, p in zip(self.bases, per, strict=True):
                b.data_size = p
            self.num_blocks = size
        if self.ops.needs_strip and self.strip_size:
            self.optimal_io_boundary = self.strip_size
            self.split_on_optimal_io_boundary = True
        self.write_cache = any(d is not None and d.write_cache for d in bdevs)
        for b in present:
            b.state = CONFIGURED
        self.ops.layout(self)
        self.recompute_slots()
        io_device_register(self.io_device, self._create_ch, self._destroy_ch, f"raid_{self.name}")
        self._app_ioch = get_io_channel(self.io_device)
        self.app_ch = self._app_ioch.ctx
        if self.superblock_enabled:
            if self.sb is None:
                self.sb = self.new_superblock()
            self.write_superblock(self._configured)
        else:
            self._configured(0)

    def _configured(self, rc: int) -> None:
        if rc:
            log.error("raid %s: writing the superblock failed (%d)", self.name, rc)
        try:
            register_bdev(self)
        except BdevError as e:
            log.error("raid %s: %s", self.name, e.message)
            return
        self.registered = True
        self.state = ONLINE

    def new_superblock(self) -> sbm.Superblock:
        return sbm.Superblock(
            uuid=self.uuid, name=self.name, raid_size=self.num_blocks, block_size=self.block_size,
            level=self.ops.level, strip_size=self.strip_size, num_base_bdevs=self.num_base_bdevs,
            base_bdevs=[sbm.SbBase(b.uuid or _uuid.UUID(int=0), b.data_offset, b.data_size,
                                   sbm.SlotState.CONFIGURED if b.state == CONFIGURED else sbm.SlotState.MISSING,
                                   b.slot) for b in self.bases])

    def sync_sb_slots(self) -> None:
        if self.sb is None:
            return
        for b in self.bases:
            s = self.sb.base_bdevs[b.slot]
            if b.state == CONFIGURED:
                s.state = sbm.SlotState.CONFIGURED
                s.uuid = b.uuid or s.uuid
                s.data_offset, s.data_size = b.data_offset, b.data_size
            elif b.state == FAILED_SLOT:
                s.state = sbm.SlotState.FAILED
            elif b.state == MISSING:
                s.state = sbm.SlotState.MISSING

    def write_superblock(self, cb: Callable[[int], Any]) -> None:
        """Bump the sequence number and write the superblock to every present base."""
        from spydk.modules.bdev.raid.sb_io import write_superblock
        assert self.sb is not None
        self.sync_sb_slots()
        self.sb.seq_number += 1
        targets = [b for b in self.bases if b.desc is not None and b.state in (CONFIGURED, REBUILDING)]
        write_superblock(self, targets, self.sb.encode(self.block_size), cb)

    # -- channels -------------------------------------------------------------------------

    def _create_ch(self, dev: Any, ioch: IoChannel) -> None:
        rch = RaidChannel(self, ioch.thread)
        for b in self.bases:
            if b.desc is not None and b.state in (CONFIGURED, REBUILDING):
                rch.chs[b.slot] = b.desc.get_io_channel()
        ioch.ctx = rch

    def _destroy_ch(self, dev: Any, ioch: IoChannel) -> None:
        rch: RaidChannel = ioch.ctx
        for i, ch in enumerate(rch.chs):
            if ch is not None:
                ch.put()
                rch.chs[i] = None

    # -- I/O ------------------------------------------------------------------------------

    def io_type_supported(self, io_type: int) -> bool:
        if io_type in (READ, WRITE, RESET):
            return True
        if io_type in (UNMAP, FLUSH, WRITE_ZEROES):
            return self.ops.null_payload and all(b.bdev is None or b.bdev.supports(io_type) for b in self.bases)
        return False

    def submit_request(self, ctx: RaidChannel, io: BdevIO) -> None:
        if io.type == RESET:
            self._reset(ctx, io)
            return
        self.ops.submit(self, ctx, io)

    def base_submit(self, rch: RaidChannel, slot: int, t: int, iovs: Any, off: int, n: int,
                    cb: Callable[[BdevIO, bool, Any], Any], arg: Any) -> int:
        """Submit to the base in ``slot`` at raid-data offset ``off``; 0 or -errno."""
        ch = rch.chs[slot]
        b = self.bases[slot]
        d = b.desc
        if ch is None or d is None:
            return -errno.ENODEV
        off += b.data_offset
        if t == READ:
            return d.readv_blocks(ch, iovs, off, n, cb, arg)
        if t == WRITE:
            return d.writev_blocks(ch, iovs, off, n, cb, arg)
        if t == UNMAP:
            return d.unmap_blocks(ch, off, n, cb, arg)
        if t == WRITE_ZEROES:
            return d.write_zeroes_blocks(ch, off, n, cb, arg)
        if t == FLUSH:
            return d.flush_blocks(ch, off, n, cb, arg)
        return -errno.ENOTSUP

    def _reset(self, rch: RaidChannel, io: BdevIO) -> None:
        slots = [s for s in self.write_slots if rch.chs[s] is not None]
        st = [len(slots) + 1, SUCCESS]
        io.driver_ctx = st

        def done(child: BdevIO, ok: bool, _arg: Any) -> None:
            if not ok:
                st[1] = FAILED
            st[0] -= 1
            if st[0] == 0:
                io.complete(st[1])
        for s in slots:
            d = self.bases[s].desc
            ch = rch.chs[s]
            if d is None or ch is None or d.reset(ch, done, None):
                st[0] -= 1
        st[0] -= 1
        if st[0] == 0:
            io.complete(st[1])

    # write accounting for the rebuild's window lock (raid1)
    def write_started(self) -> int:
        self.w_cur += 1
        return self.wgen

    def write_finished(self, gen: int) -> None:
        if gen == self.wgen:
            self.w_cur -= 1
        else:
            self.w_old -= 1
            if self.w_old == 0 and self.on_drained is not None:
                cb, self.on_drained = self.on_drained, None
                cb()

    def locked(self, off: int, n: int) -> bool:
        lk = self.lock
        return lk is not None and off < lk[1] and off + n > lk[0]

    def lock_range(self, start: int, end: int, then: Callable[[], Any]) -> None:
        """Hold new writes to [start, end) and call ``then`` once earlier writes finished."""
        self.lock = (start, end)
        self.w_old += self.w_cur
        self.w_cur = 0
        self.wgen += 1
        if self.w_old == 0:
            then()
        else:
            self.on_drained = then

    def unlock_range(self) -> None:
        self.lock = None
        held, self.waiting = self.waiting, deque()
        for rch, io in held:
            rch.thread.send_msg(self._resubmit, rch, io)

    def _resubmit(self, rch: RaidChannel, io: BdevIO) -> None:
        self.ops.submit(self, rch, io)

    # -- failures and removal ---------------------------------------------------------------

    def base_failed(self, slot: int) -> None:
        """A base failed an I/O (raid1): take it out of the array, on the app thread."""
        b = self.bases[slot]
        if b.state not in (CONFIGURED, REBUILDING):
            return
        t = get_reactor().app_thread
        assert t is not None
        log.error("raid %s: base bdev %s failed; continuing without it", self.name, b.name)
        # stop using it at once; the rest of the removal runs on the app thread
        self._drop_from_slots(b, FAILED_SLOT)
        t.send_msg(self.remove_base, b, lambda rc: None, True)

    def _drop_from_slots(self, b: BaseInfo, state: str) -> None:
        if b.state == REBUILDING and self.process is not None:
            self.process.abort(f"target {b.name} went away")
        b.state = state
        self.recompute_slots()

    def remove_base(self, b: BaseInfo, cb: Callable[[int], Any], failed: bool) -> None:
        """Remove the base in slot ``b``: channels released, descriptor closed, the
        superblock updated on the others; a raid that cannot run without it goes offline."""
        if b.desc is None:
            cb(0)
            return
        if self.state == CONFIGURING:
            self.detach(b)
            b.state = MISSING
            cb(0)
            return
        if b.state in (CONFIGURED, REBUILDING):
            self._drop_from_slots(b, FAILED_SLOT if failed else MISSING)
        elif b.state == FAILED_SLOT and not failed:
            pass
        survives = self.ops.redundant and self.ops.survives(self)
        if not survives and self.state == ONLINE:
            self.go_offline()

        def released(it: ChannelIter, status: int) -> None:
            self.detach(b)
            if self.superblock_enabled and survives and self.sb is not None:
                self.write_superblock(cb)
            else:
                cb(0)
        for_each_channel(self.io_device, _put_slot_channel, released, b.slot)

    def go_offline(self) -> None:
        self.state = OFFLINE
        if self.registered:
            try:
                unregister_bdev(self)
            except BdevError:
                pass

    # -- teardown ---------------------------------------------------------------------------

    def destruct(self, done: Callable[[int], Any]) -> None:
        if self.process is not None:
            self.process.abort("raid deleted")
        self.registered = False
        clear = getattr(self, "clear_sb_on_delete", False)

        def finish(_rc: int = 0) -> None:
            ioch = self._app_ioch
            if ioch is not None and get_thread() is not ioch.thread:
                ioch.thread.send_msg(finish)     # channels are released on their own thread
                return
            if ioch is not None:
                put_io_channel(ioch)
                self._app_ioch = None
                self.app_ch = None
            if is_io_device(self.io_device):
                io_device_unregister(self.io_device, lambda _d: closed())
            else:
                closed()

        def closed() -> None:
            for b in self.bases:
                self.detach(b)
            if self.state == ONLINE:
                self.state = OFFLINE
            if getattr(self, "deleting", False):
                module.raids.pop(self.name, None)
            done(0)
        ioch = self._app_ioch
        if ioch is not None and get_thread() is not ioch.thread:
            ioch.thread.send_msg(self.destruct, done)
            return
        if clear and self.superblock_enabled and self.app_ch is not None:
            from spydk.modules.bdev.raid.sb_io import clear_superblocks
            clear_superblocks(self, finish)
        else:
            finish()

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "uuid": str(self.uuid), "strip_size_kb": self.strip_size_kb,
            "state": self.state, "raid_level": self.level_name, "superblock": self.superblock_enabled,
            "num_base_bdevs": self.num_base_bdevs, "num_base_bdevs_discovered": self.num_discovered(),
            "num_base_bdevs_operational": self.num_operational(),
            "base_bdevs_list": [{
                "name": b.name if b.desc is not None else None,
                "uuid": str(b.uuid or _uuid.UUID(int=0)),
                "is_configured": b.state == CONFIGURED,
                "data_offset": b.data_offset, "data_size": b.data_size,
            } for b in self.bases],
        }
        if self.process is not None:
            out["process"] = self.process.info()
        return out

    def dump_info_json(self) -> dict[str, Any]:
        return {"raid": self.info()}

    def write_config_json(self) -> dict[str, Any] | None:
        if self.superblock_enabled:
            return None   # the superblocks describe it; examine reassembles it
        p: dict[str, Any] = {"name": self.name, "raid_level": self.level_name,
                             "base_bdevs": [b.name for b in self.bases], "uuid": str(self.uuid),
                             "superblock": False}
        if self.ops.needs_strip:
            p["strip_size_kb"] = self.strip_size_kb
        return {"method": "bdev_raid_create", "params": p}


def _put_slot_channel(it: ChannelIter, ioch: IoChannel) -> None:
    rch: RaidChannel = ioch.ctx
    slot: int = it.ctx
    ch = rch.chs[slot]
    if ch is None:
        it.continue_()
        return
    if ch.outstanding:
        # wait for this thread's I/O on the base to finish before letting go of its channel
        t = ioch.thread

        def check(_a: Any) -> int:
            if ch.outstanding:
                return 0
            p.unregister()
            rch.chs[slot] = None
            ch.put()
            it.continue_()
            return 1
        p = t.poller_register(check, None, 100, "raid_put_base_ch")
        return
    rch.chs[slot] = None
    ch.put()
    it.continue_()


def _get_slot_channel(it: ChannelIter, ioch: IoChannel) -> None:
    rch: RaidChannel = ioch.ctx
    b: BaseInfo = it.ctx
    if b.desc is not None and rch.chs[b.slot] is None:
        rch.chs[b.slot] = b.desc.get_io_channel()
    it.continue_()


# -- control plane (app thread) --------------------------------------------------------------


def _parse_level(raid_level: str) -> LevelOps:
    cls = LEVELS.get(raid_level)
    if cls is None:
        raise BdevError(errno.EINVAL, f"raid_level {raid_level!r} is not one of raid0, raid1, raid5f, concat")
    return cls()


def create_raid(name: str, raid_level: str, base_bdevs: list[str], strip_size_kb: int = 0,
                uuid: str | None = None, superblock: bool = False) -> RaidBdev:
    if not name:
        raise BdevError(errno.EINVAL, "name must not be empty")
    if name in module.raids or get_bdev(name) is not None:
        raise BdevError(errno.EEXIST, f"raid bdev {name!r} already exists (or another bdev has that name)")
    ops = _parse_level(raid_level)
    if not base_bdevs:
        raise BdevError(errno.EINVAL, "base_bdevs must list at least one bdev")
    if len(base_bdevs) > sbm.MAX_BASE_BDEVS:
        raise BdevError(errno.EINVAL, f"base_bdevs lists {len(base_bdevs)} bdevs; at most {sbm.MAX_BASE_BDEVS}")
    if len(base_bdevs) < ops.min_bases:
        raise BdevError(errno.EINVAL, f"{raid_level} needs at least {ops.min_bases} base bdevs, "
                                      f"got {len(base_bdevs)}")
    if len(set(base_bdevs)) != len(base_bdevs):
        raise BdevError(errno.EINVAL, f"base_bdevs lists a bdev twice: {base_bdevs}")
    if ops.needs_strip:
        if not strip_size_kb:
            raise BdevError(errno.EINVAL, f"strip_size_kb is required for {raid_level} (e.g. 64)")
        if strip_size_kb & (strip_size_kb - 1):
            raise BdevError(errno.EINVAL, f"strip_size_kb {strip_size_kb} is not a power of two")
    elif strip_size_kb:
        raise BdevError(errno.EINVAL, f"strip_size_kb must not be given for {raid_level} (it has no strips)")
    if superblock and len(name.encode()) >= sbm.NAME_SIZE:
        raise BdevError(errno.EINVAL, f"name {name!r} is too long for the superblock "
                                      f"(at most {sbm.NAME_SIZE - 1} bytes)")
    for other in module.raids.values():
        for b in other.bases:
            if b.name in base_bdevs:
                raise BdevError(errno.EBUSY, f"base bdev {b.name} is already in raid {other.name}")
    raid = RaidBdev(name, ops, len(base_bdevs), 0, strip_size_kb,
                    _uuid.UUID(uuid) if uuid else None, superblock)
    attached: list[BaseInfo] = []
    try:
        for b, bname in zip(raid.bases, base_bdevs, strict=True):
            b.name = bname
            if get_bdev(bname) is not None:
                raid.attach(b, bname)
                attached.append(b)
        if attached:
            sizes = {b.bdev.block_size for b in attached if b.bdev is not None}
            if len(sizes) > 1:
                raise BdevError(errno.EINVAL, f"base bdevs have different block sizes {sorted(sizes)}")
        if len(attached) == raid.num_base_bdevs:
            raid.configure()
    except BdevError:
        for b in attached:
            raid.detach(b)
        raise
    module.raids[name] = raid
    return raid


def get_raid(name: str) -> RaidBdev:
    r = module.raids.get(name)
    if r is None:
        raise BdevError(errno.ENODEV, f"raid bdev {name!r} does not exist")
    return r


def delete_raid(name: str, cb: Callable[[int], Any], clear_sb: bool = False) -> None:
    raid = get_raid(name)
    raid.deleting = True  # type: ignore[attr-defined]
    raid.clear_sb_on_delete = clear_sb  # type: ignore[attr-defined]
    if raid.registered:
        unregister_bdev(raid, cb)
        return
    module.raids.pop(name, None)
    raid.destruct(cb)


def _find_base(base_name: str) -> tuple[RaidBdev, BaseInfo]:
    bdev = get_bdev(base_name)
    for raid in module.raids.values():
        for b in raid.bases:
            if b.desc is not None and (b.name == base_name or (bdev is not None and b.bdev is bdev)):
                return raid, b
    raise BdevError(errno.ENODEV, f"bdev {base_name!r} is not a base bdev of any raid")


def remove_base_bdev(base_name: str, cb: Callable[[int], Any]) -> None:
    raid, b = _find_base(base_name)
    raid.remove_base(b, cb, failed=False)


def add_base_bdev(raid_name: str, base_name: str, cb: Callable[[int], Any]) -> None:
    """Put ``base_name`` into a free slot: of a configuring raid (it may then go online),
    or of an online raid1, which then rebuilds onto it."""
    raid = get_raid(raid_name)
    bdev = get_bdev(base_name)
    if bdev is None:
        raise BdevError(errno.ENODEV, f"base_bdev {base_name!r} does not exist")
    free = [b for b in raid.bases if b.desc is None]
    if not free:
        raise BdevError(errno.EBUSY, f"raid {raid_name} has no free slot (all {raid.num_base_bdevs} are in use)")
    if raid.state == OFFLINE:
        raise BdevError(errno.EINVAL, f"raid {raid_name} is offline; delete it and create it again")
    if raid.state == CONFIGURING:
        slot = next((b for b in free if b.name == base_name), None) or \
            next((b for b in free if b.name is None or get_bdev(b.name) is None), free[0])
        raid.attach(slot, base_name)
        raid.maybe_configure()
        cb(0)
        return
    if not raid.ops.redundant:
        raise BdevError(errno.EINVAL, f"raid {raid_name} is {raid.level_name}: only raid1 and raid5f can take "
                                      "a new base bdev online")
    if bdev.block_size != raid.block_size:
        raise BdevError(errno.EINVAL, f"base_bdev {base_name} has block size {bdev.block_size}, "
                                      f"raid {raid_name} has {raid.block_size}")
    if raid.process is not None:
        raise BdevError(errno.EBUSY, f"raid {raid_name} is already rebuilding onto {raid.process.target.name}")
    ref = next(b for b in raid.bases if b.state == CONFIGURED)
    off = ref.data_offset if raid.superblock_enabled else 0
    if bdev.optimal_io_boundary and off % bdev.optimal_io_boundary:
        off = -(-off // bdev.optimal_io_boundary) * bdev.optimal_io_boundary
    if bdev.num_blocks < off + ref.data_size:
        raise BdevError(errno.EINVAL, f"base_bdev {base_name} has {bdev.num_blocks} blocks; raid {raid_name} "
                                      f"needs {off + ref.data_size}")
    slot = free[0]
    slot.uuid = None
    raid.attach(slot, base_name)
    slot.data_offset, slot.data_size = off, ref.data_size

    def channels_ready(it: ChannelIter, status: int) -> None:
        from spydk.modules.bdev.raid.rebuild import Rebuild
        slot.state = REBUILDING
        raid.recompute_slots()
        raid.process = Rebuild(raid, slot)
        raid.process.start()
        cb(0)
    for_each_channel(raid.io_device, _get_slot_channel, channels_ready, slot)


def found_superblock(bdev: Bdev, sb: sbm.Superblock) -> None:
    """Examine found a raid superblock on ``bdev``: add it to that raid (made if needed)."""
    mine = sb.slot_of(bdev.uuid)
    if mine is None or mine.state != sbm.SlotState.CONFIGURED:
        log.info("raid: %s holds a superblock of raid %s but is not a configured member of it", bdev.name, sb.name)
        return
    cls = BY_LEVEL.get(sb.level)
    if cls is None:
        raise BdevError(errno.ENOTSUP, f"raid {sb.name}: level {sb.level.name} is not supported")
    raid = next((r for r in module.raids.values() if r.uuid == sb.uuid), None)
    if raid is not None and raid.state != CONFIGURING:
        log.info("raid %s is already %s; not adding %s from its superblock", raid.name, raid.state, bdev.name)
        return
    if raid is not None and raid.sb is not None and sb.seq_number > raid.sb.seq_number:
        # a newer superblock: start over from it, keeping the bases it still lists
        keep = [b.name for b in raid.bases if b.desc is not None]
        for b in raid.bases:
            raid.detach(b)
        module.raids.pop(raid.name, None)
        raid = None
        again = [get_bdev(n) for n in keep if n]
        others = [x for x in again if x is not None and x is not bdev]
    else:
        others = []
    if raid is None:
        if sb.name in module.raids or get_bdev(sb.name) is not None:
            raise BdevError(errno.EEXIST, f"raid {sb.name} from the superblock on {bdev.name}: the name is taken")
        raid = RaidBdev(sb.name, cls(), sb.num_base_bdevs, sb.strip_size,
                        sb.strip_size * sb.block_size // 1024, sb.uuid, True)
        raid.sb = sb
        for s in sb.base_bdevs:
            if s.slot < raid.num_base_bdevs:
                raid.bases[s.slot].uuid = s.uuid if s.state == sbm.SlotState.CONFIGURED else None
        module.raids[raid.name] = raid
    assert raid.sb is not None
    for d in [bdev, *others]:
        ent = raid.sb.slot_of(d.uuid)
        if ent is None or ent.state != sbm.SlotState.CONFIGURED or ent.slot >= raid.num_base_bdevs:
            continue
        b = raid.bases[ent.slot]
        if b.desc is None:
            raid.attach(b, d.name)
    raid.maybe_configure()


def set_options(process_window_size_kb: int | None = None, process_max_bandwidth_mb_sec: int | None = None) -> None:
    if process_window_size_kb is not None:
        if process_window_size_kb < 1:
            raise BdevError(errno.EINVAL, "process_window_size_kb must be at least 1")
        options.process_window_size_kb = process_window_size_kb
    if process_max_bandwidth_mb_sec is not None:
        options.process_max_bandwidth_mb_sec = process_max_bandwidth_mb_sec


def app_thread_check() -> None:
    t = get_thread()
    if t is None:
        raise RuntimeError("raid control calls run on a spydk thread")
