"""Corrupted or truncated metadata is refused with a clear error, and nothing is written;
the metadata page parser survives any bytes (hypothesis)."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.blob import BlobError, BlobOpts, BsOpts, FileBsDev, bs_init, bs_load, spec
from spydk.blob.spec import SpecError

MIB = 1024 * 1024


def _image(benv: Any, tmp: Path) -> tuple[Path, int]:
    """A 16 MiB store image with a thin and a thick blob, unloaded cleanly."""
    dev = benv.malloc("M0", 16)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB, bstype=b"LVOLSTORE")))
    t = benv.run(bs.create_blob(BlobOpts(num_clusters=4, thin_provision=True, xattrs={"name": b"t\0"})))
    benv.write(bs, t, MIB, b"d" * 4096)
    benv.run(bs.create_blob(BlobOpts(num_clusters=2, xattrs={"name": b"k\0"})))
    benv.run(bs.unload())
    img = tmp / "store.img"
    img.write_bytes(bytes(benv.run(dev.read(0, 16 * MIB))))
    return img, bs.md_start


def _load_file(benv: Any, path: Path, **kw: Any) -> Any:
    dev = FileBsDev(str(path), writable=False)
    try:
        return benv.run(bs_load(dev, **kw))
    finally:
        dev.close()


def test_clean_image_loads_read_only(benv: Any, tmp_path: Path) -> None:
    img, _ = _image(benv, tmp_path)
    bs = _load_file(benv, img)
    assert len(bs.blobs) == 2 and bs.dev.writes == 0


@pytest.mark.parametrize("where,what", [
    (0, "signature"), (8, "version"), (100, "CRC"), (4092, "CRC"),
])
def test_corrupted_super_block_refused(benv: Any, tmp_path: Path, where: int, what: str) -> None:
    img, _ = _image(benv, tmp_path)
    data = bytearray(img.read_bytes())
    data[where] ^= 0x40
    img.write_bytes(data)
    before = img.read_bytes()
    with pytest.raises(BlobError) as ei:
        _load_file(benv, img)
    assert what in ei.value.message
    assert img.read_bytes() == before


def test_truncated_device_refused(benv: Any, tmp_path: Path) -> None:
    img, _ = _image(benv, tmp_path)
    data = img.read_bytes()
    img.write_bytes(data[:8 * MIB])
    with pytest.raises(BlobError) as ei:
        _load_file(benv, img)
    assert "truncated" in ei.value.message
    img.write_bytes(data[:1000])
    with pytest.raises(BlobError) as ei:
        _load_file(benv, img)
    assert "too small" in ei.value.message


@pytest.mark.parametrize("force_recover", [False, True])
def test_corrupted_md_page_refused_or_skipped(benv: Any, tmp_path: Path, force_recover: bool) -> None:
    img, md_start = _image(benv, tmp_path)
    data = bytearray(img.read_bytes())
    data[md_start * 4096 + 50] ^= 1                 # a bit flip in the first blob's root page
    img.write_bytes(data)
    if force_recover:
        # a dirty load skips the page with a bad CRC (as SPDK does): the blob is gone
        bs = _load_file(benv, img, force_recover=True)
        assert len(bs.blobs) == 1
    else:
        with pytest.raises(BlobError) as ei:
            _load_file(benv, img)
        assert "CRC mismatch" in ei.value.message and "blob 0x100000000" in ei.value.message


def test_wrong_bstype_refused(benv: Any, tmp_path: Path) -> None:
    img, _ = _image(benv, tmp_path)
    dev = FileBsDev(str(img))
    with pytest.raises(BlobError) as ei:
        benv.run(bs_load(dev, b"BLOBFS"))
    dev.close()
    assert "LVOLSTORE" in ei.value.message


def _page(descriptors: bytes) -> bytes:
    return spec.MdPage(1 << 32, 0, descriptors[:spec.DESCRIPTORS_SIZE]).pack()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=spec.DESCRIPTORS_SIZE))
def test_md_page_parser_fuzz(data: bytes) -> None:
    page = spec.MdPage.unpack(_page(data))
    try:
        spec.parse_descriptors(page.descriptors)
        spec.parse_descriptors(page.descriptors, strict=True)
    except SpecError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 5000), st.binary(max_size=64)), max_size=30))
def test_md_page_parser_fuzz_structured(items: list[tuple[int, int, bytes]]) -> None:
    """Descriptors with plausible types and arbitrary lengths."""
    body = b"".join(struct.pack("<BI", t, ln) + payload for t, ln, payload in items)
    try:
        spec.parse_descriptors(body[:spec.DESCRIPTORS_SIZE])
    except SpecError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=92, max_size=92), st.booleans())
def test_super_block_parser_fuzz(head: bytes, valid_crc: bool) -> None:
    """Random header fields behind a good signature and version, with a CRC that matches
    (so the geometry checks run) or not: SpecError or a geometry that fits the device."""
    page = bytearray(b"SPDKBLOB" + struct.pack("<I", 3) + head[12:] + bytes(4004))
    if valid_crc:
        struct.pack_into("<I", page, 4092, spec.page_crc(page))
    try:
        sb = spec.SuperBlock.unpack(page)
        sb.check_geometry(64 * MIB, 512)
    except SpecError:
        return
    assert sb.md_start + sb.md_len <= (sb.size or 64 * MIB) // 4096


def test_descriptor_roundtrip() -> None:
    w = spec.DescWriter()
    w.add(spec.flags_desc(spec.Flags(5, 1, 2)))
    w.add(spec.xattr_desc("name", b"abc\0", False))
    w.add(spec.xattr_desc("SNAP", struct.pack("<Q", 7), True))
    spec.write_extent_table(w, 1500, [9, 0, 0])
    d = spec.parse_descriptors(bytes(w.areas[0]), strict=True)
    assert d.flags == spec.Flags(5, 1, 2)
    assert d.xattrs == [("name", b"abc\0")] and d.xattrs_internal == [("SNAP", struct.pack("<Q", 7))]
    assert d.extent_tables[0].num_clusters == 1500 and d.extent_tables[0].pages == [(9, 1), (0, 2)]
