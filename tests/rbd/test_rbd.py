"""The rbd bdev against a real single-node Ceph cluster started by the test: bdevperf verify,
unmap / write_zeroes / flush / reset, several images on one shared cluster connection,
resize, an OSD stopped mid-run (I/O waits and resumes), refusals of a wrong key, a missing
pool and a missing image."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from spydk.bdev import get_bdev
from spydk.rpc.errors import RpcError
from tests.bdev.conftest import Env
from tests.raid.conftest import rpc
from tests.raid.helpers import job, read, stop_job, write

from .conftest import Ceph


def _cluster(env: Env, ceph: Ceph, name: str = "c0") -> None:
    rpc(env, "bdev_rbd_register_cluster", {"name": name, "config_file": ceph.conf, "key_file": ceph.keyring})


def test_io_several_images_shared_cluster_resize(env: Env, ceph: Ceph) -> None:
    ceph.run("rbd", "create", "--size", "16", "rbd/a")
    ceph.run("rbd", "create", "--size", "16", "rbd/b")
    _cluster(env, ceph)
    info = rpc(env, "bdev_rbd_get_clusters_info", {"name": "c0"})
    assert info["config_file"] == ceph.conf and info["key_file"] == ceph.keyring
    assert rpc(env, "bdev_rbd_create", {"name": "RA", "pool_name": "rbd", "rbd_name": "a", "block_size": 512,
                                        "cluster_name": "c0"}) == "RA"
    assert rpc(env, "bdev_rbd_create", {"pool_name": "rbd", "rbd_name": "b", "block_size": 4096,
                                        "cluster_name": "c0"}).startswith("Ceph")
    b = get_bdev("RA")
    assert b is not None and b.num_blocks == 16 * 2048 and b.product_name == "Ceph Rbd Disk"
    j = job(env, "RA", "verify", qd=16)
    env.until(lambda: j.done > 300)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    data = os.urandom(65536)
    write(env, "RA", 64, data)
    assert read(env, "RA", 64, 128) == data
    # the data is in the image: rbd export sees it
    out = Path(ceph.dir) / "a.raw"
    ceph.run("rbd", "export", "rbd/a", str(out))
    assert out.read_bytes()[64 * 512:64 * 512 + len(data)] == data
    d = env.open("RA")
    ch = env.call(d.get_io_channel)
    assert env.io(d.unmap_blocks, ch, 128, 64)[0]      # librbd may skip partial-object discards
    assert env.io(d.write_zeroes_blocks, ch, 64, 128)[0]
    assert env.io(d.flush_blocks, ch, 0, b.num_blocks)[0]
    assert env.io(d.reset, ch)[0]
    env.call(lambda: (d.put_io_channel(ch), d.close()))
    assert read(env, "RA", 64, 128) == bytes(65536)
    with pytest.raises(RpcError, match="only grow"):
        rpc(env, "bdev_rbd_resize", {"name": "RA", "new_size": 8})
    rpc(env, "bdev_rbd_resize", {"name": "RA", "new_size": 32})
    assert get_bdev("RA").num_blocks == 32 * 2048  # type: ignore[union-attr]
    assert "32 MiB" in ceph.run("rbd", "info", "rbd/a")
    with pytest.raises(RpcError, match="used by bdevs"):
        rpc(env, "bdev_rbd_unregister_cluster", {"name": "c0"})
    for n in [x.name for x in list(__import__("spydk.bdev", fromlist=["bdevs"]).bdevs()) if x.module.name == "rbd"]:
        rpc(env, "bdev_rbd_delete", {"name": n})
    rpc(env, "bdev_rbd_unregister_cluster", {"name": "c0"})
    assert rpc(env, "bdev_rbd_get_clusters_info") == []


def test_refusals(env: Env, ceph: Ceph, tmp_path: Path) -> None:
    bad = tmp_path / "bad.keyring"
    bad.write_text("[client.admin]\n\tkey = AQBzbWFsbGJhZGtleWJhZGtleWJhZGtleQAAAA==\n")
    with pytest.raises(RpcError) as ei:
        rpc(env, "bdev_rbd_register_cluster", {"name": "x", "config_file": ceph.conf, "key_file": str(bad),
                                               "config_param": {"client_mount_timeout": "5"}})
    assert "authentication refused" in ei.value.message and "key_file" in ei.value.message, ei.value.message
    assert rpc(env, "bdev_rbd_get_clusters_info") == []
    _cluster(env, ceph, "c1")
    with pytest.raises(RpcError) as ei:
        rpc(env, "bdev_rbd_create", {"pool_name": "nopool", "rbd_name": "a", "block_size": 512, "cluster_name": "c1"})
    assert "pool 'nopool' does not exist" in ei.value.message
    with pytest.raises(RpcError) as ei:
        rpc(env, "bdev_rbd_create", {"pool_name": "rbd", "rbd_name": "noimg", "block_size": 512, "cluster_name": "c1"})
    assert "rbd/noimg does not exist" in ei.value.message
    with pytest.raises(RpcError, match="block_size"):
        rpc(env, "bdev_rbd_create", {"pool_name": "rbd", "rbd_name": "a", "block_size": 1000, "cluster_name": "c1"})
    with pytest.raises(RpcError, match="not registered"):
        rpc(env, "bdev_rbd_create", {"pool_name": "rbd", "rbd_name": "a", "block_size": 512, "cluster_name": "zz"})
    rpc(env, "bdev_rbd_unregister_cluster", {"name": "c1"})


def test_osd_stopped_mid_run_io_waits_and_resumes(env: Env, ceph: Ceph) -> None:
    ceph.run("rbd", "create", "--size", "8", "rbd/o")
    # its own connection (user_id + config), as bdev_rbd_create without cluster_name does
    rpc(env, "bdev_rbd_create", {"name": "RO", "pool_name": "rbd", "rbd_name": "o", "block_size": 512,
                                 "user_id": "admin", "config": {"mon_host": open(ceph.conf).read().split(
                                     "mon_host = ")[1].split("\n")[0], "keyring": ceph.keyring}})
    j = job(env, "RO", "verify", qd=8)
    env.until(lambda: j.done > 100)
    ceph.script("osd-stop")
    time.sleep(1)
    env.drain()
    stalled = j.done
    time.sleep(2)
    env.drain()
    assert j.done - stalled < 20 and j.failed == 0      # waiting, not failing
    ceph.script("osd-start")
    env.rh.run_until(lambda: j.done > stalled + 200, timeout=120)
    res = stop_job(env, j)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    rpc(env, "bdev_rbd_delete", {"name": "RO"})


def test_osd_stopped_with_op_timeout_io_fails_clearly_and_resumes(env: Env, ceph: Ceph,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """With rados_osd_op_timeout set, I/O to a stopped OSD fails (ETIMEDOUT, said once in the
    log with the option to look at) instead of waiting; the target goes on serving other
    bdevs, and the same bdev works again once the OSD is back."""
    ceph.run("rbd", "create", "--size", "8", "rbd/t")
    rpc(env, "bdev_rbd_register_cluster", {"name": "ct", "config_file": ceph.conf, "key_file": ceph.keyring,
                                           "config_param": {"rados_osd_op_timeout": "3"}})
    rpc(env, "bdev_rbd_create", {"name": "RT", "pool_name": "rbd", "rbd_name": "t", "block_size": 512,
                                 "cluster_name": "ct"})
    rpc(env, "bdev_malloc_create", {"name": "Side", "num_blocks": 2048, "block_size": 512})
    j = job(env, "RT", "write", qd=8)
    env.until(lambda: j.done > 100)
    assert j.failed == 0
    caplog.set_level(logging.WARNING, logger="spydk.bdev.rbd")
    ceph.script("osd-stop")
    env.rh.run_until(lambda: j.failed >= 8, timeout=90)     # each write in flight timed out
    errs = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errs) == 1, errs                              # once per run of failures, not per I/O
    assert "rbd bdev RT (image rbd/t)" in errs[0] and "ETIMEDOUT" in errs[0], errs
    assert "rados_osd_op_timeout" in errs[0], errs
    # the target is alive meanwhile: another bdev takes I/O
    write(env, "Side", 0, b"s" * 4096)
    assert read(env, "Side", 0, 8) == b"s" * 4096
    ceph.script("osd-start")
    mark = j.done
    env.rh.run_until(lambda: j.done > mark + 200, timeout=180)
    res = stop_job(env, j)
    assert res["io_failed"] >= 8
    assert any("succeeds again" in r.getMessage() for r in caplog.records), caplog.records
    # and nothing half-done: verify runs clean on the same bdev
    v = job(env, "RT", "verify", qd=8, seed=3)
    env.until(lambda: v.done > 200)
    res = stop_job(env, v)
    assert res["io_failed"] == 0 and res["miscompares"] == 0
    rpc(env, "bdev_rbd_delete", {"name": "RT"})
    rpc(env, "bdev_rbd_unregister_cluster", {"name": "ct"})
