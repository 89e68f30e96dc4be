"""raid1 over a local malloc bdev and a remote bdev attached over NVMe/TCP (spydk's host
driver against a spydk nvmf_tgt process): degraded without the remote member, then a
rebuild onto it over the network while bdevperf verify runs."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import spydk.modules.bdev.nvme  # noqa: F401  (registers bdev_nvme_* methods)
from spydk.bdev import get_bdev
from spydk.modules.bdev.raid import bdev_raid
from spydk.modules.bdev.raid import sb as sbm
from spydk.testing import TargetProcess, start_target
from tests.bdev.conftest import Env
from tests.nvme_host.test_tools import NQN, free_port, target_config

from .conftest import rpc
from .helpers import job, read, stop_job, write
from .test_raid_io import raid_info


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    t: TargetProcess = start_target(tmp_path / "remote", target_config(port, blocks=16384), app="nvmf_tgt")
    try:
        yield port
    finally:
        t.stop()


def test_raid1_local_plus_nvme_tcp_remote_rebuild_under_verify(env: Env, remote: int) -> None:
    names = rpc(env, "bdev_nvme_attach_controller", {"name": "Rem", "trtype": "tcp", "adrfam": "ipv4",
                                                     "traddr": "127.0.0.1", "trsvcid": str(remote),
                                                     "subnqn": NQN})
    assert names == ["Remn1"], names
    rpc(env, "bdev_malloc_create", {"name": "Loc", "num_blocks": 16384, "block_size": 512})
    rpc(env, "bdev_raid_create", {"name": "Far", "raid_level": "raid1", "superblock": True,
                                  "base_bdevs": ["Loc", "Remn1"]})
    env.until(lambda: get_bdev("Far") is not None)
    size = get_bdev("Far").num_blocks  # type: ignore[union-attr]
    assert size == 16384 - 2048
    data = os.urandom(512 * 64)
    write(env, "Far", 10, data)
    assert read(env, "Remn1", 2048 + 10, 64) == data      # the mirror write crossed the network
    # without the remote member: degraded, I/O goes on
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "Remn1"})
    env.until(lambda: bdev_raid.module.raids["Far"].num_operational() == 1)
    j = job(env, "Far", "verify", qd=8)
    env.until(lambda: j.done > 100)
    # rebuild onto the remote bdev while verify runs; small windows so that it spans the run
    rpc(env, "bdev_raid_set_options", {"process_window_size_kb": 64})
    rpc(env, "bdev_raid_add_base_bdev", {"raid_bdev": "Far", "base_bdev": "Remn1"})
    assert raid_info(env, "Far")["process"]["target"] == "Remn1"
    env.until(lambda: bdev_raid.module.raids["Far"].process is None)
    n = j.done
    env.until(lambda: j.done > n + 100)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    info = raid_info(env, "Far")
    assert info["state"] == "online" and info["num_base_bdevs_operational"] == 2
    assert read(env, "Remn1", 2048, size) == read(env, "Loc", 2048, size)
    sb = sbm.decode(read(env, "Remn1", 0, 1))
    assert sb.name == "Far" and all(b.state == sbm.SlotState.CONFIGURED for b in sb.base_bdevs)
    # the remote copy alone serves the array, verify's data included
    whole = read(env, "Far", 0, size)
    rpc(env, "bdev_raid_remove_base_bdev", {"name": "Loc"})
    env.until(lambda: bdev_raid.module.raids["Far"].num_operational() == 1)
    assert read(env, "Far", 0, size) == whole
    rpc(env, "bdev_raid_delete", {"name": "Far"})
    rpc(env, "bdev_nvme_detach_controller", {"name": "Rem"})
