"""Fixtures: an in-process app with the iSCSI target on a free loopback port, exporting
Malloc bdevs (Malloc0: 64 MiB, Malloc1..Malloc5: 1 MiB)."""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spydk.testing import AppHarness

IQN = "iqn.2016-06.io.spdk:disk1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iscsi_config(port: int, *, chap: tuple[str, str] | None = None, mutual: tuple[str, str] | None = None,
                 options: dict[str, Any] | None = None, extra_nodes: int = 0,
                 node: dict[str, Any] | None = None) -> dict[str, Any]:
    iscsi: list[dict[str, Any]] = []
    if options:
        iscsi.append({"method": "iscsi_set_options", "params": options})
    iscsi += [
        {"method": "iscsi_create_portal_group",
         "params": {"tag": 1, "portals": [{"host": "127.0.0.1", "port": str(port)}]}},
        {"method": "iscsi_create_initiator_group",
         "params": {"tag": 1, "initiators": ["ANY"], "netmasks": ["127.0.0.1/32"]}},
    ]
    params: dict[str, Any] = {"name": "disk1", "alias_name": "Data Disk1",
                              "luns": [{"bdev_name": "Malloc0", "lun_id": 0}],
                              "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 32,
                              **(node or {})}
    if chap is not None:
        secret: dict[str, str] = {"user": chap[0], "secret": chap[1]}
        if mutual is not None:
            secret.update(muser=mutual[0], msecret=mutual[1])
        iscsi.append({"method": "iscsi_create_auth_group", "params": {"tag": 1, "secrets": [secret]}})
        params.update(require_chap=True, mutual_chap=mutual is not None, chap_group=1)
    iscsi.append({"method": "iscsi_create_target_node", "params": params})
    for i in range(extra_nodes):
        iscsi.append({"method": "iscsi_create_target_node", "params": {
            "name": f"disk{i + 2}", "alias_name": "", "luns": [{"bdev_name": f"Malloc{i + 1}"}],
            "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 8}})
    bdevs = [{"method": "bdev_malloc_create",
              "params": {"name": f"Malloc{i}", "num_blocks": 131072 if i == 0 else 2048,
                         "block_size": 512}} for i in range(6)]
    return {"subsystems": [{"subsystem": "bdev", "config": bdevs},
                           {"subsystem": "iscsi", "config": iscsi}]}


@pytest.fixture
def iscsi_app() -> Iterator[Callable[..., tuple[AppHarness, int]]]:
    harnesses: list[AppHarness] = []

    def start(**kw: Any) -> tuple[AppHarness, int]:
        port = free_port()
        h = AppHarness(iscsi_config(port, **kw), subsystems=("iscsi",)).start()
        harnesses.append(h)
        return h, port

    yield start
    for h in harnesses:
        h.stop()
