"""SPDK's on-disk raid superblock (module/bdev/raid, version 1.0), byte for byte.

It sits at byte 0 of every base bdev of a raid created with ``superblock: true``; the
raid's data starts ``data_offset`` blocks into each base (1 MiB rounded up to the base's
optimal I/O boundary). All integers are little-endian; uuids are in RFC 4122 byte order.

    header (256 bytes)
      0  signature "SPDKRAID"         8  version major u16, minor u16
     12  length u32 (whole sb)       16  crc u32 (crc32c, seed 0, no final xor, crc=0)
     20  flags u32                   24  uuid (16)
     40  name (64, NUL padded)      104  raid_size u64 (blocks)
    112  block_size u32             116  level u32 (0, 1, 95=5f, 99=concat)
    120  strip_size u32 (blocks)    124  state u32
    128  seq_number u64             136  num_base_bdevs u8
    137  reserved (118)             255  base_bdevs_size u8
    base bdev entries (64 bytes each), base_bdevs_size of them, from byte 256:
      0  uuid (16)   16  data_offset u64   24  data_size u64   32  state u32
     36  flags u32   40  slot u8           41  reserved (23)
"""
from __future__ import annotations

import enum
import struct
import uuid as _uuid
from dataclasses import dataclass, field

from crc32c import crc32c

SIGNATURE = b"SPDKRAID"
VERSION_MAJOR = 1
VERSION_MINOR = 0
NAME_SIZE = 64
MIN_DATA_OFFSET_SIZE = 1024 * 1024

HEADER = struct.Struct("<8sHHIII16s64sQIIIIQB118xB")
BASE = struct.Struct("<16sQQIIB23x")
assert HEADER.size == 256, HEADER.size
assert BASE.size == 64, BASE.size
MAX_BASE_BDEVS = 255
# Room reserved for the largest superblock (255 entries), rounded to 4 KiB as SPDK does.
MAX_LENGTH = (HEADER.size + MAX_BASE_BDEVS * BASE.size + 0xFFF) & ~0xFFF
assert MAX_LENGTH < MIN_DATA_OFFSET_SIZE
_CRC_AT = 16


class Level(enum.IntEnum):
    RAID0 = 0
    RAID1 = 1
    RAID5F = 95
    CONCAT = 99


class SlotState(enum.IntEnum):
    MISSING = 0
    CONFIGURED = 1
    FAILED = 2
    SPARE = 3


class SbError(ValueError):
    """Not a (usable) raid superblock; the message says why."""


@dataclass
class SbBase:
    uuid: _uuid.UUID
    data_offset: int
    data_size: int
    state: SlotState
    slot: int
    flags: int = 0


@dataclass
class Superblock:
    uuid: _uuid.UUID
    name: str
    raid_size: int
    block_size: int
    level: Level
    strip_size: int
    num_base_bdevs: int
    base_bdevs: list[SbBase] = field(default_factory=list)
    seq_number: int = 0
    state: int = 0
    flags: int = 0
    version_minor: int = VERSION_MINOR

    @property
    def length(self) -> int:
        return HEADER.size + BASE.size * len(self.base_bdevs)

    def encode(self, block_size: int) -> bytes:
        """The superblock padded with zeroes to whole blocks, crc filled in."""
        name = self.name.encode()[:NAME_SIZE - 1]
        buf = bytearray(-(-self.length // block_size) * block_size)
        HEADER.pack_into(buf, 0, SIGNATURE, VERSION_MAJOR, self.version_minor, self.length, 0,
                         self.flags, self.uuid.bytes, name, self.raid_size, self.block_size,
                         int(self.level), self.strip_size, self.state, self.seq_number,
                         self.num_base_bdevs, len(self.base_bdevs))
        for i, b in enumerate(self.base_bdevs):
            BASE.pack_into(buf, HEADER.size + i * BASE.size, b.uuid.bytes, b.data_offset,
                           b.data_size, int(b.state), b.flags, b.slot)
        struct.pack_into("<I", buf, _CRC_AT, sb_crc(memoryview(buf)[:self.length]))
        return bytes(buf)

    def slot_of(self, base_uuid: _uuid.UUID) -> SbBase | None:
        for b in self.base_bdevs:
            if b.uuid == base_uuid:
                return b
        return None


def sb_crc(data: bytes | memoryview) -> int:
    """SPDK's crc32c update with seed 0 and no final inversion, over the sb with crc = 0."""
    b = bytearray(data)
    b[_CRC_AT:_CRC_AT + 4] = b"\0\0\0\0"
    return crc32c(bytes(b), 0xFFFFFFFF) ^ 0xFFFFFFFF


def needed_length(head: bytes | memoryview) -> int:
    """From the first bytes (>= 256), how many bytes the whole superblock takes; raises
    SbError when this is no superblock at all."""
    if len(head) < HEADER.size:
        raise SbError(f"need {HEADER.size} bytes to see a superblock, got {len(head)}")
    if bytes(head[:8]) != SIGNATURE:
        raise SbError("no raid superblock signature")
    length = struct.unpack_from("<I", head, 12)[0]
    if length < HEADER.size or length > MAX_LENGTH:
        raise SbError(f"superblock length {length} is out of range ({HEADER.size}..{MAX_LENGTH})")
    return int(length)


def decode(data: bytes | memoryview) -> Superblock:
    length = needed_length(data)
    if len(data) < length:
        raise SbError(f"superblock is {length} bytes, only {len(data)} given")
    (sig, major, minor, _length, crc, flags, uid, name, raid_size, block_size, level, strip_size,
     state, seq, num_base, base_size) = HEADER.unpack_from(data, 0)
    if sb_crc(memoryview(data)[:length]) != crc:
        raise SbError("superblock crc mismatch")
    if major != VERSION_MAJOR:
        raise SbError(f"superblock major version {major} is not supported (only {VERSION_MAJOR})")
    if HEADER.size + base_size * BASE.size > length:
        raise SbError(f"superblock lists {base_size} base bdevs but is only {length} bytes")
    try:
        lvl = Level(level)
    except ValueError:
        raise SbError(f"unknown raid level {level}") from None
    bases = []
    for i in range(base_size):
        bu, off, size, st, bflags, slot = BASE.unpack_from(data, HEADER.size + i * BASE.size)
        try:
            sst = SlotState(st)
        except ValueError:
            raise SbError(f"base bdev entry {i} has unknown state {st}") from None
        bases.append(SbBase(_uuid.UUID(bytes=bu), off, size, sst, slot, bflags))
    return Superblock(_uuid.UUID(bytes=uid), name.split(b"\0", 1)[0].decode(errors="replace"),
                      raid_size, block_size, lvl, strip_size, num_base, bases, seq, state, flags, minor)
