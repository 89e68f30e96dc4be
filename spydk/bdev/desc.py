"""BdevDesc: an open handle on a bdev and the submission API (SPDK's spdk_bdev_desc).

The fast path is ``desc.read_blocks(ch, ...)`` / ``desc.write_blocks(ch, ...)`` on a
descriptor opened once (``open_ext``) and this thread's channel taken once
(``desc.get_io_channel()``): a hot loop keeps both and calls only these. They check the range
and the buffer, take a preallocated BdevIO and hand it to the module in the same call; the
completion arrives as ``cb(io, success, cb_arg)`` on this thread (batched: see channel.py).
Every submit method returns 0 or -errno and never raises for a bad request.
"""
from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import Any

from spydk.bdev.bdev import Bdev, BdevEvent, EventCb, _Status
from spydk.bdev.channel import BdevChannel, _iovs_len, slice_iovs
from spydk.bdev.io import (
    COMPARE,
    COMPARE_AND_WRITE,
    FAILED,
    PENDING,
    READ,
    RESET,
    SUCCESS,
    UNMAP,
    WRITE,
    WRITE_ZEROES,
    BdevIO,
    IoCallback,
    IoType,
)
from spydk.bdev.iobuf import pool as iobuf_pool
from spydk.bdev.stats import PENDING_MAX as _PENDING_MAX
from spydk.thread import (
    Thread,
    get_io_channel,
    put_io_channel,
)

_now = time.perf_counter_ns
log = logging.getLogger(__name__)
# rw_batch's completion callback: the list of completed BdevIOs
BatchCallback = Callable[[list[BdevIO]], Any]

