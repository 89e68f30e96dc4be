"""`spydk rpc bdev_lvol_*` commands with SPDK rpc.py's positionals and flags."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from spydk.rpc.cli import Call, print_json

Arg = tuple[tuple[str, ...], dict[str, Any]]


def _a(*flags: str, **kw: Any) -> Arg:
    return flags, kw


def _cmd(sub: argparse._SubParsersAction, call: Call, method: str, help: str, args: list[Arg],
         printer: Callable[[Any], None] | None = print_json, rename: dict[str, str] | None = None) -> None:
    p = sub.add_parser(method, help=help)
    dests = [p.add_argument(*flags, **kw).dest for flags, kw in args]
    ren = rename or {}

    def run(ns: argparse.Namespace) -> None:
        res = call(method, {ren.get(d, d): getattr(ns, d) for d in dests})
        if printer is not None:
            printer(res)
    p.set_defaults(func=run)


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    uuid = _a("-u", "--uuid", help="lvol store UUID")
    lvs = _a("-l", "--lvs-name", help="lvol store name")
    name = _a("name", help="lvol bdev name or alias <lvs>/<lvol>")
    _cmd(sub, call, "bdev_lvol_create_lvstore", "create a logical volume store on a bdev", [
        _a("bdev_name", help="base bdev name"), _a("lvs_name", help="name for the lvol store"),
        _a("-c", "--cluster-sz", type=int, help="cluster size in bytes (default 4 MiB)"),
        _a("--clear-method", choices=["unmap", "write_zeroes", "none"], help="how the data region is cleared"),
        _a("-m", "--md-pages-per-cluster-ratio", type=int, help="metadata pages per 100 clusters (default 100)"),
    ], rename={"md_pages_per_cluster_ratio": "num_md_pages_per_cluster_ratio"})
    _cmd(sub, call, "bdev_lvol_rename_lvstore", "rename a logical volume store",
         [_a("old_name", help="current name"), _a("new_name", help="new name")])
    _cmd(sub, call, "bdev_lvol_grow_lvstore", "grow a logical volume store to its base bdev's size", [uuid, lvs])
    _cmd(sub, call, "bdev_lvol_create", "create a logical volume", [
        uuid, lvs, _a("-t", "--thin-provision", action="store_true", default=None, help="thin provisioned"),
        _a("-c", "--clear-method", choices=["none", "unmap", "write_zeroes"], help="how clusters are cleared"),
        _a("lvol_name", help="volume name"), _a("size_in_mib", type=int, help="size in MiB")])
    _cmd(sub, call, "bdev_lvol_snapshot", "snapshot a logical volume",
         [_a("lvol_name", help="lvol bdev name"), _a("snapshot_name", help="snapshot name")])
    _cmd(sub, call, "bdev_lvol_clone", "clone a snapshot",
         [_a("snapshot_name", help="snapshot bdev name"), _a("clone_name", help="clone name")])
    _cmd(sub, call, "bdev_lvol_rename", "rename a logical volume",
         [_a("old_name", help="lvol bdev name"), _a("new_name", help="new volume name")])
    _cmd(sub, call, "bdev_lvol_inflate", "allocate all clusters of a volume, cutting it from its parent", [name])
    _cmd(sub, call, "bdev_lvol_decouple_parent", "copy the parent's clusters into a volume", [name])
    _cmd(sub, call, "bdev_lvol_resize", "resize a logical volume",
         [name, _a("size_in_mib", type=int, help="new size in MiB")])
    _cmd(sub, call, "bdev_lvol_set_read_only", "make a logical volume read-only", [name])
    _cmd(sub, call, "bdev_lvol_set_parent", "make a thin volume a clone of a snapshot",
         [_a("lvol_name", help="lvol bdev name"), _a("parent_name", help="snapshot bdev name")])
    _cmd(sub, call, "bdev_lvol_clone_bdev", "create a thin volume over another bdev (external snapshot)",
         [_a("bdev", help="bdev to clone"), _a("lvs_name", help="lvol store name"),
          _a("clone_name", help="clone name")])
    _cmd(sub, call, "bdev_lvol_set_parent_bdev", "make a thin volume an esnap clone of a bdev",
         [_a("lvol_name", help="lvol bdev name"), _a("parent_name", help="external snapshot bdev name")])
    _cmd(sub, call, "bdev_lvol_start_shallow_copy", "copy a read-only volume's own clusters to a bdev",
         [_a("src_lvol_name", help="source lvol bdev name"), _a("dst_bdev_name", help="destination bdev")])
    _cmd(sub, call, "bdev_lvol_check_shallow_copy", "progress of a shallow copy",
         [_a("operation_id", type=int, help="operation id from bdev_lvol_start_shallow_copy")])
    _cmd(sub, call, "bdev_lvol_delete", "delete a logical volume", [name])
    _cmd(sub, call, "bdev_lvol_delete_lvstore", "delete a logical volume store", [uuid, lvs])
    _cmd(sub, call, "bdev_lvol_get_lvstores", "list logical volume stores", [uuid, lvs])
    _cmd(sub, call, "bdev_lvol_get_lvols", "list logical volumes",
         [_a("-u", "--lvs-uuid", help="only this store (UUID)"), lvs])
