"""The Bdev object: what a module subclasses, its claims, statistics and histogram; the
layer's errors, events and options.

The bdev layer (SPDK's lib/bdev) is spread over a few files, one job each:

    bdev.py       Bdev (the module's function table + claims, iostat, histogram), BdevError,
                  BdevEvent, ClaimType, BdevOptions
    registry.py   register/unregister, names and aliases, open_ext, examine
    desc.py       BdevDesc: the submission API (read_blocks, write_blocks, ...; the fast path)
    channel.py    BdevChannel: a thread's I/O path (submit, completion batches, statistics,
                  splitting and emulation, NOMEM retry, reset)
    io.py         BdevIO, IoType, IoStatus; module.py: BdevModule; qos.py, stats.py,
                  histogram.py, iobuf.py

Use it through the package: ``from spydk.bdev import open_ext, Bdev, ...``::

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
import itertools
import logging
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
    READ,
    WRITE,
    WRITE_ZEROES,
    BdevIO,
)
from spydk.bdev.module import BdevModule
from spydk.bdev.stats import IoStat
from spydk.thread import (
    IoChannel,
    get_io_channel,
)

if TYPE_CHECKING:
    from spydk.bdev.channel import BdevChannel
    from spydk.bdev.desc import BdevDesc
    from spydk.bdev.qos import Qos


# The notifications this layer sends (notify_get_types lists them).
for _t in ("bdev_register", "bdev_unregister", "bdev_resize"):
    notify.register_type(_t)

log = logging.getLogger("spydk.bdev")
_trace_ids = itertools.count(1)

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
        # Writes must cover whole units of this many blocks (raid5f: a full stripe). With
        # split_on_write_unit the layer splits writes at unit boundaries and fails a write
        # that is not made of whole, aligned units, as SPDK does.
        self.write_unit_size = 1
        self.split_on_write_unit = False
        self.physical_block_size = physical_block_size or block_size
        self.md_size = 0
        self.io_device: Any = None
        # layer state
        self._status = _Status.INVALID
        self._descs: list[BdevDesc] = []
        self._claims: dict[str, ClaimType] = {}  # module name -> type
        self._channels: set[BdevChannel] = set()
        self.trace_id = next(_trace_ids)  # owner id of its trace records
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

    # Optional (None: BdevDesc.rw_batch falls back to one submit_request per I/O):
    # submit_batch(ctx, ios) serves a list of READs or WRITEs (all of one type, each with one
    # buffer of exactly io.nbytes) at once. It sets the final status (never NOMEM) of every
    # io it finishes, and returns None, or the list of those it did not take: these it left
    # untouched (status PENDING, nothing submitted), and the layer passes each to
    # submit_request. The layer completes the finished ones as one batch. It may read only
    # io.type, offset_blocks, num_blocks, nbytes, iovs and _iov1: a stacked module lends it
    # its own BdevIOs (BdevDesc.stacked_batch).
    submit_batch: Callable[[Any, list[BdevIO]], list[BdevIO] | None] | None = None

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
