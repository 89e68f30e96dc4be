"""`spydk rpc bdev_raid_*` with SPDK rpc.py's arguments."""
from __future__ import annotations

import argparse
import json
from typing import Any

from spydk.rpc.cli import Call


def _out(res: Any) -> None:
    print(json.dumps(res, indent=2))


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("bdev_raid_get_bdevs", help="list raid bdevs of a category")
    p.add_argument("category", choices=["all", "online", "configuring", "offline"], help="which raids")
    p.set_defaults(func=lambda a: _out(call("bdev_raid_get_bdevs", {"category": a.category})))

    p = sub.add_parser("bdev_raid_create", help="create a raid bdev")
    p.add_argument("-n", "--name", required=True, help="raid bdev name")
    p.add_argument("-z", "--strip-size-kb", type=int, help="strip size in KiB (raid0, raid5f, concat)")
    p.add_argument("-r", "--raid-level", required=True, help="raid0, raid1, raid5f or concat")
    p.add_argument("-b", "--base-bdevs", required=True, help="base bdev names, whitespace separated, in quotes")
    p.add_argument("--uuid", help="UUID of the raid bdev")
    p.add_argument("-s", "--superblock", action="store_true", default=None,
                   help="keep the raid's description in a superblock on each base bdev")
    p.set_defaults(func=lambda a: call("bdev_raid_create", {
        "name": a.name, "strip_size_kb": a.strip_size_kb, "raid_level": a.raid_level,
        "base_bdevs": a.base_bdevs.split(), "uuid": a.uuid, "superblock": a.superblock}))

    p = sub.add_parser("bdev_raid_delete", help="delete a raid bdev")
    p.add_argument("name", help="raid bdev name")
    p.add_argument("--clear-sb", action="store_true", default=None, help="wipe the superblocks of its bases")
    p.set_defaults(func=lambda a: call("bdev_raid_delete", {"name": a.name, "clear_sb": a.clear_sb}))

    p = sub.add_parser("bdev_raid_add_base_bdev", help="add a base bdev to a raid (raid1, raid5f: rebuilds onto it)")
    p.add_argument("raid_bdev", help="raid bdev name")
    p.add_argument("base_bdev", help="base bdev name")
    p.set_defaults(func=lambda a: call("bdev_raid_add_base_bdev", {"raid_bdev": a.raid_bdev, "base_bdev": a.base_bdev}))

    p = sub.add_parser("bdev_raid_remove_base_bdev", help="remove a base bdev from its raid")
    p.add_argument("name", help="base bdev name")
    p.set_defaults(func=lambda a: call("bdev_raid_remove_base_bdev", {"name": a.name}))

    p = sub.add_parser("bdev_raid_set_options", help="set raid module options")
    p.add_argument("-w", "--process-window-size-kb", type=int, help="rebuild window (KiB)")
    p.add_argument("--process-max-bandwidth-mb-sec", type=int, help="rebuild bandwidth limit (MiB/s, 0: none)")
    p.set_defaults(func=lambda a: call("bdev_raid_set_options", {
        "process_window_size_kb": a.process_window_size_kb,
        "process_max_bandwidth_mb_sec": a.process_max_bandwidth_mb_sec}))
