"""`spydk blobcli` on an image: super, list, show, check (a leak, a doubly owned cluster,
a bad CRC), --repair."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from spydk.blob import BlobOpts, BsOpts, bs_init

MIB = 1024 * 1024


def cli(*args: str) -> tuple[int, Any, str]:
    r = subprocess.run([sys.executable, "-m", "spydk.apps.main", "blobcli", *args], capture_output=True,
                       text=True, timeout=60)
    try:
        out = json.loads(r.stdout) if r.stdout.strip() else None
    except json.JSONDecodeError:
        out = r.stdout
    return r.returncode, out, r.stderr


def _image(benv: Any, tmp: Path) -> tuple[Path, Any]:
    dev = benv.malloc("M0", 16)
    bs = benv.run(bs_init(dev, BsOpts(cluster_sz=MIB, bstype=b"LVOLSTORE")))
    t = benv.run(bs.create_blob(BlobOpts(num_clusters=4, thin_provision=True, xattrs={"name": b"thin\0"})))
    benv.write(bs, t, MIB, b"d" * 4096)
    benv.run(bs.create_snapshot(t.id, {"name": b"snap\0"}))
    benv.run(bs.create_blob(BlobOpts(num_clusters=2, xattrs={"name": b"thick\0"})))
    benv.run(bs.unload())
    img = tmp / "store.img"
    img.write_bytes(bytes(benv.run(dev.read(0, 16 * MIB))))
    return img, bs


def test_blobcli_views_and_check(benv: Any, tmp_path: Path) -> None:
    img, bs = _image(benv, tmp_path)
    before = img.read_bytes()
    rc, sb, _ = cli(str(img), "super")
    assert rc == 0 and sb["version"] == 3 and sb["clean"] == 1 and sb["bstype"] == "LVOLSTORE"
    rc, lst, _ = cli(str(img), "list")
    names = {b["name"]: b for b in lst["blobs"]}
    assert set(names) == {"thin", "snap", "thick"}
    assert names["thin"]["parent"] == names["snap"]["id"] and names["snap"]["read_only"]
    rc, show, _ = cli(str(img), "show", names["thick"]["id"])
    assert rc == 0 and show["xattrs"] == {"name": "thick"} and len(show["clusters"]) == 2
    rc, rep, _ = cli(str(img), "check")
    assert rc == 0 and rep["ok"] and rep["blobs"] == 3
    assert img.read_bytes() == before                     # read-only
    # a leak: mark a free cluster used in the on-disk mask
    data = bytearray(before)
    mask_off = bs.sb.used_cluster_mask_start * 4096 + 5
    data[mask_off + 1] |= 0x80                           # cluster 15
    # a doubly owned cluster: the thick blob's extent page names the snapshot's cluster
    snap_cluster = next(c for b in bs.blobs.values() if b.read_only for c in b.clusters if c)
    thick = next(b for b in bs.blobs.values() if b.xattrs.get("name") == b"thick\0")
    ep = (bs.md_start + thick.extent_pages[0]) * 4096
    struct.pack_into("<I", data, ep + 25, snap_cluster)
    struct.pack_into("<I", data, ep + 4092, 0)
    import crc32c
    struct.pack_into("<I", data, ep + 4092, crc32c.crc32c(bytes(data[ep:ep + 4092])))
    img.write_bytes(data)
    rc, rep, _ = cli(str(img), "check")
    # cluster 15, and the thick blob's first cluster that nothing names any more
    assert rc == 1 and rep["leaked_clusters"] == sorted([15, thick.clusters[0]])
    assert str(snap_cluster) in rep["doubly_owned_clusters"] and not rep["errors"]
    # a bad CRC on a root page
    data[bs.md_start * 4096 + 100] ^= 4
    img.write_bytes(data)
    rc, rep, _ = cli(str(img), "check")
    assert rc == 1 and any("CRC mismatch" in e for e in rep["errors"])
    rc, _, err = cli(str(img), "list")
    assert rc == 1 and "CRC mismatch" in err
    # repair: rebuilds the masks from the metadata; the leak goes, the doubly owned cluster stays
    data[bs.md_start * 4096 + 100] ^= 4
    img.write_bytes(data)
    rc, rep, _ = cli(str(img), "check", "--repair")
    assert rep["repaired"] and rep["after_repair"]["leaked_clusters"] == []
    assert rep["after_repair"]["doubly_owned_clusters"]


def test_blobcli_refuses_garbage(tmp_path: Path) -> None:
    img = tmp_path / "junk.img"
    img.write_bytes(b"\x5a" * 65536)
    rc, _, err = cli(str(img), "super")
    assert rc == 1 and "no blobstore here" in err
