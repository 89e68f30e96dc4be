"""librados / librbd through ctypes (librados.so.2, librbd.so.1 from Debian's librados2,
librbd1), and the bridge that brings librbd's completions back to a spydk thread.

Why ctypes: Debian's python3-rbd/python3-rados bindings are built for Debian's own
/usr/bin/python3 only, and PyPI has no maintained binding; the C API is small and stable.

librbd calls completion callbacks on its own threads. The callback here does the least it
can: it appends the request's key to a deque and bumps an eventfd; the reactor watches the
eventfd and, on the submitting spydk thread, finishes the I/O. Image open/close use librbd's
asynchronous calls too. ``rados_connect`` has no asynchronous form: callers run it off the
reactor (``asyncio.to_thread``), as SPDK runs it on a thread of its own.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import os
from collections.abc import Callable
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_ssize_t, c_uint64, c_void_p
from typing import Any

_rados: Any = None
_rbd: Any = None

CALLBACK = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


class LibError(OSError):
    pass


def load() -> tuple[Any, Any]:
    global _rados, _rbd
    if _rbd is not None:
        return _rados, _rbd
    try:
        rados = ctypes.CDLL("librados.so.2")
        rbd = ctypes.CDLL("librbd.so.1")
    except OSError as e:
        raise LibError(errno.ENOENT, f"librbd/librados are not installed ({e}); on Debian: "
                                     "apt-get install librbd1 librados2") from None
    rados.rados_create.argtypes = [POINTER(c_void_p), c_char_p]
    rados.rados_conf_read_file.argtypes = [c_void_p, c_char_p]
    rados.rados_conf_set.argtypes = [c_void_p, c_char_p, c_char_p]
    rados.rados_connect.argtypes = [c_void_p]
    rados.rados_shutdown.argtypes = [c_void_p]
    rados.rados_shutdown.restype = None
    rados.rados_ioctx_create.argtypes = [c_void_p, c_char_p, POINTER(c_void_p)]
    rados.rados_ioctx_destroy.argtypes = [c_void_p]
    rados.rados_ioctx_destroy.restype = None
    rados.rados_cluster_fsid.argtypes = [c_void_p, c_char_p, c_size_t]
    rbd.rbd_aio_create_completion.argtypes = [c_void_p, CALLBACK, POINTER(c_void_p)]
    rbd.rbd_aio_get_return_value.argtypes = [c_void_p]
    rbd.rbd_aio_get_return_value.restype = c_ssize_t
    rbd.rbd_aio_release.argtypes = [c_void_p]
    rbd.rbd_aio_release.restype = None
    rbd.rbd_aio_open.argtypes = [c_void_p, c_char_p, POINTER(c_void_p), c_char_p, c_void_p]
    rbd.rbd_aio_open_read_only.argtypes = [c_void_p, c_char_p, POINTER(c_void_p), c_char_p, c_void_p]
    rbd.rbd_aio_close.argtypes = [c_void_p, c_void_p]
    rbd.rbd_get_size.argtypes = [c_void_p, POINTER(c_uint64)]
    rbd.rbd_resize.argtypes = [c_void_p, c_uint64]
    rbd.rbd_aio_readv.argtypes = [c_void_p, POINTER(Iovec), c_int, c_uint64, c_void_p]
    rbd.rbd_aio_writev.argtypes = [c_void_p, POINTER(Iovec), c_int, c_uint64, c_void_p]
    rbd.rbd_aio_discard.argtypes = [c_void_p, c_uint64, c_uint64, c_void_p]
    rbd.rbd_aio_write_zeroes.argtypes = [c_void_p, c_uint64, c_size_t, c_void_p, c_int, c_int]
    rbd.rbd_aio_flush.argtypes = [c_void_p, c_void_p]
    _rados, _rbd = rados, rbd
    return rados, rbd


def check(rc: int, what: str) -> None:
    if rc < 0:
        raise LibError(-rc, f"{what}: {os.strerror(-rc)}")


class Cluster:
    """A librados connection (shared by the images opened on it)."""

    def __init__(self, user_id: str | None, config: dict[str, str], config_file: str | None,
                 key_file: str | None):
        rados, _ = load()
        self.handle = c_void_p()
        check(rados.rados_create(byref(self.handle), user_id.encode() if user_id else None), "rados_create")
        self.connected = False
        try:
            # no config file named: read the default ones only when no mon_host is given
            if config_file is not None or "mon_host" not in config:
                check(rados.rados_conf_read_file(self.handle, config_file.encode() if config_file else None),
                      f"reading the Ceph config {config_file or '(default)'}")
            for k, v in config.items():
                check(rados.rados_conf_set(self.handle, k.encode(), str(v).encode()), f"config {k}={v}")
            if key_file:
                check(rados.rados_conf_set(self.handle, b"keyring", key_file.encode()), f"key_file {key_file}")
        except LibError:
            rados.rados_shutdown(self.handle)
            raise

    def connect(self) -> None:
        """Blocking (mon round trips, auth): call it off the reactor."""
        rc = _rados.rados_connect(self.handle)
        if rc in (-errno.EACCES, -errno.EPERM, -errno.EIO):
            # librados reports a key the monitors reject as EIO (16.2), sometimes EACCES
            raise LibError(-rc, f"connecting to the Ceph cluster: authentication refused ({os.strerror(-rc)}): "
                                "check user_id and key_file (or the keyring in the config)")
        if rc == -errno.ETIMEDOUT or rc == -errno.EINTR:
            raise LibError(-rc, "connecting to the Ceph cluster: no monitor answered in time")
        check(rc, "connecting to the Ceph cluster")
        self.connected = True

    def fsid(self) -> str:
        buf = ctypes.create_string_buffer(64)
        rc = _rados.rados_cluster_fsid(self.handle, buf, 64)
        return buf.value.decode() if rc >= 0 else ""

    def ioctx(self, pool: str) -> c_void_p:
        io = c_void_p()
        rc = _rados.rados_ioctx_create(self.handle, pool.encode(), byref(io))
        if rc == -errno.ENOENT:
            raise LibError(errno.ENOENT, f"pool {pool!r} does not exist in the Ceph cluster")
        check(rc, f"opening pool {pool!r}")
        return io

    def shutdown(self) -> None:
        if self.handle:
            _rados.rados_shutdown(self.handle)
            self.handle = c_void_p()


class Completions:
    """Completions of librbd calls delivered on one spydk thread: ``submit(fn)`` creates a
    completion whose result goes to ``fn(rc)`` on that thread."""

    def __init__(self, add_reader: Callable[[int, Callable[[], Any]], Any], remove_reader: Callable[[int], Any]):
        _, rbd = load()
        self.rbd = rbd
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.done: collections.deque[int] = collections.deque()
        self.pending: dict[int, tuple[c_void_p, Callable[[int], Any], Any]] = {}
        self.next_key = 1
        self.remove_reader = remove_reader
        efd, done = self.efd, self.done

        def from_librbd(comp: int, arg: int) -> None:     # librbd's thread: keep it short
            done.append(arg)
            os.eventfd_write(efd, 1)
        self._cb = CALLBACK(from_librbd)                   # kept alive as long as we are
        add_reader(self.efd, self._drain)

    def new(self, fn: Callable[[int], Any], keep: Any = None) -> c_void_p:
        """A completion for one call; ``keep`` stays referenced (buffers) until it is done."""
        key = self.next_key
        self.next_key = key + 1 if key < (1 << 62) else 1
        comp = c_void_p()
        check(self.rbd.rbd_aio_create_completion(c_void_p(key), self._cb, byref(comp)), "rbd_aio_create_completion")
        self.pending[key] = (comp, fn, keep)
        return comp

    def cancel(self, comp: c_void_p) -> None:
        """The call using ``comp`` was refused at submission: drop it."""
        for k, (c, _fn, _keep) in list(self.pending.items()):
            if c is comp:
                del self.pending[k]
                self.rbd.rbd_aio_release(comp)
                return

    def _drain(self) -> None:
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass
        done, pending, rbd = self.done, self.pending, self.rbd
        while done:
            key = done.popleft()
            entry = pending.pop(key, None)
            if entry is None:
                continue
            comp, fn, _keep = entry
            rc = rbd.rbd_aio_get_return_value(comp)
            rbd.rbd_aio_release(comp)
            fn(rc)

    def close(self) -> None:
        self.remove_reader(self.efd)
        os.close(self.efd)

    def close_quietly(self) -> None:
        """Close after its event loop is gone (only the fd is left to release)."""
        try:
            self.close()
        except (RuntimeError, ValueError, OSError):
            os.close(self.efd)


def iovecs(bufs: list[Any], writable: bool) -> tuple[Any, int, list[Any]]:
    """(iovec array, count, objects to keep alive) for a list of buffers, without copies
    when they are writable."""
    arr = (Iovec * len(bufs))()
    keep: list[Any] = [arr]
    for i, b in enumerate(bufs):
        mv = memoryview(b).cast("B")
        n = len(mv)
        if mv.readonly:
            if writable:
                raise ValueError("read into a read-only buffer")
            c = (ctypes.c_char * n).from_buffer_copy(mv)
        else:
            c = (ctypes.c_char * n).from_buffer(mv)
        keep.append(c)
        arr[i].iov_base = ctypes.addressof(c)
        arr[i].iov_len = n
    return arr, len(bufs), keep
