"""The blobstore on a malloc bdev: byte-level layout of the super block, masks and
metadata pages (SPDK v24.01's format), and the blob operations."""
from __future__ import annotations

import struct
from typing import Any

import crc32c
import pytest

from spydk.blob import BlobError, BlobOpts, BsOpts, bs_init, bs_load, spec

MIB = 1024 * 1024


def raw(benv: Any, dev: Any, offset: int, length: int) -> bytes:
    return bytes(benv.run(dev.read(offset, length)))


def test_super_block_bytes(benv: Any) -> None:
    dev = benv.malloc("M0", 64)                     # 64 clusters of 1 MiB
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB, bstype=b"LVOLSTORE")))
    sb = raw(benv, dev, 0, 4096)
    assert sb[:8] == b"SPDKBLOB"
    version, length, clean, super_blob, cluster_size = struct.unpack_from("<IIIQI", sb, 8)
    assert (version, length, clean, super_blob, cluster_size) == (3, 4096, 0, 2**64 - 1, MIB)
    # mask regions: 1 page each (64 bits + 5-byte header), metadata region right after
    assert struct.unpack_from("<6I", sb, 32) == (1, 1, 2, 1, 4, 64)
    assert sb[56:72] == b"LVOLSTORE".ljust(16, b"\0")
    assert struct.unpack_from("<IIQI", sb, 72) == (3, 1, 64 * MIB, 512)
    assert sb[92:4092] == bytes(4000)
    assert struct.unpack_from("<I", sb, 4092)[0] == crc32c.crc32c(sb[:4092])
    benv.run(bs.unload())
    sb = raw(benv, dev, 0, 4096)
    assert struct.unpack_from("<I", sb, 16)[0] == 1            # clean after unload
    used_clusters = raw(benv, dev, 2 * 4096, 4096)
    assert used_clusters[:5] == bytes([1]) + struct.pack("<I", 64)
    assert used_clusters[5] == 0b1                             # cluster 0 holds the metadata
    pages = raw(benv, dev, 1 * 4096, 4096)
    assert pages[:5] == bytes([0]) + struct.pack("<I", 64) and not any(pages[5:])


def test_md_page_bytes_and_chain(benv: Any) -> None:
    dev = benv.malloc("M0", 64)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB)))
    # thick, 3 clusters, with an xattr: flags, xattr, extent table; extent page at md page 1
    b = benv.run(bs.create_blob(BlobOpts(num_clusters=3, xattrs={"name": b"vol\0"})))
    assert b.id == (1 << 32) | 0
    md0 = bs.md_start * 4096
    page = raw(benv, dev, md0, 4096)
    blobid, seq, _ = struct.unpack_from("<QII", page)
    assert (blobid, seq) == (b.id, 0)
    t, ln, inv, dro, mro = struct.unpack_from("<BIQQQ", page, 16)
    assert (t, ln, inv, dro, mro) == (3, 24, spec.FLAG_EXTENT_TABLE, 0, 0)
    t, ln, nl, vl = struct.unpack_from("<BIHH", page, 45)
    assert (t, ln, nl, vl) == (2, 12, 4, 4) and page[54:62] == b"namevol\0"
    t, ln, nc = struct.unpack_from("<BIQ", page, 62)
    assert (t, ln, nc) == (5, 16, 3)
    assert struct.unpack_from("<II", page, 75) == (1, 1)       # extent page at md page 1
    nxt, crc = struct.unpack_from("<II", page, 4088)
    assert nxt == 0xFFFFFFFF and crc == crc32c.crc32c(page[:4092])
    ep = raw(benv, dev, md0 + 4096, 4096)
    assert struct.unpack_from("<QII", ep)[:2] == (b.id, 0)
    t, ln, start = struct.unpack_from("<BII", ep, 16)
    assert (t, ln, start) == (6, 16, 0)
    assert struct.unpack_from("<3I", ep, 25) == (1, 2, 3)     # clusters 1..3 (0 is metadata)
    # many xattrs spill into a chain; non-root pages go to free pages
    for i in range(20):
        b.set_xattr(f"x{i}", bytes([i]) * 300)
    benv.run(bs.persist(b))
    assert len(b.pages) == 2 and b.pages[0] == 0
    page = raw(benv, dev, md0, 4096)
    assert struct.unpack_from("<I", page, 4088)[0] == b.pages[1]
    p2 = raw(benv, dev, md0 + b.pages[1] * 4096, 4096)
    assert struct.unpack_from("<QI", p2) == (b.id, 1)
    benv.run(bs.unload())
    bs2 = benv.run(bs_load(dev))
    b2 = bs2.blobs[b.id]
    assert b2.xattrs == b.xattrs and b2.clusters == [1, 2, 3] and b2.pages == b.pages
    # a dirty load (force_recover) rebuilds the same masks
    bs3 = benv.run(bs_load(dev, force_recover=True))
    assert bs3.used_md_pages.b == bs2.used_md_pages.b and bs3.used_clusters.b == bs2.used_clusters.b
    assert bs3.used_blobids.b == bs2.used_blobids.b


