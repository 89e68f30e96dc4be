"""The generic block device layer (SPDK's lib/bdev).

    desc = open_ext("Malloc0", True, event_cb)      # on a spydk Thread
    ch = desc.get_io_channel()                      # this thread's BdevChannel
    rc = desc.read_blocks(ch, buf, offset_blocks, num_blocks, cb, cb_arg)
    # rc == 0: cb(bdev_io, success, cb_arg) runs later on this thread
    # rc < 0: -errno (EINVAL bad range or buffer, ENOMEM no BdevIO left, EBADF
    #         write on a read-only descriptor, ENOTSUP type not supported); cb never runs
    desc.put_io_channel(ch); desc.close()

Submission never raises for a bad request a peer could send: the submit functions return
-errno instead, like SPDK's. The BdevIO passed to cb is recycled when cb returns.

Everything here runs on the process's one OS thread (the reactor's), so state shared by
the Threads of one process (the registry, QoS, the buffer pool) needs no locks; per-thread
state still lives in channels so the code keeps SPDK's shape.
"""
from __future__ import annotations

import enum
import errno
import logging
import time
import uuid as _uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spydk import notify
from spydk.bdev.histogram import Histogram
from spydk.bdev.io import (
    COMPARE,
    COMPARE_AND_WRITE,
    FAILED,
    MISCOMPARE,
    NOMEM,
    NUM_IO_TYPES,
    PENDING,
    READ,
    RESET,
    STAGE_CAW_READ,
    STAGE_CAW_WRITE,
    STAGE_COMPARE_READ,
    STAGE_NONE,
    STAGE_SPLIT,
    SUCCESS,
    UNMAP,
    WRITE,
    WRITE_ZEROES,
    BdevIO,
    IoCallback,
    IoType,
)
from spydk.bdev.iobuf import ZERO_BUF_SIZE, ZEROES
from spydk.bdev.iobuf import pool as iobuf_pool
from spydk.bdev.module import BdevModule, modules
from spydk.bdev.stats import IoStat
from spydk.thread import (
    ChannelIter,
    IoChannel,
    Thread,
    for_each_channel,
    get_io_channel,
    get_thread,
    io_device_register,
    io_device_unregister,
    put_io_channel,
)

# The notifications this layer sends (notify_get_types lists them).
for _t in ("bdev_register", "bdev_unregister", "bdev_resize"):
    notify.register_type(_t)

if TYPE_CHECKING:
    from spydk.bdev.qos import Qos

log = logging.getLogger("spydk.bdev")

_now = time.perf_counter_ns

EINVAL = -errno.EINVAL
ENOMEM = -errno.ENOMEM
EBADF = -errno.EBADF
ENOTSUP = -errno.ENOTSUP

# Extra stages (io.py has the split/emulation ones).
STAGE_CHILD = 5
STAGE_RESET = 6

# How many split children one parent keeps in flight at a time.
MAX_CHILDREN_IN_FLIGHT = 32

# BdevChannel.blocked flags
BLOCK_RESET = 1
BLOCK_QOS = 2


