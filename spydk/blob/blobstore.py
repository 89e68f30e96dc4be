"""The blobstore: SPDK's lib/blob in SPDK v24.01's on-disk format (see spec.py).

Control plane (init, load, unload, create, open, delete, xattrs, resize, snapshot, clone,
inflate, decouple) is made of coroutines that run on the metadata thread. The data path
(``Blob.submit``) is callback based and runs on any spydk Thread with a ``BlobChannel``.

Crash safety, the order of writes:
- the super block's clean flag is cleared before the first metadata write after a load or
  init, and set only by ``unload`` after the masks were written;
- a blob's metadata chain: extent pages first, then the non-root pages at fresh locations,
  then the root page in place, then the old non-root pages are zeroed and released;
- a thin cluster: claimed in memory, the parent's data copied into it, then the extent page
  (or the chain) that points at it is written, then the user's write runs;
- clusters and extent pages a blob no longer references are released after the chain that
  drops them is on disk.
A load with the clean flag at 0 rebuilds the three masks from the metadata pages (as SPDK).
"""
from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.blob import spec
from spydk.blob.bsdev import BsDev
from spydk.blob.spec import PAGE_SIZE, SpecError
from spydk.thread import get_thread, set_thread

log = logging.getLogger("spydk.blob")

DEFAULT_CLUSTER_SZ = 1024 * 1024


