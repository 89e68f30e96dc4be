"""The trace ring: fixed-size records in a shared-memory file (SPDK's /dev/shm trace file).

Layout (little-endian)::

    0      header (64 bytes): magic, version, entry size, number of entries, tick rate,
           pid, lcore, length of the description
    64     description: JSON of the groups, trace points, owners and objects, so a reader
           decodes the records without the process that wrote them
    16384  entries: ``num_entries`` slots of ENTRY.size bytes, written round robin

A slot holds tsc, trace point id, lcore, thread id, size, owner id, object id, three integer
arguments and a 16-byte string argument. There is no shared head index: a reader takes
every slot with a non-zero tsc and orders them by tsc, so the writer does one store per
record. This module only packs and unpacks bytes; files and mmaps are the caller's.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"SPYDKTRC"
VERSION = 1
HEADER = struct.Struct("<8sIIQQIII20x")
assert HEADER.size == 64
DESC_OFFSET = HEADER.size
ENTRIES_OFFSET = 16384
# tsc, tpoint id, lcore, thread id, size, owner id, object id, arg0..arg2, string arg
ENTRY = struct.Struct("<QHHII4xQQQQQ16s")
assert ENTRY.size == 80
STR_LEN = 16


def ring_size(num_entries: int) -> int:
    return ENTRIES_OFFSET + num_entries * ENTRY.size


def write_header(buf: Any, num_entries: int, tsc_rate: int, pid: int, lcore: int,
                 description: dict[str, Any]) -> None:
    desc = json.dumps(description, separators=(",", ":")).encode()
    if DESC_OFFSET + len(desc) > ENTRIES_OFFSET:
        raise ValueError(f"trace description is {len(desc)} bytes, more than the header room")
    HEADER.pack_into(buf, 0, MAGIC, VERSION, ENTRY.size, num_entries, tsc_rate, pid, lcore, len(desc))
    buf[DESC_OFFSET:DESC_OFFSET + len(desc)] = desc


def clear_entries(buf: Any, num_entries: int) -> None:
    end = ENTRIES_OFFSET + num_entries * ENTRY.size
    buf[ENTRIES_OFFSET:end] = bytes(end - ENTRIES_OFFSET)


@dataclass
class Entry:
    tsc: int
    tpoint_id: int
    lcore: int
    thread_id: int
    size: int
    owner_id: int
    object_id: int
    args: tuple[int, int, int]
    string: str


@dataclass
class TraceFile:
    num_entries: int
    tsc_rate: int
    pid: int
    lcore: int
    description: dict[str, Any]
    entries: list[Entry]


class TraceFormatError(ValueError):
    pass


def parse(buf: bytes | memoryview) -> TraceFile:
    """Decode a trace file's bytes (from /dev/shm or a copy) into entries in time order."""
    mv = memoryview(buf)
    if len(mv) < ENTRIES_OFFSET:
        raise TraceFormatError(f"trace file is {len(mv)} bytes, shorter than its {ENTRIES_OFFSET}-byte header")
    magic, version, esize, n, tsc_rate, pid, lcore, dlen = HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise TraceFormatError("not a spydk trace file (bad magic)")
    if version != VERSION or esize != ENTRY.size:
        raise TraceFormatError(f"trace file version {version}/entry size {esize} is not supported")
    if DESC_OFFSET + dlen > ENTRIES_OFFSET or len(mv) < ring_size(n):
        raise TraceFormatError("trace file is truncated or its header is corrupt")
    desc = json.loads(bytes(mv[DESC_OFFSET:DESC_OFFSET + dlen]))
    out: list[Entry] = []
    unpack = ENTRY.unpack_from
    for i in range(n):
        tsc, tp, lc, tid, size, owner, obj, a0, a1, a2, s = unpack(mv, ENTRIES_OFFSET + i * ENTRY.size)
        if tsc:
            out.append(Entry(tsc, tp, lc, tid, size, owner, obj, (a0, a1, a2),
                             s.rstrip(b"\0").decode("utf-8", "replace")))
    out.sort(key=lambda e: e.tsc)
    return TraceFile(n, tsc_rate, pid, lcore, desc, out)
