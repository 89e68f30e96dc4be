"""Logical volumes over a blobstore (SPDK's lib/lvol), with SPDK's on-disk conventions:

- the blobstore type is "LVOLSTORE"; the store's super blob carries xattrs "uuid"
  (36 characters and a NUL) and "name" (the name and a NUL);
- every other blob is a volume with xattrs "name" (64 bytes, NUL padded, at creation;
  name and NUL after a rename) and "uuid" (36 characters and a NUL);
- defaults: 4 MiB clusters, one metadata page per cluster (ratio 100), clear method unmap.
"""
from __future__ import annotations

import errno
import uuid as _uuid
from dataclasses import dataclass
from typing import Any

from spydk.blob import spec
from spydk.blob.blobstore import Blob, BlobError, BlobOpts, Blobstore, BsOpts, bs_init, bs_load
from spydk.blob.bsdev import BsDev

BSTYPE = b"LVOLSTORE"
LVS_NAME_MAX = 64
LVOL_NAME_MAX = 64
DEFAULT_CLUSTER_SZ = 4 * 1024 * 1024
# lvol clear methods as stored in the blob's md_ro_flags (SPDK's enum blob_clear_method)
CLEAR_METHODS = {"default": 0, "none": 1, "unmap": 2, "write_zeroes": 3}


class LvolError(BlobError):
    pass


def _cstr(v: bytes | None) -> str:
    if v is None:
        return ""
    return v.split(b"\0", 1)[0].decode(errors="replace")


def check_name(name: str, what: str, limit: int) -> None:
    if not name:
        raise LvolError(errno.EINVAL, f"{what} must not be empty")
    if len(name.encode()) >= limit:
        raise LvolError(errno.EINVAL, f"{what} {name!r} is too long: at most {limit - 1} bytes")


@dataclass
class LvsOpts:
    name: str
    cluster_sz: int = DEFAULT_CLUSTER_SZ
    clear_method: str = "unmap"
    num_md_pages_per_cluster_ratio: int = 100


class Lvol:
    def __init__(self, lvs: LvolStore, blob: Blob):
        self.lvs = lvs
        self.blob = blob
        self.name = _cstr(blob.get_xattr("name"))
        u = _cstr(blob.get_xattr("uuid"))
        self.uuid = u
        # SPDK: a volume without a uuid xattr (pre-uuid stores) is named after the store
        self.unique_id = u if u else f"{lvs.uuid}_{blob.id}"

    @property
    def blob_id(self) -> int:
        return self.blob.id

    @property
    def size(self) -> int:
        return self.blob.num_clusters * self.lvs.bs.cluster_sz

    @property
    def alias(self) -> str:
        return f"{self.lvs.name}/{self.name}"

    def is_snapshot(self) -> bool:
        return self.blob.is_snapshot

    def is_clone(self) -> bool:
        return self.blob.is_clone

    def clear_method(self) -> str:
        v = self.blob.md_ro_flags & spec.CLEAR_METHOD_MASK
        return {c: n for n, c in CLEAR_METHODS.items()}[v]

    def __repr__(self) -> str:
        return f"<Lvol {self.alias} {self.unique_id}>"


