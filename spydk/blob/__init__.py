"""The blobstore (SPDK's lib/blob), in SPDK v24.01's on-disk format.

    bs = await bs_init(BdevBsDev(desc), BsOpts(cluster_sz=4 << 20, bstype=b"LVOLSTORE"))
    blob = await bs.create_blob(BlobOpts(num_clusters=4, thin_provision=True, xattrs={"name": b"v\\0"}))
    snap = await bs.create_snapshot(blob.id)
    await bs.unload()
    bs = await bs_load(BdevBsDev(desc))

See docs/lvol.md and spydk/blob/blobstore.py for the write ordering that keeps the store
loadable after a crash.
"""
from spydk.blob.blobstore import (
    OP_READ,
    OP_UNMAP,
    OP_WRITE,
    OP_ZEROES,
    Blob,
    BlobChannel,
    BlobError,
    BlobOpts,
    Blobstore,
    BsOpts,
    bs_init,
    bs_load,
    read_super,
)
from spydk.blob.bsdev import BdevBsDev, BsDev, BsDevError, FileBsDev

__all__ = [
    "OP_READ", "OP_UNMAP", "OP_WRITE", "OP_ZEROES", "BdevBsDev", "Blob", "BlobChannel", "BlobError",
    "BlobOpts", "Blobstore", "BsDev", "BsDevError", "BsOpts", "FileBsDev", "bs_init", "bs_load", "read_super",
]
