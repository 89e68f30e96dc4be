"""`spydk rpc` nvmf commands build the requests rpc.py would send."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def dry(*args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "spydk.apps.main", "rpc", "--dry-run", *args],
                         capture_output=True, text=True, check=False).stdout
    return json.loads(out.split("Request:", 1)[1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("argv,method,params", [
    (["nvmf_create_transport", "-t", "TCP", "-u", "16384", "-o"], "nvmf_create_transport",
     {"trtype": "TCP", "io_unit_size": 16384, "c2h_success": False}),
    (["nvmf_create_subsystem", "nqn.2016-06.io.spdk:cnode2", "-a", "-s", "SN1", "-d", "M"],
     "nvmf_create_subsystem", {"nqn": "nqn.2016-06.io.spdk:cnode2", "allow_any_host": True,
                               "serial_number": "SN1", "model_number": "M"}),
    (["nvmf_subsystem_add_listener", "discovery", "-t", "tcp", "-a", "::1", "-f", "ipv6", "-s", "4420"],
     "nvmf_subsystem_add_listener", {"nqn": "nqn.2014-08.org.nvmexpress.discovery", "listen_address": {
         "trtype": "tcp", "traddr": "::1", "adrfam": "ipv6", "trsvcid": "4420"}}),
    (["nvmf_subsystem_add_ns", "nqn.2016-06.io.spdk:cnode1", "Malloc0", "-n", "3", "-g",
      "00112233445566778899aabbccddeeff"], "nvmf_subsystem_add_ns",
     {"nqn": "nqn.2016-06.io.spdk:cnode1", "namespace": {
         "bdev_name": "Malloc0", "nsid": 3, "nguid": "00112233445566778899aabbccddeeff"}}),
    (["nvmf_subsystem_allow_any_host", "nqn.2016-06.io.spdk:cnode1", "--disable"],
     "nvmf_subsystem_allow_any_host", {"nqn": "nqn.2016-06.io.spdk:cnode1", "allow_any_host": False}),
    (["nvmf_subsystem_add_host", "nqn.2016-06.io.spdk:cnode1", "nqn.2014-08.org.example:h"],
     "nvmf_subsystem_add_host", {"nqn": "nqn.2016-06.io.spdk:cnode1", "host": "nqn.2014-08.org.example:h"}),
    (["nvmf_subsystem_remove_ns", "nqn.2016-06.io.spdk:cnode1", "2"], "nvmf_subsystem_remove_ns",
     {"nqn": "nqn.2016-06.io.spdk:cnode1", "nsid": 2}),
    (["nvmf_set_max_subsystems", "-x", "10"], "nvmf_set_max_subsystems", {"max_subsystems": 10}),
    (["nvmf_get_stats"], "nvmf_get_stats", None),
])
def test_dry_run(argv: list[str], method: str, params: dict | None) -> None:  # type: ignore[type-arg]
    req = dry(*argv)
    assert req["method"] == method
    assert req.get("params") == params