EINVAL = -errno.EINVAL
ENOMEM = -errno.ENOMEM
EBADF = -errno.EBADF
ENOTSUP = -errno.ENOTSUP




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
            from spydk.bdev.registry import finish_unregister  # the registry imports this module
            finish_unregister(bdev)

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
        wait_buf = False
        if buf is None:
            if bdev.zcopy_read and not ch.split_check:
                io.iovs = None
            elif nbytes > iobuf_pool.opts.oversize_bytes:
                ch.free.append(io)
                return EINVAL
            elif not ch._attach_pool_buf(io):
                wait_buf = True
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
        if wait_buf:  # the pool is exhausted: submitted once a buffer is given back
            io.status = PENDING
            io.submit_ns = _now()
            ch.outstanding += 1
            ch._wait_pool_buf(io, ch._submit_slow)
            return 0
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

    def rw_batch(self, ch: BdevChannel, write: bool, bufs: list[Any], offsets: list[int], num_blocks: int,
                 cb: BatchCallback, cb_args: list[Any]) -> int:
        """Submit len(offsets) reads (write=False) or writes of num_blocks each: bufs[i]
        (exactly num_blocks*block_size bytes) at block offsets[i], io.cb_arg = cb_args[i].
        A read's buffer may be None, as for read_blocks: the layer supplies it (the module's
        own memory on a zero-copy bdev, else a pooled buffer); read it from io.iovs in cb.

        Returns how many were submitted: a prefix of the lists (the first one that is out
        of range, of the wrong size, or finds no free BdevIO (or, for a read without a
        buffer on a bdev that copies, no free pooled buffer), and those after it, were not;
        writes on a read-only descriptor: none). cb(ios) is called with lists of the
        completed BdevIOs (io.status, io.cb_arg; valid only during the call), never from
        inside rw_batch. When the module has submit_batch and the channel is on its fast
        path (no QoS, splitting, tracing, reset), the whole batch is one module call and
        one completion message with one submission and one completion time; otherwise
        each I/O goes through read_blocks/write_blocks and cb gets one-element lists.
        iostat and histograms count every I/O exactly as the one-by-one calls do."""
        if not len(offsets) == len(bufs) == len(cb_args):
            raise ValueError(f"rw_batch on {self.bdev.name}: {len(offsets)} offsets, {len(bufs)} buffers and "
                             f"{len(cb_args)} callback arguments; give one of each per I/O")
        batch_fn = ch.batch_fn
        if write and not self.writable:
            return 0
        bdev = self.bdev
        if batch_fn is None or ch.slow:
            return self._rw_each(ch, write, bufs, offsets, num_blocks, cb, cb_args)
        nblocks = bdev.num_blocks
        nbytes = num_blocks * bdev.block_size
        zcopy = bdev.zcopy_read
        pooled = False
        pop = ch.free.pop
        t = WRITE if write else READ
        now = _now()
        ios: list[BdevIO] = []
        append = ios.append
        for off, buf, arg in zip(offsets, bufs, cb_args, strict=False):  # lengths checked above
            if not 0 <= off < off + num_blocks <= nblocks or (len(buf) != nbytes if buf is not None else write):
                break
            try:
                io = pop()
            except IndexError:
                io = ch.new_io()  # type: ignore[assignment]
                if io is None:
                    break
            io.nbytes = nbytes
            if buf is None:
                if zcopy:  # submit_batch points io.iovs at its memory
                    io.iovs = None
                elif nbytes > iobuf_pool.opts.oversize_bytes or not ch._attach_pool_buf(io):
                    ch.free.append(io)  # read_blocks refuses it or waits for a buffer
                    break
                else:
                    pooled = True
            else:
                io.iovs = iov1 = io._iov1
                iov1[0] = buf
            io.type = t
            io.offset_blocks = off
            io.num_blocks = num_blocks
            io.cb_arg = arg  # (cb goes with the completion message, not into every BdevIO)
            io.status = PENDING
            io.submit_ns = now
            append(io)
        i = len(ios)
        if not i:
            return 0
        ch.outstanding += i
        try:
            rest = batch_fn(ch.ctx, ios)
        except Exception:
            rest = None
            log.exception("bdev %s: module %s raised in submit_batch; failing its unfinished I/O",
                          bdev.name, bdev.module.name)
            for io in ios:
                if io.status == PENDING:
                    io.status = FAILED
        if rest:
            ios = _one_by_one(ch, ios, rest, cb)
            if not ios:
                return i
        ch.thread.send_msg(ch._batch_done_pooled if pooled else ch._batch_done, ios, cb)
        return i

    def _rw_each(self, ch: BdevChannel, write: bool, bufs: list[Any], offsets: list[int], num_blocks: int,
                 cb: BatchCallback, cb_args: list[Any]) -> int:
        """rw_batch one I/O at a time (modules without submit_batch, or a slow channel)."""
        rw = self.write_blocks if write else self.read_blocks
        for i, off in enumerate(offsets):
            buf = bufs[i]
            if (len(buf) != num_blocks * self.bdev.block_size) if buf is not None else write:
                return i
            if rw(ch, bufs[i], off, num_blocks, _one_done, (cb, cb_args[i])):
                return i
        return len(offsets)

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

    def stacked_rw(self, ch: BdevChannel, type_: int, iovs: list[Any], offset_blocks: int, num_blocks: int,
                   cb: IoCallback, cb_arg: Any = None) -> int:
        """READ or WRITE for a bdev module stacked on this bdev (lvol, passthru-like), from
        inside its own submit_request: ``iovs`` must cover exactly num_blocks*block_size.

        Returns 1 when the base module finished the I/O successfully during this call: it is
        accounted here and recycled, and ``cb`` is NOT called (the stacked module completes
        its own I/O, typically by returning SUCCESS from its submit_request). Returns 0 when
        the I/O is in flight (or failed): ``cb`` runs later, as for readv_blocks. Returns
        -errno, and does not call ``cb``, when it was not submitted. This skips the base
        channel's completion queue and batch for modules that answer at once (malloc, null)."""
        bdev = self.bdev
        if type_ != READ and (type_ != WRITE or not self.writable):
            return EBADF if type_ == WRITE else EINVAL
        if not 0 <= offset_blocks < offset_blocks + num_blocks <= bdev.num_blocks:
            return EINVAL
        nbytes = num_blocks * bdev.block_size
        if (len(iovs[0]) if len(iovs) == 1 else _iovs_len(iovs)) != nbytes:
            return EINVAL
        free = ch.free
        io = free.pop() if free else ch.new_io()
        if io is None:
            return ENOMEM
        io.iovs = iovs
        io.nbytes = nbytes
        io.type = type_
        io.offset_blocks = offset_blocks
        io.num_blocks = num_blocks
        io.status = PENDING
        start = _now()
        ch.outstanding += 1
        if ch.slow:
            io.cb = cb
            io.cb_arg = cb_arg
            io.submit_ns = start
            return ch._submit_slow(io)
        io.in_submit = True
        submit = ch.submit_fn
        try:
            st = submit(ch.ctx, io)
        except Exception:
            io.in_submit = False
            io.cb = cb
            io.cb_arg = cb_arg
            io.submit_ns = start
            ch._module_raised(io)
            return 0
        io.in_submit = False
        if st != SUCCESS:
            # In flight or failed: what the completion path reads. Stored only now (a
            # completion during submit is queued, never delivered before this returns).
            io.cb = cb
            io.cb_arg = cb_arg
            io.submit_ns = start
        else:
            # finished inside submit: account as the completion batch would, recycle
            lat = _now() - start
            pend = ch.stat.pending[type_]   # counted by IoStat.fold(), in C
            pend.append(lat)
            pend.append(nbytes)
            if len(pend) >= _PENDING_MAX:
                ch.stat.fold()
            hist = ch.hist
            if hist is not None and (ch.hist_opc < 0 or ch.hist_opc == type_):
                hist.tally(lat)
            ch.outstanding -= 1
            io.status = SUCCESS
            free.append(io)
            return 1
        if st:  # failed or NOMEM: the ordinary completion path (retry, error counts, cb)
            io.status = st
            cq = ch.cq
            if not cq:
                ch.thread.send_msg(ch.drain)
            cq.append(io)
        return 0

    def stacked_batch(self, ch: BdevChannel, ios: list[BdevIO], own: list[int]) -> int:
        """For a stacked module's own submit_batch: serve its READs or WRITEs ``ios`` (one
        type, one size, one buffer each, as rw_batch gives them) with this module's
        submit_batch, during this call. The stacked module lends its BdevIOs with
        io.offset_blocks already set to this bdev's blocks (checked in range by the caller,
        which maps them), and ``own`` holding their offsets on the stacked bdev: no second
        request object per I/O. Each I/O that did not succeed gets its own offset back (a
        successful one's offset is not read again: rw_batch's callback reads only status and
        cb_arg).

        Returns -1, all offsets put back, when this bdev cannot (no submit_batch, a slow
        channel, a read-only descriptor, another block size). Otherwise each io.status is
        what this bdev gave (PENDING: not taken, untouched), the return value is how many it
        did not take, and the I/Os are accounted on this bdev's channel as one batch, as
        rw_batch does; no callback runs."""
        batch_fn = ch.batch_fn
        io0 = ios[0]
        t = io0.type
        bdev = self.bdev
        if (batch_fn is None or ch.slow or (t != READ and not self.writable)
                or io0.nbytes != io0.num_blocks * bdev.block_size):
            for io, off in zip(ios, own, strict=True):
                io.offset_blocks = off
            return -1
        n = len(ios)
        start = _now()
        ch.outstanding += n
        try:
            batch_fn(ch.ctx, ios)  # what it hands back stays PENDING
        except Exception:
            log.exception("bdev %s: module %s raised in submit_batch; failing its unfinished I/O",
                          bdev.name, bdev.module.name)
            for io in ios:
                if io.status == PENDING:
                    io.status = FAILED
        lat = _now() - start
        ch.outstanding -= n
        statuses = [io.status for io in ios]
        ok = statuses.count(SUCCESS)
        left = 0
        if ok != n:
            errors = ch.stat.errors
            for io, st, off in zip(ios, statuses, own, strict=True):
                if st != SUCCESS:
                    io.offset_blocks = off
                    if st == PENDING:
                        left += 1
                    else:
                        errors[st] = errors.get(st, 0) + 1
        if ok:
            hist = ch.hist
            if hist is not None and (ch.hist_opc < 0 or ch.hist_opc == t):
                for _ in range(ok):
                    hist.tally(lat)
            ch._account(t, ok, ok * io0.nbytes, ok * lat, lat, lat)
        return left

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


def _one_by_one(ch: BdevChannel, ios: list[BdevIO], rest: list[BdevIO], cb: BatchCallback) -> list[BdevIO]:
    """The I/Os a module's submit_batch handed back untouched (``rest``, still PENDING) go
    through the ordinary submit path one at a time, each completing as a one-element list;
    returns the rest of the batch, which the module finished."""
    done = [io for io in ios if io.status != PENDING]
    ch.outstanding -= len(rest)  # ch.submit counts each again
    for io in rest:
        io.cb = _one_done
        io.cb_arg = (cb, io.cb_arg)
        ch.submit(io)
    return done


def _one_done(io: BdevIO, ok: bool, arg: tuple[BatchCallback, Any]) -> None:
    # rw_batch's one-by-one path: the caller's batch callback with a one-element list
    cb, io.cb_arg = arg
    cb([io])