class BdevError(Exception):
    """Local API misuse or a refused control-plane request; ``errno`` is positive."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err
        self.message = message


class BdevEvent(enum.IntEnum):
    REMOVE = 0
    RESIZE = 1
    MEDIA_MANAGEMENT = 2


class ClaimType(enum.Enum):
    EXCL_WRITE = "exclusive_write"
    READ_MANY_WRITE_NONE = "read_many_write_none"


EventCb = Callable[[BdevEvent, "Bdev", Any], Any]


@dataclass
class BdevOptions:
    bdev_io_pool_size: int = 65535
    bdev_io_cache_size: int = 256
    bdev_auto_examine: bool = True
    iobuf_small_cache_size: int = 128
    iobuf_large_cache_size: int = 16

    def to_json(self) -> dict[str, Any]:
        return {"bdev_io_pool_size": self.bdev_io_pool_size,
                "bdev_io_cache_size": self.bdev_io_cache_size,
                "bdev_auto_examine": self.bdev_auto_examine,
                "iobuf_small_cache_size": self.iobuf_small_cache_size,
                "iobuf_large_cache_size": self.iobuf_large_cache_size}


options = BdevOptions()


class _Status(enum.Enum):
    INVALID = 0
    READY = 1
    REMOVING = 2
    REMOVED = 3


# ---------------------------------------------------------------------------------------
# Bdev: what a module subclasses
# ---------------------------------------------------------------------------------------


class Bdev:
    """A block device. Modules subclass it and override the function-table methods:

    submit_request(ctx, io)   start ``io`` (ctx is this thread's module channel ctx);
                              finish it with io.complete(status), now or later, or
                              return its final status (SUCCESS, FAILED, MISCOMPARE, ...)
                              when it is done at once (cheaper: no call back into the
                              layer); return None when io.complete is or will be called
    io_type_supported(t)      which IoTypes submit_request handles
    get_io_channel()          this thread's IoChannel of the module's io_device
                              (default: get_io_channel(self.io_device))
    destruct(done)            release resources, then call done(rc)
    dump_info_json()          driver_specific contents for bdev_get_bdevs
    write_config_json()       {"method": ..., "params": ...} that recreates it, or None
    """

    # Modules that can serve a read with no caller buffer by pointing io.iovs at their
    # own memory (zero copy) set this; the layer then submits such reads with iovs=None.
    zcopy_read = False

    def __init__(self, name: str, module: BdevModule, block_size: int, num_blocks: int, *,
                 uuid: _uuid.UUID | str | None = None, product_name: str = "",
                 aliases: list[str] | None = None, write_cache: bool = False,
                 optimal_io_boundary: int = 0, split_on_optimal_io_boundary: bool = False,
                 max_rw_blocks: int = 0, physical_block_size: int = 0):
        self.name = name
        self.module = module
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.uuid = _uuid.UUID(str(uuid)) if uuid is not None else _uuid.uuid4()
        self.product_name = product_name or module.name
        self.aliases: list[str] = list(aliases or [])
        self.write_cache = write_cache
        self.optimal_io_boundary = optimal_io_boundary
        self.split_on_optimal_io_boundary = split_on_optimal_io_boundary
        self.max_rw_blocks = max_rw_blocks      # 0 = no limit (SPDK's max_rw_size)
        self.physical_block_size = physical_block_size or block_size
        self.md_size = 0
        self.io_device: Any = None
        # layer state
        self._status = _Status.INVALID
        self._descs: list[BdevDesc] = []
        self._claims: dict[str, ClaimType] = {}  # module name -> type
        self._channels: set[BdevChannel] = set()
        self._retained = IoStat()
        self._supported: list[bool] = []
        self.histogram: Histogram | None = None
        self.histogram_opc = -1
        self.qos: Qos | None = None
        self._reset_io: BdevIO | None = None
        self._pending_resets: deque[BdevIO] = deque()
        self._unregister_cbs: list[Callable[[int], Any]] = []
        self._examine_pending = 0

    # -- function table (override) ------------------------------------------------------

    def submit_request(self, ctx: Any, io: BdevIO) -> int | None:
        raise NotImplementedError

    def io_type_supported(self, io_type: int) -> bool:
        return io_type in (READ, WRITE)

    def get_io_channel(self) -> IoChannel:
        return get_io_channel(self.io_device)

    def destruct(self, done: Callable[[int], Any]) -> None:
        done(0)

    def dump_info_json(self) -> dict[str, Any]:
        return {}

    def write_config_json(self) -> dict[str, Any] | None:
        return None

    # -- layer API ----------------------------------------------------------------------

    @property
    def claimed(self) -> bool:
        return bool(self._claims)

    @property
    def claim_type(self) -> ClaimType | None:
        return next(iter(self._claims.values()), None)

    def supports(self, io_type: int) -> bool:
        """What the layer accepts: the module's types plus emulated WRITE_ZEROES and
        COMPARE (over READ/WRITE)."""
        if self.io_type_supported(io_type):
            return True
        if io_type == WRITE_ZEROES:
            return self.io_type_supported(WRITE)
        if io_type == COMPARE:
            return self.io_type_supported(READ)
        if io_type == COMPARE_AND_WRITE:
            return self.io_type_supported(READ) and self.io_type_supported(WRITE)
        return False

    def claim(self, module: BdevModule, desc: BdevDesc | None = None,
              type: ClaimType = ClaimType.EXCL_WRITE) -> None:
        """Claim the bdev for ``module``. EXCL_WRITE: only the claimant may write (its
        ``desc``, if given, becomes writable). READ_MANY_WRITE_NONE: shared among
        claimants; nobody may write. Raises BdevError(EPERM) on conflict."""
        if module.name in self._claims:
            raise BdevError(errno.EPERM, f"bdev {self.name!r} is already claimed by module {module.name!r}")
        if type is ClaimType.EXCL_WRITE:
            if self._claims:
                owner = next(iter(self._claims))
                raise BdevError(errno.EPERM, f"bdev {self.name!r} is already claimed by module {owner!r}")
            writers = [d for d in self._descs if d.writable and d is not desc]
            if writers:
                raise BdevError(errno.EPERM, f"bdev {self.name!r} has other writers; cannot claim it exclusively")
            if desc is not None:
                desc.writable = True
        else:
            if any(t is ClaimType.EXCL_WRITE for t in self._claims.values()):
                owner = next(iter(self._claims))
                raise BdevError(errno.EPERM, f"bdev {self.name!r} is claimed for writing by module {owner!r}")
            if any(d.writable for d in self._descs):
                raise BdevError(errno.EPERM, f"bdev {self.name!r} is open for writing; cannot share it read-only")
        self._claims[module.name] = type

    def release_claim(self, module: BdevModule) -> None:
        if self._claims.pop(module.name, None) is None:
            raise BdevError(errno.EINVAL, f"bdev {self.name!r} is not claimed by module {module.name!r}")

    def notify_blockcnt_change(self, num_blocks: int) -> None:
        """Resize (from the module). Shrinking below an open descriptor's use is refused."""
        if num_blocks < 1:
            raise BdevError(errno.EINVAL, "num_blocks must be positive")
        if num_blocks < self.num_blocks and self._descs:
            raise BdevError(errno.EBUSY, f"bdev {self.name!r} is open; it can grow but not shrink")
        self.num_blocks = num_blocks
        for d in list(self._descs):
            d._event(BdevEvent.RESIZE)
        notify.send("bdev_resize", self.name)

    def iostat(self) -> IoStat:
        s = IoStat()
        s.add(self._retained)
        for ch in self._channels:
            s.add(ch.stat)
        return s

    def reset_iostat(self, mode: str = "all") -> None:
        self._retained.reset(mode)
        for ch in self._channels:
            ch.stat.reset(mode)

    def enable_histogram(self, enable: bool, opc: int = -1, granularity: int = 7,
                         min_nsec: int = 0, max_nsec: int = 0) -> None:
        if enable:
            self.histogram = Histogram(granularity, min_nsec, max_nsec)
            self.histogram_opc = opc
        else:
            self.histogram = None
        for ch in self._channels:
            ch.hist = self.histogram
            ch.hist_opc = self.histogram_opc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.num_blocks}x{self.block_size}>"


# ---------------------------------------------------------------------------------------
# Channels: the I/O path
# ---------------------------------------------------------------------------------------

_io_allocated = 0


