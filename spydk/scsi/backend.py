"""The block device a logical unit executes on.

The SCSI layer only needs this small asynchronous interface; the bdev layer provides an adapter.
Every operation completes by calling ``cb`` exactly once, either synchronously (inside the call)
or later from the same thread.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

IoCallback = Callable[[bool], None]
# seek_data/seek_hole complete with the found block offset (num_blocks when none), or -1 on error.
SeekCallback = Callable[[int], None]


class BlockBackend(Protocol):
    name: str
    block_size: int  # bytes per logical block
    num_blocks: int  # may change at runtime: call ScsiLun.capacity_changed() afterwards
    uuid: uuid.UUID
    write_cache: bool  # a volatile write cache is present (FLUSH does something)
    supports_unmap: bool
    supports_write_zeroes: bool
    unmap_reads_zeroes: bool  # deallocated blocks read back as zeroes (LBPRZ)
    supports_seek: bool  # seek_data/seek_hole are meaningful (GET LBA STATUS)
    max_unmap_blocks: int  # per UNMAP command, 0 = no limit of its own
    max_unmap_descriptors: int  # ranges per unmap() call, 0 = no limit of its own
    max_transfer_blocks: int  # per read/write, 0 = no limit
    optimal_io_boundary: int  # blocks, 0 = none
    physical_block_exp: int  # log2(logical blocks per physical block)

    def read(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview],
             cb: IoCallback) -> None: ...

    def write(self, offset_blocks: int, num_blocks: int, iovs: list[memoryview],
              cb: IoCallback) -> None: ...

    def unmap(self, ranges: list[tuple[int, int]], cb: IoCallback) -> None:
        """Deallocate (offset_blocks, num_blocks) ranges; all checked against capacity."""

    def write_zeroes(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None: ...

    def flush(self, offset_blocks: int, num_blocks: int, cb: IoCallback) -> None: ...

    def reset(self, cb: IoCallback) -> None:
        """Abort/complete everything in flight on this backend (LUN RESET)."""

    def seek_data(self, offset_blocks: int, cb: SeekCallback) -> None:
        """First allocated block at or after offset_blocks (num_blocks if none)."""

    def seek_hole(self, offset_blocks: int, cb: SeekCallback) -> None:
        """First deallocated block at or after offset_blocks (num_blocks if none)."""
