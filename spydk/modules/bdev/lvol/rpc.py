"""bdev_lvol_* RPCs with SPDK's method names, parameters and results."""
from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import Any

from spydk.bdev import BdevError, get_bdev
from spydk.blob import BlobError
from spydk.lvol import LvolError, LvsOpts
from spydk.modules.bdev.lvol import lvol as v
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import RpcError, errno_error, invalid_params
from spydk.thread import get_thread

MIB = 1024 * 1024
LVS_CLEAR = ("unmap", "write_zeroes", "none")
LVOL_CLEAR = ("default", "none", "unmap", "write_zeroes")


async def _guard(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except (BlobError, BdevError) as e:
        raise _err(e) from None


def _err(e: BlobError | BdevError) -> RpcError:
    if e.errno == errno.EINVAL:
        return invalid_params(e.message)
    return errno_error(e.errno, e.message)


def _sync(fn: Callable[..., Any], *a: Any) -> Any:
    try:
        return fn(*a)
    except (BlobError, BdevError) as e:
        raise _err(e) from None


def _lvs_sel() -> list[Param]:
    return [Param("uuid", "string"), Param("lvs_name", "string")]


@rpc_method("bdev_lvol_create_lvstore", [
    Param("bdev_name", "string", required=True), Param("lvs_name", "string", required=True),
    Param("cluster_sz", "uint32"), Param("clear_method", "enum", choices=LVS_CLEAR),
    Param("num_md_pages_per_cluster_ratio", "uint32"), Param("md_page_size", "uint32"),
])
async def bdev_lvol_create_lvstore(ctx: RpcContext, *, bdev_name: str, lvs_name: str, cluster_sz: int = 0,
                                   clear_method: str = "unmap", num_md_pages_per_cluster_ratio: int = 0,
                                   md_page_size: int = 0) -> str:
    """Create a logical volume store on a bdev; returns its UUID."""
    if md_page_size not in (0, 4096):
        raise invalid_params(f"md_page_size {md_page_size} is not supported: SPDK v24.01's format has "
                             "4096-byte metadata pages (omit md_page_size)")
    opts = LvsOpts(lvs_name, cluster_sz or 4 * MIB, clear_method, num_md_pages_per_cluster_ratio or 100)
    s = await _guard(v.create_lvs(bdev_name, opts, get_thread()))
    return s.lvs.uuid  # type: ignore[no-any-return]


@rpc_method("bdev_lvol_delete_lvstore", _lvs_sel())
async def bdev_lvol_delete_lvstore(ctx: RpcContext, *, uuid: str | None = None, lvs_name: str | None = None) -> bool:
    """Delete a logical volume store and every volume in it."""
    s = _sync(v.find_lvs, uuid, lvs_name)
    await _guard(v.destroy_lvs(s))
    return True


@rpc_method("bdev_lvol_get_lvstores", _lvs_sel())
def bdev_lvol_get_lvstores(ctx: RpcContext, *, uuid: str | None = None,
                           lvs_name: str | None = None) -> list[dict[str, Any]]:
    """List logical volume stores (or the one given by uuid or lvs_name)."""
    stores = [_sync(v.find_lvs, uuid, lvs_name)] if uuid is not None or lvs_name is not None else v.module.stores
    out = []
    for s in stores:
        d = {"uuid": s.lvs.uuid, "name": s.lvs.name, "base_bdev": s.base.name}
        info = s.lvs.info()
        d.update({k: info[k] for k in ("total_data_clusters", "free_clusters", "block_size", "cluster_size")})
        out.append(d)
    return out


@rpc_method("bdev_lvol_rename_lvstore", [Param("old_name", "string", required=True),
                                         Param("new_name", "string", required=True)])
async def bdev_lvol_rename_lvstore(ctx: RpcContext, *, old_name: str, new_name: str) -> bool:
    """Rename a logical volume store (and the aliases of its volumes)."""
    s = _sync(v.find_lvs, None, old_name)
    if old_name == new_name:
        return True
    _sync(v._check_lvs_name, new_name)
    await _guard(s.lvs.rename(new_name))
    for b in s.bdevs.values():
        _sync(b.rename_alias, b.lvol.alias)
    return True


@rpc_method("bdev_lvol_grow_lvstore", _lvs_sel())
async def bdev_lvol_grow_lvstore(ctx: RpcContext, *, uuid: str | None = None, lvs_name: str | None = None) -> bool:
    """Grow a logical volume store to the current size of its base bdev."""
    s = _sync(v.find_lvs, uuid, lvs_name)
    await _guard(s.lvs.bs.grow(s.base.num_blocks))
    return True


@rpc_method("bdev_lvol_create", [
    Param("lvol_name", "string", required=True), Param("size_in_mib", "uint64", required=True),
    Param("thin_provision", "boolean"), Param("uuid", "string"), Param("lvs_name", "string"),
    Param("clear_method", "enum", choices=LVOL_CLEAR),
])
async def bdev_lvol_create(ctx: RpcContext, *, lvol_name: str, size_in_mib: int, thin_provision: bool = False,
                           uuid: str | None = None, lvs_name: str | None = None,
                           clear_method: str = "default") -> str:
    """Create a logical volume; returns its bdev name (the volume's UUID)."""
    s = _sync(v.find_lvs, uuid, lvs_name)
    lv = await _guard(s.lvs.create_lvol(lvol_name, size_in_mib * MIB, thin_provision, clear_method))
    return _sync(v.register_new_lvol, s, lv).name  # type: ignore[no-any-return]


@rpc_method("bdev_lvol_snapshot", [Param("lvol_name", "string", required=True),
                                   Param("snapshot_name", "string", required=True)])
async def bdev_lvol_snapshot(ctx: RpcContext, *, lvol_name: str, snapshot_name: str) -> str:
    """Snapshot a logical volume; returns the snapshot's bdev name."""
    b = _sync(v.find_lvol, lvol_name)
    lv = await _guard(b.store.lvs.snapshot(b.lvol, snapshot_name))
    return _sync(v.register_new_lvol, b.store, lv).name  # type: ignore[no-any-return]


@rpc_method("bdev_lvol_clone", [Param("snapshot_name", "string", required=True),
                                Param("clone_name", "string", required=True)])
async def bdev_lvol_clone(ctx: RpcContext, *, snapshot_name: str, clone_name: str) -> str:
    """Clone a snapshot (or read-only volume); returns the clone's bdev name."""
    b = _sync(v.find_lvol, snapshot_name)
    lv = await _guard(b.store.lvs.clone(b.lvol, clone_name))
    return _sync(v.register_new_lvol, b.store, lv).name  # type: ignore[no-any-return]


@rpc_method("bdev_lvol_rename", [Param("old_name", "string", required=True),
                                 Param("new_name", "string", required=True)])
async def bdev_lvol_rename(ctx: RpcContext, *, old_name: str, new_name: str) -> bool:
    """Rename a logical volume (new_name is the volume name inside its store)."""
    b = _sync(v.find_lvol, old_name)
    await _guard(b.store.lvs.rename_lvol(b.lvol, new_name))
    _sync(b.rename_alias, b.lvol.alias)
    return True


@rpc_method("bdev_lvol_resize", [Param("name", "string", required=True),
                                 Param("size_in_mib", "uint64", required=True)])
async def bdev_lvol_resize(ctx: RpcContext, *, name: str, size_in_mib: int) -> bool:
    """Resize a logical volume (rounded up to whole clusters)."""
    b = _sync(v.find_lvol, name)
    old = b.blob.num_clusters
    await _guard(b.store.lvs.resize(b.lvol, size_in_mib * MIB))
    try:
        b.notify_blockcnt_change(b.blob.num_io_units())
    except BdevError as e:
        await _guard(b.store.lvs.bs.resize(b.blob, old))
        raise _err(e) from None
    return True


@rpc_method("bdev_lvol_set_read_only", [Param("name", "string", required=True)])
async def bdev_lvol_set_read_only(ctx: RpcContext, *, name: str) -> bool:
    """Make a logical volume read-only (so it can be cloned)."""
    b = _sync(v.find_lvol, name)
    await _guard(b.store.lvs.set_read_only(b.lvol))
    return True


@rpc_method("bdev_lvol_delete", [Param("name", "string", required=True)])
async def bdev_lvol_delete(ctx: RpcContext, *, name: str) -> bool:
    """Delete a logical volume (a snapshot with one clone is merged into the clone)."""
    b = _sync(v.find_lvol, name)
    blob = b.blob
    clones = blob.clones()
    if len(clones) > 1:
        raise errno_error(errno.EBUSY, f"lvol {b.lvol.alias!r} is a snapshot with {len(clones)} clones: "
                                       "delete or inflate all but one clone first")
    lvs = b.store.lvs
    lv = b.lvol
    import asyncio
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    _sync(v.unregister_bdev, b, lambda rc: None if fut.done() else fut.set_result(rc))
    await fut
    await _guard(lvs.delete_lvol(lv))
    return True


@rpc_method("bdev_lvol_inflate", [Param("name", "string", required=True)])
async def bdev_lvol_inflate(ctx: RpcContext, *, name: str) -> bool:
    """Allocate every cluster of a volume and cut it from its snapshot."""
    b = _sync(v.find_lvol, name)
    await _guard(b.store.lvs.inflate(b.lvol))
    return True


@rpc_method("bdev_lvol_decouple_parent", [Param("name", "string", required=True)])
async def bdev_lvol_decouple_parent(ctx: RpcContext, *, name: str) -> bool:
    """Copy the clusters a volume reads from its parent; it takes the parent's parent."""
    b = _sync(v.find_lvol, name)
    await _guard(b.store.lvs.decouple_parent(b.lvol))
    return True


@rpc_method("bdev_lvol_set_parent", [Param("lvol_name", "string", required=True),
                                     Param("parent_name", "string", required=True)])
async def bdev_lvol_set_parent(ctx: RpcContext, *, lvol_name: str, parent_name: str) -> bool:
    """Make a thin volume a clone of a snapshot."""
    b = _sync(v.find_lvol, lvol_name)
    p = _sync(v.find_lvol, parent_name)
    if p.store is not b.store:
        raise invalid_params(f"{parent_name!r} is in another lvstore than {lvol_name!r}")
    await _guard(b.store.lvs.set_parent(b.lvol, p.lvol))
    return True


@rpc_method("bdev_lvol_clone_bdev", [Param("bdev", "string", required=True),
                                     Param("lvs_name", "string", required=True),
                                     Param("clone_name", "string", required=True)])
async def bdev_lvol_clone_bdev(ctx: RpcContext, *, bdev: str, lvs_name: str, clone_name: str) -> str:
    """Create a thin volume that reads what it has not written from another bdev (an
    external snapshot; the bdev is opened read-only); returns the clone's bdev name."""
    s = _sync(v.find_lvs, None, lvs_name)
    base = get_bdev(bdev)
    if base is None:
        raise errno_error(errno.ENODEV, f"bdev {bdev!r} does not exist")
    if isinstance(base, v.LvolBdev) and base.store is s:
        raise invalid_params(f"{bdev!r} is in lvstore {lvs_name!r}: use bdev_lvol_snapshot and bdev_lvol_clone")
    u = str(base.uuid)
    dev = v.esnap_dev(s, u)
    lv = await _guard(s.lvs.create_esnap_clone(u, base.num_blocks * base.block_size, clone_name, dev))
    return _sync(v.register_new_lvol, s, lv).name  # type: ignore[no-any-return]


@rpc_method("bdev_lvol_set_parent_bdev", [Param("lvol_name", "string", required=True),
                                          Param("parent_name", "string", required=True)])
async def bdev_lvol_set_parent_bdev(ctx: RpcContext, *, lvol_name: str, parent_name: str) -> bool:
    """Make a thin volume an esnap clone of another bdev (its external snapshot)."""
    b = _sync(v.find_lvol, lvol_name)
    base = get_bdev(parent_name)
    if base is None:
        raise errno_error(errno.ENODEV, f"bdev {parent_name!r} does not exist")
    if base.num_blocks * base.block_size < b.blob.num_clusters * b.store.lvs.bs.cluster_sz:
        raise invalid_params(f"bdev {parent_name!r} is smaller than lvol {lvol_name!r}")
    u = str(base.uuid)
    await _guard(b.store.lvs.set_parent_bdev(b.lvol, u, v.esnap_dev(b.store, u)))
    return True


@rpc_method("bdev_lvol_start_shallow_copy", [Param("src_lvol_name", "string", required=True),
                                             Param("dst_bdev_name", "string", required=True)])
def bdev_lvol_start_shallow_copy(ctx: RpcContext, *, src_lvol_name: str, dst_bdev_name: str) -> dict[str, int]:
    """Start copying a read-only volume's own clusters to another bdev; returns operation_id."""
    b = _sync(v.find_lvol, src_lvol_name)
    op = _sync(v.start_shallow_copy, b, dst_bdev_name)
    return {"operation_id": op.operation_id}


@rpc_method("bdev_lvol_check_shallow_copy", [Param("operation_id", "uint32", required=True)])
def bdev_lvol_check_shallow_copy(ctx: RpcContext, *, operation_id: int) -> dict[str, Any]:
    """Progress of a shallow copy: copied_clusters, total_clusters, state (and error)."""
    op = v.shallow_copies.get(operation_id)
    if op is None:
        raise errno_error(errno.ENOENT, f"shallow copy operation {operation_id} does not exist")
    return op.status()


@rpc_method("bdev_lvol_get_lvols", [Param("lvs_uuid", "string"), Param("lvs_name", "string")])
def bdev_lvol_get_lvols(ctx: RpcContext, *, lvs_uuid: str | None = None,
                        lvs_name: str | None = None) -> list[dict[str, Any]]:
    """List logical volumes (of one store when lvs_uuid or lvs_name is given)."""
    if lvs_uuid is not None or lvs_name is not None:
        stores = [_sync(v.find_lvs, lvs_uuid, lvs_name)]
    else:
        stores = list(v.module.stores)
    return [v.lvol_json(b) for s in stores for b in s.bdevs.values()]


__all__ = ["LvolError"]
