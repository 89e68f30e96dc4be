"""bdevperf: drive bdevs at a fixed queue depth and report IOPS, bandwidth and latency.

    spydk bdevperf -c bdev.json -q 128 -o 4096 -w randread -t 5

Flags follow SPDK's bdevperf. Each job is one bdev on one lightweight thread (one per core
of -m; with -C every core runs a job on every bdev, on its own slice of it). Each core of -m
is a reactor process pinned to that core; a core's jobs run on its reactor. Without -z no RPC server is
started; with -z the app waits for the perform_tests RPC and runs once per call.

Latency is measured by the bdev layer's timestamps: from submission to the moment the
completion batch is delivered (BdevIO.submit_ns, BdevChannel.cpl_ns).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import random
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from spydk.bdev import BdevError, bdevs, get_bdev, open_ext, wait_for_examine
from spydk.bdev.io import SUCCESS, BdevIO
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.thread import Thread, get_reactor, get_thread
from spydk.thread.cores import register_op, workers

WORKLOADS = ("read", "write", "randread", "randwrite", "rw", "randrw", "verify", "reset", "unmap",
             "flush", "write_zeroes")
RANDOM_TABLE = 1 << 16
_HDR = struct.Struct("<QQ")  # verify: (block number, generation) at the head of every block
assert _HDR.size == 16


def parse_size(text: str) -> int:
    """4096, 4k, 128K, 1m."""
    t = text.strip().lower()
    mult = 1
    if t and t[-1] in "kmg":
        mult = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[t[-1]]
        t = t[:-1]
    try:
        v = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid I/O size {text!r} (e.g. 4096 or 4k)") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"I/O size must be positive, got {text!r}")
    return v


def parse_mask(text: str) -> list[int]:
    from spydk.apps.main import parse_cpumask
    return parse_cpumask(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk bdevperf", description="Block device performance test (SPDK's bdevperf)")
    p.add_argument("-q", dest="queue_depth", type=int, help="I/O depth per job")
    p.add_argument("-o", dest="io_size", type=parse_size, help="I/O size in bytes (4096, 4k, 128k)")
    p.add_argument("-w", dest="workload", choices=WORKLOADS, help="I/O pattern")
    p.add_argument("-t", dest="time", type=float, help="run time in seconds")
    p.add_argument("-M", dest="rwmixread", type=int, default=50, help="percentage of reads for rw/randrw (default 50)")
    p.add_argument("-m", dest="cpumask", type=parse_mask, default=[0], help="core mask or list (default 0x1)")
    p.add_argument("-c", "--json", dest="config", help="JSON config file creating the bdevs")
    p.add_argument("-z", dest="wait_for_tests", action="store_true", help="wait for the perform_tests RPC")
    p.add_argument("-r", dest="rpc_socket", default="/var/tmp/spdk.sock", help="RPC socket (with -z)")
    p.add_argument("-S", dest="progress", type=float, default=0, help="print progress every N seconds")
    p.add_argument("-T", dest="bdev_names", action="append", help="run only on this bdev (repeatable)")
    p.add_argument("-C", dest="every_core", action="store_true", help="a job per bdev on every core")
    p.add_argument("-s", "--seed", dest="seed", type=int, default=0, help="random seed (default: time)")
    p.add_argument("--plot-latency", metavar="FILE",
                   help="write a latency histogram (.png/.svg; turns on the bdev latency histogram)")
    p.add_argument("--plot-iops", metavar="FILE", help="write IOPS over time (.png/.svg), sampled every 0.1 s")
    return p


class Job:
    """One bdev on one thread, keeping ``qd`` I/Os in flight until told to stop."""

    def __init__(self, name: str, thread: Thread, core: int, args: argparse.Namespace, seed: int,
                 part: tuple[int, int] = (0, 1)):
        self.name = name
        self.part = part   # (i, n): this job drives the i-th of n equal slices of the bdev (-C)
        self.thread = thread
        self.core = core
        self.workload: str = args.workload
        self.qd: int = args.queue_depth
        self.io_size: int = args.io_size
        self.rwmixread: int = 100 if args.workload in ("read", "randread") else \
            0 if args.workload in ("write", "randwrite") else args.rwmixread
        self.rng = random.Random(seed)
        # Any: set in setup(); the hot path must not pay for None checks
        self.desc: Any = None
        self.ch: Any = None
        self.running = False
        self.outstanding = 0
        self.done = 0
        self.failed = 0
        self.miscompares = 0
        self.lat_sum = 0
        self.lat_min = 1 << 62
        self.lat_max = 0
        self.start_ns = 0
        self.end_ns = 0
        self.error: str | None = None
        self.on_finished: Any = None
        self.gen = 0

    # -- set-up on the job's thread ----------------------------------------------------

    def setup(self) -> None:
        write = self.workload not in ("read", "randread")
        self.desc = open_ext(self.name, write, self._event)
        bdev = self.desc.bdev
        bs = bdev.block_size
        if self.io_size % bs:
            raise BdevError(22, f"I/O size {self.io_size} is not a multiple of {self.name}'s block size {bs}")
        self.nblocks = self.io_size // bs
        # With -C the jobs of one bdev split it into disjoint slices (as SPDK's bdevperf does),
        # so two cores never write the same blocks and verify never sees the other's data.
        per_job = bdev.num_blocks // self.part[1]
        self.base = self.part[0] * per_job
        self.slots = per_job // self.nblocks
        if self.slots < 1:
            raise BdevError(22, f"bdev {self.name} is smaller than one I/O of {self.io_size} bytes"
                                + (f" per job ({self.part[1]} jobs share it)" if self.part[1] > 1 else ""))
        self.ch = self.desc.get_io_channel()
        rng = self.rng
        self.offsets = [self.base + rng.randrange(self.slots) * self.nblocks for _ in range(RANDOM_TABLE)]
        self._rand_offsets = itertools.cycle(self.offsets)  # next() is cheaper than index arithmetic
        self.mix = [rng.randrange(100) < self.rwmixread for _ in range(RANDOM_TABLE)]
        self.bufs = [memoryview(bytearray(rng.randbytes(self.io_size))) for _ in range(self.qd)]
        self.rbufs = [memoryview(bytearray(self.io_size)) for _ in range(self.qd)] \
            if self.workload in ("verify", "reset") else []
        self.seq = 0
        self.idx = 0
        self.block_size = bs
        # read/write/randread/randwrite run in batches when the bdev's module takes them
        # (_batch_done accounts a completion batch and resubmits it with one
        # BdevDesc.rw_batch call); on other bdevs (stacked ones: lvol, passthru, ...) they
        # run one I/O at a time in _rw_done, which costs less than rw_batch's one-by-one
        # fallback. Callables are bound once here: a bound method made per I/O is an allocation.
        self.rand = self.workload in ("randread", "randwrite")
        self.rw_workload = self.workload in ("read", "randread", "write", "randwrite")
        self.batched = False  # decided in start(), when the channel exists
        # Slots of batches smaller than the queue depth (I/Os a module's submit_batch
        # handed back complete alone, e.g. an lvol's first write to a cluster): gathered
        # after the completions being delivered now and resubmitted as one batch, so that
        # the queue does not stay split into small batches for the rest of the run.
        self._regroup: list[int] = []
        self._write = self.workload in ("write", "randwrite")
        self._batch_cb = self._batch_done
        self._rw = self.desc.write_blocks if self._write else self.desc.read_blocks
        self._rw_cb = self._rw_done

    def _event(self, ev: Any, bdev: Any, ctx: Any) -> None:
        self.error = f"bdev {bdev.name} was removed"
        self.running = False

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self.start_ns = time.perf_counter_ns()
        self.batched = self.rw_workload and self.ch is not None and self.ch.batch_fn is not None
        if self.batched:
            self.outstanding += self.qd
            self._submit_batch(list(range(self.qd)))
            if self.outstanding == 0 and self.qd:
                self.error = "submit failed"
                self.running = False
            self._check_done()
            return
        for i in range(self.qd):
            self.outstanding += 1
            rc = self._submit(i)
            if rc:
                self.outstanding -= 1
                self.error = f"submit failed: {rc}"
                self.running = False
                break
        self._check_done()

    def stop(self) -> None:
        self.running = False
        self._check_done()

    def _check_done(self) -> None:
        if not self.running and self.outstanding == 0 and self.on_finished is not None:
            if not self.end_ns:
                self.end_ns = time.perf_counter_ns()
            cb, self.on_finished = self.on_finished, None
            cb(self)

    def _next_offset(self) -> int:
        w = self.workload
        if w in ("randread", "randwrite", "randrw"):
            return next(self._rand_offsets)
        off = self.base + self.seq
        self.seq += self.nblocks
        if self.seq + self.nblocks > self.slots * self.nblocks:
            self.seq = 0
            self.gen += 1
        return off

    def _submit(self, slot: int) -> int:
        """The general path (workloads other than read/write/randread/randwrite, which run in
        batches (_submit_batch) or, on bdevs without batches, continue in the lean _rw_done)."""
        w = self.workload
        desc, ch = self.desc, self.ch
        assert desc is not None and ch is not None
        off = self._next_offset()
        if self.rw_workload:
            return self._rw(ch, self.bufs[slot], off, self.nblocks, self._rw_cb, slot)  # type: ignore[no-any-return]
        if w in ("rw", "randrw"):
            self.idx = (self.idx + 1) & (RANDOM_TABLE - 1)
            if self.mix[self.idx]:
                return desc.read_blocks(ch, self.bufs[slot], off, self.nblocks, self._done, slot)
            return desc.write_blocks(ch, self.bufs[slot], off, self.nblocks, self._done, slot)
        if w in ("verify", "reset"):
            buf = self.bufs[slot]
            self._pattern(buf, off)
            return desc.write_blocks(ch, buf, off, self.nblocks, self._verify_written, (slot, off))
        if w == "unmap":
            return desc.unmap_blocks(ch, off, self.nblocks, self._done, slot)
        if w == "flush":
            return desc.flush_blocks(ch, off, self.nblocks, self._done, slot)
        return desc.write_zeroes_blocks(ch, off, self.nblocks, self._done, slot)

    def _account(self, io: BdevIO, ok: bool) -> None:
        lat = self.ch.cpl_ns - io.submit_ns
        self.lat_sum += lat
        if lat > self.lat_max:
            self.lat_max = lat
        if lat < self.lat_min:
            self.lat_min = lat
        if ok:
            self.done += 1
        else:
            self.failed += 1

    def _submit_batch(self, slots: list[int]) -> None:
        """Resubmit these slots in one rw_batch call (read and write workloads)."""
        if self.rand:
            nxt = next
            r = self._rand_offsets
            offsets = [nxt(r) for _ in slots]
        else:
            offsets = [self._next_offset() for _ in slots]
        bufs = self.bufs
        n = self.desc.rw_batch(self.ch, self._write, [bufs[s] for s in slots], offsets,  # type: ignore[union-attr]
                               self.nblocks, self._batch_cb, slots)
        if n < len(slots):  # refused: those slots stop
            self.outstanding -= len(slots) - n
            self._check_done()

    def _batch_done(self, ios: list[BdevIO]) -> None:
        # The hot path of read and write workloads: account a completion batch, resubmit it.
        # rw_batch gives a batch one submission time (and one completion time), so every I/O
        # of it has the same latency.
        n = len(ios)
        lat = self.ch.cpl_ns - ios[0].submit_ns  # type: ignore[union-attr]
        self.lat_sum += lat * n
        if lat > self.lat_max:
            self.lat_max = lat
        if lat < self.lat_min:
            self.lat_min = lat
        slots = [io.cb_arg for io in ios]
        ok = [io.status for io in ios].count(SUCCESS)
        self.done += ok
        self.failed += n - ok
        if not self.running:
            self.outstanding -= len(ios)
            self._check_done()
        elif len(ios) == self.qd:
            self._submit_batch(slots)
        else:
            if not self._regroup:
                self.thread.send_msg(self._submit_regrouped)
            self._regroup += slots

    def _submit_regrouped(self, _arg: Any = None) -> None:
        slots, self._regroup = self._regroup, []
        if self.running:
            self._submit_batch(slots)
        else:
            self.outstanding -= len(slots)
            self._check_done()

    def _rw_done(self, io: BdevIO, ok: bool, slot: int) -> None:
        # Read and write workloads on a bdev without batches: account, resubmit the slot.
        lat = self.ch.cpl_ns - io.submit_ns  # type: ignore[union-attr]
        self.lat_sum += lat
        if lat > self.lat_max:
            self.lat_max = lat
        if lat < self.lat_min:
            self.lat_min = lat
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.running:
            off = next(self._rand_offsets) if self.rand else self._next_offset()
            submit = self._rw  # a local: calling an instance attribute directly is not specialized
            if submit(self.ch, self.bufs[slot], off, self.nblocks, self._rw_cb, slot) == 0:
                return
        self.outstanding -= 1
        self._check_done()

    def _done(self, io: BdevIO, ok: bool, slot: int) -> None:
        self._account(io, ok)
        self._resubmit(slot)

    def _resubmit(self, slot: int) -> None:
        if self.running and self._submit(slot) == 0:
            return
        self.outstanding -= 1
        self._check_done()

    # -- verify ---------------------------------------------------------------------------

    def _pattern(self, buf: memoryview, off: int) -> None:
        bs = self.block_size
        for i in range(self.nblocks):
            _HDR.pack_into(buf, i * bs, off + i, self.gen)

    def _verify_written(self, io: BdevIO, ok: bool, arg: tuple[int, int]) -> None:
        slot, off = arg
        if not ok:
            self._account(io, ok)
            self._resubmit(slot)
            return
        rc = self.desc.read_blocks(self.ch, self.rbufs[slot], off, self.nblocks,
                                   self._verify_read, arg)
        if rc:
            self.failed += 1
            self._resubmit(slot)

    def _verify_read(self, io: BdevIO, ok: bool, arg: tuple[int, int]) -> None:
        slot, off = arg
        self._account(io, ok)
        if ok and self.rbufs[slot] != self.bufs[slot]:
            self.miscompares += 1
            self.failed += 1
            self.done -= 1
            if self.error is None:
                self.error = self._describe_miscompare(slot, off)
        self._resubmit(slot)

    def _describe_miscompare(self, slot: int, off: int) -> str:
        got, want = bytes(self.rbufs[slot]), bytes(self.bufs[slot])
        bs = self.block_size
        for i in range(self.nblocks):
            if got[i * bs:(i + 1) * bs] != want[i * bs:(i + 1) * bs]:
                lba, gen = _HDR.unpack_from(got, i * bs)
                return (f"miscompare at block {off + i} of {self.name}: found data of block {lba} "
                        f"generation {gen}, expected block {off + i} generation {self.gen}")
        return f"miscompare at block {off} of {self.name}"

    def teardown(self) -> None:
        if self.ch is not None and self.desc is not None:
            self.desc.put_io_channel(self.ch)
            self.ch = None
        if self.desc is not None:
            self.desc.close()
            self.desc = None

    # -- results ----------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        secs = max((self.end_ns or time.perf_counter_ns()) - self.start_ns, 1) / 1e9
        n = self.done + self.failed
        return {
            "job": self.name, "core_mask": hex(1 << self.core), "workload": self.workload,
            "queue_depth": self.qd, "io_size": self.io_size, "runtime": secs,
            "iops": self.done / secs, "mibps": self.done * self.io_size / secs / (1024 * 1024),
            "io_failed": self.failed, "io_timeout": 0, "fail_per_sec": self.failed / secs,
            "avg_latency_us": self.lat_sum / n / 1000 if n else 0.0,
            "min_latency_us": self.lat_min / 1000 if n else 0.0,
            "max_latency_us": self.lat_max / 1000 if n else 0.0,
            "miscompares": self.miscompares,
            "slice": list(self.part), "done": self.done, "io_failed_count": self.failed,
        }


# -- running a test -----------------------------------------------------------------------


class Runner:
    def __init__(self, args: argparse.Namespace, reactor: Any, app_thread: Thread, out: Any = sys.stdout):
        self.args = args
        self.reactor = reactor
        self.app_thread = app_thread
        self.out = out
        self.home_core: int = reactor.lcore
        self.threads: dict[int, Thread] = {}
        self.iops_samples: list[tuple[float, float]] = []   # (seconds since start, IOPS)
        self.hist_names: list[str] = []

    def thread_for(self, core: int) -> Thread:
        t = self.threads.get(core)
        if t is None:
            t = self.app_thread if core == self.home_core else \
                self.reactor.create_thread(f"bdevperf_core{core}", 1 << core)
            self.threads[core] = t
        return t

    def job_specs(self) -> list[tuple[str, int, int, tuple[int, int]]]:
        """(bdev, core, seed, slice) of every job of the run, whichever reactor runs it."""
        names = self.args.bdev_names or [b.name for b in bdevs() if not b.claimed]
        for n in names:
            if get_bdev(n) is None:
                raise BdevError(19, f"bdev {n!r} does not exist")
        if not names:
            raise BdevError(19, "no bdevs to test: create some with -c/--json (e.g. bdev_malloc_create)")
        cores = self.args.cpumask
        seed = self.args.seed or time.time_ns()
        specs: list[tuple[str, int, int, tuple[int, int]]] = []
        for i, n in enumerate(names):
            if self.args.every_core:
                for k, core in enumerate(cores):
                    specs.append((n, core, seed + len(specs), (k, len(cores))))
            else:
                specs.append((n, cores[i % len(cores)], seed + len(specs), (0, 1)))
        return specs

    def make_jobs(self, specs: list[tuple[str, int, int, tuple[int, int]]] | None = None) -> list[Job]:
        return [Job(n, self.thread_for(core), core, self.args, seed, part)
                for n, core, seed, part in (self.job_specs() if specs is None else specs)]

    async def run(self) -> list[dict[str, Any]]:
        """Run every job (those of other cores on their worker reactors), print, return results."""
        specs = self.job_specs()
        ws = workers()
        remote: dict[int, list[tuple[str, int, int, tuple[int, int]]]] = {}
        local = []
        for sp in specs:
            if ws is not None and sp[1] != self.home_core and ws.by_core(sp[1]) is not None:
                remote.setdefault(sp[1], []).append(sp)
            else:
                local.append(sp)
        jobs = self.make_jobs(local)
        futs = []
        for core, sps in sorted(remote.items()):
            w = ws.by_core(core) if ws is not None else None
            assert w is not None and w.link is not None
            futs.append(w.link.call("bdevperf_run", self.args, sps))
        print(f"Running I/O for {self.args.time:g} seconds...", file=self.out, flush=True)
        try:
            cpu, wall = await self.run_jobs(jobs)
        finally:
            others = await asyncio.gather(*futs, return_exceptions=True)
        results = [j.result() for j in jobs]
        errors = [f"job {j.name}: {j.error}" for j in jobs if j.error]
        for o in others:
            if isinstance(o, BaseException):
                raise BdevError(5, f"a worker reactor failed its jobs: {o}")
            results += o["results"]
            errors += o["errors"]
            cpu += o["cpu"]
            wall = max(wall, o["wall"])
        order = {(sp[0], sp[1], sp[3]): i for i, sp in enumerate(specs)}
        results.sort(key=lambda r: order.get((r["job"], int(r["core_mask"], 16).bit_length() - 1,
                                              tuple(r["slice"])), 0))
        for e in errors:
            print(e, file=self.out)
        print_results(results, self.out)
        # Not in SPDK's output: on a shared machine, completions per CPU second are steadier.
        total = sum(r["done"] + r["io_failed_count"] for r in results)
        print(f" CPU: {cpu:.2f} s over {wall:.2f} s wall ({cpu / wall:.0%}); "
              f"{total / cpu if cpu else 0:.0f} I/O per CPU second", file=self.out, flush=True)
        self.write_plots()
        return results

    async def run_jobs(self, jobs: list[Job]) -> tuple[float, float]:
        """Set up, run for the test time, stop and tear down ``jobs`` (all on this reactor);
        returns (CPU seconds, wall seconds) of the run."""
        loop = asyncio.get_running_loop()
        if getattr(self.args, "plot_latency", None):
            # The bdev layer's histogram (as bdev_enable_histogram), before the channels exist.
            self.hist_names = sorted({j.name for j in jobs})
            for n in self.hist_names:
                b = get_bdev(n)
                if b is not None and b.histogram is None:
                    b.enable_histogram(True)
        try:
            for j in jobs:
                await self.reactor.call_on(j.thread, j.setup)
        except BaseException:
            for j in jobs:   # close what the failed set-up opened, or shutdown waits for it
                await self.reactor.call_on(j.thread, j.teardown)
            raise
        # Move the set-up's objects out of the collector's way: a full collection over
        # them would show up as a multi-millisecond latency spike.
        gc.collect()
        gc.freeze()
        finished = loop.create_future()
        left = [len(jobs)]
        if not jobs:
            finished.set_result(True)

        def one_done(job: Job) -> None:
            left[0] -= 1
            if left[0] == 0 and not finished.done():
                loop.call_soon(finished.set_result, True)
        for j in jobs:
            j.on_finished = one_done
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for j in jobs:
            j.thread.send_msg(j.start)
        resetter = None
        if self.args.workload == "reset":
            resetter = loop.create_task(self._resets(jobs))
        deadline = loop.time() + self.args.time
        last = (loop.time(), 0)
        sample_iops = bool(getattr(self.args, "plot_iops", None))
        t0 = prev_t = loop.time()
        prev_n = 0
        while loop.time() < deadline and not finished.done():
            step = min(0.1 if sample_iops else (self.args.progress or 0.1), deadline - loop.time())
            await asyncio.wait([finished], timeout=max(step, 0))
            if sample_iops:
                now_t, ndone = loop.time(), sum(j.done for j in jobs)
                if now_t > prev_t:
                    self.iops_samples.append((now_t - t0, (ndone - prev_n) / (now_t - prev_t)))
                prev_t, prev_n = now_t, ndone
            if self.args.progress and not finished.done():
                now, total = loop.time(), sum(j.done for j in jobs)
                if now - last[0] >= self.args.progress * 0.99:
                    iops = (total - last[1]) / (now - last[0])
                    print(f"  {iops:10.2f} IOPS, {iops * self.args.io_size / 1048576:8.2f} MiB/s",
                          file=self.out, flush=True)
                    last = (now, total)
        if resetter is not None:
            resetter.cancel()
        for j in jobs:
            j.thread.send_msg(j.stop)
        await finished
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.unfreeze()
        for j in jobs:
            await self.reactor.call_on(j.thread, j.teardown)
        return cpu, wall

    def write_plots(self) -> None:
        from spydk.apps import plots
        a = self.args
        what = f"{a.workload} {a.io_size} B, QD {a.queue_depth}"
        if getattr(a, "plot_iops", None):
            plots.iops_series(self.iops_samples, a.plot_iops, f"bdevperf IOPS ({what})")
            print(f"wrote {a.plot_iops}", file=self.out)
        if getattr(a, "plot_latency", None):
            buckets: dict[tuple[int, int], int] = {}
            for n in self.hist_names:
                b = get_bdev(n)
                if b is not None and b.histogram is not None:
                    for s, e, c in b.histogram.iter_nonzero():
                        buckets[(s, e)] = buckets.get((s, e), 0) + c
            plots.latency_histogram([(s, e, c) for (s, e), c in sorted(buckets.items())], a.plot_latency,
                                    f"bdevperf latency ({what})")
            print(f"wrote {a.plot_latency}", file=self.out)

    async def _resets(self, jobs: list[Job]) -> None:
        while True:
            await asyncio.sleep(1.0)
            for j in jobs:
                def go(j: Job = j) -> None:
                    if j.running and j.desc is not None and j.ch is not None:
                        j.outstanding += 1
                        rc = j.desc.reset(j.ch, _reset_done, j)
                        if rc:
                            j.outstanding -= 1
                j.thread.send_msg(go)


async def _run_on_worker(args: argparse.Namespace, specs: list[tuple[str, int, int, tuple[int, int]]], *,
                         fds: list[int]) -> dict[str, Any]:
    """A worker reactor's share of a run: its jobs, on its reactor, with its copy of the bdevs."""
    reactor = get_reactor()
    thread = get_thread()
    assert thread is not None
    examined: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def examine_done() -> None:
        if not examined.done():
            examined.set_result(True)
    thread.send_msg(wait_for_examine, examine_done)
    await examined
    runner = Runner(args, reactor, thread)
    jobs = runner.make_jobs(specs)
    cpu, wall = await runner.run_jobs(jobs)
    return {"results": [j.result() for j in jobs], "errors": [f"job {j.name}: {j.error}" for j in jobs if j.error],
            "cpu": cpu, "wall": wall}


