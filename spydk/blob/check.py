"""Consistency check of a blobstore image (what `spydk blobcli check` prints).

Read-only: the super block and the masks are read as they are, every root metadata page
is parsed on its own (a bad one is reported and the rest still checked), and then:

- bad CRCs / malformed descriptors / broken chains, per blob;
- doubly owned clusters (two blobs, or one blob twice, name the same cluster);
- with a clean super block: leaked clusters (marked used, owned by nobody) and owned
  clusters the mask marks free; the same for metadata pages and blob ids.
  A dirty store (clean flag 0) has stale masks by design: its load rebuilds them.

``repair`` loads with recovery (the masks rebuilt from the metadata), then unloads
cleanly, which rewrites the masks and sets the clean flag: leaks are gone. It does not
invent data: doubly owned clusters stay reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spydk.blob import spec
from spydk.blob.blobstore import (
    Blob,
    BlobError,
    Blobstore,
    _Bits,
    _parse_blob,
    bs_load,
    read_md_region,
    read_super,
)
from spydk.blob.bsdev import BsDev
from spydk.blob.spec import PAGE_SIZE, SpecError


@dataclass
class CheckReport:
    clean: bool = True
    blobs: int = 0
    errors: list[str] = field(default_factory=list)       # corrupted metadata
    doubly_owned: dict[int, list[int]] = field(default_factory=dict)
    leaked_clusters: list[int] = field(default_factory=list)
    unmarked_clusters: list[int] = field(default_factory=list)
    leaked_md_pages: list[int] = field(default_factory=list)
    unmarked_md_pages: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.errors or self.doubly_owned or self.leaked_clusters or self.unmarked_clusters
                    or self.leaked_md_pages or self.unmarked_md_pages)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "clean": self.clean, "blobs": self.blobs, "errors": self.errors,
                "doubly_owned_clusters": {str(k): [hex(b) for b in v] for k, v in self.doubly_owned.items()},
                "leaked_clusters": self.leaked_clusters, "unmarked_clusters": self.unmarked_clusters,
                "leaked_md_pages": self.leaked_md_pages, "unmarked_md_pages": self.unmarked_md_pages}


async def check(dev: BsDev) -> CheckReport:
    rep = CheckReport()
    try:
        sb = await read_super(dev)
    except BlobError as e:
        rep.errors.append(e.message)
        return rep
    rep.clean = bool(sb.clean)
    bs = Blobstore(dev, sb)
    md_raw = await read_md_region(dev, sb)
    masks: dict[str, _Bits] = {}
    if sb.clean:
        for key, start, n, typ, bits in (
                ("pages", sb.used_page_mask_start, sb.used_page_mask_len, spec.MASK_USED_PAGES, sb.md_len),
                ("clusters", sb.used_cluster_mask_start, sb.used_cluster_mask_len, spec.MASK_USED_CLUSTERS,
                 bs.total_clusters),
                ("blobids", sb.used_blobid_mask_start, sb.used_blobid_mask_len, spec.MASK_USED_BLOBIDS,
                 sb.md_len)):
            try:
                mbits, _ = spec.unpack_mask(await dev.read(start * PAGE_SIZE, n * PAGE_SIZE), typ, bits)
                masks[key] = _Bits(bits, mbits)
            except SpecError as e:
                rep.errors.append(str(e))
    # parse every root page as a blob, whatever the masks say
    bs.used_clusters = _Bits(bs.total_clusters)
    for i in range(bs.total_clusters):
        bs.used_clusters.set(i)           # let _parse_blob accept any cluster; compared below
    blobs: list[Blob] = []
    for i in sorted(md_raw.pages):
        raw = md_raw.pages[i]
        blobid, seq, _ = spec.MD_PAGE_HEAD.unpack_from(raw)
        if seq != 0 or blobid != spec.page_to_blobid(i):
            continue
        try:
            blobs.append(_parse_blob(bs, md_raw, i))
        except SpecError as e:
            rep.errors.append(f"blob {blobid:#x}: {e}")
    if "blobids" in masks:
        for i in range(sb.md_len):
            if masks["blobids"].get(i) and not any(spec.blobid_to_page(b.id) == i for b in blobs):
                rep.errors.append(f"blob id page {i} is marked used but holds no valid blob")
    rep.blobs = len(blobs)
    owners: dict[int, list[int]] = {}
    pages: set[int] = set()
    for b in blobs:
        for c in b.clusters:
            if c:
                owners.setdefault(c, []).append(b.id)
        pages.update(b.pages)
        pages.update(p for p in b.extent_pages if p)
    rep.doubly_owned = {c: ids for c, ids in sorted(owners.items()) if len(ids) > 1}
    if "clusters" in masks:
        mask = masks["clusters"]
        md_clusters = bs.num_md_clusters
        rep.leaked_clusters = [c for c in range(md_clusters, bs.total_clusters) if mask.get(c) and c not in owners]
        rep.unmarked_clusters = [c for c in sorted(owners) if not mask.get(c)]
    if "pages" in masks:
        mask = masks["pages"]
        rep.leaked_md_pages = [p for p in range(sb.md_len) if mask.get(p) and p not in pages]
        rep.unmarked_md_pages = [p for p in sorted(pages) if not mask.get(p)]
    return rep


async def repair(dev: BsDev) -> Blobstore:
    """Rebuild the masks from the metadata and write them with a clean super block."""
    bs = await bs_load(dev, force_recover=True)
    await bs.unload()
    return bs


async def read_blob(bs: Blobstore, blob: Blob, offset: int, length: int) -> bytes:
    """A blob's bytes through its parent chain, read with metadata I/O (offline tools, tests)."""
    out = bytearray()
    cs = bs.cluster_sz
    while length > 0:
        c = offset // cs
        within = offset % cs
        n = min(length, cs - within)
        b: Blob | None = blob
        while b is not None:
            if c < b.num_clusters and b.clusters[c]:
                out += await bs.dev.read(b.clusters[c] * cs + within, n)
                break
            b = b.parent()
        else:
            out += bytes(n)
        offset += n
        length -= n
    return bytes(out)