def test_rle_blobs_load(benv: Any) -> None:
    """Blobs written with extent RLE descriptors (SPDK's use_extent_table=false) load."""
    dev = benv.malloc("M0", 64)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB)))
    b = benv.run(bs.create_blob(BlobOpts(num_clusters=5, use_extent_table=False, thin_provision=True)))
    benv.write(bs, b, 2 * MIB, b"r" * 4096)
    benv.run(bs.unload())
    page = raw(benv, dev, bs.md_start * 4096, 4096)
    t, ln = struct.unpack_from("<BI", page, 45)
    assert t == 1 and struct.unpack_from("<6I", page, 50) == (0, 2, 1, 1, 0, 2)
    bs2 = benv.run(bs_load(dev))
    assert bs2.blobs[b.id].clusters == [0, 0, 1, 0, 0]
    assert benv.read(bs2, bs2.blobs[b.id], 2 * MIB, 4096) == b"r" * 4096


def test_chain_ten_deep_and_deletes(benv: Any) -> None:
    dev = benv.malloc("M0", 64)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB)))
    v = benv.run(bs.create_blob(BlobOpts(num_clusters=12, thin_provision=True)))
    for i in range(10):
        benv.write(bs, v, i * MIB, bytes([65 + i]) * 512)
        benv.run(bs.create_snapshot(v.id))
    chain = []
    p = v.parent()
    while p is not None:
        chain.append(p)
        p = p.parent()
    assert len(chain) == 10
    for i in range(10):
        assert benv.read(bs, v, i * MIB, 512) == bytes([65 + i]) * 512
    benv.run(bs.unload())
    bs = benv.run(bs_load(dev))
    v = bs.blobs[v.id]
    for i in range(10):
        assert benv.read(bs, v, i * MIB, 512) == bytes([65 + i]) * 512
    top = v.parent()
    assert top is not None
    c = benv.run(bs.create_clone(top.id))
    with pytest.raises(BlobError) as ei:
        benv.run(bs.delete_blob(top.id))
    assert "2 clones" in ei.value.message
    bs.open_blob(c.id)
    with pytest.raises(BlobError) as ei:
        benv.run(bs.delete_blob(c.id))
    assert "is open" in ei.value.message
    bs.close_blob(c)
    benv.run(bs.delete_blob(c.id))
    # deleting a snapshot with one clone merges it: the data stays readable
    snap = v.parent()
    assert snap is not None and len(snap.clones()) == 1
    benv.run(bs.delete_blob(snap.id))
    assert len([p for p in bs.blobs.values()]) == 10        # v and nine snapshots
    for i in range(10):
        assert benv.read(bs, v, i * MIB, 512) == bytes([65 + i]) * 512
    used = bs.used_clusters.count()
    benv.run(bs.unload())
    bs2 = benv.run(bs_load(dev, force_recover=True))
    assert bs2.used_clusters.count() == used                  # nothing leaked
    benv.run(bs2.inflate(v.id))
    v2 = bs2.blobs[v.id]
    assert not v2.thin and v2.parent_id == spec.BLOBID_INVALID and all(v2.clusters)
    for i in range(10):
        assert benv.read(bs2, v2, i * MIB, 512) == bytes([65 + i]) * 512


def test_resize_and_thick_space(benv: Any) -> None:
    dev = benv.malloc("M0", 16)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB)))
    free = bs.free_clusters
    with pytest.raises(BlobError) as ei:
        benv.run(bs.create_blob(BlobOpts(num_clusters=free + 1)))
    assert "thin" in ei.value.message
    b = benv.run(bs.create_blob(BlobOpts(num_clusters=2)))
    benv.run(bs.resize(b, 6))
    assert bs.free_clusters == free - 6
    benv.run(bs.resize(b, 1))
    assert bs.free_clusters == free - 1
    benv.run(bs.unload())
    bs2 = benv.run(bs_load(dev))
    assert bs2.blobs[b.id].num_clusters == 1 and bs2.free_clusters == free - 1


def test_too_small_device(benv: Any) -> None:
    dev = benv.malloc("M0", 1)
    with pytest.raises(BlobError) as ei:
        benv.run(bs_init(dev, BsOpts(cluster_sz=MIB)))
    assert "smaller cluster_sz" in ei.value.message
