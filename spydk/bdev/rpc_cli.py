"""`spydk rpc` commands of the bdev layer, with rpc.py's arguments."""
from __future__ import annotations

import argparse
from typing import Any

from spydk.rpc.cli import Call, add_simple, print_dict

RESET_MODES = ["all", "maxmin", "error", "none"]


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    def cmd(name: str, help: str, run: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=run)
        return p

    p = cmd("bdev_set_options", "Set bdev layer options (before framework_start_init)",
            lambda a: call("bdev_set_options", {
                "bdev_io_pool_size": a.bdev_io_pool_size, "bdev_io_cache_size": a.bdev_io_cache_size,
                "bdev_auto_examine": a.bdev_auto_examine, "iobuf_small_cache_size": a.iobuf_small_cache_size,
                "iobuf_large_cache_size": a.iobuf_large_cache_size}))
    p.add_argument("-p", "--bdev-io-pool-size", type=int, help="number of BdevIO structures")
    p.add_argument("-c", "--bdev-io-cache-size", type=int, help="BdevIO structures cached per thread")
    p.add_argument("--auto-examine", dest="bdev_auto_examine", action=argparse.BooleanOptionalAction,
                   help="examine new bdevs automatically")
    p.add_argument("--iobuf-small-cache-size", type=int, help="small buffers cached per thread")
    p.add_argument("--iobuf-large-cache-size", type=int, help="large buffers cached per thread")

    p = cmd("bdev_examine", "Examine a bdev (when auto-examine is off)",
            lambda a: call("bdev_examine", {"name": a.name}))
    p.add_argument("-b", "--name", required=True, help="bdev name or alias")
    add_simple(sub, call, "bdev_wait_for_examine", "Wait until every bdev's examine has finished", None)

    p = cmd("bdev_get_bdevs", "List bdevs",
            lambda a: print_dict(call("bdev_get_bdevs", {"name": a.name, "timeout": a.timeout_ms})))
    p.add_argument("-b", "--name", help="only this bdev")
    p.add_argument("-t", "--timeout-ms", type=int, help="wait this long for the bdev to appear")

    p = cmd("bdev_get_iostat", "Show I/O statistics",
            lambda a: print_dict(call("bdev_get_iostat", {
                "name": a.name, "per_channel": a.per_channel or None, "reset_mode": a.reset_mode,
                "names": a.names})))
    p.add_argument("-b", "--name", help="only this bdev")
    p.add_argument("-c", "--per-channel", action="store_true", help="statistics of each channel")
    p.add_argument("--reset-mode", choices=RESET_MODES, help="reset the statistics after reading them")
    p.add_argument("--names", type=lambda s: s.split(","), help="comma-separated bdev names")

    p = cmd("bdev_reset_iostat", "Reset I/O statistics",
            lambda a: call("bdev_reset_iostat", {"name": a.name, "mode": a.mode}))
    p.add_argument("-b", "--name", help="only this bdev")
    p.add_argument("-m", "--mode", choices=RESET_MODES, help="what to reset")

    p = cmd("bdev_enable_histogram", "Enable or disable a bdev's latency histogram",
            lambda a: call("bdev_enable_histogram", {
                "name": a.name, "enable": a.enable, "opc": a.opc, "granularity": a.granularity,
                "min_nsec": a.min_nsec, "max_nsec": a.max_nsec}))
    p.add_argument("--histogram", dest="enable", action=argparse.BooleanOptionalAction, required=True,
                   help="enable (--histogram) or disable (--no-histogram)")
    p.add_argument("-o", "--opc", help="only this I/O type (read, write, ...)")
    p.add_argument("--granularity", type=int, help="log2 of buckets per range (default 7)")
    p.add_argument("--min-nsec", type=int, help="values below are counted here")
    p.add_argument("--max-nsec", type=int, help="values above are counted here")
    p.add_argument("name", help="bdev name")

    p = cmd("bdev_get_histogram", "Get a bdev's latency histogram",
            lambda a: print_dict(call("bdev_get_histogram", {"name": a.name})))
    p.add_argument("name", help="bdev name")

    p = cmd("bdev_set_qos_limit", "Rate-limit a bdev (0 removes a limit)",
            lambda a: call("bdev_set_qos_limit", {
                "name": a.name, "rw_ios_per_sec": a.rw_ios_per_sec, "rw_mbytes_per_sec": a.rw_mbytes_per_sec,
                "r_mbytes_per_sec": a.r_mbytes_per_sec, "w_mbytes_per_sec": a.w_mbytes_per_sec}))
    p.add_argument("name", help="bdev name")
    p.add_argument("--rw-ios-per-sec", type=int, help="read+write I/O per second (multiple of 1000)")
    p.add_argument("--rw-mbytes-per-sec", type=int, help="read+write MiB per second")
    p.add_argument("--r-mbytes-per-sec", type=int, help="read MiB per second")
    p.add_argument("--w-mbytes-per-sec", type=int, help="write MiB per second")
