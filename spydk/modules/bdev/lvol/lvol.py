"""The lvol bdev module (SPDK's module/bdev/lvol): a bdev per logical volume.

Lvol stores are found by examine: when a bdev appears, its first page is read and, if it
holds a blobstore of type LVOLSTORE, the store is loaded, the base is claimed and every
volume is registered as a bdev named by its UUID with the alias "<lvs>/<lvol>". Nothing
of this is written to the JSON config (as in SPDK): the data is the configuration.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from typing import Any, cast

from spydk.bdev import (
    Bdev,
    BdevError,
    BdevEvent,
    BdevIO,
    BdevModule,
    IoStatus,
    IoType,
    open_ext,
    register_bdev,
    register_module,
    unregister_bdev,
)
from spydk.bdev.iobuf import ZERO_BUF_SIZE, ZEROES
from spydk.bdev.registry import add_alias, get_bdev, remove_alias
from spydk.blob import OP_READ, OP_UNMAP, OP_WRITE, OP_ZEROES, BdevBsDev, Blob, BlobChannel, BlobError, spec
from spydk.lvol import BSTYPE, Lvol, LvolError, LvolStore, LvsOpts
from spydk.thread import IoChannel, get_thread, io_device_register, io_device_unregister

log = logging.getLogger("spydk.lvol")

_OPS: dict[int, int] = {IoType.READ: OP_READ, IoType.WRITE: OP_WRITE, IoType.UNMAP: OP_UNMAP, IoType.WRITE_ZEROES: OP_ZEROES}


class LvsBdev:
    """An lvol store and the base bdev it lives on (SPDK's lvol_store_bdev)."""

    def __init__(self, lvs: LvolStore, dev: BdevBsDev):
        self.lvs = lvs
        self.dev = dev
        self.base = dev.bdev
        self.bdevs: dict[int, LvolBdev] = {}
        self.closing = False
        self.esnaps: dict[str, BdevBsDev] = {}     # external snapshots by bdev UUID
        self.thread = dev.md_thread
        io_device_register(self, self._create_ch, self._destroy_ch, f"lvs_{lvs.name}")

    def _create_ch(self, _dev: Any, ioch: IoChannel) -> None:
        ioch.ctx = BlobChannel(self.lvs.bs, ioch.thread)

    def _destroy_ch(self, _dev: Any, ioch: IoChannel) -> None:
        ioch.ctx.close()


class LvolModule(BdevModule):
    name = "lvol"

    def __init__(self) -> None:
        self.stores: list[LvsBdev] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    def examine_disk(self, bdev: Bdev, done: Callable[[], None]) -> None:
        for s in self.stores:       # a missing external snapshot appeared: its clones work again
            attach_esnaps(s, str(bdev.uuid))
        if isinstance(bdev, LvolBdev) or any(s.base is bdev for s in self.stores):
            done()
            return
        t = asyncio.get_running_loop().create_task(self._examine(bdev, done, get_thread()))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _examine(self, bdev: Bdev, done: Callable[[], None], thread: Any) -> None:
        from spydk.thread import set_thread
        prev = set_thread(thread)
        try:
            await self._try_load(bdev, thread)
        except Exception:
            log.exception("lvol examine of %s", bdev.name)
        finally:
            set_thread(prev)
            done()

    async def _try_load(self, bdev: Bdev, thread: Any) -> None:
        if bdev.num_blocks * bdev.block_size < spec.PAGE_SIZE or spec.PAGE_SIZE % bdev.block_size:
            return
        try:
            desc = open_ext(bdev.name, False, lambda *a: None)
        except BdevError:
            return
        dev = BdevBsDev(desc, thread)
        try:
            raw = await dev.read(0, spec.PAGE_SIZE)
        except Exception:
            raw = bytearray()
        finally:
            dev.close()
            desc.close()
        if raw[:8] != spec.SIGNATURE or spec.SUPER.unpack_from(raw)[12].rstrip(b"\0") != BSTYPE:
            return
        if bdev.claimed or any(s.base is bdev for s in module.stores):
            return  # an lvstore being created on it right now (bdev_lvol_create_lvstore)
        try:
            await load_lvs(bdev.name, thread)
        except (BlobError, BdevError) as e:
            log.error("lvol store on %s not loaded: %s", bdev.name, getattr(e, "message", e))

    def fini(self) -> Any:
        return None


module = register_module(LvolModule())


def _base_event(ev: BdevEvent, bdev: Bdev, lb: Any) -> None:
    if ev is BdevEvent.REMOVE and lb and lb[0] is not None:
        s: LvsBdev = lb[0]
        if not s.closing:
            t = asyncio.get_running_loop().create_task(unload_lvs(s))
            module.tasks.add(t)
            t.add_done_callback(module.tasks.discard)


def _esnap_event(ev: BdevEvent, bdev: Bdev, arg: tuple[LvsBdev, str]) -> None:
    if ev is BdevEvent.REMOVE:
        s, u = arg
        dev = s.esnaps.pop(u, None)
        if dev is None:
            return
        for b in s.lvs.bs.blobs.values():
            if b.esnap is dev:
                b.esnap = None          # degraded: reads of its unwritten clusters fail
        log.warning("lvstore %s: external snapshot %s removed; its clones are degraded", s.lvs.name, bdev.name)
        dev.close()
        dev.desc.close()


def esnap_dev(s: LvsBdev, uuid: str) -> BdevBsDev | None:
    """The store's read-only handle on the bdev with this UUID (None if absent)."""
    dev = s.esnaps.get(uuid)
    if dev is not None:
        return dev
    b = get_bdev(uuid)
    if b is None:
        return None
    try:
        desc = open_ext(b.name, False, _esnap_event, (s, uuid))
    except BdevError:
        return None
    dev = BdevBsDev(desc, s.thread)
    s.esnaps[uuid] = dev
    return dev


def attach_esnaps(s: LvsBdev, only: str | None = None) -> None:
    for b in s.lvs.bs.blobs.values():
        eid = b.esnap_id
        if eid is None or b.esnap is not None:
            continue
        u = eid.split(b"\0", 1)[0].decode(errors="replace")
        if only is not None and u != only:
            continue
        b.esnap = esnap_dev(s, u)


def _close_esnaps(s: LvsBdev) -> None:
    for dev in s.esnaps.values():
        dev.close()
        dev.desc.close()
    s.esnaps.clear()


def _open_base(name: str, thread: Any) -> tuple[BdevBsDev, list[Any]]:
    holder: list[Any] = [None]
    desc = open_ext(name, True, _base_event, holder)
    try:
        desc.bdev.claim(module, desc)
    except BdevError:
        desc.close()
        raise
    return BdevBsDev(desc, thread), holder


def _close_base(dev: BdevBsDev) -> None:
    dev.close()
    try:
        dev.bdev.release_claim(module)
    except BdevError:
        pass
    dev.desc.close()


def _check_lvs_name(name: str) -> None:
    for s in module.stores:
        if s.lvs.name == name:
            raise LvolError(errno.EEXIST, f"lvstore {name!r} already exists (on bdev {s.base.name!r}): "
                                          "choose another lvs_name")


async def load_lvs(base_name: str, thread: Any) -> LvsBdev:
    dev, holder = _open_base(base_name, thread)
    try:
        lvs = await LvolStore.load(dev)
        _check_lvs_name(lvs.name)
    except BaseException:
        _close_base(dev)
        raise
    s = LvsBdev(lvs, dev)
    holder[0] = s
    module.stores.append(s)
    attach_esnaps(s)
    for lv in lvs.lvols.values():
        try:
            _register_lvol(s, lv)
        except BdevError as e:
            log.error("lvol %s: %s", lv.alias, e.message)
    return s


async def create_lvs(base_name: str, opts: LvsOpts, thread: Any) -> LvsBdev:
    _check_lvs_name(opts.name)
    dev, holder = _open_base(base_name, thread)
    try:
        lvs = await LvolStore.create(dev, opts)
    except BaseException:
        _close_base(dev)
        raise
    s = LvsBdev(lvs, dev)
    holder[0] = s
    module.stores.append(s)
    return s


async def _unregister_all(s: LvsBdev) -> None:
    futs = []
    for b in list(s.bdevs.values()):
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            unregister_bdev(b, lambda rc, fut=fut: None if fut.done() else fut.set_result(rc))  # type: ignore[misc]
            futs.append(fut)
        except BdevError:
            pass
    for f in futs:
        await f


async def _drop_io_device(s: LvsBdev) -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    io_device_unregister(s, lambda _d: None if fut.done() else fut.set_result(None))
    await fut


async def unload_lvs(s: LvsBdev) -> None:
    """Unregister the volumes, then unload the store cleanly and release the base."""
    s.closing = True
    await _unregister_all(s)
    await _drop_io_device(s)
    try:
        await s.lvs.unload()
    except Exception as e:
        log.error("lvstore %s: unload failed: %s", s.lvs.name, e)
    _close_esnaps(s)
    if s in module.stores:
        module.stores.remove(s)
    _close_base(s.dev)


async def destroy_lvs(s: LvsBdev) -> None:
    s.closing = True
    await _unregister_all(s)
    await _drop_io_device(s)
    await s.lvs.destroy()
    _close_esnaps(s)
    if s in module.stores:
        module.stores.remove(s)
    _close_base(s.dev)


def find_lvs(uuid: str | None = None, lvs_name: str | None = None) -> LvsBdev:
    if (uuid is None) == (lvs_name is None):
        raise LvolError(errno.EINVAL, "give exactly one of uuid and lvs_name")
    for s in module.stores:
        if (uuid is not None and s.lvs.uuid == uuid) or (lvs_name is not None and s.lvs.name == lvs_name):
            return s
    raise LvolError(errno.ENODEV, f"lvstore {uuid or lvs_name!r} does not exist "
                                  "(bdev_lvol_get_lvstores lists them)")


def find_lvol(name: str) -> LvolBdev:
    b = get_bdev(name)
    if not isinstance(b, LvolBdev):
        raise LvolError(errno.ENODEV, f"lvol {name!r} does not exist: give its bdev name (UUID) or "
                                      "alias <lvs_name>/<lvol_name>")
    return b


def _register_lvol(s: LvsBdev, lv: Lvol) -> LvolBdev:
    b = LvolBdev(s, lv)
    register_bdev(b)
    s.bdevs[lv.blob.id] = b
    return b


def register_new_lvol(s: LvsBdev, lv: Lvol) -> LvolBdev:
    return _register_lvol(s, lv)


class LvolBdev(Bdev):
    zcopy_read = False

    def __init__(self, s: LvsBdev, lv: Lvol):
        bs = s.lvs.bs
        super().__init__(lv.unique_id, module, bs.block_size, lv.blob.num_io_units(),
                         uuid=lv.uuid or None, product_name="Logical Volume", aliases=[lv.alias])
        self.store = s
        self.lvol = lv
        self.blob = bs.open_blob(lv.blob.id)
        self.io_device = s
        self._done = self._blob_done
        self._stacked = s.dev.desc.stacked_rw
        self._stacked_batch = s.dev.desc.stacked_batch
        self._base = s.dev.bdev
        self._cluster_blocks = bs.cluster_blocks

    def io_type_supported(self, io_type: int) -> bool:
        if io_type in (IoType.WRITE, IoType.UNMAP, IoType.WRITE_ZEROES):
            return not self.blob.read_only
        return io_type in (IoType.READ, IoType.FLUSH, IoType.RESET)

    def submit_request(self, ctx: BlobChannel, io: BdevIO) -> int | None:
        t = io.type
        blob = self.blob
        if (t == _READ or t == _WRITE) and not blob.frozen:
            # Fast path: an I/O inside one cluster whose data lives in an allocated cluster
            # (of this volume or, for a read, of the nearest ancestor holding it) goes
            # straight to the base bdev; when the base answers at once (malloc), this I/O
            # is finished here too, with no request object, callback or second batch.
            cbk = self._cluster_blocks
            off = io.offset_blocks
            c = off // cbk
            within = off - c * cbk
            n = io.num_blocks
            if within + n <= cbk:
                try:
                    phys = blob.clusters[c]
                except IndexError:  # past a thin blob's last cluster (no len() call per I/O)
                    phys = 0
                if t == _READ:
                    if not phys:
                        phys = _read_source(blob, c)
                        if not phys:        # nothing allocated below: zeroes
                            _zero_fill(io.iovs)  # type: ignore[arg-type]
                            return _SUCCESS
                elif blob.data_ro_flags:
                    phys = 0                # read-only: the blob refuses it below
                if phys > 0:
                    rc = self._stacked(ctx.dev_ch, t, io.iovs, phys * cbk + within, n,  # type: ignore[arg-type]
                                       _fast_done, io)
                    if rc > 0:
                        return _SUCCESS
                    if rc == 0:
                        blob.inflight += 1  # completes later through _fast_done
                        return None
                    return _NOMEM if rc == _ENOMEM else _FAILED
        op = _OPS.get(t)
        if op is None:
            return IoStatus.SUCCESS  # FLUSH and RESET: nothing cached, nothing queued here
        rc = self.blob.submit(ctx, op, io.iovs, io.offset_blocks, io.num_blocks, self._done, io)  # type: ignore[arg-type]
        if rc:
            return IoStatus.NOMEM if rc == -errno.ENOMEM else IoStatus.FAILED
        return None

    def submit_batch(self, ctx: BlobChannel, ios: list[BdevIO]) -> list[BdevIO] | None:
        # BdevDesc.rw_batch: READs or WRITEs of one type and size, one buffer each. Those
        # the fast path of submit_request would send to an allocated cluster go to the base
        # bdev as one batch when it takes batches during the call (malloc, null); unwritten
        # reads with nothing below are zeroed here. The rest (first writes that allocate,
        # I/O across a cluster boundary, external snapshots, a base that answers later, a
        # frozen or read-only blob) is handed back untouched, for submit_request one by one.
        blob = self.blob
        read = ios[0].type == _READ
        if blob.frozen or not (read or not blob.data_ro_flags):
            return ios
        cbk = self._cluster_blocks
        clusters = blob.clusters
        ncl = len(clusters)
        base_cl = self._base.num_blocks // cbk  # a mapped cluster past this is corrupt: not taken
        if read:  # for unallocated clusters: the parent's map, or zeroes when nothing is below
            parent = blob.parent()
            below = parent is not None or blob.is_esnap_clone
            pcl = parent.clusters if parent is not None else []
            npcl = len(pcl)
            nbytes = ios[0].nbytes
            zero = ZEROES[:nbytes] if nbytes <= ZERO_BUF_SIZE else None
        own: list[int] = []
        keep = own.append
        take = ios  # until one is left out; then the list of those taken
        rest: list[BdevIO] = []
        for io in ios:
            off = io.offset_blocks
            c = off // cbk
            within = off - c * cbk
            if within + io.num_blocks <= cbk:
                phys = clusters[c] if c < ncl else 0
                if not phys and read:
                    if below:
                        phys = pcl[c] if c < npcl else 0
                        if not phys:
                            phys = _read_source(blob, c)
                    if not phys:
                        if zero is not None:
                            io._iov1[0][:] = zero  # rw_batch: one buffer of nbytes
                        else:
                            _zero_fill(io.iovs)  # type: ignore[arg-type]
                        io.status = _SUCCESS
                        if take is ios:
                            take = ios[:len(own)]
                        continue
                if 0 < phys < base_cl:
                    keep(off)
                    io.offset_blocks = phys * cbk + within
                    if take is not ios:
                        take.append(io)
                    continue
            rest.append(io)
            if take is ios:
                take = ios[:len(own)]
        if own:
            left = self._stacked_batch(ctx.dev_ch, take, own)
            if left < 0:
                rest += take
            elif left:
                rest += [io for io in take if io.status == _PENDING]
        return rest or None

    @staticmethod
    def _blob_done(ok: bool, io: BdevIO) -> None:
        io.complete(IoStatus.SUCCESS if ok else IoStatus.FAILED)

    def destruct(self, done: Callable[[int], Any]) -> None:
        self.store.lvs.bs.close_blob(self.blob)
        self.store.bdevs.pop(self.blob.id, None)
        done(0)

    def rename_alias(self, new_alias: str) -> None:
        for a in list(self.aliases):
            remove_alias(self, a)
        add_alias(self, new_alias)

    def dump_info_json(self) -> dict[str, Any]:
        lv = self.lvol
        lvs = self.store.lvs
        blob = self.blob
        d: dict[str, Any] = {"lvol_store_uuid": lvs.uuid, "base_bdev": self.store.base.name,
                             "thin_provision": blob.thin, "snapshot": blob.is_snapshot, "clone": blob.is_clone}
        if blob.is_clone:
            p = lvs.lvols.get(blob.parent_id)
            if p is not None:
                d["base_snapshot"] = p.name
        if blob.is_snapshot:
            d["clones"] = [lvs.lvols[c.id].name for c in blob.clones() if c.id in lvs.lvols]
        d["esnap_clone"] = blob.is_esnap_clone
        eid = blob.esnap_id
        if eid is not None and eid.endswith(b"\0"):
            d["external_snapshot_name"] = eid[:-1].decode(errors="replace")
        del lv
        return {"lvol": d}

    def write_config_json(self) -> None:
        return None  # lvstores are found by examine, not replayed


_READ = int(IoType.READ)
_WRITE = int(IoType.WRITE)
_SUCCESS = int(IoStatus.SUCCESS)
_FAILED = int(IoStatus.FAILED)
_NOMEM = int(IoStatus.NOMEM)
_PENDING = int(IoStatus.PENDING)
_ENOMEM = -errno.ENOMEM


def _read_source(blob: Blob, c: int) -> int:
    """Where cluster c of an unallocated part of ``blob`` reads from: the store cluster of
    the nearest ancestor holding it, 0 when nothing below holds it (zeroes), -1 when an
    external snapshot does (the blob's general path reads it)."""
    last = blob
    p = blob.parent()
    while p is not None:
        last = p
        pc = p.clusters
        if c >= len(pc):
            break
        phys = pc[c]
        if phys:
            return phys
        p = p.parent()
    return -1 if last.is_esnap_clone else 0


def _zero_fill(iovs: list[memoryview]) -> None:
    for v in iovs:
        n = len(v)
        v[:] = ZEROES[:n] if n <= ZERO_BUF_SIZE else bytes(n)


def _fast_done(child: BdevIO, ok: bool, io: BdevIO) -> None:
    blob = cast(LvolBdev, io.bdev).blob
    blob.inflight -= 1
    if not blob.inflight and blob._drained is not None:
        blob._io_done_last()
    io.complete(_SUCCESS if ok else _FAILED)


def lvol_json(b: LvolBdev) -> dict[str, Any]:
    lv = b.lvol
    lvs = b.store.lvs
    return {"alias": lv.alias, "uuid": lv.uuid, "name": lv.name, "is_thin_provisioned": b.blob.thin,
            "is_snapshot": b.blob.is_snapshot, "is_clone": b.blob.is_clone,
            "is_esnap_clone": b.blob.is_esnap_clone, "is_degraded": b.blob.degraded,
            "lvs": {"name": lvs.name, "uuid": lvs.uuid}}


class ShallowCopy:
    """bdev_lvol_start_shallow_copy: a read-only volume's own allocated clusters (not what
    it reads from its parents) copied to another bdev at the same offsets, in the
    background; bdev_lvol_check_shallow_copy reports progress."""

    _next_id = 0

    def __init__(self, src: LvolBdev, dst: Bdev) -> None:
        ShallowCopy._next_id += 1
        self.operation_id = ShallowCopy._next_id
        self.src = src
        self.clusters = [c for c in src.blob.clusters if c]
        self.total = len(self.clusters)
        self.copied = 0
        self.error = 0
        self.done = False
        self.desc = open_ext(dst.name, True, lambda *a: None)
        self.dev = BdevBsDev(self.desc, src.store.thread)

    async def run(self) -> None:
        bs = self.src.store.lvs.bs
        blob = self.src.blob
        cs = bs.cluster_sz
        try:
            for i, c in enumerate(blob.clusters):
                if not c:
                    continue
                data = await bs.dev.read(c * cs, cs)
                await self.dev.write(i * cs, data)
                self.copied += 1
        except Exception as e:  # noqa: BLE001 - reported by check_shallow_copy
            self.error = getattr(e, "errno", None) or errno.EIO
            log.error("shallow copy %d of %s: %s", self.operation_id, self.src.lvol.alias, e)
        finally:
            self.dev.close()
            self.desc.close()
            self.done = True

    def status(self) -> dict[str, Any]:
        d: dict[str, Any] = {"copied_clusters": self.copied, "total_clusters": self.total}
        if not self.done:
            d["state"] = "in progress"
        elif not self.error:
            d["state"] = "complete"
        else:
            d["state"] = "error"
            d["error"] = os.strerror(self.error)
        return d


shallow_copies: dict[int, ShallowCopy] = {}


def start_shallow_copy(src: LvolBdev, dst_name: str) -> ShallowCopy:
    dst = get_bdev(dst_name)
    if dst is None:
        raise LvolError(errno.ENODEV, f"bdev {dst_name!r} does not exist")
    if not src.blob.read_only:
        raise LvolError(errno.EINVAL, f"lvol {src.lvol.alias!r} is not read-only: snapshot it or run "
                                      "bdev_lvol_set_read_only first")
    if dst.block_size != src.block_size:
        raise LvolError(errno.EINVAL, f"bdev {dst_name!r} has {dst.block_size}-byte blocks, lvol "
                                      f"{src.lvol.alias!r} {src.block_size}-byte ones")
    if dst.num_blocks * dst.block_size < src.blob.num_clusters * src.store.lvs.bs.cluster_sz:
        raise LvolError(errno.EINVAL, f"bdev {dst_name!r} is smaller than lvol {src.lvol.alias!r}")
    if dst is src or isinstance(dst, LvolBdev) and dst.store is src.store:
        raise LvolError(errno.EINVAL, "the destination must be a bdev outside the lvol's store")
    op = ShallowCopy(src, dst)
    shallow_copies[op.operation_id] = op
    t = asyncio.get_running_loop().create_task(op.run())
    module.tasks.add(t)
    t.add_done_callback(module.tasks.discard)
    return op
