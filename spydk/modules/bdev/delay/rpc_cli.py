"""`spydk rpc` commands of the delay bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = arg("name", help="bdev name")
    uuid = arg("-u", "--uuid", help="UUID of the new bdev")
    base = arg("-b", "--base-bdev-name", required=True, help="existing bdev to build on")
    add_command(sub, call, "bdev_delay_create", "create a bdev adding latency to another bdev", [
        base, arg("-d", "--name", required=True, help="new bdev name"), uuid,
        arg("-r", "--avg-read-latency", type=int, required=True, help="average read latency (us)"),
        arg("-t", "--nine-nine-read-latency", dest="p99_read_latency", type=int, required=True,
            help="latency of 1 read in 100 (us)"),
        arg("-w", "--avg-write-latency", type=int, required=True, help="average write latency (us)"),
        arg("-n", "--nine-nine-write-latency", dest="p99_write_latency", type=int, required=True,
            help="latency of 1 write in 100 (us)"),
    ], print_json)
    add_command(sub, call, "bdev_delay_delete", "delete a delay bdev", [name])
    add_command(sub, call, "bdev_delay_update_latency", "change one latency of a delay bdev", [
        arg("delay_bdev_name", help="delay bdev name"),
        arg("latency_type", choices=["avg_read", "avg_write", "p99_read", "p99_write"], help="which latency"),
        arg("latency_us", type=int, help="new value (us)")], print_json)
