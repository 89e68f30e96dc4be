"""Trace points (SPDK's lib/trace): masks, a shared-memory ring, readers.

Sits just above logging and below thread: thread, bdev, nvmf and iscsi record into it.
Call sites guard with a module global bound by ``bind_flag`` (a global load and a jump when
off), or swap in traced functions from an ``on_change`` listener (nothing when off). The
trace_* RPCs live in the apps layer (spydk.apps.trace_rpc): this package imports nothing
above it.
"""
from spydk.trace.core import (
    DEFAULT_NUM_ENTRIES,
    TraceError,
    apply_arg,
    bind_flag,
    clear,
    clear_tpoint_mask,
    close,
    configure,
    disable_group,
    enable_group,
    entries_written,
    group_mask,
    group_on,
    on_change,
    record,
    reset,
    set_ctx,
    set_group_mask,
    set_thread_getter,
    set_tpoint_mask,
    shm_path,
    take_ctx,
    tpoint_mask,
)
from spydk.trace.tpoints import GROUP_NAMES, TPOINTS, TPOINTS_BY_ID, Tpoint

__all__ = [
    "DEFAULT_NUM_ENTRIES", "GROUP_NAMES", "TPOINTS", "TPOINTS_BY_ID", "Tpoint", "TraceError", "apply_arg",
    "bind_flag", "clear", "clear_tpoint_mask", "close", "configure", "disable_group", "enable_group",
    "entries_written", "group_mask", "group_on", "on_change", "record", "reset", "set_group_mask",
    "set_ctx", "set_thread_getter", "set_tpoint_mask", "shm_path", "take_ctx", "tpoint_mask",
]
