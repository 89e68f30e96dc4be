"""SPDK's interactive configuration shell (spdk-cli, from the PyPI package) against spydk."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spydk.testing import start_target

SPDK_CLI = Path(sys.executable).parent / "spdk-cli"  # installed beside this interpreter

CONFIG = {"subsystems": [
    {"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 2048, "block_size": 512}},
    ]},
    {"subsystem": "nvmf", "config": [
        {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
        {"method": "nvmf_create_subsystem", "params": {"nqn": "nqn.2016-06.io.spdk:cnode1",
                                                       "allow_any_host": True}},
        {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "nqn.2016-06.io.spdk:cnode1",
                                                       "namespace": {"bdev_name": "Malloc0"}}},
    ]},
]}


def test_spdk_cli_lists_and_creates(tmp_path: Path) -> None:
    assert SPDK_CLI.exists(), "spdk-cli missing: scripts/setup.sh installs the test extras"
    with start_target(tmp_path, config=CONFIG) as t:
        def cli(*args: str) -> str:
            r = subprocess.run([str(SPDK_CLI), "-s", t.sock, *args], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr
            return r.stdout

        tree = cli("ls")
        assert "Malloc0" in tree and "nqn.2016-06.io.spdk:cnode1" in tree and "global_params" in tree
        assert cli("/bdevs/malloc", "create", "32", "512", "Malloc7").strip() == "Malloc7"
        assert "Malloc7" in cli("/bdevs/malloc", "ls")
        cli("/bdevs/malloc", "delete", "Malloc7")
        assert "Malloc7" not in cli("/bdevs/malloc", "ls")
        names = {b["name"] for b in t.client.call("bdev_get_bdevs")}
        assert names == {"Malloc0"}
