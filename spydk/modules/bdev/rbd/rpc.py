"""SPDK's bdev_rbd_* RPCs."""
from __future__ import annotations

import asyncio
import errno
from typing import Any

from spydk.bdev import BdevError, get_bdev, unregister_bdev
from spydk.bdev.modutil import check_power_of_two_block_size, rpc_error
from spydk.modules.bdev.rbd import bdev_rbd as core
from spydk.modules.bdev.rbd import librbd
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import errno_error, invalid_params
from spydk.thread import get_reactor


def _err(e: librbd.LibError | BdevError) -> Any:
    if isinstance(e, BdevError):
        return rpc_error(e)
    return errno_error(e.errno or errno.EIO, e.strerror or str(e))


def _strs(d: dict[str, Any] | None, what: str) -> dict[str, str] | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise invalid_params(f"{what} must be an object of key: value strings")
    return {str(k): str(v) for k, v in d.items()}


async def _connect(user_id: str | None, config: dict[str, str], config_file: str | None,
                   key_file: str | None) -> librbd.Cluster:
    try:
        c = librbd.Cluster(user_id, config, config_file, key_file)
    except librbd.LibError as e:
        raise _err(e) from None
    try:
        # rados_connect blocks on monitor round trips: keep it off the reactor
        await asyncio.to_thread(c.connect)
    except librbd.LibError as e:
        c.shutdown()
        raise _err(e) from None
    return c


@rpc_method("bdev_rbd_register_cluster", [
    Param("name", "string", required=True), Param("user_id", "string"), Param("config_param", "object", open=True),
    Param("config_file", "string"), Param("key_file", "string"), Param("core_mask", "string"),
])
async def bdev_rbd_register_cluster(ctx: RpcContext, *, name: str, user_id: str | None = None,
                                    config_param: dict[str, Any] | None = None, config_file: str | None = None,
                                    key_file: str | None = None, core_mask: str | None = None) -> str:
    """Connect to a Ceph cluster, shared by rbd bdevs created with cluster_name."""
    if not name:
        raise invalid_params("name must not be empty")
    if name in core.module.clusters:
        raise errno_error(errno.EEXIST, f"rbd cluster {name!r} is already registered")
    cp = _strs(config_param, "config_param")
    c = await _connect(user_id, cp or {}, config_file, key_file)
    core.module.clusters[name] = core.ClusterConfig(name, user_id, cp, config_file, key_file, core_mask, c)
    return name


@rpc_method("bdev_rbd_unregister_cluster", [Param("name", "string", required=True)])
def bdev_rbd_unregister_cluster(ctx: RpcContext, *, name: str) -> bool:
    """Disconnect a registered Ceph cluster (no bdev may use it)."""
    c = core.module.clusters.get(name)
    if c is None:
        raise errno_error(errno.ENODEV, f"rbd cluster {name!r} is not registered")
    if c.users:
        raise errno_error(errno.EBUSY, f"rbd cluster {name!r} is used by bdevs {sorted(c.users)}; delete them first")
    del core.module.clusters[name]
    if c.cluster is not None:
        c.cluster.shutdown()
    return True


@rpc_method("bdev_rbd_get_clusters_info", [Param("name", "string")])
def bdev_rbd_get_clusters_info(ctx: RpcContext, *, name: str | None = None) -> Any:
    """Registered Ceph clusters."""
    if name is not None:
        c = core.module.clusters.get(name)
        if c is None:
            raise errno_error(errno.ENODEV, f"rbd cluster {name!r} is not registered")
        return c.info()
    return [c.info() for c in core.module.clusters.values()]


