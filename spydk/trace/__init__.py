"""Trace points (SPDK's lib/trace): masks, a shared-memory ring, readers.

Sits just above logging and below thread: thread, bdev, nvmf and iscsi record into it.
Call sites guard with a module global bound by ``bind_flag`` so tracing off costs a
global load and a jump. ``spydk.trace.rpc`` (the trace_* RPCs) is imported by the app's
plugins, not from here, so this package needs nothing above it.
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
    set_group_mask,
    set_thread_getter,
    set_tpoint_mask,
    shm_path,
    tpoint_mask,
)
from spydk.trace.tpoints import GROUP_NAMES, TPOINTS, TPOINTS_BY_ID, Tpoint

__all__ = [
    "DEFAULT_NUM_ENTRIES", "GROUP_NAMES", "TPOINTS", "TPOINTS_BY_ID", "Tpoint", "TraceError", "apply_arg",
    "bind_flag", "clear", "clear_tpoint_mask", "close", "configure", "disable_group", "enable_group",
    "entries_written", "group_mask", "group_on", "on_change", "record", "reset", "set_group_mask",
    "set_thread_getter", "set_tpoint_mask", "shm_path", "tpoint_mask",
]
