"""`spydk blobcli`: look into a blobstore on a file or block device (SPDK's examples/blob/cli).

    spydk blobcli IMAGE super              the super block, decoded
    spydk blobcli IMAGE list               every blob: id, size, flags, parent, name
    spydk blobcli IMAGE show BLOBID        a blob's clusters, extent pages, xattrs
    spydk blobcli IMAGE check [--repair]   leaked / doubly owned clusters, bad CRCs

Read-only unless --repair is given; output is JSON. Exit status: 0 fine, 1 problems found
(check) or the image is not a usable blobstore, 2 usage errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from spydk.blob import BlobError, FileBsDev, bs_load, spec
from spydk.blob.blobstore import Blob, read_super
from spydk.blob.check import check, repair


def _xattr(v: bytes) -> Any:
    if len(v) == 8 and b"\0" in v.rstrip(b"\0"):
        return {"u64": int.from_bytes(v, "little"), "hex": v.hex()}
    try:
        return v.rstrip(b"\0").decode()
    except UnicodeDecodeError:
        return {"hex": v.hex()}


def _blob_json(b: Blob, detail: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": hex(b.id), "num_clusters": b.num_clusters, "allocated_clusters": b.num_allocated_clusters,
        "thin_provisioned": b.thin, "read_only": b.read_only, "extent_table": b.use_extent_table,
        "parent": hex(b.parent_id) if b.parent_id != spec.BLOBID_INVALID else None,
        "clones": [hex(c.id) for c in b.clones()], "name": _xattr(b.xattrs["name"]) if "name" in b.xattrs else None,
        "invalid_flags": b.invalid_flags, "data_ro_flags": b.data_ro_flags, "md_ro_flags": b.md_ro_flags,
    }
    if detail:
        d["md_pages"] = b.pages
        d["extent_pages"] = b.extent_pages
        d["clusters"] = b.clusters
        d["xattrs"] = {k: _xattr(v) for k, v in b.xattrs.items()}
        d["internal_xattrs"] = {k: _xattr(v) for k, v in b.xattrs_internal.items()}
    return d


async def _run(args: argparse.Namespace) -> int:
    dev = FileBsDev(args.image, writable=bool(getattr(args, "repair", False)), block_size=args.block_size)
    try:
        if args.cmd == "super":
            sb = await read_super(dev)
            out: Any = {k: (v.rstrip(b"\0").decode(errors="replace") if isinstance(v, bytes) else v)
                        for k, v in vars(sb).items()}
            out["super_blob"] = hex(sb.super_blob) if sb.super_blob != spec.BLOBID_INVALID else None
            out["crc"] = f"{sb.crc:#010x}"
        elif args.cmd == "check":
            rep = await check(dev)
            out = rep.to_json()
            if args.repair:
                await repair(dev)
                out["repaired"] = True
                out["after_repair"] = (await check(dev)).to_json()
                print(json.dumps(out, indent=2))
                return 0 if out["after_repair"]["ok"] else 1
            print(json.dumps(out, indent=2))
            return 0 if rep.ok else 1
        else:
            bs = await bs_load(dev)
            if args.cmd == "list":
                out = {"super_blob": hex(bs.super_blob) if bs.super_blob != spec.BLOBID_INVALID else None,
                       "clean": bool(bs.sb.clean), "cluster_size": bs.cluster_sz,
                       "total_data_clusters": bs.total_data_clusters, "free_clusters": bs.free_clusters,
                       "blobs": [_blob_json(b, False) for b in bs.blobs.values()]}
            else:
                bid = int(args.blobid, 0)
                b = bs.blobs.get(bid) or bs.blobs.get(spec.page_to_blobid(bid))
                if b is None:
                    print(f"blobcli: blob {args.blobid} does not exist ('list' shows the ids)", file=sys.stderr)
                    return 1
                out = _blob_json(b, True)
        print(json.dumps(out, indent=2))
        return 0
    except BlobError as e:
        print(f"blobcli: {e.message}", file=sys.stderr)
        return 1
    finally:
        dev.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="spydk blobcli", description="inspect and check a blobstore image")
    p.add_argument("image", help="file or block device holding the blobstore")
    p.add_argument("--block-size", type=int, default=512, help="block size of the device (default 512)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("super", help="dump the super block")
    sub.add_parser("list", help="list blobs")
    s = sub.add_parser("show", help="a blob's clusters and xattrs")
    s.add_argument("blobid", help="blob id (0x100000000) or its metadata page number")
    c = sub.add_parser("check", help="check for leaked or doubly owned clusters and bad CRCs")
    c.add_argument("--repair", action="store_true", help="rebuild the masks from the metadata (writes)")
    args = p.parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except OSError as e:
        print(f"blobcli: {args.image}: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