@rpc_method("bdev_rbd_create", [
    Param("name", "string"), Param("user_id", "string"), Param("pool_name", "string", required=True),
    Param("rbd_name", "string", required=True), Param("block_size", "uint32", required=True),
    Param("config", "object", open=True), Param("cluster_name", "string"), Param("uuid", "uuid"),
    Param("read_only", "boolean"),
])
async def bdev_rbd_create(ctx: RpcContext, *, pool_name: str, rbd_name: str, block_size: int,
                          name: str | None = None, user_id: str | None = None, config: dict[str, Any] | None = None,
                          cluster_name: str | None = None, uuid: str | None = None, read_only: bool = False) -> str:
    """Create a bdev on an RBD image."""
    try:
        check_power_of_two_block_size(block_size)
    except BdevError as e:
        raise rpc_error(e) from None
    if name is not None and get_bdev(name) is not None:
        raise errno_error(errno.EEXIST, f"bdev name {name!r} already exists")
    cfg = _strs(config, "config")
    shared = None
    if cluster_name is not None:
        shared = core.module.clusters.get(cluster_name)
        if shared is None or shared.cluster is None:
            raise errno_error(errno.ENODEV, f"cluster_name {cluster_name!r} is not registered "
                                            "(bdev_rbd_register_cluster first)")
        if user_id or cfg:
            raise invalid_params("give either cluster_name or user_id/config, not both")
        cluster = shared.cluster
    else:
        cluster = await _connect(user_id, cfg or {}, None, None)
    nm = name or core.next_name()
    b = core.RbdBdev(nm, block_size, 0, pool_name, rbd_name, cluster, shared is None, cluster_name,
                     user_id, cfg, uuid, read_only)
    try:
        b.ioctx = await asyncio.to_thread(cluster.ioctx, pool_name)
    except librbd.LibError as e:
        b._release_cluster()
        raise _err(e) from None
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    r = get_reactor()
    assert r.app_thread is not None
    r.app_thread.send_msg(core.open_image, b, lambda rc: r.loop.call_soon(_settle, fut, rc))
    rc = await fut
    if rc < 0:
        b._release_cluster()
        what = "does not exist" if rc == -errno.ENOENT else f"cannot be opened: rc {rc}"
        raise errno_error(-rc, f"rbd image {pool_name}/{rbd_name} {what}")
    size = core.image_size(b)
    if size < block_size:
        await r.call_on(r.app_thread, lambda: core._close_image(b, lambda rc: None))
        b._release_cluster()
        raise invalid_params(f"rbd image {pool_name}/{rbd_name} ({size} bytes) is smaller than one block")
    b.num_blocks = size // block_size
    if shared is not None:
        shared.users.add(nm)
    try:
        await r.call_on(r.app_thread, core.register, b)
    except BdevError as e:
        b.destruct(lambda rc: None)
        raise rpc_error(e) from None
    return nm


def _settle(fut: asyncio.Future[int], rc: int) -> None:
    if not fut.done():
        fut.set_result(rc)


def _rbd(name: str) -> core.RbdBdev:
    b = get_bdev(name)
    if not isinstance(b, core.RbdBdev):
        raise errno_error(errno.ENODEV, f"rbd bdev {name!r} does not exist")
    return b


@rpc_method("bdev_rbd_delete", [Param("name", "string", required=True)])
async def bdev_rbd_delete(ctx: RpcContext, *, name: str) -> bool:
    """Delete an rbd bdev."""
    b = _rbd(name)
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    r = get_reactor()
    assert r.app_thread is not None

    r.app_thread.send_msg(unregister_bdev, b, lambda rc: r.loop.call_soon(_settle, fut, rc))
    rc = await fut
    if rc:
        raise errno_error(rc, f"deleting rbd bdev {name!r} failed: rc {rc}")
    return True


@rpc_method("bdev_rbd_resize", [Param("name", "string", required=True), Param("new_size", "uint64", required=True)])
async def bdev_rbd_resize(ctx: RpcContext, *, name: str, new_size: int) -> bool:
    """Grow an rbd bdev and its image to new_size MiB."""
    b = _rbd(name)
    r = get_reactor()
    assert r.app_thread is not None
    try:
        await r.call_on(r.app_thread, b.resize_mib, new_size, lambda rc: None)
    except BdevError as e:
        raise rpc_error(e) from None
    return True
