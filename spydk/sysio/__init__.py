"""Asynchronous file I/O engines for the aio and uring bdevs.

Both are written over raw system calls through ctypes (no compiled dependency):

    linux_aio.LinuxAio   io_setup/io_submit/io_getevents, completions signalled on an eventfd
    io_uring.IoUring     io_uring_setup/io_uring_enter with the rings mmap'ed into Python

They share one small interface (see ``Engine``): ``prep_rw`` queues a vectored read or
write, ``prep_fsync`` a data sync, ``flush`` submits everything queued with one system
call, ``reap`` collects finished requests. ``efd`` becomes readable when completions are
waiting, so a reactor can wake on it instead of polling. spydk.bdev.filedisk.FileDisk is
the bdev built on an engine. This package imports nothing from spydk (the lowest layer).
"""
from spydk.sysio.base import Engine, EngineError

__all__ = ["Engine", "EngineError"]