class BlobError(Exception):
    """errno plus a sentence naming the object and the fix."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err
        self.message = message


@dataclass
class BsOpts:
    cluster_sz: int = DEFAULT_CLUSTER_SZ
    num_md_pages: int | None = None          # None: one per cluster
    bstype: bytes = b""
    clear_method: str = "unmap"              # unmap | write_zeroes | none


@dataclass
class BlobOpts:
    num_clusters: int = 0
    thin_provision: bool = False
    xattrs: dict[str, bytes] | None = None
    use_extent_table: bool = True
    clear_method: int = 0                    # stored in md_ro_flags
    esnap_id: bytes | None = None            # an esnap clone of this external snapshot
    esnap_dev: BsDev | None = None


class _Bits:
    """A growable bit array with the on-disk byte layout (LSB first)."""

    def __init__(self, n: int, raw: bytearray | None = None):
        self.n = n
        self.b = bytearray((n + 7) // 8)
        if raw is not None:
            self.b[:len(raw[:len(self.b)])] = raw[:len(self.b)]
            if n % 8 and self.b:
                self.b[-1] &= (1 << (n % 8)) - 1

    def get(self, i: int) -> bool:
        return 0 <= i < self.n and bool(self.b[i >> 3] >> (i & 7) & 1)

    def set(self, i: int) -> None:
        self.b[i >> 3] |= 1 << (i & 7)

    def clear(self, i: int) -> None:
        self.b[i >> 3] &= ~(1 << (i & 7)) & 0xFF

    def first_clear(self, start: int = 0) -> int:
        for i in range(start, self.n):
            if not self.b[i >> 3] >> (i & 7) & 1:
                return i
        return -1

    def count(self) -> int:
        return sum(bin(x).count("1") for x in self.b)

    def resize(self, n: int) -> None:
        old = self.n
        self.n = n
        self.b = self.b[:(n + 7) // 8] + bytearray(max(0, (n + 7) // 8 - len(self.b)))
        if n < old and n % 8 and self.b:
            self.b[-1] &= (1 << (n % 8)) - 1


class Blob:
    """A blob's state. ``clusters[i]`` is the store cluster index backing blob cluster i
    (0: not allocated; cluster 0 always holds metadata so it is never a data cluster)."""

    def __init__(self, bs: Blobstore, blobid: int):
        self.bs = bs
        self.id = blobid
        self.parent_id = spec.BLOBID_INVALID
        self.clusters: list[int] = []
        self.extent_pages: list[int] = []
        self.use_extent_table = True
        self.pages: list[int] = []               # the chain on disk
        self.disk_clusters: list[int] = []        # cluster map as last persisted
        self.disk_extent_pages: list[int] = []
        self.invalid_flags = 0
        self.data_ro_flags = 0
        self.md_ro_flags = 0
        self.xattrs: dict[str, bytes] = {}
        self.xattrs_internal: dict[str, bytes] = {}
        self.open_ref = 0
        self.dirty = True
        self.md_lock = asyncio.Lock()
        self.frozen = 0
        self.frozen_q: list[tuple[Any, ...]] = []
        self.inflight = 0
        self._drained: asyncio.Future[None] | None = None
        self.alloc_waiters: dict[int, list[tuple[Any, ...]]] = {}
        self.deleted = False
        # an external snapshot (esnap clone): the device its unallocated clusters read from,
        # None while it is missing (the blob is degraded: such reads fail)
        self.esnap: BsDev | None = None

    # ------------------------------------------------------------- properties
    @property
    def num_clusters(self) -> int:
        return len(self.clusters)

    @property
    def thin(self) -> bool:
        return bool(self.invalid_flags & spec.FLAG_THIN_PROV)

    @property
    def read_only(self) -> bool:
        return bool(self.data_ro_flags & spec.FLAG_READ_ONLY) or bool(self.data_ro_flags & ~spec.DATA_RO_FLAGS_MASK)

    @property
    def md_ro(self) -> bool:
        return self.read_only or bool(self.md_ro_flags & ~spec.MD_RO_FLAGS_MASK)

    @property
    def is_snapshot(self) -> bool:
        return any(b.parent_id == self.id for b in self.bs.blobs.values())

    @property
    def is_clone(self) -> bool:
        return self.parent_id not in (spec.BLOBID_INVALID, spec.BLOBID_EXTERNAL_SNAPSHOT)

    @property
    def is_esnap_clone(self) -> bool:
        return bool(self.invalid_flags & spec.FLAG_EXTERNAL_SNAPSHOT)

    @property
    def esnap_id(self) -> bytes | None:
        return self.xattrs_internal.get(spec.XATTR_EXTERNAL_SNAPSHOT_ID) if self.is_esnap_clone else None

    @property
    def degraded(self) -> bool:
        return self.is_esnap_clone and self.esnap is None

    def set_esnap(self, esnap_id: bytes | None, dev: BsDev | None) -> None:
        """Make this thin blob an esnap clone of ``esnap_id`` (None: of nothing)."""
        if esnap_id is None:
            self.invalid_flags &= ~spec.FLAG_EXTERNAL_SNAPSHOT
            self.xattrs_internal.pop(spec.XATTR_EXTERNAL_SNAPSHOT_ID, None)
            if not self.xattrs_internal:
                self.invalid_flags &= ~spec.FLAG_INTERNAL_XATTR
            if self.parent_id == spec.BLOBID_EXTERNAL_SNAPSHOT:
                self.parent_id = spec.BLOBID_INVALID
        else:
            self.xattrs_internal.pop(spec.XATTR_SNAPSHOT, None)
            self.set_xattr(spec.XATTR_EXTERNAL_SNAPSHOT_ID, esnap_id, internal=True)
            self.invalid_flags |= spec.FLAG_EXTERNAL_SNAPSHOT | spec.FLAG_THIN_PROV
            self.parent_id = spec.BLOBID_EXTERNAL_SNAPSHOT
        self.esnap = dev
        self.dirty = True

    @property
    def num_allocated_clusters(self) -> int:
        return sum(1 for c in self.clusters if c)

    def num_io_units(self) -> int:
        return self.num_clusters * self.bs.cluster_blocks

    def clones(self) -> list[Blob]:
        return [b for b in self.bs.blobs.values() if b.parent_id == self.id]

    def parent(self) -> Blob | None:
        if self.parent_id == spec.BLOBID_INVALID:
            return None
        return self.bs.blobs.get(self.parent_id)

    def get_xattr(self, name: str, internal: bool = False) -> bytes | None:
        return (self.xattrs_internal if internal else self.xattrs).get(name)

    def set_xattr(self, name: str, value: bytes, internal: bool = False) -> None:
        if not internal and self.md_ro:
            raise BlobError(errno.EPERM, f"blob {self.id:#x} is read-only: its xattrs cannot change")
        if len(name.encode()) + len(value) + spec.XATTR_HEAD.size > spec.DESCRIPTORS_SIZE:
            raise BlobError(errno.EINVAL, f"xattr {name!r} of {len(value)} bytes does not fit a metadata page")
        (self.xattrs_internal if internal else self.xattrs)[name] = bytes(value)
        if internal:
            self.invalid_flags |= spec.FLAG_INTERNAL_XATTR
        self.dirty = True

    def remove_xattr(self, name: str, internal: bool = False) -> None:
        d = self.xattrs_internal if internal else self.xattrs
        if name not in d:
            raise BlobError(errno.ENOENT, f"blob {self.id:#x} has no xattr {name!r}")
        del d[name]
        if internal and not d:
            self.invalid_flags &= ~spec.FLAG_INTERNAL_XATTR
        self.dirty = True

    def set_read_only(self) -> None:
        self.data_ro_flags |= spec.FLAG_READ_ONLY
        self.dirty = True

    def _set_parent(self, parent_id: int) -> None:
        self.parent_id = parent_id
        if parent_id == spec.BLOBID_INVALID:
            self.xattrs_internal.pop(spec.XATTR_SNAPSHOT, None)
            if not self.xattrs_internal:
                self.invalid_flags &= ~spec.FLAG_INTERNAL_XATTR
        else:
            self.set_xattr(spec.XATTR_SNAPSHOT, spec.U64.pack(parent_id), internal=True)
        self.dirty = True

    # ------------------------------------------------------------- metadata
    def serialize(self) -> list[bytearray]:
        """Descriptor areas of the chain: flags, xattrs, internal xattrs, extents."""
        w = spec.DescWriter()
        w.add(spec.flags_desc(spec.Flags(self.invalid_flags, self.data_ro_flags, self.md_ro_flags)))
        for n, v in self.xattrs.items():
            w.add(spec.xattr_desc(n, v, False))
        for n, v in self.xattrs_internal.items():
            w.add(spec.xattr_desc(n, v, True))
        if self.use_extent_table:
            spec.write_extent_table(w, self.num_clusters, self.extent_pages)
        else:
            spec.write_extents_rle(w, self.clusters)
        return w.areas

    def extent_page_bytes(self, ep: int) -> bytes:
        start = ep * spec.EXTENTS_PER_EP
        page = spec.MdPage(self.id, 0, spec.extent_page_desc(start, self.clusters[start:start + spec.EXTENTS_PER_EP]))
        return page.pack()

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "num_clusters": self.num_clusters, "allocated": self.num_allocated_clusters,
                "thin": self.thin, "read_only": self.read_only, "parent_id": self.parent_id}

    # ------------------------------------------------------------- data path
    def submit(self, ch: BlobChannel, op: int, iovs: list[memoryview] | None, offset: int, length: int,
               cb: Callable[[bool, Any], None], arg: Any) -> int:
        """Read/write/unmap/write_zeroes ``length`` io units at ``offset``; cb(ok, arg) once."""
        if offset + length > self.num_io_units() or length <= 0:
            return -errno.EINVAL
        if op in (OP_WRITE, OP_UNMAP, OP_ZEROES) and self.read_only:
            return -errno.EPERM
        if self.frozen:
            self.frozen_q.append((ch, op, iovs, offset, length, cb, arg))
            return 0
        req = _Req(self, ch, op, cb, arg)
        self.inflight += 1
        self._split(req, iovs, offset, length)
        req.finish_submit()
        return 0

    def _split(self, req: _Req, iovs: list[memoryview] | None, offset: int, length: int) -> None:
        cb_ = self.bs.cluster_blocks
        bsz = self.bs.block_size
        pos = 0
        while length > 0:
            c = offset // cb_
            within = offset % cb_
            n = min(length, cb_ - within)
            piece = _slice(iovs, pos * bsz, n * bsz) if iovs is not None else None
            req.pending += 1
            self._piece(req, piece, c, within, n)
            offset += n
            length -= n
            pos += n

    def _piece(self, req: _Req, iovs: list[memoryview] | None, c: int, within: int, n: int) -> None:
        bs = self.bs
        phys = self.clusters[c] if c < len(self.clusters) else 0
        op = req.op
        if phys:
            lba = phys * bs.cluster_blocks + within
            dev = bs.dev
            if op == OP_READ:
                rc = dev.readv(req.ch.dev_ch, iovs, lba, n, req.piece_done, None)  # type: ignore[arg-type]
            elif op == OP_WRITE:
                rc = dev.writev(req.ch.dev_ch, iovs, lba, n, req.piece_done, None)  # type: ignore[arg-type]
            elif op == OP_ZEROES:
                rc = dev.write_zeroes_blocks(req.ch.dev_ch, lba, n, req.piece_done, None)
            else:
                rc = dev.unmap_blocks(req.ch.dev_ch, lba, n, req.piece_done, None)
            if rc:
                req.piece_failed()
            return
        if op == OP_READ:
            parent = self.parent()
            if parent is not None and c < parent.num_clusters:
                parent._piece(req, iovs, c, within, n)
                return
            if self.is_esnap_clone:
                self._esnap_read(req, iovs, c, within, n)
                return
            for v in iovs or ():
                v[:] = bytes(len(v))
            req.piece_ok()
            return
        if op == OP_UNMAP or (op == OP_ZEROES and not self._parent_has(c)):
            req.piece_ok()  # nothing allocated here and nothing below: reads give zeroes
            return
        if not self.thin:
            req.piece_failed()
            return
        # first write to a thin cluster: the metadata thread allocates it, then the piece runs
        waiters = self.alloc_waiters.get(c)
        item = (req, iovs, c, within, n)
        if waiters is not None:
            waiters.append(item)
            return
        self.alloc_waiters[c] = [item]
        bs.spawn(self._allocate(c))

    def _esnap_read(self, req: _Req, iovs: list[memoryview] | None, c: int, within: int, n: int) -> None:
        dev = self.esnap
        if dev is None:
            req.piece_failed()       # degraded: its external snapshot is missing
            return
        bsz = self.bs.block_size
        off = (c * self.bs.cluster_blocks + within) * bsz
        if off + n * bsz > dev.size:  # past the end of the external snapshot: zeroes
            for v in iovs or ():
                v[:] = bytes(len(v))
            req.piece_ok()
            return
        rc = dev.readv(req.ch.esnap_channel(self, dev), iovs, off // dev.block_size,  # type: ignore[arg-type]
                       n * bsz // dev.block_size, req.piece_done, None)
        if rc:
            req.piece_failed()

    def _parent_has(self, c: int) -> bool:
        b: Blob | None = self
        while b is not None:
            if b is not self and c < b.num_clusters and b.clusters[c]:
                return True
            if b.is_esnap_clone and b.parent_id == spec.BLOBID_EXTERNAL_SNAPSHOT:
                return True          # the external snapshot may hold data anywhere
            b = b.parent()
        return False

    async def _allocate(self, c: int) -> None:
        ok = True
        try:
            await self.bs.allocate_cluster(self, c)
        except Exception as e:  # noqa: BLE001 - reported through the waiting I/O
            log.error("blob %#x: allocating cluster %d failed: %s", self.id, c, e)
            ok = False
        for item in self.alloc_waiters.pop(c, []):
            item[0].ch.thread.send_msg(_resume_piece, (self, item, ok))

    def _io_done(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._drained is not None:
            self._io_done_last()

    def _io_done_last(self) -> None:
        """The last I/O in flight finished: wake freeze()."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def freeze(self) -> None:
        """Hold new I/O and wait until the I/O in progress finished."""
        self.frozen += 1
        if self.inflight:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
            self._drained = None

    def unfreeze(self) -> None:
        self.frozen -= 1
        if self.frozen == 0:
            q, self.frozen_q = self.frozen_q, []
            for ch, op, iovs, off, ln, cb, arg in q:
                rc = self.submit(ch, op, iovs, off, ln, cb, arg)
                if rc:
                    cb(False, arg)

    def __repr__(self) -> str:
        return f"<Blob {self.id:#x} clusters={self.num_clusters}>"


