"""`spydk rpc` commands of the aio, uring, passthru, delay, error and split modules, with
rpc.py's positional arguments and flags. ``add_commands`` has the CLI plug-in signature;
spydk/bdev/cli.py calls it (or it is listed as a CLI module of its own)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from spydk.rpc.cli import Call, print_array, print_json

# (flags, kwargs) of argparse arguments; the dest of each becomes the RPC parameter.
Arg = tuple[tuple[str, ...], dict[str, Any]]


def _a(*flags: str, **kw: Any) -> Arg:
    return flags, kw


def _cmd(sub: argparse._SubParsersAction, call: Call, method: str, help: str, args: list[Arg],
         printer: Callable[[Any], None] | None = None) -> None:
    p = sub.add_parser(method, help=help)
    dests = [p.add_argument(*flags, **kw).dest for flags, kw in args]

    def run(ns: argparse.Namespace) -> None:
        res = call(method, {d: getattr(ns, d) for d in dests})
        if printer is not None:
            printer(res)
    p.set_defaults(func=run)



def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = _a("name", help="bdev name")
    bs = _a("block_size", type=int, nargs="?", help="block size (detected when omitted)")
    uuid = _a("-u", "--uuid", help="UUID of the new bdev")
    _cmd(sub, call, "bdev_aio_create", "create a bdev over a file or block device (Linux AIO)", [
        _a("filename", help="file or block device path"), name, bs,
        _a("-r", "--readonly", action="store_true", default=None, help="read-only bdev"),
        _a("--fallocate", action="store_true", default=None, help="UNMAP/WRITE_ZEROES by fallocate"),
        uuid, _a("--no-wait", dest="nowait", action="store_true", default=None,
                 help="RWF_NOWAIT (accepted; spydk never blocks the reactor anyway)"),
    ], print_json)
    _cmd(sub, call, "bdev_aio_delete", "delete an aio bdev", [name])
    _cmd(sub, call, "bdev_aio_rescan", "pick up a new size of an aio bdev's file", [name], print_json)
    _cmd(sub, call, "bdev_uring_create", "create a bdev over a file or block device (io_uring)", [
        _a("filename", help="file or block device path"), name, bs, uuid], print_json)
    _cmd(sub, call, "bdev_uring_delete", "delete a uring bdev", [name])
    _cmd(sub, call, "bdev_uring_rescan", "pick up a new size of a uring bdev's file", [name], print_json)
    base = _a("-b", "--base-bdev-name", required=True, help="existing bdev to build on")
    _cmd(sub, call, "bdev_passthru_create", "create a pass-through bdev over another bdev", [
        base, _a("-p", "--name", required=True, help="new bdev name"), uuid], print_json)
    _cmd(sub, call, "bdev_passthru_delete", "delete a pass-through bdev", [name])
    _cmd(sub, call, "bdev_delay_create", "create a bdev adding latency to another bdev", [
        base, _a("-d", "--name", required=True, help="new bdev name"), uuid,
        _a("-r", "--avg-read-latency", type=int, required=True, help="average read latency (us)"),
        _a("-t", "--nine-nine-read-latency", dest="p99_read_latency", type=int, required=True,
           help="latency of 1 read in 100 (us)"),
        _a("-w", "--avg-write-latency", type=int, required=True, help="average write latency (us)"),
        _a("-n", "--nine-nine-write-latency", dest="p99_write_latency", type=int, required=True,
           help="latency of 1 write in 100 (us)"),
    ], print_json)
    _cmd(sub, call, "bdev_delay_delete", "delete a delay bdev", [name])
    _cmd(sub, call, "bdev_delay_update_latency", "change one latency of a delay bdev", [
        _a("delay_bdev_name", help="delay bdev name"),
        _a("latency_type", choices=["avg_read", "avg_write", "p99_read", "p99_write"], help="which latency"),
        _a("latency_us", type=int, help="new value (us)")], print_json)
    _cmd(sub, call, "bdev_error_create", "create an error-injection bdev EE_<base> over a bdev", [
        _a("base_name", help="base bdev name"), _a("--uuid", help="UUID of the new bdev")], print_json)
    _cmd(sub, call, "bdev_error_delete", "delete an error-injection bdev", [name])
    _cmd(sub, call, "bdev_error_inject_error", "make the next I/O of a type fail or misbehave", [
        _a("name", help="error bdev name"),
        _a("io_type", choices=["clear", "read", "write", "unmap", "flush", "all"], help="I/O type"),
        _a("error_type", choices=["failure", "nvme_failure", "pending", "corrupt_data", "nomem"], help="error"),
        _a("--nvme-sct", type=int, help="NVMe status code type (nvme_failure)"),
        _a("--nvme-sc", type=int, help="NVMe status code (nvme_failure)"),
        _a("-n", "--num", type=int, help="how many I/O to hit (default 1)"),
        _a("-q", "--queue-depth", type=int, help="hit only at this many outstanding I/O or more"),
        _a("-o", "--corrupt-offset", type=int, help="byte offset to corrupt (corrupt_data)"),
        _a("-v", "--corrupt-value", type=int, help="XOR value 1..255 (corrupt_data)"),
    ])
    _cmd(sub, call, "bdev_error_resume_pending", "release the I/O held by a 'pending' injection",
         [_a("name", help="error bdev name")])
    _cmd(sub, call, "bdev_split_create", "split a bdev into equal parts <base>p0..", [
        _a("base_bdev", help="base bdev name"),
        _a("split_count", type=int, help="number of parts"),
        _a("-s", "--split-size-mb", type=int, help="size of each part in MiB (default: even split)"),
    ], print_array)
    _cmd(sub, call, "bdev_split_delete", "delete the split of a bdev and its parts",
         [_a("base_bdev", help="base bdev name")])
