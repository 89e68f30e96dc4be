"""`spydk rpc bdev_rbd_*` with SPDK rpc.py's arguments."""
from __future__ import annotations

import argparse
import json
from typing import Any

from spydk.rpc.cli import Call


def _kv(entries: list[str] | None, flag: str) -> dict[str, str] | None:
    if not entries:
        return None
    out = {}
    for e in entries:
        k, sep, v = e.partition("=")
        if not sep:
            raise SystemExit(f"{flag} {e!r} is not in key=value form")
        out[k] = v
    return out


def _out(res: Any) -> None:
    print(json.dumps(res, indent=2))


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("bdev_rbd_register_cluster", help="connect to a Ceph cluster, shared by rbd bdevs")
    p.add_argument("name", help="cluster name (only known to spydk)")
    p.add_argument("--user", dest="user_id", help="Ceph user (admin, not client.admin)")
    p.add_argument("--config-param", action="append", metavar="key=value", help="a rados_conf_set option (repeat)")
    p.add_argument("--config-file", help="Ceph config file")
    p.add_argument("--key-file", help="keyring file")
    p.add_argument("--core-mask", help="accepted (librbd's threads are not pinned by spydk)")
    p.set_defaults(func=lambda a: print(call("bdev_rbd_register_cluster", {
        "name": a.name, "user_id": a.user_id, "config_param": _kv(a.config_param, "--config-param"),
        "config_file": a.config_file, "key_file": a.key_file, "core_mask": a.core_mask})))
    p = sub.add_parser("bdev_rbd_unregister_cluster", help="forget a registered Ceph cluster")
    p.add_argument("name", help="cluster name")
    p.set_defaults(func=lambda a: call("bdev_rbd_unregister_cluster", {"name": a.name}))
    p = sub.add_parser("bdev_rbd_get_clusters_info", help="registered Ceph clusters")
    p.add_argument("-b", "--name", help="only this cluster")
    p.set_defaults(func=lambda a: _out(call("bdev_rbd_get_clusters_info", {"name": a.name})))
    p = sub.add_parser("bdev_rbd_create", help="create a bdev on an RBD image")
    p.add_argument("-b", "--name", help="bdev name (default CephN)")
    p.add_argument("--user", dest="user_id", help="Ceph user (admin, not client.admin)")
    p.add_argument("--config", action="append", metavar="key=value", help="a rados_conf_set option (repeat)")
    p.add_argument("pool_name", help="pool")
    p.add_argument("rbd_name", help="image")
    p.add_argument("block_size", type=int, help="block size")
    p.add_argument("-c", "--cluster-name", help="a registered cluster")
    p.add_argument("-u", "--uuid", help="UUID of the bdev")
    p.add_argument("-r", "--readonly", dest="read_only", action="store_true", default=None, help="read-only")
    p.set_defaults(func=lambda a: print(call("bdev_rbd_create", {
        "name": a.name, "user_id": a.user_id, "config": _kv(a.config, "--config"), "pool_name": a.pool_name,
        "rbd_name": a.rbd_name, "block_size": a.block_size, "cluster_name": a.cluster_name, "uuid": a.uuid,
        "read_only": a.read_only})))
    p = sub.add_parser("bdev_rbd_delete", help="delete an rbd bdev")
    p.add_argument("name", help="bdev name")
    p.set_defaults(func=lambda a: call("bdev_rbd_delete", {"name": a.name}))
    p = sub.add_parser("bdev_rbd_resize", help="grow an rbd bdev (and its image)")
    p.add_argument("name", help="bdev name")
    p.add_argument("new_size", type=int, help="new size in MiB")
    p.set_defaults(func=lambda a: _out(call("bdev_rbd_resize", {"name": a.name, "new_size": a.new_size})))