class LvolStore:
    def __init__(self, bs: Blobstore, name: str, uuid: str, super_blob: Blob):
        self.bs = bs
        self.name = name
        self.uuid = uuid
        self.super_blob = super_blob
        self.lvols: dict[int, Lvol] = {}

    # ------------------------------------------------------------- create / load
    @classmethod
    async def create(cls, dev: BsDev, opts: LvsOpts) -> LvolStore:
        check_name(opts.name, "lvs_name", LVS_NAME_MAX)
        if opts.cluster_sz < dev.block_size:
            raise LvolError(errno.EINVAL, f"cluster_sz {opts.cluster_sz} is smaller than the block size "
                                          f"{dev.block_size}")
        if opts.clear_method not in ("unmap", "write_zeroes", "none"):
            raise LvolError(errno.EINVAL, f"clear_method {opts.clear_method!r} is not one of unmap, "
                                          "write_zeroes, none")
        if opts.num_md_pages_per_cluster_ratio < 1:
            raise LvolError(errno.EINVAL, "num_md_pages_per_cluster_ratio must be at least 1")
        total = dev.num_blocks // max(1, opts.cluster_sz // dev.block_size)
        bo = BsOpts(cluster_sz=opts.cluster_sz, bstype=BSTYPE, clear_method=opts.clear_method,
                    num_md_pages=opts.num_md_pages_per_cluster_ratio * total // 100)
        bs = await bs_init(dev, bo)
        sb = await bs.create_blob(BlobOpts())
        await bs.set_super(sb.id)
        u = str(_uuid.uuid4())
        sb.set_xattr("uuid", u.encode() + b"\0")
        sb.set_xattr("name", opts.name.encode() + b"\0")
        await bs.persist(sb)
        bs.open_blob(sb.id)
        return cls(bs, opts.name, u, sb)

    @classmethod
    async def load(cls, dev: BsDev) -> LvolStore:
        bs = await bs_load(dev, BSTYPE)
        if bs.super_blob == spec.BLOBID_INVALID or bs.super_blob not in bs.blobs:
            raise LvolError(errno.ENODEV, f"{dev.name}: the blobstore has no super blob: not an lvol store")
        sb = bs.blobs[bs.super_blob]
        u = _cstr(sb.get_xattr("uuid"))
        name = _cstr(sb.get_xattr("name"))
        try:
            _uuid.UUID(u)
        except ValueError:
            raise LvolError(errno.EILSEQ, f"{dev.name}: the lvol store's uuid xattr {u!r} is not a UUID") from None
        if not name:
            raise LvolError(errno.EILSEQ, f"{dev.name}: the lvol store has no name")
        bs.open_blob(sb.id)
        lvs = cls(bs, name, u, sb)
        for b in bs.blobs.values():
            if b.id == sb.id:
                continue
            lv = Lvol(lvs, b)
            if not lv.name:
                continue  # SPDK skips blobs without a name
            lvs.lvols[b.id] = lv
        return lvs

    async def unload(self) -> None:
        self.bs.close_blob(self.super_blob)
        await self.bs.unload()

    async def destroy(self) -> None:
        """Delete every volume's blob and wipe the super block (bdev_lvol_delete_lvstore)."""
        await self.bs.mark_dirty()
        await self.bs.dev.write_zeroes(0, spec.PAGE_SIZE * (self.bs.md_start + self.bs.md_len))

    # ------------------------------------------------------------- volumes
    def by_name(self, name: str) -> Lvol | None:
        for lv in self.lvols.values():
            if lv.name == name:
                return lv
        return None

    def _check_new_name(self, name: str) -> None:
        check_name(name, "lvol name", LVOL_NAME_MAX)
        if self.by_name(name) is not None:
            raise LvolError(errno.EEXIST, f"lvol {name!r} already exists in lvstore {self.name!r}: "
                                          "choose another name")

    @staticmethod
    def _xattrs(name: str, u: str) -> dict[str, bytes]:
        return {"name": name.encode().ljust(LVOL_NAME_MAX, b"\0"), "uuid": u.encode() + b"\0"}

    async def create_lvol(self, name: str, size: int, thin: bool = False, clear_method: str = "default",
                          uuid: str | None = None) -> Lvol:
        self._check_new_name(name)
        if clear_method not in CLEAR_METHODS:
            raise LvolError(errno.EINVAL, f"clear_method {clear_method!r} is not one of {', '.join(CLEAR_METHODS)}")
        cs = self.bs.cluster_sz
        n = spec.divide_round_up(size, cs)
        if not thin and n > self.bs.free_clusters:
            raise LvolError(errno.ENOSPC, f"lvol {name!r} needs {n} clusters of {cs} bytes but lvstore "
                                          f"{self.name!r} has {self.bs.free_clusters} free: create it thin "
                                          "(thin_provision) or smaller, or grow the lvstore")
        u = uuid or str(_uuid.uuid4())
        b = await self.bs.create_blob(BlobOpts(num_clusters=n, thin_provision=thin,
                                               xattrs=self._xattrs(name, u),
                                               clear_method=CLEAR_METHODS[clear_method]))
        lv = Lvol(self, b)
        self.lvols[b.id] = lv
        return lv

    async def create_esnap_clone(self, esnap_uuid: str, size: int, name: str, dev: BsDev | None) -> Lvol:
        """A thin volume reading what it has not written from an external bdev (by UUID)."""
        self._check_new_name(name)
        cs = self.bs.cluster_sz
        if size % cs:
            raise LvolError(errno.EINVAL, f"the external snapshot's size {size} is not a multiple of the "
                                          f"cluster size {cs}: use a bdev whose size is")
        b = await self.bs.create_blob(BlobOpts(num_clusters=size // cs, thin_provision=True,
                                               xattrs=self._xattrs(name, str(_uuid.uuid4())),
                                               esnap_id=esnap_uuid.encode() + b"\0", esnap_dev=dev))
        lv = Lvol(self, b)
        self.lvols[b.id] = lv
        return lv

    async def set_parent_bdev(self, lv: Lvol, esnap_uuid: str, dev: BsDev | None) -> None:
        await self.bs.set_esnap_parent(lv.blob.id, esnap_uuid.encode() + b"\0", dev)

    async def snapshot(self, lv: Lvol, name: str) -> Lvol:
        self._check_new_name(name)
        if lv.blob.read_only:
            raise LvolError(errno.EINVAL, f"lvol {lv.name!r} is read-only: snapshot its clone instead")
        b = await self.bs.create_snapshot(lv.blob.id, self._xattrs(name, str(_uuid.uuid4())))
        snap = Lvol(self, b)
        self.lvols[b.id] = snap
        return snap

    async def clone(self, snap: Lvol, name: str) -> Lvol:
        self._check_new_name(name)
        if not snap.blob.read_only:
            raise LvolError(errno.EINVAL, f"lvol {snap.name!r} is not read-only: clone a snapshot, or run "
                                          "bdev_lvol_set_read_only first")
        b = await self.bs.create_clone(snap.blob.id, self._xattrs(name, str(_uuid.uuid4())))
        lv = Lvol(self, b)
        self.lvols[b.id] = lv
        return lv

    async def delete_lvol(self, lv: Lvol) -> None:
        await self.bs.delete_blob(lv.blob.id)
        self.lvols.pop(lv.blob.id, None)

    async def rename_lvol(self, lv: Lvol, new_name: str) -> None:
        if lv.name == new_name:
            return
        self._check_new_name(new_name)
        lv.blob.set_xattr("name", new_name.encode() + b"\0")
        await self.bs.persist(lv.blob)
        lv.name = new_name

    async def rename(self, new_name: str) -> None:
        check_name(new_name, "lvs new_name", LVS_NAME_MAX)
        self.super_blob.set_xattr("name", new_name.encode() + b"\0")
        await self.bs.persist(self.super_blob)
        self.name = new_name

    async def resize(self, lv: Lvol, size: int) -> None:
        n = spec.divide_round_up(size, self.bs.cluster_sz)
        if lv.blob.read_only:
            raise LvolError(errno.EPERM, f"lvol {lv.name!r} is read-only: it cannot be resized")
        await self.bs.resize(lv.blob, n)

    async def set_read_only(self, lv: Lvol) -> None:
        lv.blob.set_read_only()
        await self.bs.persist(lv.blob)

    async def inflate(self, lv: Lvol) -> None:
        await self.bs.inflate(lv.blob.id, allocate_all=True)

    async def decouple_parent(self, lv: Lvol) -> None:
        await self.bs.inflate(lv.blob.id, allocate_all=False)

    async def set_parent(self, lv: Lvol, snap: Lvol) -> None:
        await self.bs.set_parent(lv.blob.id, snap.blob.id)

    def info(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "name": self.name, "total_data_clusters": self.bs.total_data_clusters,
                "free_clusters": self.bs.free_clusters, "block_size": self.bs.block_size,
                "cluster_size": self.bs.cluster_sz}
