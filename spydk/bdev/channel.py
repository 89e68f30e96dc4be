"""BdevChannel: one thread's I/O path for one bdev.

Submission (``submit``: straight to the module unless the channel is blocked or must split),
completion batches (``_drain``: one message per batch, statistics summed per run), splitting
and emulation (WRITE_ZEROES, COMPARE, COMPARE_AND_WRITE), the NOMEM retry poller and the
reset (freeze every channel, wait for outstanding I/O, reset the module, thaw).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk import trace as _trace
from spydk.bdev.io import (
    COMPARE,
    COMPARE_AND_WRITE,
    FAILED,
    MISCOMPARE,
    NOMEM,
    PENDING,
    READ,
    RESET,
    STAGE_CAW_READ,
    STAGE_CAW_WRITE,
    STAGE_COMPARE_READ,
    STAGE_NONE,
    STAGE_SPLIT,
    SUCCESS,
    WRITE,
    WRITE_ZEROES,
    BdevIO,
)
from spydk.bdev.iobuf import ZERO_BUF_SIZE, ZEROES
from spydk.bdev.iobuf import pool as iobuf_pool
from spydk.bdev.stats import IoStat
from spydk.thread import (
    ChannelIter,
    IoChannel,
    Thread,
    for_each_channel,
    get_thread,
    put_io_channel,
)

if TYPE_CHECKING:
    from spydk.bdev.bdev import Bdev

from spydk.bdev.bdev import log, options
from spydk.trace import tpoints as _tp

_now = time.perf_counter_ns

# Extra stages (io.py has the split/emulation ones).
STAGE_CHILD = 5
STAGE_RESET = 6

# How many split children one parent keeps in flight at a time.
MAX_CHILDREN_IN_FLIGHT = 32

# BdevChannel.blocked flags
BLOCK_RESET = 1
BLOCK_QOS = 2



_io_allocated = 0


class BdevChannel:
    """A thread's I/O context for one bdev: wraps the module's channel, owns free BdevIOs,
    the deferred-completion queue and the per-channel statistics."""

    __slots__ = ("bdev", "thread", "io_ch", "module_ch", "ctx", "submit_fn", "free", "cq",
                 "_spare", "drain", "finish", "stat", "outstanding", "blocked", "slow",
                 "split_check", "boundary", "max_blocks", "wunit", "queued", "nomem", "hist",
                 "hist_opc", "_nomem_poller", "supported", "cpl_ns", "traced", "batch_fn")

    def __init__(self, bdev: Bdev, io_ch: IoChannel):
        self.bdev = bdev
        self.thread: Thread = io_ch.thread
        self.io_ch = io_ch
        self.module_ch = bdev.get_io_channel()
        self.ctx = self.module_ch.ctx
        self.submit_fn = bdev.submit_request
        self.batch_fn = bdev.submit_batch  # None: BdevDesc.rw_batch goes one by one
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
        # writes are cut at write units instead (and must be made of whole units)
        self.wunit = bdev.write_unit_size if bdev.split_on_write_unit and bdev.write_unit_size > 1 else 0
        if self.wunit and self.max_blocks:
            self.max_blocks = max(self.wunit, self.max_blocks - self.max_blocks % self.wunit)
        self.split_check = bool(self.boundary or self.max_blocks or self.wunit)
        self.slow = self.split_check
        self.queued: deque[BdevIO] = deque()
        self.nomem: deque[BdevIO] = deque()
        self.hist = bdev.histogram
        self.hist_opc = bdev.histogram_opc
        self._nomem_poller: Any = None
        self.supported = bdev._supported
        self.cpl_ns = 0  # when the completions being delivered now were collected
        self.traced = False
        if _trace.group_on(_tp.GROUP_BDEV):
            self.set_traced(True)
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
        self.slow = bool(self.blocked or self.split_check or self.traced)

    def set_traced(self, on: bool) -> None:
        """Record BDEV_IO_START/DONE: swap in the traced submit and completion paths, so with
        tracing off the I/O path runs exactly as without trace points (zero added cost)."""
        self.traced = on
        self.slow = bool(self.blocked or self.split_check or on)
        self.drain = self._drain_traced if on else self._drain
        self.finish = self._finish_traced if on else self._finish

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
        if self.traced:
            _trace.record(_tp.BDEV_IO_START, self.bdev.trace_id, id(io), io.nbytes, io.type,
                          _trace.take_ctx(id(io.cb_arg)), io.offset_blocks, self.bdev.name.encode())
        return self._submit_body(io)

    def _submit_body(self, io: BdevIO) -> int:
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
            self._submit_body(q.popleft())

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
            if self.wunit and not self._whole_units(io):
                return
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
            if t == WRITE and self.wunit:
                if not self._whole_units(io):
                    return
                b = self.wunit
            if (b and (io.offset_blocks % b) + n > b) or (self.max_blocks and n > self.max_blocks):
                io.stage = STAGE_SPLIT
                self._split_start(io, zero=False)
                return
        self._to_module(io)

    def _whole_units(self, io: BdevIO) -> bool:
        """A write to a bdev with split_on_write_unit must cover whole, aligned write units
        (SPDK fails the pieces that do not); fail it here, before any of it is written."""
        u = self.wunit
        if io.offset_blocks % u == 0 and io.num_blocks % u == 0:
            return True
        if not self.stat.errors.get(FAILED):     # once per channel: a client can repeat it
            log.error("bdev %s: a write of %d blocks at block %d is not made of whole write units "
                      "of %d blocks (aligned); refused", self.bdev.name, io.num_blocks,
                      io.offset_blocks, u)
        self._done_in_submit(io, FAILED)
        return False

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

    def _batch_done(self, ios: list[BdevIO], cb: Callable[[list[BdevIO]], Any]) -> None:
        """Complete a batch that BdevDesc.rw_batch gave the module's submit_batch: one
        message, one timestamp, the statistics added once (each I/O's latency is the same:
        one submission time, one completion time), then one call of the caller's batch
        callback with the whole list; the BdevIOs are recycled after it returns."""
        self.cpl_ns = now = _now()
        io0 = ios[0]
        t = io0.type
        lat = now - io0.submit_ns
        n = [io.status for io in ios].count(SUCCESS)
        if n != len(ios):
            errors = self.stat.errors
            for io in ios:
                if io.status != SUCCESS:
                    errors[io.status] = errors.get(io.status, 0) + 1
        if n:
            hist = self.hist
            if hist is not None:
                if self.hist_opc < 0 or self.hist_opc == t:
                    for _ in range(n):
                        hist.tally(lat)
            self._account(t, n, n * io0.nbytes, n * lat, lat, lat)
        try:
            cb(ios)
        except Exception:
            _cb_raised(io0, cb)
        self.outstanding -= len(ios)
        self.free.extend(ios)

    def _batch_done_pooled(self, ios: list[BdevIO], cb: Callable[[list[BdevIO]], Any]) -> None:
        """_batch_done for a batch of reads into pooled buffers (rw_batch on a bdev that is
        not zero-copy): the buffers go back to the pool after the callback has read them."""
        self._batch_done(ios, cb)
        put = iobuf_pool.put
        for io in ios:
            pb = io.pool_buf
            if pb is not None:
                put(pb)
                io.pool_buf = None

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

    def _drain_traced(self) -> None:
        tid = self.bdev.trace_id
        for io in self.cq:
            _trace.record(_tp.BDEV_IO_DONE, tid, id(io), 0, id(io.cb_arg))
        self._drain()

    def _finish_traced(self, io: BdevIO, now: int = 0) -> None:
        _trace.record(_tp.BDEV_IO_DONE, self.bdev.trace_id, id(io), 0, id(io.cb_arg))
        self._finish(io, now)

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
        if not zero and parent.iovs is None and not self._attach_pool_buf(parent):
            self._wait_pool_buf(parent, self._split_continue)
            return
        self._split_continue(parent)

    def _split_continue(self, parent: BdevIO) -> None:
        bs = self.bdev.block_size
        b = self.boundary
        mx = self.max_blocks
        zero = parent.driver_ctx
        ctype = WRITE if zero else parent.type
        wunit = self.wunit if ctype == WRITE else 0
        if wunit:
            b = wunit
        while parent.split_left and parent.split_outstanding < MAX_CHILDREN_IN_FLIGHT \
                and parent.split_status == SUCCESS:
            off = parent.split_next
            n = parent.split_left
            if b:
                n = min(n, b - off % b)
            if mx:
                n = min(n, mx)
            if zero and not wunit:
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

    def _attach_pool_buf(self, io: BdevIO, buf: memoryview | None = None) -> bool:
        """Give io a pooled buffer; False when the pool is exhausted (see _wait_pool_buf)."""
        if buf is None:
            buf = iobuf_pool.get(io.nbytes)
            if buf is None:
                return False
        io.pool_buf = buf
        iov1 = io._iov1
        iov1[0] = buf if len(buf) == io.nbytes else buf[:io.nbytes]
        io.iovs = iov1
        return True

    def _wait_pool_buf(self, io: BdevIO, then: Callable[[BdevIO], Any]) -> None:
        """Queue io for the next free buffer of its size, then continue with then(io) on this
        channel's thread: the pool never grows past its counts."""
        def got(buf: memoryview) -> None:
            self._attach_pool_buf(io, buf)
            self.thread.send_msg(then, io)
        iobuf_pool.wait(io.nbytes, got)

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
        if not self._attach_pool_buf(child):
            self._wait_pool_buf(child, self._bounce_submit)
            return
        self._bounce_submit(child)

    def _bounce_submit(self, child: BdevIO) -> None:
        parent = child.parent
        assert parent is not None
        parent.driver_ctx = child.iovs[0]  # type: ignore[index]
        child.iovs = [parent.driver_ctx]
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


_cb_failed: dict[str, int] = {}


def _cb_raised(io: BdevIO, cb: Any = None) -> None:
    # A completion callback's bug must not lose the other completions of its batch; it is
    # logged once per callback (then counted) so a broken caller cannot flood the log.
    if cb is None:
        cb = io.cb
    name = str(getattr(cb, "__qualname__", None) or cb)
    n = _cb_failed.get(name, 0)
    _cb_failed[name] = n + 1
    if n == 0:
        log.exception("completion callback %s raised for %r (later failures of this callback "
                      "are counted, not logged)", name, io)


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


def create_channel(bdev: Bdev, ioch: IoChannel) -> None:
    ch = BdevChannel(bdev, ioch)
    ioch.ctx = ch
    bdev._channels.add(ch)
    if ch.traced:
        _trace.record(_tp.BDEV_IOCH_CREATE, bdev.trace_id, 0, 0, ch.thread.id, s=bdev.name.encode())


def destroy_channel(bdev: Bdev, ioch: IoChannel) -> None:
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


def _reset_for_tests() -> None:
    global _io_allocated
    _io_allocated = 0
