"""`spydk rpc` commands of the error bdev module, with rpc.py's positional arguments and flags."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_command, arg, print_json


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    name = arg("name", help="bdev name")
    add_command(sub, call, "bdev_error_create", "create an error-injection bdev EE_<base> over a bdev", [
        arg("base_name", help="base bdev name"), arg("--uuid", help="UUID of the new bdev")], print_json)
    add_command(sub, call, "bdev_error_delete", "delete an error-injection bdev", [name])
    add_command(sub, call, "bdev_error_inject_error", "make the next I/O of a type fail or misbehave", [
        arg("name", help="error bdev name"),
        arg("io_type", choices=["clear", "read", "write", "unmap", "flush", "all"], help="I/O type"),
        arg("error_type", choices=["failure", "nvme_failure", "pending", "corrupt_data", "nomem"], help="error"),
        arg("--nvme-sct", type=int, help="NVMe status code type (nvme_failure)"),
        arg("--nvme-sc", type=int, help="NVMe status code (nvme_failure)"),
        arg("-n", "--num", type=int, help="how many I/O to hit (default 1)"),
        arg("-q", "--queue-depth", type=int, help="hit only at this many outstanding I/O or more"),
        arg("-o", "--corrupt-offset", type=int, help="byte offset to corrupt (corrupt_data)"),
        arg("-v", "--corrupt-value", type=int, help="XOR value 1..255 (corrupt_data)"),
    ])
    add_command(sub, call, "bdev_error_resume_pending", "release the I/O held by a 'pending' injection",
         [arg("name", help="error bdev name")])
