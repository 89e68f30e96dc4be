"""Trace point masks, the per-process ring and ``record``.

Cost when off: a call site is guarded by a plain module global of its own module, bound
with ``bind_flag(globals(), "_TRACE_BDEV", GROUP_BDEV)``; this module rewrites that global
whenever the group's mask changes. With tracing off the guard is one global load and a
jump; ``record`` is not called at all.

Cost when on: ``record`` checks the trace point's bit, then packs one 80-byte slot into
the shared-memory ring (see ring.py). Time is ``time.monotonic_ns()`` (tick rate 1e9),
the clock every process on the host shares, so traces of two processes line up.
"""
from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from typing import Any

from spydk.trace import ring as _ring
from spydk.trace.tpoints import (
    GROUP_NAMES,
    MAX_GROUPS,
    OBJECT_PREFIX,
    OWNER_PREFIX,
    TPOINTS,
    TPOINTS_BY_ID,
    TPOINTS_PER_GROUP,
    group_by_name,
)

DEFAULT_NUM_ENTRIES = 32768  # SPDK's default --num-trace-entries
TICK_RATE = 1_000_000_000

_tpoint_masks = [0] * MAX_GROUPS
# One byte per trace point id: record() checks it (a group flag can be on for another tpoint).
_tpoint_on = bytearray(MAX_GROUPS * TPOINTS_PER_GROUP)
_bound: list[tuple[dict[str, Any], str, int | None]] = []
_listeners: list[Callable[[], None]] = []

_app_name = "spydk"
_shm_id = -1
_num_entries = DEFAULT_NUM_ENTRIES
_lcore = 0
_fd: int | None = None
_map: mmap.mmap | None = None
_view: memoryview | None = None
_path: str | None = None
_idx = 0
_pack_into = _ring.ENTRY.pack_into
_ENTRIES = _ring.ENTRIES_OFFSET
_ESIZE = _ring.ENTRY.size
_now = time.monotonic_ns


def _no_thread() -> int:
    return 0


_thread_id: Callable[[], int] = _no_thread


class TraceError(ValueError):
    """A bad group name or mask (the message names it and lists the valid ones)."""


# -- configuration ----------------------------------------------------------------------------

def configure(app_name: str = "spydk", shm_id: int = -1, num_entries: int = DEFAULT_NUM_ENTRIES,
              lcore: int = 0) -> None:
    """Name the ring like SPDK (/dev/shm/<app>_trace.pid<pid> or .<shm_id>); before it opens."""
    global _app_name, _shm_id, _num_entries, _lcore
    if num_entries < 1:
        raise TraceError("the trace ring needs at least one entry")
    _app_name, _shm_id, _num_entries, _lcore = app_name, shm_id, num_entries, lcore


def set_thread_getter(fn: Callable[[], int]) -> None:
    """The thread layer tells us how to find the current thread's id (we sit below it)."""
    global _thread_id
    _thread_id = fn


def shm_path() -> str:
    if _path is not None:
        return _path
    suffix = f".{_shm_id}" if _shm_id >= 0 else f".pid{os.getpid()}"
    return f"/dev/shm/{_app_name}_trace{suffix}"


def description() -> dict[str, Any]:
    return {
        "groups": {str(g): n for g, n in GROUP_NAMES.items()},
        "tpoints": [{"id": t.id, "name": t.name, "owner_type": t.owner_type, "object_type": t.object_type,
                     "new_object": t.new_object, "args": list(t.args), "str_arg": t.str_arg}
                    for t in TPOINTS],
        "owner_prefix": {str(k): v for k, v in OWNER_PREFIX.items()},
        "object_prefix": {str(k): v for k, v in OBJECT_PREFIX.items()},
        "app_name": _app_name,
    }


def _open_ring() -> memoryview:
    global _fd, _map, _view, _path, _idx
    path = shm_path()
    size = _ring.ring_size(_num_entries)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise
    _fd, _map, _path, _idx = fd, m, path, 0
    _view = memoryview(m)
    _ring.write_header(_view, _num_entries, TICK_RATE, os.getpid(), _lcore, description())
    return _view


def close(unlink: bool = True) -> None:
    """Turn every trace point off, unmap the ring and remove its file (as SPDK does when the
    app exits; off first, so a late record cannot create the file again)."""
    global _fd, _map, _view, _path
    reset()
    if _view is not None:
        _view.release()
    if _map is not None:
        _map.close()
    if _fd is not None:
        os.close(_fd)
    if unlink and _path is not None:
        try:
            os.unlink(_path)
        except FileNotFoundError:
            pass
    _fd = _map = _view = _path = None


def clear() -> None:
    """Forget the records written so far (trace_clear)."""
    global _idx
    if _view is not None:
        _ring.clear_entries(_view, _num_entries)
    _idx = 0


# -- masks ------------------------------------------------------------------------------------

def _group_id(name: str) -> int:
    gid = group_by_name(name)
    if gid is None:
        raise TraceError(f"unknown trace group {name!r}; groups: {', '.join(GROUP_NAMES.values())}, all")
    return gid


def _groups(name: str) -> list[int]:
    return list(GROUP_NAMES) if name == "all" else [_group_id(name)]