OP_READ, OP_WRITE, OP_UNMAP, OP_ZEROES = 0, 1, 2, 3


def _slice(iovs: list[memoryview], start: int, nbytes: int) -> list[memoryview]:
    out = []
    if start == 0 and len(iovs) == 1 and len(iovs[0]) == nbytes:
        return [iovs[0] if isinstance(iovs[0], memoryview) else memoryview(iovs[0])]
    for v in iovs:
        if not isinstance(v, memoryview):
            v = memoryview(v)   # slicing a bytearray would copy it
        ln = len(v)
        if start >= ln:
            start -= ln
            continue
        take = min(ln - start, nbytes)
        out.append(v[start:start + take])
        nbytes -= take
        start = 0
        if nbytes == 0:
            break
    return out


class _Req:
    """One blob I/O split into pieces (one per cluster touched). ``pending`` counts the
    submit itself, so pieces finishing early cannot complete the request."""
    __slots__ = ("blob", "ch", "op", "cb", "arg", "pending", "ok")

    def __init__(self, blob: Blob, ch: BlobChannel, op: int, cb: Callable[[bool, Any], None], arg: Any):
        self.blob = blob
        self.ch = ch
        self.op = op
        self.cb = cb
        self.arg = arg
        self.pending = 1
        self.ok = True

    def piece_done(self, ok: bool, _arg: Any) -> None:
        if not ok:
            self.ok = False
        self.pending -= 1
        if self.pending == 0:
            self._complete()

    def piece_ok(self) -> None:
        self.piece_done(True, None)

    def piece_failed(self) -> None:
        self.piece_done(False, None)

    def finish_submit(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            # everything finished inside submit (zero-fill, nothing to do): complete by a
            # message, never from within the submit call (no recursion on resubmission)
            self.ch.thread.send_msg(_complete_msg, self)

    def _complete(self) -> None:
        self.blob._io_done()
        self.cb(self.ok, self.arg)


def _complete_msg(req: _Req) -> None:
    req._complete()


def _resume_piece(arg: tuple[Blob, tuple[Any, ...], bool]) -> None:
    blob, (req, iovs, c, within, n), ok = arg
    if ok:
        blob._piece(req, iovs, c, within, n)
    else:
        req.piece_failed()


class BlobChannel:
    """A thread's channel to the blobstore: its channel on the device, and channels on
    the external snapshots its esnap clones read from (opened on first use)."""

    def __init__(self, bs: Blobstore, thread: Any):
        self.bs = bs
        self.thread = thread
        self.dev_ch = bs.dev.get_channel()
        self.esnap_chs: dict[int, tuple[BsDev, Any]] = {}

    def esnap_channel(self, blob: Blob, dev: BsDev) -> Any:
        got = self.esnap_chs.get(id(dev))
        if got is None:
            got = (dev, dev.get_channel())
            self.esnap_chs[id(dev)] = got
        return got[1]

    def close(self) -> None:
        for dev, ch in self.esnap_chs.values():
            dev.put_channel(ch)
        self.esnap_chs.clear()
        self.bs.dev.put_channel(self.dev_ch)


class Blobstore:
    def __init__(self, dev: BsDev, sb: spec.SuperBlock):
        self.dev = dev
        self.sb = sb
        self.block_size = dev.block_size
        self.cluster_sz = sb.cluster_size
        self.cluster_blocks = sb.cluster_size // dev.block_size
        self.pages_per_cluster = sb.cluster_size // PAGE_SIZE
        self.total_clusters = (sb.size or dev.size) // sb.cluster_size
        self.md_start = sb.md_start
        self.md_len = sb.md_len
        self.used_md_pages = _Bits(sb.md_len)
        self.used_blobids = _Bits(sb.md_len)
        self.used_clusters = _Bits(self.total_clusters)
        self.blobs: dict[int, Blob] = {}
        self.clean = True               # what the super block on disk says
        self.super_blob = sb.super_blob
        self.bstype = sb.bstype
        self._dirty_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.md_thread: Any = getattr(dev, "md_thread", None) or get_thread()
        self.unloaded = False
        self.recovered = False
        self.load_errors: list[str] = []
        self.read_only = False

    # ------------------------------------------------------------- geometry
    @property
    def num_md_clusters(self) -> int:
        return spec.divide_round_up(self.md_start + self.md_len, self.pages_per_cluster)

    @property
    def total_data_clusters(self) -> int:
        return self.total_clusters - self.num_md_clusters

    @property
    def free_clusters(self) -> int:
        return self.total_clusters - self.used_clusters.count()

    def md_page_offset(self, page: int) -> int:
        return (self.md_start + page) * PAGE_SIZE

    def spawn(self, coro: Any) -> None:
        """Run a metadata coroutine on the metadata thread (from the data path)."""
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def channel(self, thread: Any) -> BlobChannel:
        return BlobChannel(self, thread)

    # ------------------------------------------------------------- allocation
    def claim_cluster(self) -> int:
        c = self.used_clusters.first_clear(self.num_md_clusters)
        if c < 0:
            raise BlobError(errno.ENOSPC, "the blobstore has no free cluster left: grow the base bdev "
                                          "(bdev_lvol_grow_lvstore) or delete volumes or snapshots")
        self.used_clusters.set(c)
        return c

    def release_cluster(self, c: int) -> None:
        self.used_clusters.clear(c)

    def claim_md_page(self, start: int = 0) -> int:
        p = self.used_md_pages.first_clear(start)
        if p < 0:
            raise BlobError(errno.ENOSPC, "the blobstore's metadata region is full: create the lvstore "
                                          "with a larger num_md_pages_per_cluster_ratio")
        self.used_md_pages.set(p)
        return p

    # ------------------------------------------------------------- writes
    async def mark_dirty(self) -> None:
        async with self._dirty_lock:
            if not self.clean:
                return
            self.sb.clean = 0
            if not self.sb.size:
                self.sb.size = self.dev.size
            await self.dev.write(0, self.sb.pack())
            self.clean = False

    async def write_super(self) -> None:
        self.sb.super_blob = self.super_blob
        await self.dev.write(0, self.sb.pack())

    async def write_masks(self) -> None:
        sb = self.sb
        await self.dev.write(sb.used_page_mask_start * PAGE_SIZE, spec.pack_mask(
            spec.MASK_USED_PAGES, self.used_md_pages.b, self.md_len, sb.used_page_mask_len))
        await self.dev.write(sb.used_cluster_mask_start * PAGE_SIZE, spec.pack_mask(
            spec.MASK_USED_CLUSTERS, self.used_clusters.b, self.total_clusters, sb.used_cluster_mask_len))
        if sb.used_blobid_mask_len:
            await self.dev.write(sb.used_blobid_mask_start * PAGE_SIZE, spec.pack_mask(
                spec.MASK_USED_BLOBIDS, self.used_blobids.b, self.md_len, sb.used_blobid_mask_len))

    async def clear_clusters(self, clusters: list[int]) -> None:
        method = "unmap"
        for c in sorted(set(clusters)):
            off = c * self.cluster_sz
            if method == "unmap":
                await self.dev.unmap(off, self.cluster_sz)

    async def persist(self, blob: Blob) -> None:
        """Write ``blob``'s metadata in the crash-safe order (see the module docstring)."""
        async with blob.md_lock:
            await self._persist_locked(blob)

    async def _persist_locked(self, blob: Blob) -> None:
        if blob.deleted:
            return
        await self.mark_dirty()
        # extent pages: those that changed since the last persist
        for i, p in enumerate(blob.extent_pages):
            if not p:
                continue
            start = i * spec.EXTENTS_PER_EP
            now = blob.clusters[start:start + spec.EXTENTS_PER_EP]
            was = blob.disk_clusters[start:start + spec.EXTENTS_PER_EP]
            if now != was or i >= len(blob.disk_extent_pages) or blob.disk_extent_pages[i] != p:
                await self.dev.write(self.md_page_offset(p), blob.extent_page_bytes(i))
        areas = blob.serialize()
        root = spec.blobid_to_page(blob.id)
        pages = [root]
        for _ in areas[1:]:
            pages.append(self.claim_md_page(0))
        raw = []
        for i, area in enumerate(areas):
            nxt = pages[i + 1] if i + 1 < len(pages) else spec.INVALID_MD_PAGE
            raw.append(spec.MdPage(blob.id, i, bytes(area), nxt).pack())
        for i in range(1, len(pages)):
            await self.dev.write(self.md_page_offset(pages[i]), raw[i])
        await self.dev.write(self.md_page_offset(root), raw[0])
        old = blob.pages[1:]
        blob.pages = pages
        for p in old:
            await self.dev.write_zeroes(self.md_page_offset(p), PAGE_SIZE)
            self.used_md_pages.clear(p)
        # what the new chain no longer references
        dropped = [c for c in blob.disk_clusters[blob.num_clusters:] if c]
        dropped_eps = [p for p in blob.disk_extent_pages[len(blob.extent_pages):] if p]
        self._release_later(blob, dropped, dropped_eps)
        blob.disk_clusters = list(blob.clusters)
        blob.disk_extent_pages = list(blob.extent_pages)
        blob.dirty = False
        await self._release_pending(blob)

    def _release_later(self, blob: Blob, clusters: list[int], eps: list[int]) -> None:
        blob._pending_release = (clusters, eps)  # type: ignore[attr-defined]

    async def _release_pending(self, blob: Blob) -> None:
        clusters, eps = getattr(blob, "_pending_release", ([], []))
        blob._pending_release = ([], [])  # type: ignore[attr-defined]
        for p in eps:
            await self.dev.write_zeroes(self.md_page_offset(p), PAGE_SIZE)
            self.used_md_pages.clear(p)
        if clusters:
            await self.clear_clusters(clusters)
            for c in clusters:
                self.release_cluster(c)

    async def allocate_cluster(self, blob: Blob, c: int, zero_fill: bool = False) -> None:
        """Give thin ``blob`` its cluster ``c``, with the parent's data copied into it (or
        zeroes when ``zero_fill``) before the metadata that points at it is written."""
        if blob.clusters[c]:
            return
        new = self.claim_cluster()
        try:
            if blob._parent_has(c):
                data = bytearray(self.cluster_sz)
                await self.read_below(blob, c, data)
                await self.dev.write(new * self.cluster_sz, data)
            elif zero_fill:
                await self.dev.write_zeroes(new * self.cluster_sz, self.cluster_sz)
            async with blob.md_lock:
                if blob.deleted or c >= blob.num_clusters:
                    raise BlobError(errno.ENOENT, f"blob {blob.id:#x} changed during allocation")
                if blob.clusters[c]:     # another path allocated it meanwhile
                    self.release_cluster(new)
                    return
                await self.mark_dirty()
                blob.clusters[c] = new
                if blob.use_extent_table:
                    ep = c // spec.EXTENTS_PER_EP
                    if blob.extent_pages[ep] == 0:
                        page = self.claim_md_page(1)
                        blob.extent_pages[ep] = page
                        await self.dev.write(self.md_page_offset(page), blob.extent_page_bytes(ep))
                        await self._persist_locked(blob)
                    else:
                        await self.dev.write(self.md_page_offset(blob.extent_pages[ep]), blob.extent_page_bytes(ep))
                        blob.disk_clusters[c] = new
                else:
                    await self._persist_locked(blob)
        except BaseException:
            if blob.clusters[c] == new and not blob.disk_clusters[c:c + 1] == [new]:
                blob.clusters[c] = 0
            if not any(b.clusters[c:c + 1] == [new] for b in self.blobs.values()):
                self.release_cluster(new)
            raise

    async def read_below(self, blob: Blob, c: int, buf: bytearray) -> None:
        """What ``blob`` reads at cluster ``c`` from below itself (parents, external snapshot)."""
        p = blob.parent()
        if p is not None:
            await self.read_blob_md_thread(p, c * self.cluster_blocks, buf)
            return
        dev = blob.esnap
        if dev is None:
            raise BlobError(errno.EIO, f"blob {blob.id:#x}: its external snapshot is missing (degraded)")
        off = c * self.cluster_sz
        n = max(0, min(len(buf), dev.size - off))
        if n:
            buf[:n] = await dev.read(off, n)

    async def read_blob_md_thread(self, blob: Blob, offset: int, buf: bytearray) -> None:
        """Read a blob's data for the metadata path (copying a parent cluster)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        thread = self.md_thread
        prev = set_thread(thread)
        try:
            ch = self.channel(thread)
            rc = blob.submit(ch, OP_READ, [memoryview(buf)], offset, len(buf) // self.block_size,
                             lambda ok, _a: None if fut.done() else fut.set_result(ok), None)
        finally:
            set_thread(prev)
        try:
            if rc:
                raise BlobError(-rc, f"reading blob {blob.id:#x} failed: rc {rc}")
            if not await fut:
                raise BlobError(errno.EIO, f"reading blob {blob.id:#x} failed")
        finally:
            prev = set_thread(thread)
            try:
                ch.close()
            finally:
                set_thread(prev)

    # ------------------------------------------------------------- blob operations
    def get(self, blobid: int) -> Blob:
        b = self.blobs.get(blobid)
        if b is None:
            raise BlobError(errno.ENOENT, f"blob {blobid:#x} does not exist")
        return b

    async def create_blob(self, opts: BlobOpts | None = None, internal: dict[str, bytes] | None = None) -> Blob:
        o = opts or BlobOpts()
        page = self.used_md_pages.first_clear(0)
        if page < 0:
            raise BlobError(errno.ENOSPC, "the blobstore's metadata region is full: no blob can be created")
        if not o.thin_provision and o.num_clusters > self.free_clusters:
            raise BlobError(errno.ENOSPC, f"{o.num_clusters} clusters requested but only {self.free_clusters} "
                                          "are free: use a thin-provisioned volume or a smaller size")
        self.used_md_pages.set(page)
        self.used_blobids.set(page)
        b = Blob(self, spec.page_to_blobid(page))
        b.pages = []
        b.use_extent_table = o.use_extent_table
        if o.use_extent_table:
            b.invalid_flags |= spec.FLAG_EXTENT_TABLE
        for n, v in (o.xattrs or {}).items():
            b.set_xattr(n, v)
        for n, v in (internal or {}).items():
            b.set_xattr(n, v, internal=True)
            if n == spec.XATTR_SNAPSHOT:
                b.parent_id = spec.U64.unpack(v)[0]
        if o.thin_provision:
            b.invalid_flags |= spec.FLAG_THIN_PROV
        if o.esnap_id is not None:
            b.set_esnap(o.esnap_id, o.esnap_dev)
        b.md_ro_flags |= o.clear_method & spec.CLEAR_METHOD_MASK
        self.blobs[b.id] = b
        try:
            self._resize_mem(b, o.num_clusters)
            await self.persist(b)
        except BaseException:
            await self._forget(b)
            raise
        return b

    async def _forget(self, b: Blob) -> None:
        for c in b.clusters:
            if c and not any(o is not b and c in o.clusters for o in self.blobs.values()):
                self.release_cluster(c)
        for p in b.extent_pages:
            if p:
                self.used_md_pages.clear(p)
        self.blobs.pop(b.id, None)
        page = spec.blobid_to_page(b.id)
        self.used_md_pages.clear(page)
        self.used_blobids.clear(page)

    def _resize_mem(self, b: Blob, n: int) -> None:
        cur = b.num_clusters
        if n == cur:
            return
        if n > cur:
            need = 0 if b.thin else n - cur
            if need > self.free_clusters:
                raise BlobError(errno.ENOSPC, f"resizing blob {b.id:#x} to {n} clusters needs {need} free "
                                              f"clusters, the store has {self.free_clusters}: use thin "
                                              "provisioning or free space")
            b.clusters.extend([0] * (n - cur))
            if b.use_extent_table:
                eps = spec.divide_round_up(n, spec.EXTENTS_PER_EP)
                b.extent_pages.extend([0] * (eps - len(b.extent_pages)))
            if not b.thin:
                for i in range(cur, n):
                    b.clusters[i] = self.claim_cluster()
                    if b.use_extent_table:
                        ep = i // spec.EXTENTS_PER_EP
                        if b.extent_pages[ep] == 0:
                            b.extent_pages[ep] = self.claim_md_page(1)
        else:
            del b.clusters[n:]
            if b.use_extent_table:
                del b.extent_pages[spec.divide_round_up(n, spec.EXTENTS_PER_EP):]
        b.dirty = True

    async def resize(self, b: Blob, num_clusters: int) -> None:
        if b.md_ro:
            raise BlobError(errno.EPERM, f"blob {b.id:#x} is read-only: it cannot be resized")
        async with b.md_lock:
            self._resize_mem(b, num_clusters)
            await self._persist_locked(b)

    async def sync_md(self, b: Blob) -> None:
        await self.persist(b)

    def open_blob(self, blobid: int) -> Blob:
        b = self.get(blobid)
        b.open_ref += 1
        return b

    def close_blob(self, b: Blob) -> None:
        if b.open_ref > 0:
            b.open_ref -= 1

    async def delete_blob(self, blobid: int) -> None:
        b = self.get(blobid)
        if b.open_ref:
            raise BlobError(errno.EBUSY, f"blob {blobid:#x} is open ({b.open_ref} users): close it first")
        clones = b.clones()
        if len(clones) > 1:
            raise BlobError(errno.EBUSY, f"snapshot {blobid:#x} has {len(clones)} clones: a snapshot with more "
                                         "than one clone cannot be deleted (delete or inflate clones first)")
        if clones:
            await self._delete_snapshot_merge(b, clones[0])
            return
        await self._delete_plain(b)

    async def _delete_plain(self, b: Blob, keep: set[int] | None = None) -> None:
        """Zero the chain (root first), then release pages, clusters, extent pages, blob id.
        Clusters in ``keep`` belong to another blob now and are neither cleared nor released."""
        async with b.md_lock:
            await self.mark_dirty()
            root = spec.blobid_to_page(b.id)
            await self.dev.write_zeroes(self.md_page_offset(root), PAGE_SIZE)
            for p in b.pages[1:]:
                await self.dev.write_zeroes(self.md_page_offset(p), PAGE_SIZE)
                self.used_md_pages.clear(p)
            b.deleted = True
            others = {p for o in self.blobs.values() if o is not b for p in o.extent_pages if p}
            eps = [p for p in b.extent_pages if p and p not in others]
            for p in eps:
                await self.dev.write_zeroes(self.md_page_offset(p), PAGE_SIZE)
                self.used_md_pages.clear(p)
            mine = [c for c in b.clusters if c and c not in (keep or set())]
            await self.clear_clusters(mine)
            for c in mine:
                self.release_cluster(c)
            self.used_md_pages.clear(root)
            self.used_blobids.clear(root)
            self.blobs.pop(b.id, None)

    async def _delete_snapshot_merge(self, snap: Blob, clone: Blob) -> None:
        """Deleting a snapshot with one clone: the clone takes the snapshot's clusters it
        lacks and the snapshot's parent. SNAPRM on the snapshot makes a crash recoverable."""
        await clone.freeze()
        try:
            snap.set_xattr(spec.XATTR_SNAPSHOT_PENDING_REMOVAL, spec.U64.pack(clone.id), internal=True)
            await self.persist(snap)
            moved = set()
            async with clone.md_lock:
                for i in range(min(snap.num_clusters, clone.num_clusters)):
                    if clone.clusters[i] == 0 and snap.clusters[i]:
                        clone.clusters[i] = snap.clusters[i]
                        moved.add(snap.clusters[i])
                if clone.use_extent_table:
                    for i in range(len(clone.extent_pages)):
                        start = i * spec.EXTENTS_PER_EP
                        if clone.extent_pages[i] == 0 and any(clone.clusters[start:start + spec.EXTENTS_PER_EP]):
                            clone.extent_pages[i] = self.claim_md_page(1)
                clone._set_parent(snap.parent_id)
                if snap.parent_id == spec.BLOBID_INVALID and not snap.thin and \
                        all(clone.clusters):
                    pass  # stays thin: SPDK keeps the thin flag on clones
                await self._persist_locked(clone)
            await self._delete_plain(snap, keep=moved)
        finally:
            clone.unfreeze()

    async def create_snapshot(self, blobid: int, xattrs: dict[str, bytes] | None = None) -> Blob:
        """SPDK's order: new blob (SNAPTMP), freeze, the snapshot takes the cluster map, the
        original becomes a thin clone of it, SNAPTMP removed and the snapshot made read-only."""
        orig = self.get(blobid)
        if orig.read_only and orig.is_snapshot:
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} is a snapshot: a snapshot of a snapshot is not supported")
        snap = await self.create_blob(BlobOpts(num_clusters=0, thin_provision=True, xattrs=xattrs,
                                               use_extent_table=orig.use_extent_table),
                                      internal={spec.XATTR_SNAPSHOT_IN_PROGRESS: spec.U64.pack(orig.id)})
        await orig.freeze()
        try:
            async with snap.md_lock:
                snap.invalid_flags = orig.invalid_flags | spec.FLAG_INTERNAL_XATTR
                snap.parent_id = orig.parent_id
                if orig.is_esnap_clone:
                    esnap_id = orig.esnap_id
                    assert esnap_id is not None
                    snap.set_xattr(spec.XATTR_EXTERNAL_SNAPSHOT_ID, esnap_id, internal=True)
                    snap.esnap = orig.esnap
                elif orig.parent_id != spec.BLOBID_INVALID:
                    snap.set_xattr(spec.XATTR_SNAPSHOT, spec.U64.pack(orig.parent_id), internal=True)
                snap.clusters = list(orig.clusters)
                snap.extent_pages = list(orig.extent_pages)
                snap.disk_clusters = list(orig.clusters)       # the extent pages are already on disk
                snap.disk_extent_pages = list(orig.extent_pages)
                snap.md_ro_flags = orig.md_ro_flags
                await self._persist_locked(snap)
            async with orig.md_lock:
                orig.clusters = [0] * len(orig.clusters)
                orig.extent_pages = [0] * len(orig.extent_pages)
                orig.disk_clusters = list(orig.clusters)
                orig.disk_extent_pages = list(orig.extent_pages)
                if orig.is_esnap_clone:
                    orig.set_esnap(None, None)
                orig._set_parent(snap.id)
                orig.invalid_flags |= spec.FLAG_THIN_PROV
                await self._persist_locked(orig)
            async with snap.md_lock:
                snap.remove_xattr(spec.XATTR_SNAPSHOT_IN_PROGRESS, internal=True)
                snap.set_read_only()
                await self._persist_locked(snap)
        finally:
            orig.unfreeze()
        return snap

    async def create_clone(self, blobid: int, xattrs: dict[str, bytes] | None = None) -> Blob:
        snap = self.get(blobid)
        if not snap.read_only:
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} is not read-only: clone a snapshot, or set the "
                                          "volume read-only first")
        return await self.create_blob(BlobOpts(num_clusters=snap.num_clusters, thin_provision=True, xattrs=xattrs,
                                               use_extent_table=snap.use_extent_table),
                                      internal={spec.XATTR_SNAPSHOT: spec.U64.pack(snap.id)})

    async def _clone_set_parent(self, b: Blob) -> None:
        pass

    async def inflate(self, blobid: int, allocate_all: bool = True) -> None:
        """Copy what the blob reads from its parents into its own clusters (allocate_all:
        also clusters that read as zeroes, making it thick) and cut it from its parent.
        With allocate_all False it is SPDK's decouple_parent: only the parent's clusters are
        copied and the blob takes the parent's parent."""
        b = self.get(blobid)
        parent = b.parent()
        if b.read_only:
            raise BlobError(errno.EPERM, f"blob {blobid:#x} is read-only (a snapshot): it cannot be inflated")
        if b.degraded:
            raise BlobError(errno.EIO, f"blob {blobid:#x}: its external snapshot is missing: attach that bdev first")
        if parent is None and not allocate_all and not b.is_esnap_clone:
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} has no parent: nothing to decouple")
        for c in range(b.num_clusters):
            if b.clusters[c]:
                continue
            if allocate_all or b.is_esnap_clone:
                needed = True
            else:
                needed = parent is not None and c < parent.num_clusters and parent.clusters[c] != 0
            if needed:
                await self.allocate_cluster(b, c, zero_fill=True)
        async with b.md_lock:
            if b.is_esnap_clone:
                b.set_esnap(None, None)
            if allocate_all:
                b._set_parent(spec.BLOBID_INVALID)
                b.invalid_flags &= ~spec.FLAG_THIN_PROV
            elif parent is None:
                pass     # decoupled from its external snapshot
            else:
                assert parent is not None
                b._set_parent(parent.parent_id)
            await self._persist_locked(b)

    async def set_esnap_parent(self, blobid: int, esnap_id: bytes, dev: BsDev | None) -> None:
        """Make a thin blob an esnap clone of an external device (bdev_lvol_set_parent_bdev)."""
        b = self.get(blobid)
        if not b.thin:
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} is not thin-provisioned: only a thin volume can get a parent")
        if b.read_only or b.clones():
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} is a snapshot: it cannot get a parent")
        if b.esnap_id == esnap_id:
            raise BlobError(errno.EEXIST, f"blob {blobid:#x} already has this external snapshot as its parent")
        async with b.md_lock:
            b.set_esnap(esnap_id, dev)
            await self._persist_locked(b)

    async def set_parent(self, blobid: int, snapshot_id: int) -> None:
        b = self.get(blobid)
        snap = self.get(snapshot_id)
        if not snap.read_only:
            raise BlobError(errno.EINVAL, f"blob {snapshot_id:#x} is not a snapshot (read-only): it cannot be a parent")
        if not b.thin:
            raise BlobError(errno.EINVAL, f"blob {blobid:#x} is not thin-provisioned: only a thin volume can get a parent")
        if b.parent_id == snapshot_id:
            raise BlobError(errno.EEXIST, f"blob {blobid:#x} already has {snapshot_id:#x} as its parent")
        if snap.num_clusters > b.num_clusters:
            raise BlobError(errno.EINVAL, f"snapshot {snapshot_id:#x} is larger than blob {blobid:#x}")
        async with b.md_lock:
            if b.is_esnap_clone:
                b.set_esnap(None, None)
            b._set_parent(snapshot_id)
            await self._persist_locked(b)

    async def grow(self, num_blocks: int) -> None:
        """Take in clusters added at the end of a grown device (bdev_lvol_grow_lvstore)."""
        total = num_blocks // self.cluster_blocks
        if total <= self.total_clusters:
            return
        room = self.sb.used_blobid_mask_start - self.sb.used_cluster_mask_start
        need = spec.mask_pages(total)
        if need > room:
            raise BlobError(errno.ENOSPC, f"the used-cluster mask has room for {room} pages, {need} are needed "
                                          f"for {total} clusters: the store cannot grow that much")
        await self.mark_dirty()
        self.dev.num_blocks = num_blocks
        self.used_clusters.resize(total)
        self.total_clusters = total
        self.sb.used_cluster_mask_len = need
        self.sb.size = num_blocks * self.block_size
        self.sb.clean = 0
        await self.write_masks()
        await self.write_super()

    # ------------------------------------------------------------- unload
    async def unload(self) -> None:
        """Flush every dirty blob, write the masks, then the super block with clean = 1."""
        for t in list(self.tasks):
            await t
        for b in list(self.blobs.values()):
            if b.dirty:
                await self.persist(b)
        await self.write_masks()
        self.sb.clean = 1
        self.sb.super_blob = self.super_blob
        await self.dev.write(0, self.sb.pack())
        await self.dev.flush()
        self.clean = True
        self.unloaded = True

    async def set_super(self, blobid: int) -> None:
        self.super_blob = blobid
        await self.mark_dirty()
        self.sb.super_blob = blobid
        self.sb.clean = 0
        await self.dev.write(0, self.sb.pack())