register_op("bdevperf_run", _run_on_worker)


def _reset_done(io: BdevIO, ok: bool, job: Job) -> None:
    if not ok:
        job.failed += 1
    job.outstanding -= 1
    job._check_done()


def print_results(results: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    w = out.write
    w(f"{'Latency(us)':>113}\n")
    w(f" {'Device Information':<28}: {'runtime(s)':>10} {'IOPS':>10} {'MiB/s':>10} {'Fail/s':>10} "
      f"{'TO/s':>8} {'Average':>10} {'min':>10} {'max':>10}\n")
    for r in results:
        w(f" Job: {r['job']} (Core Mask {r['core_mask']}, workload: {r['workload']}, depth: {r['queue_depth']}, "
          f"IO size: {r['io_size']})\n")
        if r["miscompares"]:
            w(f"\t Verification failed: {r['miscompares']} miscompares\n")
        w(f"\t {r['job']:<20}: {r['runtime']:10.2f} {r['iops']:10.2f} {r['mibps']:10.2f} {r['fail_per_sec']:10.2f} "
          f"{0.0:8.2f} {r['avg_latency_us']:10.2f} {r['min_latency_us']:10.2f} {r['max_latency_us']:10.2f}\n")
    w(" " + "=" * 115 + "\n")
    iops = sum(r["iops"] for r in results)
    mib = sum(r["mibps"] for r in results)
    fail = sum(r["fail_per_sec"] for r in results)
    n = sum(r["iops"] * r["runtime"] for r in results) or 1
    avg = sum(r["avg_latency_us"] * r["iops"] * r["runtime"] for r in results) / n
    mn = min((r["min_latency_us"] for r in results), default=0.0)
    mx = max((r["max_latency_us"] for r in results), default=0.0)
    w(f" {'Total':<28}: {'':>10} {iops:10.2f} {mib:10.2f} {fail:10.2f} {0.0:8.2f} {avg:10.2f} {mn:10.2f} {mx:10.2f}\n")
    out.flush()


# -- perform_tests (with -z) --------------------------------------------------------------

_pending: dict[str, Any] = {}


@rpc_method("perform_tests", [Param("time_in_sec", "uint64"), Param("queue_depth", "uint32"),
                              Param("io_size", "uint32"), Param("workload_type", "string"),
                              Param("rw_percentage", "uint32"), Param("bdev_name", "string")])
def perform_tests(ctx: RpcContext, **params: Any) -> Any:
    """bdevperf -z: run the test now and return its results."""
    runner: Runner | None = _pending.get("runner")
    if runner is None:
        from spydk.rpc.errors import RpcError
        raise RpcError(-32601, "perform_tests is only available in bdevperf -z")
    a = runner.args
    mapping = {"time_in_sec": "time", "queue_depth": "queue_depth", "io_size": "io_size",
               "workload_type": "workload", "rw_percentage": "rwmixread"}
    for k, v in params.items():
        if k == "bdev_name":
            a.bdev_names = [v]
        else:
            setattr(a, mapping[k], v)
    missing = [n for n in ("queue_depth", "io_size", "workload", "time") if getattr(a, n) is None]
    if missing:
        from spydk.rpc.errors import invalid_params
        raise invalid_params(f"missing {', '.join(missing)} (give them on the command line or as parameters)")

    async def go() -> dict[str, Any]:
        return {"results": await runner.run()}
    return go()


# -- main ---------------------------------------------------------------------------------


async def amain(args: argparse.Namespace, ws: Any = None) -> int:
    from spydk.apps.app import App, AppOptions, StartupError
    opts = AppOptions(name="bdevperf", rpc_socket=args.rpc_socket if args.wait_for_tests else None,
                      json_config=args.config, subsystems=("bdev",), cpumask=1 << args.cpumask[0],
                      lcore=args.cpumask[0], workers=ws)
    app = App(opts)
    try:
        await app.start()
    except StartupError as e:
        print(f"bdevperf: {e}", file=sys.stderr)
        return 1
    assert app.reactor is not None and app.thread is not None
    rc = 0
    try:
        examined: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def examine_done() -> None:
            if not examined.done():
                examined.set_result(True)
        app.thread.send_msg(wait_for_examine, examine_done)
        await examined
        runner = Runner(args, app.reactor, app.thread)
        if args.wait_for_tests:
            _pending["runner"] = runner
            await app.wait_shutdown()
            return app.exit_code
        try:
            results = await runner.run()
        except BdevError as e:
            print(f"bdevperf: {e.message}", file=sys.stderr)
            return 1
        if any(r["miscompares"] for r in results) or any(r["io_failed"] for r in results) \
                and args.workload in ("verify", "reset"):
            rc = 1
    finally:
        _pending.clear()
        if not app.shutting_down:
            app.shutdown()
        await app.wait_shutdown()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.wait_for_tests:
        missing = [f for f, v in (("-q", args.queue_depth), ("-o", args.io_size), ("-w", args.workload),
                                  ("-t", args.time)) if v is None]
        if missing:
            print(f"bdevperf: {', '.join(missing)} required (or -z to take them from perform_tests)", file=sys.stderr)
            return 2
    if args.queue_depth is not None and args.queue_depth < 1:
        print("bdevperf: -q must be at least 1", file=sys.stderr)
        return 2
    if not 0 <= args.rwmixread <= 100:
        print("bdevperf: -M must be 0..100", file=sys.stderr)
        return 2
    from spydk.thread import cores
    try:
        cores.check_cores(args.cpumask)
    except cores.CoreError as e:
        print(f"bdevperf: -m: {e}", file=sys.stderr)
        return 2
    ws = None
    if len(args.cpumask) > 1:
        # A reactor process per extra core, forked before any loop exists (see spydk.thread.cores).
        from spydk.apps.plugins import load_plugins
        load_plugins()
        from spydk.apps.worker import worker_main
        # Replica reactors: the bdevs of -c are created on main and repeated on each (malloc
        # memory shared), as a multi-core target does.
        ws = cores.spawn_workers(args.cpumask[1:], lambda core, sock: worker_main(core, sock, False, ("bdev",),
                                                                                  "bdevperf"))
    cores.pin_to_core(args.cpumask[0])
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(amain(args, ws))
    finally:
        if ws is not None and not ws.stopping:
            ws.kill()
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