def _apply(groups: list[int]) -> None:
    for g in groups:
        m = _tpoint_masks[g]
        base = g * TPOINTS_PER_GROUP
        for i in range(TPOINTS_PER_GROUP):
            _tpoint_on[base + i] = (m >> i) & 1
    any_on = any(_tpoint_masks)
    for ns, name, group in _bound:
        ns[name] = any_on if group is None else bool(_tpoint_masks[group])
    for fn in _listeners:
        fn()


def on_change(fn: Callable[[], None]) -> None:
    """Call ``fn`` after every mask change (layers that swap call sites instead of testing
    a flag per I/O re-point them here; read the state with ``group_on``)."""
    _listeners.append(fn)


def group_on(group: int) -> bool:
    return bool(_tpoint_masks[group])


def bind_flag(ns: dict[str, Any], name: str, group: int | None) -> None:
    """Keep ``ns[name]`` (a module global) true exactly while ``group`` has a tpoint on
    (group None: while any group has one)."""
    _bound.append((ns, name, group))
    ns[name] = any(_tpoint_masks) if group is None else bool(_tpoint_masks[group])


def enable_group(name: str) -> None:
    gs = _groups(name)
    for g in gs:
        _tpoint_masks[g] = (1 << TPOINTS_PER_GROUP) - 1
    _apply(gs)


def disable_group(name: str) -> None:
    gs = _groups(name)
    for g in gs:
        _tpoint_masks[g] = 0
    _apply(gs)


def set_tpoint_mask(name: str, mask: int) -> None:
    """Turn on the trace points of ``mask`` in one group (others in it keep their state)."""
    g = _group_id(name)
    _tpoint_masks[g] |= mask & ((1 << TPOINTS_PER_GROUP) - 1)
    _apply([g])


def clear_tpoint_mask(name: str, mask: int) -> None:
    g = _group_id(name)
    _tpoint_masks[g] &= ~mask
    _apply([g])


def set_group_mask(mask: int) -> None:
    """Enable every group whose bit is set (what a numeric -e does)."""
    gs = [g for g in GROUP_NAMES if mask >> g & 1]
    for g in gs:
        _tpoint_masks[g] = (1 << TPOINTS_PER_GROUP) - 1
    _apply(gs)


def group_mask() -> int:
    """Bit g set when group g has any trace point on."""
    return sum(1 << g for g in GROUP_NAMES if _tpoint_masks[g])


def tpoint_mask(group: int) -> int:
    return _tpoint_masks[group]


def reset() -> None:
    """Everything off (tests)."""
    for g in GROUP_NAMES:
        _tpoint_masks[g] = 0
    _apply(list(GROUP_NAMES))


def apply_arg(text: str) -> int:
    """SPDK's ``-e``: a group mask number ("0x8", "0xffff"), or group names with an optional
    trace point mask, comma-separated ("bdev,nvmf_tcp:0x3", "all"). Returns the bits of a
    numeric mask that name no spydk group: ignored, as SPDK ignores groups it lacks (scripts
    pass "-e 0xffff" for "everything")."""
    t = text.strip()
    try:
        mask = int(t, 0)
    except ValueError:
        mask = -1
    if mask >= 0:
        set_group_mask(mask)
        return mask & ~sum(1 << g for g in GROUP_NAMES)
    for part in filter(None, (p.strip() for p in t.split(","))):
        name, _, m = part.partition(":")
        if m:
            try:
                tm = int(m, 16)
            except ValueError:
                raise TraceError(f"trace point mask {m!r} of group {name!r} is not a hex number") from None
            for g in _groups(name):
                _tpoint_masks[g] |= tm
            _apply(_groups(name))
        else:
            enable_group(name)
    return 0


# -- recording --------------------------------------------------------------------------------

def record(tpoint: int, owner: int = 0, obj: int = 0, size: int = 0, a0: int = 0, a1: int = 0,
           a2: int = 0, s: bytes = b"") -> None:
    """Write one record if ``tpoint`` is on. Callers guard with their bound flag (or a
    swapped call site) first. Integers must be in 0 .. 2**64-1 (size below 2**32; ids from
    ``id()`` are); ``s`` is the string argument as bytes, cut to 16 (encode names once)."""
    global _idx
    if not _tpoint_on[tpoint]:
        return
    view = _view if _view is not None else _open_ring()
    i = _idx
    _idx = i + 1
    _pack_into(view, _ENTRIES + (i % _num_entries) * _ESIZE, _now(), tpoint, _lcore, _thread_id(),
               size, owner, obj, a0, a1, a2, s)


_ctx = 0


def set_ctx(ctx: int) -> None:
    """Name the object the next traced request belongs to, for a layer that submits through
    an interface without a context argument (SCSI task -> backend callback -> bdev I/O)."""
    global _ctx
    _ctx = ctx


def take_ctx(default: int) -> int:
    """The context set by set_ctx (once), else ``default``."""
    global _ctx
    c = _ctx
    if not c:
        return default
    _ctx = 0
    return c


def entries_written() -> int:
    return _idx


def tpoint_name(tid: int) -> str:
    t = TPOINTS_BY_ID.get(tid)
    return t.name if t else f"TPOINT_{tid:#x}"