class BdevChannel:
    """A thread's I/O context for one bdev: wraps the module's channel, owns free BdevIOs,
    the deferred-completion queue and the per-channel statistics."""

    __slots__ = ("bdev", "thread", "io_ch", "module_ch", "ctx", "submit_fn", "free", "cq",
                 "_spare", "drain", "finish", "stat", "outstanding", "blocked", "slow",
                 "split_check", "boundary", "max_blocks", "queued", "nomem", "hist",
                 "hist_opc", "_nomem_poller", "supported", "cpl_ns")

    def __init__(self, bdev: Bdev, io_ch: IoChannel):
        self.bdev = bdev
        self.thread: Thread = io_ch.thread
        self.io_ch = io_ch
        self.module_ch = bdev.get_io_channel()
        self.ctx = self.module_ch.ctx
        self.submit_fn = bdev.submit_request
        # A deque: a list popped empty and refilled each I/O reallocates its storage twice.
        self.free: deque[BdevIO] = deque()
        self.cq: list[BdevIO] = []
        self._spare: list[BdevIO] = []
        self.drain = self._drain
        self.finish = self._finish
        self.stat = IoStat()
        self.outstanding = 0
        self.blocked = 0
        self.boundary = bdev.optimal_io_boundary if bdev.split_on_optimal_io_boundary else 0
        self.max_blocks = bdev.max_rw_blocks
        self.split_check = bool(self.boundary or self.max_blocks)
        self.slow = self.split_check
        self.queued: deque[BdevIO] = deque()
        self.nomem: deque[BdevIO] = deque()
        self.hist = bdev.histogram
        self.hist_opc = bdev.histogram_opc
        self._nomem_poller: Any = None
        self.supported = bdev._supported
        self.cpl_ns = 0  # when the completions being delivered now were collected
        if bdev.qos is not None and bdev.qos.active:
            self._set_blocked(BLOCK_QOS, True)

    def put(self) -> None:
        """Release this thread's reference (same as desc.put_io_channel(ch))."""
        put_io_channel(self.io_ch)

    def _set_blocked(self, flag: int, on: bool) -> None:
        if on:
            self.blocked |= flag
        else:
            self.blocked &= ~flag
        self.slow = bool(self.blocked or self.split_check)

    def new_io(self) -> BdevIO | None:
        global _io_allocated
        if _io_allocated >= options.bdev_io_pool_size:
            return None
        _io_allocated += 1
        io = BdevIO(self)
        io.bdev = self.bdev
        return io

    # -- submission ---------------------------------------------------------------------

    def submit(self, io: BdevIO) -> int:
        """Start a prepared BdevIO (the descriptor methods call this)."""
        io.status = PENDING
        io.submit_ns = _now()
        self.outstanding += 1
        if self.slow:
            return self._submit_slow(io)
        io.in_submit = True
        try:
            st = self.submit_fn(self.ctx, io)
        except Exception:
            io.in_submit = False
            self._module_raised(io)
            return 0
        io.in_submit = False
        if st:
            self._done_in_submit(io, st)
        return 0

    def submit_special(self, io: BdevIO) -> int:
        io.status = PENDING
        io.submit_ns = _now()
        self.outstanding += 1
        return self._submit_slow(io)

    def _submit_slow(self, io: BdevIO) -> int:
        if io.type == RESET:
            self._start_reset(io)
            return 0
        if self.blocked:
            if self.blocked & BLOCK_RESET:
                self.queued.append(io)
                return 0
            qos = self.bdev.qos
            if qos is not None:
                qos.enqueue(io)
                return 0
        self._dispatch(io)
        return 0

    def resubmit_queued(self) -> None:
        """Submit the I/O that waited for a reset (unless another reset froze us again)."""
        q = self.queued
        while q and not (self.blocked & BLOCK_RESET):
            self._submit_slow(q.popleft())

    def qos_release(self, io: BdevIO) -> None:
        """QoS let ``io`` through (on this channel's thread)."""
        if self.blocked & BLOCK_RESET:
            self.queued.append(io)
        else:
            self._dispatch(io)

    def _dispatch(self, io: BdevIO) -> None:
        """Split or emulate if needed, else hand to the module."""
        t = io.type
        sup = self.supported
        if t == WRITE_ZEROES and not sup[WRITE_ZEROES]:
            io.stage = STAGE_SPLIT
            self._split_start(io, zero=True)
            return
        if t == COMPARE and not sup[COMPARE]:
            self._emulate_compare(io)
            return
        if t == COMPARE_AND_WRITE and not sup[COMPARE_AND_WRITE]:
            self._emulate_caw(io)
            return
        if self.split_check and (t == READ or t == WRITE or t == COMPARE):
            n = io.num_blocks
            b = self.boundary
            if (b and (io.offset_blocks % b) + n > b) or (self.max_blocks and n > self.max_blocks):
                io.stage = STAGE_SPLIT
                self._split_start(io, zero=False)
                return
        self._to_module(io)

    def _to_module(self, io: BdevIO) -> None:
        io.in_submit = True
        try:
            st = self.submit_fn(self.ctx, io)
        except Exception:
            io.in_submit = False
            self._module_raised(io)
            return
        io.in_submit = False
        if st:
            self._done_in_submit(io, st)

    def _done_in_submit(self, io: BdevIO, status: int) -> None:
        """The module returned ``status`` from submit_request: as io.complete(status)
        called during the submission (queued for this channel's next completion batch)."""
        io.status = status
        cq = self.cq
        if not cq:
            self.thread.send_msg(self.drain)
        cq.append(io)

    def _module_raised(self, io: BdevIO) -> None:
        log.exception("bdev %s: module %s raised in submit_request for %r; failing the I/O",
                      self.bdev.name, self.bdev.module.name, io)
        if io.status == PENDING:
            io.in_submit = True  # deliver deferred, like any completion during submit
            io.complete(FAILED)
            io.in_submit = False

    # -- completion ---------------------------------------------------------------------

    def _drain(self) -> None:
        """Deliver the completions queued during submit_request (one message per batch).

        Every completion of a batch gets the same completion time, so the statistics are
        summed in locals over runs of successful I/O of one type and stored in the
        channel's lists once per run (latencies are small ints, cheap to add and compare,
        unlike the timestamps); with a histogram, _drain_each tallies every latency.
        (A reset_iostat from inside a completion callback does not clear the run of
        completions that callback belongs to: the run is stored after it.)"""
        batch = self.cq
        self.cq = self._spare
        self.cpl_ns = now = _now()
        if self.hist is not None:
            self._drain_each(batch, now)
            return
        append = self.free.append
        skipped = 0
        cur = -1  # IoType of the current run of successes
        n = nb = lsum = lmin = lmax = 0
        for io in batch:
            if io.stage:
                self._finish(io, now)
                skipped += 1
                continue
            st = io.status
            if st == SUCCESS:
                t = io.type
                lat = now - io.submit_ns
                if t == cur:
                    n += 1
                    nb += io.nbytes
                    lsum += lat
                    if lat > lmax:
                        lmax = lat
                    elif lat < lmin:
                        lmin = lat
                else:
                    if n:
                        self._account(cur, n, nb, lsum, lmin, lmax)
                    cur = t
                    n = 1
                    nb = io.nbytes
                    lsum = lmin = lmax = lat
                cb = io.cb
                try:
                    cb(io, True, io.cb_arg)  # type: ignore[misc]
                except Exception:
                    _cb_raised(io)
            elif st == NOMEM:
                self._queue_nomem(io)
                skipped += 1
                continue
            else:
                errors = self.stat.errors
                errors[st] = errors.get(st, 0) + 1
                cb = io.cb
                try:
                    cb(io, False, io.cb_arg)  # type: ignore[misc]
                except Exception:
                    _cb_raised(io)
            if io.pool_buf is not None:
                iobuf_pool.put(io.pool_buf)
                io.pool_buf = None
            append(io)
        if n:
            self._account(cur, n, nb, lsum, lmin, lmax)
        self.outstanding -= len(batch) - skipped
        batch.clear()
        self._spare = batch

    def _account(self, t: int, n: int, nb: int, lsum: int, lmin: int, lmax: int) -> None:
        """Add n successful I/Os of type t (nb bytes, latencies summing to lsum)."""
        stat = self.stat
        stat.ops[t] += n
        stat.bytes[t] += nb
        stat.lat[t] += lsum
        lat_max = stat.lat_max
        if lmax > lat_max[t]:
            lat_max[t] = lmax
        lat_min = stat.lat_min
        if lmin < lat_min[t]:
            lat_min[t] = lmin

    def _drain_each(self, batch: list[BdevIO], now: int) -> None:
        """_drain with a histogram: every latency is tallied."""
        stat = self.stat
        ops, nbytes, lat_sum, lat_max, lat_min = stat.ops, stat.bytes, stat.lat, stat.lat_max, stat.lat_min
        hist = self.hist
        hist_opc = self.hist_opc
        free = self.free
        done = 0
        for io in batch:
            if io.stage:
                self._finish(io, now)
                continue
            st = io.status
            t = io.type
            if st == SUCCESS:
                lat = now - io.submit_ns
                ops[t] += 1
                nbytes[t] += io.nbytes
                lat_sum[t] += lat
                if lat > lat_max[t]:
                    lat_max[t] = lat
                if lat < lat_min[t]:
                    lat_min[t] = lat
                if hist is not None and (hist_opc < 0 or hist_opc == t):
                    hist.tally(lat)
            elif st == NOMEM:
                self._queue_nomem(io)
                continue
            else:
                stat.errors[st] = stat.errors.get(st, 0) + 1
            done += 1
            try:
                io.cb(io, st == SUCCESS, io.cb_arg)  # type: ignore[misc]
            except Exception:
                _cb_raised(io)
            if io.pool_buf is not None:
                iobuf_pool.put(io.pool_buf)
                io.pool_buf = None
            free.append(io)
        self.outstanding -= done
        batch.clear()
        self._spare = batch

    def _finish(self, io: BdevIO, now: int = 0) -> None:
        """Deliver one completion (inline completions and the special stages)."""
        stage = io.stage
        if stage:
            if stage == STAGE_CHILD:
                self._child_done(io)
                return
            if stage == STAGE_RESET:
                io.stage = STAGE_NONE
                self._reset_done(io)
                return
            # a split/emulation parent is completed by _complete_parent only
            io.stage = STAGE_NONE
        st = io.status
        if st == NOMEM:
            self._queue_nomem(io)
            return
        if not now:
            now = _now()
        self.cpl_ns = now
        t = io.type
        stat = self.stat
        if st == SUCCESS:
            lat = now - io.submit_ns
            stat.ops[t] += 1
            stat.bytes[t] += io.nbytes
            stat.lat[t] += lat
            if lat > stat.lat_max[t]:
                stat.lat_max[t] = lat
            if lat < stat.lat_min[t]:
                stat.lat_min[t] = lat
            hist = self.hist
            if hist is not None and (self.hist_opc < 0 or self.hist_opc == t):
                hist.tally(lat)
        else:
            stat.errors[st] = stat.errors.get(st, 0) + 1
        self.outstanding -= 1
        try:
            io.cb(io, st == SUCCESS, io.cb_arg)  # type: ignore[misc]
        except Exception:
            _cb_raised(io)
        if io.pool_buf is not None:
            iobuf_pool.put(io.pool_buf)
            io.pool_buf = None
        io.compare_iovs = None
        self.free.append(io)

    # -- NOMEM retry --------------------------------------------------------------------

    def _queue_nomem(self, io: BdevIO) -> None:
        io.status = PENDING
        self.nomem.append(io)
        if self._nomem_poller is None:
            self._nomem_poller = self.thread.poller_register(self._retry_nomem, None, 100, "bdev_nomem_retry")

    def _retry_nomem(self, _arg: Any) -> int:
        self._nomem_poller.unregister()
        self._nomem_poller = None
        q = self.nomem
        n = len(q)
        for _ in range(n):
            self._to_module(q.popleft())
        return n

    # -- splitting and emulation --------------------------------------------------------

    def _child(self, parent: BdevIO, type_: int, offset: int, num: int, iovs: list[Any] | None) -> BdevIO:
        free = self.free
        child = free.pop() if free else self.new_io()
        if child is None:  # pool exhausted: make one anyway; children must not stall
            child = BdevIO(self)
            child.bdev = self.bdev
        child.type = type_
        child.offset_blocks = offset
        child.num_blocks = num
        child.nbytes = num * self.bdev.block_size
        child.iovs = iovs
        child.parent = parent
        child.stage = STAGE_CHILD
        child.status = PENDING
        child.cb = None
        child.submit_ns = parent.submit_ns
        return child

    def _split_start(self, parent: BdevIO, zero: bool) -> None:
        parent.split_next = parent.offset_blocks
        parent.split_left = parent.num_blocks
        parent.split_outstanding = 0
        parent.split_status = SUCCESS
        parent.split_byte = 0
        parent.driver_ctx = zero  # zero-fill: children write the shared zero buffer
        if not zero and parent.iovs is None:
            self._attach_pool_buf(parent)
        self._split_continue(parent)

    def _split_continue(self, parent: BdevIO) -> None:
        bs = self.bdev.block_size
        b = self.boundary
        mx = self.max_blocks
        zero = parent.driver_ctx
        ctype = WRITE if zero else parent.type
        while parent.split_left and parent.split_outstanding < MAX_CHILDREN_IN_FLIGHT \
                and parent.split_status == SUCCESS:
            off = parent.split_next
            n = parent.split_left
            if b:
                n = min(n, b - off % b)
            if mx:
                n = min(n, mx)
            if zero:
                n = min(n, max(1, ZERO_BUF_SIZE // bs))
            nb = n * bs
            if zero:
                iovs = [ZEROES[:nb]] if nb <= ZERO_BUF_SIZE else [memoryview(bytes(nb))]
            else:
                iovs = slice_iovs(parent.iovs or [], parent.split_byte, nb)
            child = self._child(parent, ctype, off, n, iovs)
            parent.split_next = off + n
            parent.split_left -= n
            parent.split_byte += nb
            parent.split_outstanding += 1
            self._to_module(child)
        if parent.split_outstanding == 0:
            self._complete_parent(parent)

    def _child_done(self, child: BdevIO) -> None:
        parent = child.parent
        assert parent is not None
        st = child.status
        if st == NOMEM:
            self._queue_nomem(child)
            return
        child.parent = None
        child.stage = STAGE_NONE
        child.iovs = None
        if child.pool_buf is not None:  # a bounce buffer: the parent owns it from now on
            parent.pool_buf = child.pool_buf
            child.pool_buf = None
        self.free.append(child)
        parent.split_outstanding -= 1
        stage = parent.stage
        if stage == STAGE_SPLIT:
            if st != SUCCESS and parent.split_status == SUCCESS:
                parent.split_status = st
                parent.nvme_cdw0, parent.nvme_sct, parent.nvme_sc = child.nvme_cdw0, child.nvme_sct, child.nvme_sc
            if parent.split_left and parent.split_status == SUCCESS:
                self._split_continue(parent)
            elif parent.split_outstanding == 0:
                self._complete_parent(parent)
            return
        if stage == STAGE_COMPARE_READ or stage == STAGE_CAW_READ:
            if st != SUCCESS:
                parent.split_status = st
                self._complete_parent(parent)
                return
            bounce = parent.driver_ctx
            expect = parent.iovs if stage == STAGE_COMPARE_READ else parent.compare_iovs
            if not iovs_equal(bounce, expect or []):
                parent.split_status = MISCOMPARE
                self._complete_parent(parent)
                return
            if stage == STAGE_COMPARE_READ:
                parent.split_status = SUCCESS
                self._complete_parent(parent)
                return
            parent.stage = STAGE_CAW_WRITE
            parent.split_outstanding = 1
            self._to_module(self._child(parent, WRITE, parent.offset_blocks, parent.num_blocks, parent.iovs))
            return
        if stage == STAGE_CAW_WRITE:
            parent.split_status = st
            self._complete_parent(parent)

    def _complete_parent(self, parent: BdevIO) -> None:
        parent.stage = STAGE_NONE
        parent.driver_ctx = None
        parent.status = parent.split_status
        self._finish(parent)

    def _attach_pool_buf(self, io: BdevIO) -> None:
        buf = iobuf_pool.get(io.nbytes)
        io.pool_buf = buf
        iov1 = io._iov1
        iov1[0] = buf if len(buf) == io.nbytes else buf[:io.nbytes]
        io.iovs = iov1

    def _emulate_compare(self, io: BdevIO) -> None:
        io.stage = STAGE_COMPARE_READ
        self._bounce_read(io)

    def _emulate_caw(self, io: BdevIO) -> None:
        # Not atomic against other writers to the same blocks (no LBA range lock yet).
        io.stage = STAGE_CAW_READ
        self._bounce_read(io)

    def _bounce_read(self, io: BdevIO) -> None:
        io.split_status = SUCCESS
        io.split_outstanding = 1
        child = self._child(io, READ, io.offset_blocks, io.num_blocks, None)
        self._attach_pool_buf(child)
        io.driver_ctx = child.iovs[0]  # type: ignore[index]
        child.iovs = [io.driver_ctx]
        self._to_module(child)

    # -- reset --------------------------------------------------------------------------

    def _start_reset(self, io: BdevIO) -> None:
        bdev = self.bdev
        io.stage = STAGE_NONE
        if bdev._reset_io is not None:
            bdev._pending_resets.append(io)
            return
        bdev._reset_io = io
        # Freeze the submitting channel now, so I/O it submits after the reset waits for
        # it; the other channels freeze as the walk reaches them.
        self._set_blocked(BLOCK_RESET, True)
        for_each_channel(bdev, _freeze_channel, _channels_frozen, io)

    def _reset_done(self, io: BdevIO) -> None:
        for_each_channel(self.bdev, _thaw_channel, _channels_thawed, io)


def _cb_raised(io: BdevIO) -> None:
    # A completion callback's bug must not lose the other completions of its batch.
    log.exception("completion callback %r raised for %r", io.cb, io)


def _freeze_channel(it: ChannelIter, ioch: IoChannel) -> None:
    ch: BdevChannel = ioch.ctx
    ch._set_blocked(BLOCK_RESET, True)
    qos = ch.bdev.qos
    if qos is not None:  # I/O waiting for QoS now waits for the reset first
        ch.queued.extend(qos.take_channel(ch))
    it.continue_(0)


def _channels_frozen(it: ChannelIter, status: int) -> None:
    _check_quiesced(it.ctx)


def _check_quiesced(io: BdevIO) -> None:
    counter = [io, 0]
    for_each_channel(io.bdev, _count_outstanding, _counted, counter)


def _count_outstanding(it: ChannelIter, ioch: IoChannel) -> None:
    ch: BdevChannel = ioch.ctx
    it.ctx[1] += ch.outstanding - len(ch.queued)
    it.continue_(0)


def _counted(it: ChannelIter, status: int) -> None:
    io: BdevIO = it.ctx[0]
    if it.ctx[1] - 1 > 0:  # the reset itself is counted
        ch: BdevChannel = io.ch
        holder: list[Any] = []

        def again(_arg: Any) -> int:
            holder[0].unregister()
            _check_quiesced(io)
            return 1
        holder.append(ch.thread.poller_register(again, None, 50, "bdev_reset_wait"))
        return
    ch = io.ch
    io.stage = STAGE_RESET
    if ch.supported[RESET]:
        ch._to_module(io)
    else:
        io.status = SUCCESS
        ch._finish(io)


def _thaw_channel(it: ChannelIter, ioch: IoChannel) -> None:
    ch: BdevChannel = ioch.ctx
    ch._set_blocked(BLOCK_RESET, False)
    it.continue_(0)


def _channels_thawed(it: ChannelIter, status: int) -> None:
    io: BdevIO = it.ctx
    bdev = io.bdev
    assert bdev is not None
    bdev._reset_io = None
    io.ch._finish(io)  # the reset's callback runs before the I/O that waited for it
    if bdev._pending_resets:
        nxt = bdev._pending_resets.popleft()
        nxt.ch._start_reset(nxt)
    cur = get_thread()
    for ch in list(bdev._channels):
        if ch.queued:
            if ch.thread is cur:
                ch.resubmit_queued()
            else:
                ch.thread.send_msg(ch.resubmit_queued)


def slice_iovs(iovs: list[Any], start: int, nbytes: int) -> list[memoryview]:
    """The byte range [start, start+nbytes) of a scatter list, as memoryview slices."""
    out: list[memoryview] = []
    pos = 0
    end = start + nbytes
    for iov in iovs:
        n = len(iov)
        if pos + n > start and pos < end:
            a = max(start - pos, 0)
            b = min(end - pos, n)
            out.append(memoryview(iov)[a:b])
        pos += n
        if pos >= end:
            break
    return out


def iovs_equal(a: Any, b: list[Any]) -> bool:
    """Compare a flat buffer with a scatter list."""
    flat = memoryview(a)
    pos = 0
    for iov in b:
        n = len(iov)
        if flat[pos:pos + n] != memoryview(iov):
            return False
        pos += n
    return True


def _iovs_len(iovs: list[Any]) -> int:
    return sum(len(v) for v in iovs)


# ---------------------------------------------------------------------------------------
# Descriptors
# ---------------------------------------------------------------------------------------


class BdevDesc:
    """An open handle on a bdev (spdk_bdev_desc). All submit methods return 0 or -errno."""

    __slots__ = ("bdev", "writable", "event_cb", "event_ctx", "thread", "closed", "__weakref__")

    def __init__(self, bdev: Bdev, write: bool, event_cb: EventCb, event_ctx: Any, thread: Thread | None):
        self.bdev = bdev
        self.writable = write
        self.event_cb = event_cb
        self.event_ctx = event_ctx
        self.thread = thread
        self.closed = False

    # -- channels and lifetime ----------------------------------------------------------

    def get_io_channel(self) -> BdevChannel:
        """This thread's channel (create on first use); pair with put_io_channel."""
        return get_io_channel(self.bdev).ctx  # type: ignore[no-any-return]

    def put_io_channel(self, ch: BdevChannel) -> None:
        put_io_channel(ch.io_ch)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        bdev = self.bdev
        if self in bdev._descs:
            bdev._descs.remove(self)
        if bdev._status is _Status.REMOVING and not bdev._descs:
            _finish_unregister(bdev)

    def _event(self, ev: BdevEvent) -> None:
        if self.closed:
            return
        if self.thread is not None and not self.thread.exited:
            self.thread.send_msg(self._deliver, ev)
        else:
            self._deliver(ev)

    def _deliver(self, ev: BdevEvent) -> None:
        if not self.closed:
            self.event_cb(ev, self.bdev, self.event_ctx)

    # -- I/O ----------------------------------------------------------------------------

    def read_blocks(self, ch: BdevChannel, buf: Any, offset_blocks: int, num_blocks: int,
                    cb: IoCallback, cb_arg: Any = None) -> int:
        """Read into ``buf`` (len >= num_blocks*block_size; a memoryview is fastest).
        buf=None: the layer supplies the buffer (the module's memory for zero-copy
        modules, else a pooled buffer); read it from io.iovs inside cb."""
        bdev = self.bdev
        if not 0 <= offset_blocks < offset_blocks + num_blocks <= bdev.num_blocks:
            return EINVAL
        nbytes = num_blocks * bdev.block_size
        try:
            io = ch.free.pop()
        except IndexError:
            io = ch.new_io()  # type: ignore[assignment]
            if io is None:
                return ENOMEM
        io.nbytes = nbytes
        if buf is None:
            if bdev.zcopy_read and not ch.split_check:
                io.iovs = None
            else:
                ch._attach_pool_buf(io)
        else:
            if len(buf) != nbytes:
                if len(buf) < nbytes:
                    ch.free.append(io)
                    return EINVAL
                buf = memoryview(buf)[:nbytes]
            io.iovs = iov1 = io._iov1
            iov1[0] = buf
        io.type = READ
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.cb = cb
        io.cb_arg = cb_arg
        # ch.submit(io), inlined: this is the hot path
        io.status = PENDING
        io.submit_ns = _now()
        ch.outstanding += 1
        if ch.slow:
            return ch._submit_slow(io)
        io.in_submit = True
        submit = ch.submit_fn  # a local: calling a slot's callable directly is not specialized
        try:
            st = submit(ch.ctx, io)
        except Exception:
            io.in_submit = False
            ch._module_raised(io)
            return 0
        io.in_submit = False
        if st:  # finished during submit (ch._done_in_submit, inlined)
            io.status = st
            cq = ch.cq
            if not cq:
                ch.thread.send_msg(ch.drain)
            cq.append(io)
        return 0

    def write_blocks(self, ch: BdevChannel, buf: Any, offset_blocks: int, num_blocks: int,
                     cb: IoCallback, cb_arg: Any = None) -> int:
        bdev = self.bdev
        if not self.writable:
            return EBADF
        if not 0 <= offset_blocks < offset_blocks + num_blocks <= bdev.num_blocks:
            return EINVAL
        nbytes = num_blocks * bdev.block_size
        if len(buf) != nbytes:
            if len(buf) < nbytes:
                return EINVAL
            buf = memoryview(buf)[:nbytes]
        try:
            io = ch.free.pop()
        except IndexError:
            io = ch.new_io()  # type: ignore[assignment]
            if io is None:
                return ENOMEM
        io.iovs = iov1 = io._iov1
        iov1[0] = buf
        io.nbytes = nbytes
        io.type = WRITE
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.cb = cb
        io.cb_arg = cb_arg
        # ch.submit(io), inlined: this is the hot path
        io.status = PENDING
        io.submit_ns = _now()
        ch.outstanding += 1
        if ch.slow:
            return ch._submit_slow(io)
        io.in_submit = True
        submit = ch.submit_fn  # a local: calling a slot's callable directly is not specialized
        try:
            st = submit(ch.ctx, io)
        except Exception:
            io.in_submit = False
            ch._module_raised(io)
            return 0
        io.in_submit = False
        if st:  # finished during submit (ch._done_in_submit, inlined)
            io.status = st
            cq = ch.cq
            if not cq:
                ch.thread.send_msg(ch.drain)
            cq.append(io)
        return 0

    def readv_blocks(self, ch: BdevChannel, iovs: list[Any], offset_blocks: int, num_blocks: int,
                     cb: IoCallback, cb_arg: Any = None) -> int:
        """Vectored read: iov lengths may be anything as long as they cover the blocks."""
        return self._vectored(ch, READ, iovs, offset_blocks, num_blocks, cb, cb_arg)

    def writev_blocks(self, ch: BdevChannel, iovs: list[Any], offset_blocks: int, num_blocks: int,
                      cb: IoCallback, cb_arg: Any = None) -> int:
        if not self.writable:
            return EBADF
        return self._vectored(ch, WRITE, iovs, offset_blocks, num_blocks, cb, cb_arg)

    def comparev_blocks(self, ch: BdevChannel, iovs: list[Any], offset_blocks: int, num_blocks: int,
                        cb: IoCallback, cb_arg: Any = None) -> int:
        """Compare the blocks with ``iovs``: cb gets success=False and io.status
        MISCOMPARE when they differ."""
        if not self.bdev.supports(COMPARE):
            return ENOTSUP
        return self._vectored(ch, COMPARE, iovs, offset_blocks, num_blocks, cb, cb_arg)

    def compare_blocks(self, ch: BdevChannel, buf: Any, offset_blocks: int, num_blocks: int,
                       cb: IoCallback, cb_arg: Any = None) -> int:
        return self.comparev_blocks(ch, [buf], offset_blocks, num_blocks, cb, cb_arg)

    def _vectored(self, ch: BdevChannel, type_: int, iovs: list[Any], offset_blocks: int,
                  num_blocks: int, cb: IoCallback, cb_arg: Any) -> int:
        bdev = self.bdev
        if offset_blocks < 0 or num_blocks < 1 or offset_blocks + num_blocks > bdev.num_blocks:
            return EINVAL
        nbytes = num_blocks * bdev.block_size
        total = _iovs_len(iovs)
        if total < nbytes:
            return EINVAL
        if total > nbytes:
            iovs = slice_iovs(iovs, 0, nbytes)
        free = ch.free
        io = free.pop() if free else ch.new_io()
        if io is None:
            return ENOMEM
        io.iovs = iovs
        io.nbytes = nbytes
        io.type = type_
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.cb = cb
        io.cb_arg = cb_arg
        if type_ == COMPARE:
            return ch.submit_special(io)
        return ch.submit(io)

    def compare_and_write_blocks(self, ch: BdevChannel, compare_iovs: list[Any], write_iovs: list[Any],
                                 offset_blocks: int, num_blocks: int, cb: IoCallback,
                                 cb_arg: Any = None) -> int:
        """Fused compare-and-write: write ``write_iovs`` only if the blocks equal
        ``compare_iovs`` (else MISCOMPARE)."""
        bdev = self.bdev
        if not self.writable:
            return EBADF
        if not bdev.supports(COMPARE_AND_WRITE):
            return ENOTSUP
        if offset_blocks < 0 or num_blocks < 1 or offset_blocks + num_blocks > bdev.num_blocks:
            return EINVAL
        nbytes = num_blocks * bdev.block_size
        if _iovs_len(compare_iovs) < nbytes or _iovs_len(write_iovs) < nbytes:
            return EINVAL
        io = ch.free.pop() if ch.free else ch.new_io()
        if io is None:
            return ENOMEM
        io.iovs = slice_iovs(write_iovs, 0, nbytes)
        io.compare_iovs = slice_iovs(compare_iovs, 0, nbytes)
        io.nbytes = nbytes
        io.type = COMPARE_AND_WRITE
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.cb = cb
        io.cb_arg = cb_arg
        return ch.submit_special(io)

    def _no_data(self, ch: BdevChannel, type_: int, offset_blocks: int, num_blocks: int,
                 cb: IoCallback, cb_arg: Any, need_write: bool) -> int:
        bdev = self.bdev
        if need_write and not self.writable:
            return EBADF
        if not bdev.supports(type_):
            return ENOTSUP
        if offset_blocks < 0 or num_blocks < 0 or offset_blocks + num_blocks > bdev.num_blocks:
            return EINVAL
        if num_blocks == 0 and type_ != FLUSH_T:
            return EINVAL
        io = ch.free.pop() if ch.free else ch.new_io()
        if io is None:
            return ENOMEM
        io.iovs = None
        io.nbytes = num_blocks * bdev.block_size
        io.type = type_
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.cb = cb
        io.cb_arg = cb_arg
        return ch.submit_special(io)

    def unmap_blocks(self, ch: BdevChannel, offset_blocks: int, num_blocks: int,
                     cb: IoCallback, cb_arg: Any = None) -> int:
        """-ENOTSUP when the module cannot unmap (unmap is not emulated)."""
        return self._no_data(ch, UNMAP, offset_blocks, num_blocks, cb, cb_arg, True)

    def write_zeroes_blocks(self, ch: BdevChannel, offset_blocks: int, num_blocks: int,
                            cb: IoCallback, cb_arg: Any = None) -> int:
        """Emulated with writes of a shared zero buffer when the module lacks it."""
        return self._no_data(ch, WRITE_ZEROES, offset_blocks, num_blocks, cb, cb_arg, True)

    def flush_blocks(self, ch: BdevChannel, offset_blocks: int, num_blocks: int,
                     cb: IoCallback, cb_arg: Any = None) -> int:
        return self._no_data(ch, FLUSH_T, offset_blocks, num_blocks, cb, cb_arg, False)

    def reset(self, ch: BdevChannel, cb: IoCallback, cb_arg: Any = None) -> int:
        """Quiesce: new I/O on every channel waits, outstanding I/O completes, then the
        module's RESET runs (if it has one), then waiting I/O resumes and cb runs."""
        io = ch.free.pop() if ch.free else ch.new_io()
        if io is None:
            return ENOMEM
        io.iovs = None
        io.nbytes = 0
        io.type = RESET
        io.offset_blocks = 0
        io.num_blocks = 0
        io.cb = cb
        io.cb_arg = cb_arg
        return ch.submit_special(io)

    # -- byte-offset variants -----------------------------------------------------------

    def _blocks(self, offset: int, nbytes: int) -> tuple[int, int] | None:
        bs = self.bdev.block_size
        if offset % bs or nbytes % bs:
            return None
        return offset // bs, nbytes // bs

    def read(self, ch: BdevChannel, buf: Any, offset: int, nbytes: int, cb: IoCallback, cb_arg: Any = None) -> int:
        r = self._blocks(offset, nbytes)
        return EINVAL if r is None else self.read_blocks(ch, buf, r[0], r[1], cb, cb_arg)

    def write(self, ch: BdevChannel, buf: Any, offset: int, nbytes: int, cb: IoCallback, cb_arg: Any = None) -> int:
        r = self._blocks(offset, nbytes)
        return EINVAL if r is None else self.write_blocks(ch, buf, r[0], r[1], cb, cb_arg)

    def readv(self, ch: BdevChannel, iovs: list[Any], offset: int, nbytes: int, cb: IoCallback,
              cb_arg: Any = None) -> int:
        r = self._blocks(offset, nbytes)
        return EINVAL if r is None else self.readv_blocks(ch, iovs, r[0], r[1], cb, cb_arg)

    def writev(self, ch: BdevChannel, iovs: list[Any], offset: int, nbytes: int, cb: IoCallback,
               cb_arg: Any = None) -> int:
        r = self._blocks(offset, nbytes)
        return EINVAL if r is None else self.writev_blocks(ch, iovs, r[0], r[1], cb, cb_arg)

    def __repr__(self) -> str:
        return f"<BdevDesc {self.bdev.name} {'rw' if self.writable else 'ro'}{' closed' if self.closed else ''}>"


FLUSH_T = int(IoType.FLUSH)


# ---------------------------------------------------------------------------------------
# Registry, open, unregister, examine
# ---------------------------------------------------------------------------------------

_bdevs: dict[str, Bdev] = {}          # primary names, registration order
_names: dict[str, Bdev] = {}          # names and aliases
_examine_allowed: set[str] = set()
_examine_waiters: list[Callable[[], Any]] = []


def get_bdev(name: str) -> Bdev | None:
    """By name, alias or UUID string."""
    b = _names.get(name)
    if b is not None:
        return b
    for b in _bdevs.values():
        if str(b.uuid) == name:
            return b
    return None


def bdevs() -> list[Bdev]:
    return list(_bdevs.values())


def register_bdev(bdev: Bdev) -> None:
    """Make a bdev visible: names checked, channels possible, notification sent,
    examine started (on the current thread's next message batch)."""
    for n in [bdev.name, *bdev.aliases]:
        if not n:
            raise BdevError(errno.EINVAL, "bdev name must not be empty")
        if n in _names:
            raise BdevError(errno.EEXIST, f"bdev name {n!r} already exists")
    if bdev.block_size <= 0 or bdev.num_blocks <= 0:
        raise BdevError(errno.EINVAL, f"bdev {bdev.name!r}: block_size and num_blocks must be positive")
    if get_bdev(str(bdev.uuid)) is not None:
        raise BdevError(errno.EEXIST, f"bdev UUID {bdev.uuid} already exists")
    bdev._supported = [bool(bdev.io_type_supported(t)) for t in range(NUM_IO_TYPES)]
    io_device_register(bdev, _create_channel, _destroy_channel, f"bdev_{bdev.name}")
    _bdevs[bdev.name] = bdev
    for n in [bdev.name, *bdev.aliases]:
        _names[n] = bdev
    bdev._status = _Status.READY
    notify.send("bdev_register", bdev.name)
    _start_examine(bdev)


def add_alias(bdev: Bdev, alias: str) -> None:
    if alias in _names:
        raise BdevError(errno.EEXIST, f"bdev name {alias!r} already exists")
    bdev.aliases.append(alias)
    _names[alias] = bdev


def _create_channel(bdev: Bdev, ioch: IoChannel) -> None:
    ch = BdevChannel(bdev, ioch)
    ioch.ctx = ch
    bdev._channels.add(ch)


def _destroy_channel(bdev: Bdev, ioch: IoChannel) -> None:
    global _io_allocated
    ch: BdevChannel = ioch.ctx
    if ch.outstanding:
        log.warning("bdev %s: channel on %s released with %d I/O outstanding",
                    bdev.name, ch.thread.name, ch.outstanding)
    if ch._nomem_poller is not None:
        ch._nomem_poller.unregister()
    bdev._retained.add(ch.stat)
    _io_allocated -= len(ch.free)
    ch.free.clear()
    bdev._channels.discard(ch)
    put_io_channel(ch.module_ch)


def open_ext(name: str, write: bool, event_cb: EventCb, event_ctx: Any = None) -> BdevDesc:
    """Open a bdev by name/alias/UUID. Raises BdevError: ENODEV (no such bdev or being
    removed), EPERM (write refused by a claim)."""
    bdev = get_bdev(name)
    if bdev is None:
        raise BdevError(errno.ENODEV, f"bdev {name!r} does not exist")
    if bdev._status is not _Status.READY:
        raise BdevError(errno.ENODEV, f"bdev {bdev.name!r} is being removed")
    if event_cb is None:
        raise BdevError(errno.EINVAL, "open_ext needs an event callback (for REMOVE and RESIZE)")
    if write and bdev._claims:
        owner = next(iter(bdev._claims))
        raise BdevError(errno.EPERM, f"bdev {bdev.name!r} is claimed by module {owner!r}; cannot open it for writing")
    desc = BdevDesc(bdev, write, event_cb, event_ctx, get_thread())
    bdev._descs.append(desc)
    return desc


def unregister_bdev(bdev: Bdev, cb: Callable[[int], Any] | None = None) -> None:
    """Remove a bdev: open descriptors get REMOVE and must close; once they have (and
    their channels are released) the module's destruct runs, then cb(0)."""
    if bdev._status is _Status.REMOVED or _bdevs.get(bdev.name) is not bdev:
        raise BdevError(errno.ENODEV, f"bdev {bdev.name!r} does not exist")
    if cb is not None:
        bdev._unregister_cbs.append(cb)
    if bdev._status is _Status.REMOVING:
        return
    bdev._status = _Status.REMOVING
    if bdev.qos is not None:
        bdev.qos.stop()
    if not bdev._descs:
        _finish_unregister(bdev)
        return
    for d in list(bdev._descs):
        d._event(BdevEvent.REMOVE)


def unregister_bdev_by_name(name: str, module: BdevModule | None = None,
                            cb: Callable[[int], Any] | None = None) -> None:
    bdev = _bdevs.get(name)
    if bdev is None:
        raise BdevError(errno.ENODEV, f"bdev {name!r} does not exist")
    if module is not None and bdev.module is not module:
        raise BdevError(errno.ENODEV, f"bdev {name!r} is not a {module.name} bdev")
    unregister_bdev(bdev, cb)


def _finish_unregister(bdev: Bdev) -> None:
    io_device_unregister(bdev, _io_device_gone)


def _io_device_gone(bdev: Bdev) -> None:
    def destructed(rc: int) -> None:
        _bdevs.pop(bdev.name, None)
        for n in [bdev.name, *bdev.aliases]:
            if _names.get(n) is bdev:
                del _names[n]
        bdev._status = _Status.REMOVED
        notify.send("bdev_unregister", bdev.name)
        cbs, bdev._unregister_cbs = bdev._unregister_cbs, []
        for cb in cbs:
            cb(rc)
    try:
        bdev.destruct(destructed)
    except Exception:
        log.exception("bdev %s: destruct raised", bdev.name)
        destructed(-errno.EIO)


# -- examine ------------------------------------------------------------------------------


def _start_examine(bdev: Bdev) -> None:
    if not options.bdev_auto_examine and bdev.name not in _examine_allowed:
        return
    bdev._examine_pending += 1
    t = get_thread()
    if t is not None:
        t.send_msg(_examine, bdev)
    else:
        _examine(bdev)


def examine(name: str) -> None:
    """bdev_examine: allow (and run) examine of ``name`` when auto-examine is off."""
    _examine_allowed.add(name)
    b = get_bdev(name)
    if b is not None and b._status is _Status.READY:
        b._examine_pending += 1
        _examine(b)


def _examine(bdev: Bdev) -> None:
    if bdev._status is not _Status.READY:
        _examine_step_done(bdev)
        return
    mods = modules()
    for m in mods:
        if m.has_examine_config():
            try:
                m.examine_config(bdev)
            except Exception:
                log.exception("module %s: examine_config(%s) raised", m.name, bdev.name)
    if bdev._claims:
        disk_mods = [m for m in mods if m.name in bdev._claims and m.has_examine_disk()]
    else:
        disk_mods = [m for m in mods if m.has_examine_disk()]
    bdev._examine_pending += len(disk_mods)
    for m in disk_mods:
        fired = [False]

        def done(bdev: Bdev = bdev, fired: list[bool] = fired) -> None:
            if not fired[0]:
                fired[0] = True
                _examine_step_done(bdev)
        try:
            m.examine_disk(bdev, done)
        except Exception:
            log.exception("module %s: examine_disk(%s) raised", m.name, bdev.name)
            done()
    _examine_step_done(bdev)


def _examine_step_done(bdev: Bdev) -> None:
    bdev._examine_pending -= 1
    if examine_in_progress() == 0 and _examine_waiters:
        waiters = list(_examine_waiters)
        _examine_waiters.clear()
        for w in waiters:
            w()


def examine_in_progress() -> int:
    return sum(b._examine_pending for b in _bdevs.values())


def wait_for_examine(cb: Callable[[], Any]) -> None:
    """cb() once no examine is running (at once if none is)."""
    if examine_in_progress() == 0:
        cb()
    else:
        _examine_waiters.append(cb)


def _reset_for_tests() -> None:
    global _io_allocated
    _bdevs.clear()
    _names.clear()
    _examine_allowed.clear()
    _examine_waiters.clear()
    _io_allocated = 0
    options.__init__()  # type: ignore[misc]
