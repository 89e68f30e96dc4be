"""`spydk perf`: spdk_nvme_perf over spydk's NVMe host driver (NVMe/TCP).

Same flags and report as SPDK's tool: -q depth, -o size, -w pattern, -M read mix, -t time,
-r transport ID (repeatable), -P queues per namespace, -H/-I digests, -L/-LL latency
summary/histogram. Additions: --verify (writes carry a per-block tag; reads of blocks
written in the run are checked), --progress (IOPS each second on stderr), --plot (a text
bar chart of the latency histogram).

Each I/O is a preallocated task object: its completion callback records the latency and
submits the task's next I/O on the spot, so one receive batch of completions produces one
send of new commands. No coroutine per I/O.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from spydk.apps.nvme_common import (
    add_transport_args,
    attached_line,
    connect_all,
    ctrlr_name,
    ctrlr_opts,
    new_loop,
    trids,
)
from spydk.bdev.histogram import Histogram
from spydk.nvme.host import Controller, Namespace, Qpair, status_str

PATTERNS = ("read", "write", "randread", "randwrite", "rw", "randrw")
CUTOFFS = (0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 0.99999,
           0.999999, 0.9999999)
_TAG = struct.Struct("<QQ")  # LBA, write generation: the first 16 bytes of each block (--verify)
_now = time.perf_counter_ns


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk perf", description="NVMe I/O benchmark (spdk_nvme_perf).")
    p.add_argument("-q", "--io-depth", type=int, required=True, help="I/O depth per queue")
    p.add_argument("-o", "--io-size", type=int, required=True, help="I/O size in bytes")
    p.add_argument("-w", "--io-pattern", required=True, choices=PATTERNS, help="I/O pattern")
    p.add_argument("-M", "--rwmixread", type=int, help="reads in percent for rw/randrw (0-100)")
    p.add_argument("-t", "--time", type=float, required=True, help="run time in seconds")
    p.add_argument("-a", "--warmup-time", type=float, default=0, help="warm-up seconds (not counted)")
    p.add_argument("-c", "--core-mask", default="0x1", help="accepted; spydk perf runs on one core")
    p.add_argument("-P", "--num-qpairs", type=int, default=1, help="I/O queues per namespace")
    p.add_argument("--io-queue-size", type=int, default=0, help="I/O queue size (default: max of controller)")
    p.add_argument("-d", "--number-ios", type=int, default=0, help="stop after this many I/Os per namespace")
    p.add_argument("-L", "--enable-sw-latency-tracking", action="count", default=0,
                   help="-L latency summary, -LL also the histogram")
    p.add_argument("--verify", action="store_true", help="check read data against what this run wrote")
    p.add_argument("--progress", action="store_true", help="print IOPS every second on stderr")
    p.add_argument("--plot", action="store_true", help="print a text plot of the latency histogram")
    p.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    add_transport_args(p)
    return p


class NsStats:
    __slots__ = ("io_completed", "total_ns", "min_ns", "max_ns", "hist", "errors", "miscompares")

    def __init__(self, hist: bool) -> None:
        self.io_completed = 0
        self.total_ns = 0
        self.min_ns = 1 << 62
        self.max_ns = 0
        self.hist = Histogram() if hist else None
        self.errors = 0
        self.miscompares = 0


class Worker:
    """The tasks of one namespace on one qpair."""

    def __init__(self, run: Run, ctrlr: Controller, ns: Namespace, q: Qpair, stats: NsStats,
                 range_slots: int, slot_base: int = 0) -> None:
        self.run = run
        self.ctrlr = ctrlr
        self.ns = ns
        self.nsid = ns.nsid
        self.q = q
        self.stats = stats
        self.nlb = run.io_size // ns.block_size
        self.slots = range_slots
        self.base = slot_base  # first slot of this queue's range (--verify with -P > 1)
        self.next_slot = 0
        self.inflight: set[int] = set()
        self.generation: dict[int, int] = {}  # slot -> generation written (verify)
        self.gen = 0

    def start(self, depth: int) -> None:
        size = self.run.io_size
        for _ in range(depth):
            task = [memoryview(bytearray(size)), 0, 0, False, 0]  # buf, slot, t0, is_read, gen
            self.submit(task)

    def submit(self, task: list[Any]) -> None:
        r = self.run
        if r.stopping:
            r.outstanding -= 1
            if r.outstanding == 0 and r.done is not None and not r.done.done():
                r.done.set_result(None)
            return
        if r.random:
            slot = r.rng.randrange(self.slots)
            if r.verify:
                tries = 0
                while slot in self.inflight and tries < 16:
                    slot = r.rng.randrange(self.slots)
                    tries += 1
        else:
            slot = self.next_slot
            self.next_slot = slot + 1 if slot + 1 < self.slots else 0
        is_read = r.mix == 100 or (r.mix and r.rng.randrange(100) < r.mix)
        task[1] = slot
        task[3] = is_read
        lba = (self.base + slot) * self.nlb
        if r.verify:
            self.inflight.add(slot)
            if not is_read:
                self.gen += 1
                task[4] = self.gen
                buf = task[0]
                bs = self.ns.block_size
                for i in range(self.nlb):
                    _TAG.pack_into(buf, i * bs, lba + i, self.gen)
        task[2] = _now()
        if is_read:
            self.q.read(self.nsid, task[0], lba, self.nlb, self.done, task)
        else:
            self.q.write(self.nsid, task[0], lba, self.nlb, self.done, task)

    def done(self, task: list[Any], status: int, _dw0: int) -> None:
        lat = _now() - task[2]
        r = self.run
        st = self.stats
        if status:
            st.errors += 1
            if st.errors == 1:
                print(f"perf: {ctrlr_name(self.ctrlr)} NSID {self.nsid}: I/O failed: {status_str(status)}"
                      f"{' (' + self.ctrlr.failure + ')' if self.ctrlr.failure else ''}", file=sys.stderr)
            if self.ctrlr.state == "failed":
                r.stopping = True
        elif r.counting:
            st.io_completed += 1
            st.total_ns += lat
            if lat < st.min_ns:
                st.min_ns = lat
            if lat > st.max_ns:
                st.max_ns = lat
            if st.hist is not None:
                st.hist.tally(lat)
        if r.verify:
            slot = task[1]
            self.inflight.discard(slot)
            if not status:
                if task[3]:
                    self._check(task, slot)
                else:
                    self.generation[slot] = task[4]
        r.total_ios += 1
        if r.limit and st.io_completed >= r.limit:
            r.stopping = True
        self.submit(task)

    def _check(self, task: list[Any], slot: int) -> None:
        gen = self.generation.get(slot)
        if gen is None:
            return
        buf = task[0]
        bs = self.ns.block_size
        lba = (self.base + slot) * self.nlb
        for i in range(self.nlb):
            if _TAG.unpack_from(buf, i * bs) != (lba + i, gen):
                self.stats.miscompares += 1
                if self.stats.miscompares == 1:
                    got = _TAG.unpack_from(buf, i * bs)
                    print(f"perf: verify: LBA {lba + i} of NSID {self.nsid} holds tag {got}, "
                          f"expected {(lba + i, gen)}", file=sys.stderr)
                return


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.io_size = args.io_size
        self.random = args.io_pattern.startswith("rand")
        base = args.io_pattern.removeprefix("rand")
        if base == "rw":
            if args.rwmixread is None:
                raise SystemExit("spydk perf: -M (rwmixread) is required with -w rw/randrw")
            if not 0 <= args.rwmixread <= 100:
                raise SystemExit("spydk perf: -M must be 0..100")
            self.mix = args.rwmixread
        else:
            self.mix = 100 if base == "read" else 0
        self.verify = args.verify
        self.rng = random.Random(args.seed)
        self.stopping = False
        self.counting = args.warmup_time == 0
        self.outstanding = 0
        self.done: asyncio.Future[None] | None = None
        self.limit = args.number_ios
        self.total_ios = 0


def validate(args: argparse.Namespace) -> None:
    if args.io_depth < 1:
        raise SystemExit("spydk perf: -q must be at least 1")
    if args.io_size < 512 or args.io_size % 4:
        raise SystemExit("spydk perf: -o must be a multiple of 4 and at least 512")
    if args.time <= 0:
        raise SystemExit("spydk perf: -t must be positive")
    if args.num_qpairs < 1:
        raise SystemExit("spydk perf: -P must be at least 1")


async def run_perf(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    validate(args)
    r = Run(args)
    ts = trids(args, "spydk perf")
    qsize = args.io_queue_size or 0
    print("Initializing NVMe Controllers", file=out)
    opts = [ctrlr_opts(args, t, num_io_queues=args.num_qpairs,
                       **({"io_queue_size": qsize} if qsize else {"io_queue_size": 1024}))
            for t in ts]
    ctrlrs = await connect_all(ts, opts, "spydk perf")
    workers: list[tuple[str, Worker]] = []
    stats: list[tuple[str, NsStats]] = []
    for c, t in zip(ctrlrs, ts, strict=True):
        print(f"Attached to {attached_line(c)}", file=out)
        nss = [c.namespaces[t.ns]] if t.ns and t.ns in c.namespaces else list(c.namespaces.values())
        if t.ns and t.ns not in c.namespaces:
            print(f"spydk perf: namespace {t.ns} is not active on {t}", file=sys.stderr)
            return 1
        for ns in nss:
            name = f"{ctrlr_name(c)} NSID {ns.nsid}"
            if args.io_size % ns.block_size:
                print(f"WARNING: IO size {args.io_size} (-o) is not a multiple of nsid {ns.nsid} "
                      f"sector size {ns.block_size}. Removing this ns from test", file=out)
                continue
            slots = ns.num_blocks * ns.block_size // args.io_size
            if slots < 1:
                print(f"WARNING: namespace {ns.nsid} is smaller than -o; skipped", file=out)
                continue
            st = NsStats(args.enable_sw_latency_tracking > 0)
            stats.append((name, st))
            qps = c.io_qpairs[:args.num_qpairs]
            # --verify tracks what each queue wrote: queues of one namespace then get disjoint
            # ranges, else writes of two queues to one block would race (no order across queues).
            per = slots // len(qps) if args.verify and len(qps) > 1 else slots
            for k, q in enumerate(qps):
                if q.depth <= args.io_depth:
                    print(f"Controller IO queue size {q.depth}, less than required.\n"
                          "Consider using lower queue depth or smaller IO size, because "
                          "IO requests may be queued at the NVMe driver.", file=out)
                workers.append((name, Worker(r, c, ns, q, st, max(per, 1),
                                             k * per if per < slots else 0)))
            print(f"Associating {name} with lcore 0", file=out)
    if not workers:
        print("spydk perf: no valid namespaces to test", file=sys.stderr)
        return 1
    print("Initialization complete. Launching workers.", file=out)
    loop = asyncio.get_running_loop()
    r.done = loop.create_future()
    r.outstanding = len(workers) * args.io_depth
    if args.warmup_time:
        loop.call_later(args.warmup_time, _end_warmup, r, stats)
    t_start = time.monotonic()
    cpu_start = time.process_time()
    counting_from = [t_start + args.warmup_time]
    for _, w in workers:
        w.start(args.io_depth)
    end = t_start + args.warmup_time + args.time
    progress = _Progress(r) if args.progress else None
    while not r.stopping:
        left = end - time.monotonic()
        if left <= 0:
            break
        await asyncio.sleep(min(left, 1.0))
        if progress is not None:
            progress.tick()
    r.stopping = True
    elapsed = time.monotonic() - counting_from[0]
    try:
        await asyncio.wait_for(r.done, 30)
    except TimeoutError:
        print("spydk perf: I/O still outstanding 30 s after the end of the run", file=sys.stderr)
    cpu = time.process_time() - cpu_start
    wall = time.monotonic() - t_start
    print_performance(stats, args, elapsed, out)
    if r.total_ios:
        # Not in SPDK's report (its reactor busy-polls one core): what this run cost.
        print(f"CPU: {cpu:.2f} s over {wall:.2f} s wall ({cpu * 100 / wall:.0f}%); "
              f"{cpu * 1e6 / r.total_ios:.2f} us per I/O", file=out)
    for c in ctrlrs:
        await c.detach()
    errors = sum(st.errors for _, st in stats)
    mis = sum(st.miscompares for _, st in stats)
    if mis:
        print(f"spydk perf: verify found {mis} miscompared I/Os", file=sys.stderr)
    if errors:
        print(f"spydk perf: {errors} I/Os failed", file=sys.stderr)
    return 1 if errors or mis else 0


def _end_warmup(r: Run, stats: list[tuple[str, NsStats]]) -> None:
    r.counting = True


class _Progress:
    def __init__(self, r: Run) -> None:
        self.r = r
        self.last = 0
        self.t = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        n = self.r.total_ios
        iops = (n - self.last) / max(now - self.t, 1e-9)
        self.last, self.t = n, now
        mib = iops * self.r.io_size / (1024 * 1024)
        print(f"{iops:9.0f} IOPS, {mib:8.2f} MiB/s", file=sys.stderr)


def print_performance(stats: list[tuple[str, NsStats]], args: argparse.Namespace, elapsed: float,
                      out: Any) -> None:
    width = max(len(n) for n, _ in stats)
    p = lambda s="": print(s, file=out)  # noqa: E731
    p("========================================================")
    p(f"{'Latency(us)':>{width + 60}}")
    p(f"{'Device Information':<{width + 13}}: {'IOPS':>10} {'MiB/s':>10} {'Average':>10} {'min':>10} {'max':>10}")
    tot_iops = tot_mb = 0.0
    tot_ios = tot_ns = 0
    mn, mx = float("inf"), 0.0
    for name, st in stats:
        if not st.io_completed:
            continue
        iops = st.io_completed / elapsed
        mb = iops * args.io_size / (1024 * 1024)
        avg = st.total_ns / st.io_completed / 1000
        lo, hi = st.min_ns / 1000, st.max_ns / 1000
        mn, mx = min(mn, lo), max(mx, hi)
        p(f"{name[:width]:<{width}} from core {0:2d}: {iops:10.2f} {mb:10.2f} {avg:10.2f} {lo:10.2f} {hi:10.2f}")
        tot_iops += iops
        tot_mb += mb
        tot_ios += st.io_completed
        tot_ns += st.total_ns
    if tot_ios:
        p("========================================================")
        p(f"{'Total':<{width + 13}}: {tot_iops:10.2f} {tot_mb:10.2f} {tot_ns / tot_ios / 1000:10.2f} "
          f"{mn:10.2f} {mx:10.2f}")
        p()
    if not args.enable_sw_latency_tracking or not tot_ios:
        return
    for name, st in stats:
        assert st.hist is not None
        p(f"Summary latency data for {name[:43]:<43} from core 0:")
        p("=================================================================================")
        total = st.hist.total()
        so_far = 0
        cuts = list(CUTOFFS)
        for _idx, _start, end, count in _buckets(st.hist):
            so_far += count
            while cuts and so_far / total >= cuts[0]:
                p(f"{cuts[0] * 100:9.5f}% : {end / 1000:9.3f}us")
                cuts.pop(0)
        p()
    if args.enable_sw_latency_tracking > 1 or args.plot:
        for name, st in stats:
            assert st.hist is not None
            total = st.hist.total()
            if args.enable_sw_latency_tracking > 1:
                p(f"Latency histogram for {name[:43]:<43} from core 0:")
                p("==============================================================================")
                p("       Range in us     Cumulative    IO count")
                so_far = 0
                for _idx, start, end, count in _buckets(st.hist):
                    so_far += count
                    p(f"{start / 1000:9.3f} - {end / 1000:9.3f}: {so_far * 100 / total:9.4f}%  ({count:9d})")
                p()
            if args.plot:
                plot_histogram(name, st.hist, out)


def _buckets(h: Histogram) -> list[tuple[int, int, int, int]]:
    """(index, start ns, end ns, count) of the non-empty buckets, in order."""
    out = []
    for idx, count in enumerate(h.buckets):
        if count:
            lo, hi = h.bucket_bounds(idx)
            out.append((idx, lo, hi, count))
    return out


def plot_histogram(name: str, h: Histogram, out: Any, width: int = 50) -> None:
    """A text bar chart: latency buckets merged into at most 30 rows."""
    rows = _buckets(h)
    if not rows:
        return
    step = max(1, -(-len(rows) // 30))
    merged = []
    for i in range(0, len(rows), step):
        part = rows[i:i + step]
        merged.append((part[0][1], part[-1][2], sum(c for *_, c in part)))
    peak = max(c for *_, c in merged)
    print(f"Latency plot for {name} (us, I/Os)", file=out)
    for lo, hi, c in merged:
        bar = "#" * max(1, round(c * width / peak))
        print(f"{lo / 1000:10.1f} - {hi / 1000:10.1f} | {bar} {c}", file=out)
    print(file=out)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loop = new_loop()
    try:
        return loop.run_until_complete(run_perf(args))
    finally:
        loop.close()
