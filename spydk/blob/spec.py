"""The blobstore's on-disk structures, in the layout of SPDK v24.01 (lib/blob/blobstore.h).

All integers are little-endian and packed. The unit of metadata is the 4 KiB page:

    page 0                       super block
    used_page_mask_start ...     mask of used metadata pages       (type 0)
    used_cluster_mask_start ...  mask of used clusters             (type 1)
    used_blobid_mask_start ...   mask of used blob ids             (type 2)
    md_start ... + md_len        metadata pages (one chain per blob, extent pages)
    clusters after the metadata  blob data

A mask region starts with a 5-byte header (type, length in bits) and holds the bits LSB
first. Every metadata page and the super block end with a CRC32C of their first 4092 bytes.
A blob's id is (1 << 32) | index of its first metadata page.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import crc32c

PAGE_SIZE = 4096
SIGNATURE = b"SPDKBLOB"
VERSION = 3
INITIAL_VERSION = 1
BLOBID_INVALID = 0xFFFF_FFFF_FFFF_FFFF
BLOBID_EXTERNAL_SNAPSHOT = 0xFFFF_FFFF_FFFF_FFFE   # parent of an esnap clone
BLOBID_HIGH_BIT = 1 << 32
INVALID_MD_PAGE = 0xFFFF_FFFF
BSTYPE_LEN = 16

MASK_USED_PAGES = 0
MASK_USED_CLUSTERS = 1
MASK_USED_BLOBIDS = 2

DESC_PADDING = 0
DESC_EXTENT_RLE = 1
DESC_XATTR = 2
DESC_FLAGS = 3
DESC_XATTR_INTERNAL = 4
DESC_EXTENT_TABLE = 5
DESC_EXTENT_PAGE = 6

# invalid_flags: a blob with an unknown bit set here cannot be opened at all
FLAG_THIN_PROV = 1 << 0
FLAG_INTERNAL_XATTR = 1 << 1
FLAG_EXTENT_TABLE = 1 << 2
FLAG_EXTERNAL_SNAPSHOT = 1 << 3
INVALID_FLAGS_MASK = FLAG_THIN_PROV | FLAG_INTERNAL_XATTR | FLAG_EXTENT_TABLE | FLAG_EXTERNAL_SNAPSHOT
# data_ro_flags: an unknown bit here opens the blob read-only
FLAG_READ_ONLY = 1 << 0
DATA_RO_FLAGS_MASK = FLAG_READ_ONLY
# md_ro_flags: the two low bits hold the clear method
CLEAR_METHOD_MASK = 3
MD_RO_FLAGS_MASK = CLEAR_METHOD_MASK

# internal xattrs SPDK uses for snapshots (values are little-endian blob ids)
XATTR_SNAPSHOT = "SNAP"
XATTR_SNAPSHOT_IN_PROGRESS = "SNAPTMP"
XATTR_SNAPSHOT_PENDING_REMOVAL = "SNAPRM"
XATTR_EXTERNAL_SNAPSHOT_ID = "EXTSNAP"

SUPER = struct.Struct("<8sIIIQIIIIIII16sIIQI4000xI")
MD_PAGE_HEAD = struct.Struct("<QII")            # id, sequence_num, reserved
MD_PAGE_TAIL = struct.Struct("<II")             # next, crc
DESC_HEAD = struct.Struct("<BI")                # type, length of what follows
DESC_FLAGS_S = struct.Struct("<BIQQQ")
XATTR_HEAD = struct.Struct("<BIHH")
EXTENT_TABLE_HEAD = struct.Struct("<BIQ")       # + (page_idx, num_pages) pairs
EXTENT_PAGE_HEAD = struct.Struct("<BII")        # + cluster indices
PAIR = struct.Struct("<II")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
MASK_HEAD = struct.Struct("<BI")

DESCRIPTORS_OFFSET = MD_PAGE_HEAD.size
DESCRIPTORS_SIZE = PAGE_SIZE - MD_PAGE_HEAD.size - MD_PAGE_TAIL.size
# an extent page's one descriptor holds at most this many cluster indices (512 for 4 KiB pages)
_EP_MAX = (DESCRIPTORS_SIZE - EXTENT_PAGE_HEAD.size) // 4
EXTENTS_PER_EP = (1 << (_EP_MAX).bit_length()) >> 1

assert SUPER.size == PAGE_SIZE
assert DESCRIPTORS_SIZE == 4072
assert DESC_FLAGS_S.size == 29 and XATTR_HEAD.size == 9 and EXTENT_PAGE_HEAD.size == 9
assert EXTENTS_PER_EP == 512


class SpecError(ValueError):
    """Metadata that does not parse; the message names the structure and what is wrong."""


def page_crc(page: bytes | bytearray | memoryview) -> int:
    """CRC32C (initial and final XOR 0xFFFFFFFF) of the first 4092 bytes of a page."""
    return crc32c.crc32c(bytes(page[:PAGE_SIZE - 4]))


def blobid_to_page(blobid: int) -> int:
    return blobid & 0xFFFF_FFFF


def page_to_blobid(page: int) -> int:
    return BLOBID_HIGH_BIT | page


def divide_round_up(a: int, b: int) -> int:
    return (a + b - 1) // b


def mask_pages(bits: int) -> int:
    """Pages a mask of ``bits`` bits takes, with its header."""
    return divide_round_up(MASK_HEAD.size + divide_round_up(bits, 8), PAGE_SIZE)


@dataclass
class SuperBlock:
    version: int = VERSION
    length: int = PAGE_SIZE
    clean: int = 0
    super_blob: int = BLOBID_INVALID
    cluster_size: int = 0
    used_page_mask_start: int = 0
    used_page_mask_len: int = 0
    used_cluster_mask_start: int = 0
    used_cluster_mask_len: int = 0
    md_start: int = 0
    md_len: int = 0
    bstype: bytes = b"\0" * BSTYPE_LEN
    used_blobid_mask_start: int = 0
    used_blobid_mask_len: int = 0
    size: int = 0
    io_unit_size: int = 0
    signature: bytes = SIGNATURE
    crc: int = 0

    def pack(self) -> bytes:
        raw = bytearray(SUPER.pack(
            self.signature, self.version, self.length, self.clean, self.super_blob, self.cluster_size,
            self.used_page_mask_start, self.used_page_mask_len, self.used_cluster_mask_start,
            self.used_cluster_mask_len, self.md_start, self.md_len, self.bstype.ljust(BSTYPE_LEN, b"\0"),
            self.used_blobid_mask_start, self.used_blobid_mask_len, self.size, self.io_unit_size, 0))
        self.crc = page_crc(raw)
        U32.pack_into(raw, PAGE_SIZE - 4, self.crc)
        return bytes(raw)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> SuperBlock:
        """Parse and validate (signature, version, CRC, region bounds); SpecError says what is wrong."""
        if len(raw) < PAGE_SIZE:
            raise SpecError(f"super block is truncated: {len(raw)} bytes, a super block has {PAGE_SIZE}")
        f = SUPER.unpack_from(raw)
        sb = cls(signature=f[0], version=f[1], length=f[2], clean=f[3], super_blob=f[4], cluster_size=f[5],
                 used_page_mask_start=f[6], used_page_mask_len=f[7], used_cluster_mask_start=f[8],
                 used_cluster_mask_len=f[9], md_start=f[10], md_len=f[11], bstype=f[12],
                 used_blobid_mask_start=f[13], used_blobid_mask_len=f[14], size=f[15], io_unit_size=f[16],
                 crc=f[17])
        if sb.signature != SIGNATURE:
            raise SpecError(f"no blobstore here: the signature is {sb.signature!r}, not {SIGNATURE!r}")
        if not INITIAL_VERSION <= sb.version <= VERSION:
            raise SpecError(f"super block version {sb.version} is not supported (1..{VERSION})")
        if page_crc(raw) != sb.crc:
            raise SpecError(f"super block CRC mismatch: stored {sb.crc:#010x}, computed {page_crc(raw):#010x} "
                            "(the super block is corrupted)")
        return sb

    def check_geometry(self, dev_bytes: int, block_size: int) -> None:
        """Refuse values that would make the load read outside the device or divide by zero."""
        cs = self.cluster_size
        if cs < PAGE_SIZE or cs % PAGE_SIZE or cs % block_size:
            raise SpecError(f"super block cluster_size {cs} is invalid (a multiple of {PAGE_SIZE} "
                            f"and of the block size {block_size} is needed)")
        if self.io_unit_size and (self.io_unit_size > PAGE_SIZE or PAGE_SIZE % self.io_unit_size):
            raise SpecError(f"super block io_unit_size {self.io_unit_size} is invalid")
        size = self.size or dev_bytes
        if size > dev_bytes:
            raise SpecError(f"the blobstore is {size} bytes but the device has only {dev_bytes}: "
                            "the device was truncated, or this is not its blobstore")
        pages = size // PAGE_SIZE
        regions = [("used page mask", self.used_page_mask_start, self.used_page_mask_len),
                   ("used cluster mask", self.used_cluster_mask_start, self.used_cluster_mask_len),
                   ("used blobid mask", self.used_blobid_mask_start, self.used_blobid_mask_len),
                   ("metadata region", self.md_start, self.md_len)]
        for what, start, n in regions:
            if start + n > pages or (n and start == 0):
                raise SpecError(f"super block {what} (pages {start}..{start + n}) lies outside the "
                                f"{pages}-page blobstore")
        if self.md_len == 0:
            raise SpecError("super block has an empty metadata region")
        if self.used_page_mask_len < mask_pages(self.md_len) or \
                (self.used_blobid_mask_len and self.used_blobid_mask_len < mask_pages(self.md_len)) or \
                self.used_cluster_mask_len < mask_pages(size // cs):
            raise SpecError("super block mask regions are too small for the metadata region and clusters")


def pack_mask(mask_type: int, bits: bytearray | bytes, nbits: int, npages: int) -> bytes:
    """A mask region of ``npages`` pages; ``bits`` holds at least ceil(nbits/8) bytes, LSB first."""
    out = bytearray(npages * PAGE_SIZE)
    MASK_HEAD.pack_into(out, 0, mask_type, nbits)
    nbytes = divide_round_up(nbits, 8)
    out[MASK_HEAD.size:MASK_HEAD.size + nbytes] = bits[:nbytes]
    if nbits % 8:  # bits past the end stay zero
        out[MASK_HEAD.size + nbytes - 1] &= (1 << (nbits % 8)) - 1
    return bytes(out)


def unpack_mask(raw: bytes | bytearray | memoryview, mask_type: int, min_bits: int) -> tuple[bytearray, int]:
    """(bit bytes, length in bits) of a mask region; SpecError if its header is wrong."""
    t, n = MASK_HEAD.unpack_from(raw)
    names = {MASK_USED_PAGES: "used page", MASK_USED_CLUSTERS: "used cluster", MASK_USED_BLOBIDS: "used blobid"}
    if t != mask_type:
        raise SpecError(f"{names[mask_type]} mask has type {t}, expected {mask_type}")
    if n < min_bits or MASK_HEAD.size + divide_round_up(n, 8) > len(raw):
        raise SpecError(f"{names[mask_type]} mask length {n} bits does not fit its region "
                        f"(at least {min_bits} bits needed)")
    return bytearray(raw[MASK_HEAD.size:MASK_HEAD.size + divide_round_up(n, 8)]), n


# ---------------------------------------------------------------- metadata pages

@dataclass
class MdPage:
    """One parsed metadata page: header, raw descriptor area, chain pointer."""
    blobid: int
    sequence_num: int
    descriptors: bytes
    next: int = INVALID_MD_PAGE
    crc: int = 0

    def pack(self) -> bytes:
        raw = bytearray(PAGE_SIZE)
        MD_PAGE_HEAD.pack_into(raw, 0, self.blobid, self.sequence_num, 0)
        raw[DESCRIPTORS_OFFSET:DESCRIPTORS_OFFSET + len(self.descriptors)] = self.descriptors
        U32.pack_into(raw, PAGE_SIZE - 8, self.next)
        self.crc = page_crc(raw)
        U32.pack_into(raw, PAGE_SIZE - 4, self.crc)
        return bytes(raw)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview, check_crc: bool = True) -> MdPage:
        if len(raw) < PAGE_SIZE:
            raise SpecError(f"metadata page is truncated: {len(raw)} bytes")
        blobid, seq, _ = MD_PAGE_HEAD.unpack_from(raw)
        nxt, crc = MD_PAGE_TAIL.unpack_from(raw, PAGE_SIZE - 8)
        if check_crc and page_crc(raw) != crc:
            raise SpecError(f"metadata page CRC mismatch: stored {crc:#010x}, computed {page_crc(raw):#010x}")
        return cls(blobid, seq, bytes(raw[DESCRIPTORS_OFFSET:DESCRIPTORS_OFFSET + DESCRIPTORS_SIZE]), nxt, crc)


@dataclass
class Flags:
    invalid: int = 0
    data_ro: int = 0
    md_ro: int = 0


@dataclass
class ExtentTable:
    num_clusters: int
    pages: list[tuple[int, int]]     # (md page index or 0, run length)


@dataclass
class ExtentPage:
    start_cluster_idx: int
    clusters: list[int]              # cluster index or 0 (not allocated)


@dataclass
class ParsedPage:
    """The descriptors of one page, in order of kind."""
    flags: Flags | None = None
    xattrs: list[tuple[str, bytes]] = field(default_factory=list)
    xattrs_internal: list[tuple[str, bytes]] = field(default_factory=list)
    extents_rle: list[tuple[int, int]] = field(default_factory=list)   # (cluster index or 0, count)
    has_rle: bool = False
    extent_tables: list[ExtentTable] = field(default_factory=list)
    extent_pages: list[ExtentPage] = field(default_factory=list)


def parse_descriptors(area: bytes, *, strict: bool = False) -> ParsedPage:
    """Walk a page's descriptor area. Unknown descriptor types are skipped (as SPDK does on
    open) unless ``strict`` (the dirty-load replay refuses them); malformed lengths raise."""
    out = ParsedPage()
    pos = 0
    end = len(area)
    while pos + DESC_HEAD.size <= end:
        t, ln = DESC_HEAD.unpack_from(area, pos)
        body = pos + DESC_HEAD.size
        if t == DESC_PADDING and ln == 0:
            break
        if body + ln > end:
            raise SpecError(f"descriptor type {t} at offset {pos} claims {ln} bytes, past the page end")
        if t == DESC_FLAGS:
            if ln != DESC_FLAGS_S.size - DESC_HEAD.size:
                raise SpecError(f"flags descriptor has length {ln}, expected 24")
            _, _, inv, dro, mro = DESC_FLAGS_S.unpack_from(area, pos)
            out.flags = Flags(inv, dro, mro)
        elif t in (DESC_XATTR, DESC_XATTR_INTERNAL):
            if ln < 4:
                raise SpecError(f"xattr descriptor has length {ln}, too short")
            _, _, nl, vl = XATTR_HEAD.unpack_from(area, pos)
            if 4 + nl + vl != ln:
                raise SpecError(f"xattr descriptor length {ln} does not match name {nl} + value {vl} bytes")
            name_b = area[pos + XATTR_HEAD.size:pos + XATTR_HEAD.size + nl]
            try:
                name = name_b.decode()
            except UnicodeDecodeError:
                raise SpecError(f"xattr name {name_b!r} is not UTF-8") from None
            value = area[pos + XATTR_HEAD.size + nl:pos + XATTR_HEAD.size + nl + vl]
            (out.xattrs_internal if t == DESC_XATTR_INTERNAL else out.xattrs).append((name, bytes(value)))
        elif t == DESC_EXTENT_RLE:
            if ln == 0 or ln % 8:
                raise SpecError(f"extent RLE descriptor has length {ln}, not a multiple of 8")
            out.has_rle = True
            for i in range(ln // 8):
                out.extents_rle.append(PAIR.unpack_from(area, body + 8 * i))
        elif t == DESC_EXTENT_TABLE:
            if ln < 8 or (ln - 8) % 8:
                raise SpecError(f"extent table descriptor has length {ln}, expected 8 + 8n")
            (nc,) = U64.unpack_from(area, body)
            pairs = [PAIR.unpack_from(area, body + 8 + 8 * i) for i in range((ln - 8) // 8)]
            out.extent_tables.append(ExtentTable(nc, pairs))
        elif t == DESC_EXTENT_PAGE:
            if ln <= 4 or (ln - 4) % 4:
                raise SpecError(f"extent page descriptor has length {ln}, expected 4 + 4n with n > 0")
            (start,) = U32.unpack_from(area, body)
            n = (ln - 4) // 4
            out.extent_pages.append(ExtentPage(start, list(struct.unpack_from(f"<{n}I", area, body + 4))))
        elif t == DESC_PADDING:
            pass
        elif strict:
            raise SpecError(f"unknown descriptor type {t} at offset {pos}")
        pos = body + ln
    return out


class DescWriter:
    """Packs descriptors into a chain of descriptor areas, starting a new page when one is full
    (the same points at which SPDK starts one, so chains look alike)."""

    def __init__(self) -> None:
        self.areas: list[bytearray] = [bytearray()]

    @property
    def room(self) -> int:
        return DESCRIPTORS_SIZE - len(self.areas[-1])

    def new_page(self) -> None:
        self.areas.append(bytearray())

    def add(self, data: bytes) -> None:
        if len(data) > self.room:
            self.new_page()
        if len(data) > DESCRIPTORS_SIZE:
            raise SpecError(f"descriptor of {len(data)} bytes does not fit a metadata page")
        self.areas[-1] += data


def flags_desc(f: Flags) -> bytes:
    return DESC_FLAGS_S.pack(DESC_FLAGS, 24, f.invalid, f.data_ro, f.md_ro)


def xattr_desc(name: str, value: bytes, internal: bool) -> bytes:
    nb = name.encode()
    return XATTR_HEAD.pack(DESC_XATTR_INTERNAL if internal else DESC_XATTR, 4 + len(nb) + len(value),
                           len(nb), len(value)) + nb + value


def write_extent_table(w: DescWriter, num_clusters: int, extent_pages: list[int]) -> None:
    """EXTENT_TABLE descriptors: runs of unallocated extent pages are (0, count); allocated
    pages are (index, 1). At least one descriptor is always written."""
    runs: list[tuple[int, int]] = []
    for p in extent_pages:
        if p == 0 and runs and runs[-1][0] == 0:
            runs[-1] = (0, runs[-1][1] + 1)
        else:
            runs.append((p, 1))
    i = 0
    while True:
        if w.room < EXTENT_TABLE_HEAD.size:
            w.new_page()
        fit = (w.room - EXTENT_TABLE_HEAD.size) // 8
        chunk = runs[i:i + fit]
        body = b"".join(PAIR.pack(*r) for r in chunk)
        w.areas[-1] += EXTENT_TABLE_HEAD.pack(DESC_EXTENT_TABLE, 8 + len(body), num_clusters) + body
        i += len(chunk)
        if i >= len(runs):
            break
        w.new_page()


def write_extents_rle(w: DescWriter, clusters: list[int]) -> None:
    """EXTENT_RLE descriptors: runs of consecutive cluster indices, and runs of zeros."""
    runs: list[list[int]] = []
    for c in clusters:
        if runs:
            last = runs[-1]
            if (c != 0 and last[0] != 0 and last[0] + last[1] == c) or (c == 0 and last[0] == 0):
                last[1] += 1
                continue
        runs.append([c, 1])
    i = 0
    while i < len(runs):
        if w.room < DESC_HEAD.size + 8:
            w.new_page()
        fit = (w.room - DESC_HEAD.size) // 8
        chunk = runs[i:i + fit]
        body = b"".join(PAIR.pack(a, b) for a, b in chunk)
        w.areas[-1] += DESC_HEAD.pack(DESC_EXTENT_RLE, len(body)) + body
        i += len(chunk)
        if i < len(runs):
            w.new_page()


def extent_page_desc(start: int, clusters: list[int]) -> bytes:
    return EXTENT_PAGE_HEAD.pack(DESC_EXTENT_PAGE, 4 + 4 * len(clusters), start) + \
        struct.pack(f"<{len(clusters)}I", *clusters)