# ---------------------------------------------------------------- init / load

def _layout(dev: BsDev, opts: BsOpts) -> spec.SuperBlock:
    if PAGE_SIZE % dev.block_size:
        raise BlobError(errno.EINVAL, f"block size {dev.block_size} of {dev.name} is not supported: "
                                      f"it must divide {PAGE_SIZE}")
    cs = opts.cluster_sz
    if cs < PAGE_SIZE or cs % PAGE_SIZE:
        raise BlobError(errno.EINVAL, f"cluster size {cs} is invalid: it must be a multiple of {PAGE_SIZE}")
    if dev.size < cs:
        raise BlobError(errno.ENOSPC, f"{dev.name} ({dev.size} bytes) is smaller than one cluster ({cs} bytes): "
                                      "use a larger bdev or a smaller cluster_sz")
    total = dev.num_blocks // (cs // dev.block_size)
    md_len = total if opts.num_md_pages is None else opts.num_md_pages
    sb = spec.SuperBlock(cluster_size=cs, io_unit_size=dev.block_size,
                         bstype=opts.bstype.ljust(spec.BSTYPE_LEN, b"\0")[:spec.BSTYPE_LEN], size=dev.size)
    n = 1
    sb.used_page_mask_start = n
    sb.used_page_mask_len = spec.mask_pages(md_len)
    n += sb.used_page_mask_len
    sb.used_cluster_mask_start = n
    sb.used_cluster_mask_len = spec.mask_pages(total)
    n += max(spec.mask_pages(md_len), sb.used_cluster_mask_len)   # room to grow the store
    sb.used_blobid_mask_start = n
    sb.used_blobid_mask_len = spec.mask_pages(md_len)
    n += sb.used_blobid_mask_len
    sb.md_start = n
    sb.md_len = md_len
    n += md_len
    if spec.divide_round_up(n, cs // PAGE_SIZE) >= total:
        raise BlobError(errno.ENOSPC, f"{dev.name} ({dev.size} bytes) is too small: its {total} clusters of "
                                      f"{cs} bytes leave none for data after the metadata; use a larger "
                                      "bdev or a smaller cluster_sz")
    return sb


async def bs_init(dev: BsDev, opts: BsOpts | None = None) -> Blobstore:
    """Format ``dev``: zero the metadata region, clear the data (per clear_method), then write
    the super block (clean = 0, as SPDK; unload makes it clean)."""
    o = opts or BsOpts()
    sb = _layout(dev, o)
    bs = Blobstore(dev, sb)
    for i in range(bs.num_md_clusters):
        bs.used_clusters.set(i)
    md_bytes = (sb.md_start + sb.md_len) * PAGE_SIZE
    await dev.write_zeroes(0, md_bytes)
    data_off = md_bytes - md_bytes % dev.block_size
    if o.clear_method == "unmap":
        await dev.unmap(data_off, dev.size - data_off)
    elif o.clear_method == "write_zeroes":
        await dev.write_zeroes(data_off, dev.size - data_off)
    await dev.write(0, sb.pack())
    bs.clean = False
    return bs


async def read_super(dev: BsDev) -> spec.SuperBlock:
    if dev.size < PAGE_SIZE:
        raise BlobError(errno.EILSEQ, f"{dev.name} ({dev.size} bytes) is too small to hold a blobstore")
    raw = await dev.read(0, PAGE_SIZE)
    try:
        sb = spec.SuperBlock.unpack(raw)
        sb.check_geometry(dev.size, dev.block_size)
    except SpecError as e:
        raise BlobError(errno.EILSEQ, f"{dev.name}: {e}") from None
    return sb


async def bs_load(dev: BsDev, bstype: bytes | None = None, *, force_recover: bool = False) -> Blobstore:
    """Load a blobstore: with the masks when it was unloaded cleanly, else rebuilding them
    from the metadata pages. Then every blob's metadata is read and interrupted snapshot
    operations (SNAPTMP / SNAPRM) are finished or rolled back. Nothing is written on a
    clean load until the first metadata change; a corrupted store raises BlobError (EILSEQ)
    before anything is written."""
    sb = await read_super(dev)
    if bstype is not None and bstype.strip(b"\0") and sb.bstype.rstrip(b"\0") != bstype.rstrip(b"\0"):
        raise BlobError(errno.ENXIO, f"{dev.name}: blobstore type is {sb.bstype.rstrip(bytes(1))!r}, "
                                     f"not {bstype!r}")
    if sb.io_unit_size and sb.io_unit_size != dev.block_size:
        raise BlobError(errno.EINVAL, f"{dev.name}: the blobstore's io unit is {sb.io_unit_size} bytes but the "
                                      f"bdev's block size is {dev.block_size}")
    bs = Blobstore(dev, sb)
    bs.clean = bool(sb.clean)
    md_raw = await read_md_region(dev, sb)
    if sb.clean and sb.used_blobid_mask_len and not force_recover:
        try:
            raw = await dev.read(sb.used_page_mask_start * PAGE_SIZE, sb.used_page_mask_len * PAGE_SIZE)
            bits, _ = spec.unpack_mask(raw, spec.MASK_USED_PAGES, sb.md_len)
            bs.used_md_pages = _Bits(sb.md_len, bits)
            raw = await dev.read(sb.used_cluster_mask_start * PAGE_SIZE, sb.used_cluster_mask_len * PAGE_SIZE)
            bits, _ = spec.unpack_mask(raw, spec.MASK_USED_CLUSTERS, bs.total_clusters)
            bs.used_clusters = _Bits(bs.total_clusters, bits)
            raw = await dev.read(sb.used_blobid_mask_start * PAGE_SIZE, sb.used_blobid_mask_len * PAGE_SIZE)
            bits, _ = spec.unpack_mask(raw, spec.MASK_USED_BLOBIDS, sb.md_len)
            bs.used_blobids = _Bits(sb.md_len, bits)
        except SpecError as e:
            raise BlobError(errno.EILSEQ, f"{dev.name}: {e}") from None
    else:
        _recover(bs, md_raw)
        bs.recovered = True
    for i in range(bs.num_md_clusters):
        bs.used_clusters.set(i)
    # read every blob
    page = 0
    while True:
        page = _next_set(bs.used_blobids, page)
        if page < 0:
            break
        try:
            b = _parse_blob(bs, md_raw, page)
        except SpecError as e:
            raise BlobError(errno.EILSEQ, f"{dev.name}: blob {spec.page_to_blobid(page):#x}: {e}") from None
        bs.blobs[b.id] = b
        page += 1
    if not getattr(dev, "writable", True):
        bs.read_only = True
        return bs   # a read-only look (blobcli): interrupted operations stay as they are
    await _finish_interrupted(bs)
    if bs.recovered:
        # like SPDK: the rebuilt masks go to disk now (the super block stays dirty)
        await bs.write_masks()
    return bs


def _next_set(bits: _Bits, start: int) -> int:
    for i in range(start, bits.n):
        if bits.get(i):
            return i
    return -1


class MdRegion:
    """The non-empty pages of the metadata region (an empty page has no id): memory in
    proportion to the metadata in use, however large the region."""

    def __init__(self, n: int):
        self.n = n
        self.pages: dict[int, bytes] = {}

    def __len__(self) -> int:
        return self.n * PAGE_SIZE


_ZERO_PAGE = bytes(PAGE_SIZE)
_MD_CHUNK = 1024  # pages per read (4 MiB)


async def read_md_region(dev: BsDev, sb: spec.SuperBlock) -> MdRegion:
    region = MdRegion(sb.md_len)
    for first in range(0, sb.md_len, _MD_CHUNK):
        n = min(_MD_CHUNK, sb.md_len - first)
        raw = await dev.read((sb.md_start + first) * PAGE_SIZE, n * PAGE_SIZE)
        mv = memoryview(raw)
        for i in range(n):
            if any(mv[i * PAGE_SIZE:i * PAGE_SIZE + 16]):
                region.pages[first + i] = bytes(mv[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
    return region


def _page(md_raw: MdRegion, i: int) -> bytes:
    return md_raw.pages.get(i, _ZERO_PAGE)


def _recover(bs: Blobstore, md_raw: MdRegion) -> None:
    """Rebuild the masks from the metadata region (SPDK's bs_recover): every valid root page
    (sequence 0, id matching its index) and the chain behind it, their extent pages and
    the clusters those name."""
    bs.used_md_pages = _Bits(bs.md_len)
    bs.used_blobids = _Bits(bs.md_len)
    bs.used_clusters = _Bits(bs.total_clusters)
    for i in sorted(md_raw.pages):
        raw = md_raw.pages[i]
        try:
            pg = spec.MdPage.unpack(raw)
        except SpecError:
            continue
        if pg.sequence_num != 0 or pg.blobid != spec.page_to_blobid(i) or bs.used_md_pages.get(i):
            continue
        try:
            _replay_chain(bs, md_raw, i, pg)
        except SpecError as e:
            bs.load_errors.append(f"blob {pg.blobid:#x} skipped during recovery: {e}")
            log.error("blobstore %s: %s", bs.dev.name, bs.load_errors[-1])


def _replay_chain(bs: Blobstore, md_raw: MdRegion, root: int, pg: spec.MdPage) -> None:
    pages = [root]
    chain = [pg]
    seen = {root}
    while chain[-1].next != spec.INVALID_MD_PAGE:
        n = chain[-1].next
        if n >= bs.md_len or n in seen:
            raise SpecError(f"metadata chain points at page {n}, outside the region or looping")
        nxt = spec.MdPage.unpack(_page(md_raw, n))
        if nxt.blobid != pg.blobid or nxt.sequence_num != len(chain):
            raise SpecError(f"metadata page {n} does not continue the chain")
        seen.add(n)
        pages.append(n)
        chain.append(nxt)
    claimed_clusters: list[int] = []
    eps: list[int] = []
    for p in chain:
        d = spec.parse_descriptors(p.descriptors, strict=True)
        for idx, ln in d.extents_rle:
            if idx:
                claimed_clusters.extend(range(idx, idx + ln))
        for t in d.extent_tables:
            for pidx, _n in t.pages:
                if pidx:
                    eps.append(pidx)
    for ep in eps:
        if ep >= bs.md_len:
            raise SpecError(f"extent page {ep} lies outside the metadata region")
        e = spec.MdPage.unpack(_page(md_raw, ep))
        d = spec.parse_descriptors(e.descriptors, strict=True)
        if e.sequence_num != 0 or len(d.extent_pages) != 1:
            raise SpecError(f"page {ep} is not a valid extent page")
        claimed_clusters.extend(c for c in d.extent_pages[0].clusters if c)
    for c in claimed_clusters:
        if c >= bs.total_clusters:
            raise SpecError(f"cluster {c} is past the end of the store ({bs.total_clusters} clusters)")
    for pi in pages + eps:
        bs.used_md_pages.set(pi)
    bs.used_blobids.set(root)
    for c in claimed_clusters:
        bs.used_clusters.set(c)


def _parse_blob(bs: Blobstore, md_raw: MdRegion, page: int) -> Blob:
    """A blob from its chain and extent pages (SPDK's blob_parse), validated."""
    if page >= bs.md_len:
        raise SpecError(f"blob id page {page} is outside the metadata region")
    b = Blob(bs, spec.page_to_blobid(page))
    chain: list[spec.MdPage] = []
    cur = page
    seen: set[int] = set()
    while True:
        if cur >= bs.md_len or cur in seen:
            raise SpecError(f"metadata chain points at page {cur}, outside the region or looping")
        seen.add(cur)
        pg = spec.MdPage.unpack(_page(md_raw, cur))
        if pg.blobid != b.id:
            raise SpecError(f"metadata page {cur} belongs to blob {pg.blobid:#x}")
        if pg.sequence_num != len(chain):
            raise SpecError(f"metadata page {cur} has sequence number {pg.sequence_num}, expected {len(chain)}")
        chain.append(pg)
        b.pages.append(cur)
        if pg.next == spec.INVALID_MD_PAGE:
            break
        cur = pg.next
    flags_seen = False
    rle: list[tuple[int, int]] = []
    table_clusters: int | None = None
    ep_list: list[int] = []
    has_rle = False
    for pg in chain:
        d = spec.parse_descriptors(pg.descriptors)
        if d.flags is not None:
            f = d.flags
            if f.invalid & ~spec.INVALID_FLAGS_MASK:
                raise SpecError(f"unknown invalid_flags {f.invalid:#x}: written by a newer blobstore")
            b.invalid_flags, b.data_ro_flags, b.md_ro_flags = f.invalid, f.data_ro, f.md_ro
            flags_seen = True
        for xn, xv in d.xattrs:
            b.xattrs[xn] = xv
        for xn, xv in d.xattrs_internal:
            b.xattrs_internal[xn] = xv
        if d.has_rle:
            has_rle = True
            rle.extend(d.extents_rle)
        for t in d.extent_tables:
            if table_clusters is not None and t.num_clusters != table_clusters:
                raise SpecError("extent tables disagree on the number of clusters")
            table_clusters = t.num_clusters
            for pidx, n in t.pages:
                if pidx:
                    if n != 1:
                        raise SpecError(f"extent table entry for page {pidx} has length {n}")
                    ep_list.append(pidx)
                else:
                    ep_list.extend([0] * n)
    del flags_seen
    if has_rle and table_clusters is not None:
        raise SpecError("both extent RLE and extent table descriptors are present")
    thin = bool(b.invalid_flags & spec.FLAG_THIN_PROV)
    if has_rle:
        b.use_extent_table = False
        for idx, n in rle:
            if idx == 0 and not thin:
                raise SpecError("an unallocated cluster in a thick blob")
            b.clusters.extend(range(idx, idx + n) if idx else [0] * n)
    elif table_clusters is not None:
        b.use_extent_table = True
        b.clusters = [0] * table_clusters
        if len(ep_list) < spec.divide_round_up(table_clusters, spec.EXTENTS_PER_EP):
            ep_list.extend([0] * (spec.divide_round_up(table_clusters, spec.EXTENTS_PER_EP) - len(ep_list)))
        for i, ep in enumerate(ep_list):
            if not ep:
                if not thin:
                    raise SpecError("an unallocated extent page in a thick blob")
                continue
            if ep >= bs.md_len:
                raise SpecError(f"extent page {ep} lies outside the metadata region")
            e = spec.MdPage.unpack(_page(md_raw, ep))
            d = spec.parse_descriptors(e.descriptors)
            if e.sequence_num != 0 or len(d.extent_pages) != 1:
                raise SpecError(f"page {ep} is not a valid extent page")
            xp = d.extent_pages[0]
            if xp.start_cluster_idx != i * spec.EXTENTS_PER_EP:
                raise SpecError(f"extent page {ep} starts at cluster {xp.start_cluster_idx}, "
                                f"expected {i * spec.EXTENTS_PER_EP}")
            for j, c in enumerate(xp.clusters):
                k = xp.start_cluster_idx + j
                if k < table_clusters:
                    b.clusters[k] = c
        b.extent_pages = ep_list[:spec.divide_round_up(table_clusters, spec.EXTENTS_PER_EP)]
    else:
        b.use_extent_table = bool(b.invalid_flags & spec.FLAG_EXTENT_TABLE)
    for c in b.clusters:
        if c:
            if c >= bs.total_clusters:
                raise SpecError(f"cluster {c} is past the end of the store")
            if not bs.used_clusters.get(c):
                raise SpecError(f"cluster {c} is used by the blob but free in the used-cluster mask")
        elif not thin:
            raise SpecError("an unallocated cluster in a thick blob")
    snap = b.xattrs_internal.get(spec.XATTR_SNAPSHOT)
    if snap is not None:
        if len(snap) != 8:
            raise SpecError(f"SNAP xattr has {len(snap)} bytes, expected 8")
        b.parent_id = spec.U64.unpack(snap)[0]
    elif b.invalid_flags & spec.FLAG_EXTERNAL_SNAPSHOT:
        if spec.XATTR_EXTERNAL_SNAPSHOT_ID not in b.xattrs_internal:
            raise SpecError("an esnap clone without its EXTSNAP xattr")
        b.parent_id = spec.BLOBID_EXTERNAL_SNAPSHOT   # the lvol layer attaches the device
    b.disk_clusters = list(b.clusters)
    b.disk_extent_pages = list(b.extent_pages)
    b.dirty = False
    return b


async def _finish_interrupted(bs: Blobstore) -> None:
    """A crash in the middle of creating or deleting a snapshot left SNAPTMP or SNAPRM
    on it. If the other blob already points at the snapshot, the snapshot stays (creation
    finished / deletion never started to move clusters): drop the xattr, make it
    read-only. Otherwise the snapshot goes, without the clusters the other blob holds."""
    for b in list(bs.blobs.values()):
        for xname in (spec.XATTR_SNAPSHOT_PENDING_REMOVAL, spec.XATTR_SNAPSHOT_IN_PROGRESS):
            v = b.xattrs_internal.get(xname)
            if v is None or len(v) != 8:
                continue
            other = bs.blobs.get(spec.U64.unpack(v)[0])
            if other is not None and other.parent_id == b.id:
                b.xattrs_internal.pop(xname, None)
                b.xattrs_internal.pop(spec.XATTR_SNAPSHOT_IN_PROGRESS, None)
                b.data_ro_flags |= spec.FLAG_READ_ONLY
                if not b.xattrs_internal:
                    b.invalid_flags &= ~spec.FLAG_INTERNAL_XATTR
                await bs.persist(b)
            else:
                keep = set(other.clusters) if other is not None else set()
                for o in bs.blobs.values():
                    if o is not b:
                        keep.update(c for c in o.clusters if c)
                await bs._delete_plain(b, keep=keep)
            break
