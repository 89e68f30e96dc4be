"""io_device / io_channel: per-thread context for any shared object.

A module registers an object as an io_device with a create and a destroy callback. Each
Thread that calls get_io_channel(device) gets its own IoChannel (created once, reference
counted), so per-thread state (queues, sockets, stats) needs no locking. for_each_channel
visits every Thread that holds a channel, one after another, by message.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from spydk import trace as _trace
from spydk.thread.thread import Thread, get_thread, set_thread
from spydk.trace import tpoints as _tp

_TRACE_THREAD = False
_trace.bind_flag(globals(), "_TRACE_THREAD", _tp.GROUP_THREAD)

CreateCb = Callable[[Any, "IoChannel"], Any]
DestroyCb = Callable[[Any, "IoChannel"], Any]


class IoDevice:
    __slots__ = ("obj", "name", "create_cb", "destroy_cb", "channels", "unregistering",
                 "unregister_cb", "unregister_thread", "for_each_count")

    def __init__(self, obj: Any, create_cb: CreateCb, destroy_cb: DestroyCb, name: str):
        self.obj = obj
        self.name = name
        self.create_cb = create_cb
        self.destroy_cb = destroy_cb
        self.channels: dict[int, IoChannel] = {}  # thread id -> channel
        self.unregistering = False
        self.unregister_cb: Callable[[Any], Any] | None = None
        self.unregister_thread: Thread | None = None
        self.for_each_count = 0


class IoChannel:
    """A Thread's handle on an io_device. ``ctx`` is whatever the create callback stored."""

    __slots__ = ("device", "thread", "ref", "ctx", "destroy_pending")

    def __init__(self, device: IoDevice, thread: Thread):
        self.device = device
        self.thread = thread
        self.ref = 1
        self.ctx: Any = None
        self.destroy_pending = False

    @property
    def io_device(self) -> Any:
        return self.device.obj

    def __repr__(self) -> str:
        return f"<IoChannel {self.device.name} on {self.thread.name} ref={self.ref}>"


_devices: dict[int, IoDevice] = {}


def _key(obj: Any) -> int:
    return id(obj)


def io_device_register(obj: Any, create_cb: CreateCb, destroy_cb: DestroyCb, name: str | None = None) -> None:
    """Make ``obj`` an io_device. create_cb(obj, channel) fills channel.ctx on first get."""
    k = _key(obj)
    if k in _devices:
        raise ValueError(f"io_device {name or obj!r} is already registered")
    _devices[k] = IoDevice(obj, create_cb, destroy_cb, name or type(obj).__name__)


def io_device_unregister(obj: Any, unregister_cb: Callable[[Any], Any] | None = None) -> None:
    """Unregister ``obj``; unregister_cb(obj) runs on this thread once every channel is released."""
    dev = _devices.get(_key(obj))
    if dev is None:
        raise ValueError(f"{obj!r} is not a registered io_device")
    if dev.unregistering:
        raise RuntimeError(f"io_device {dev.name} is already being unregistered")
    dev.unregistering = True
    dev.unregister_cb = unregister_cb
    dev.unregister_thread = get_thread()
    _maybe_finish_unregister(dev)


def _maybe_finish_unregister(dev: IoDevice) -> None:
    if not dev.unregistering or dev.channels or dev.for_each_count:
        return
    _devices.pop(_key(dev.obj), None)
    cb = dev.unregister_cb
    if cb is None:
        return
    thread = dev.unregister_thread
    if thread is not None and not thread.exited:
        thread.send_msg(cb, dev.obj)
    else:
        cb(dev.obj)


def is_io_device(obj: Any) -> bool:
    return _key(obj) in _devices


def get_io_channel(obj: Any) -> IoChannel:
    """This thread's channel for ``obj``, created through the device's create_cb on first use."""
    thread = get_thread()
    if thread is None:
        raise RuntimeError("get_io_channel must be called from a spydk Thread")
    dev = _devices.get(_key(obj))
    if dev is None:
        raise ValueError(f"{obj!r} is not a registered io_device")
    ch = thread.io_channels.get(_key(obj))
    if ch is not None:
        ch.ref += 1
        ch.destroy_pending = False
        if _TRACE_THREAD:
            _trace.record(_tp.THREAD_IOCH_GET, a0=ch.ref, s=dev.name.encode())
        return ch
    if dev.unregistering:
        raise RuntimeError(f"io_device {dev.name} is being unregistered; no new channels")
    ch = IoChannel(dev, thread)
    thread.io_channels[_key(obj)] = ch
    dev.channels[thread.id] = ch
    try:
        dev.create_cb(obj, ch)
    except BaseException:
        del thread.io_channels[_key(obj)]
        del dev.channels[thread.id]
        raise
    if _TRACE_THREAD:
        _trace.record(_tp.THREAD_IOCH_GET, a0=ch.ref, s=dev.name.encode())
    return ch


def put_io_channel(ch: IoChannel) -> None:
    """Release a reference. The last release destroys the channel by message, as SPDK
    does, so a get right after a put on the same thread reuses it."""
    if ch.ref <= 0:
        raise RuntimeError(f"{ch!r} released more times than it was taken")
    if get_thread() is not ch.thread:
        raise RuntimeError(f"{ch!r} must be released on its own thread")
    ch.ref -= 1
    if _TRACE_THREAD:
        _trace.record(_tp.THREAD_IOCH_PUT, a0=ch.ref, s=ch.device.name.encode())
    if ch.ref == 0 and not ch.destroy_pending:
        ch.destroy_pending = True
        ch.thread.send_msg(_destroy_channel, ch)


def _destroy_channel(ch: IoChannel) -> None:
    if ch.ref > 0 or not ch.destroy_pending:
        return  # taken again before the message ran
    dev = ch.device
    ch.thread.io_channels.pop(_key(dev.obj), None)
    dev.channels.pop(ch.thread.id, None)
    dev.destroy_cb(dev.obj, ch)
    _maybe_finish_unregister(dev)


class ChannelIter:
    """Walks the threads that hold a channel to a device (SPDK's spdk_io_channel_iter)."""

    __slots__ = ("device", "fn", "cpl", "ctx", "orig_thread", "threads", "index", "status")

    def __init__(self, device: IoDevice, fn: Callable[[ChannelIter, IoChannel], Any],
                 cpl: Callable[[ChannelIter, int], Any], ctx: Any, orig_thread: Thread):
        self.device = device
        self.fn = fn
        self.cpl = cpl
        self.ctx = ctx
        self.orig_thread = orig_thread
        self.threads = [c.thread for c in device.channels.values()]
        self.index = 0
        self.status = 0

    @property
    def io_device(self) -> Any:
        return self.device.obj

    def continue_(self, status: int = 0) -> None:
        """Called by fn when it is done with one channel; a non-zero status stops the walk."""
        self.status = status
        self.index += 1
        self._next()

    def _next(self) -> None:
        while self.status == 0 and self.index < len(self.threads):
            thread = self.threads[self.index]
            if not thread.exited:
                thread.send_msg(self._visit, thread)
                return
            self.index += 1
        self.orig_thread.send_msg(self._finish)

    def _visit(self, thread: Thread) -> None:
        ch = thread.io_channels.get(_key(self.device.obj))
        if ch is None:  # released since the walk started: skip it
            self.index += 1
            self._next()
            return
        self.fn(self, ch)

    def _finish(self) -> None:
        self.device.for_each_count -= 1
        self.cpl(self, self.status)
        _maybe_finish_unregister(self.device)


def for_each_channel(obj: Any, fn: Callable[[ChannelIter, IoChannel], Any],
                     cpl: Callable[[ChannelIter, int], Any], ctx: Any = None) -> None:
    """Call fn(iter, channel) on each thread holding a channel for ``obj``, in turn; then
    cpl(iter, status) on the calling thread. fn must call iter.continue_(status)."""
    thread = get_thread()
    if thread is None:
        raise RuntimeError("for_each_channel must be called from a spydk Thread")
    dev = _devices.get(_key(obj))
    if dev is None:
        raise ValueError(f"{obj!r} is not a registered io_device")
    dev.for_each_count += 1
    it = ChannelIter(dev, fn, cpl, ctx, thread)
    it._next()


def io_devices() -> list[IoDevice]:
    return list(_devices.values())


def _reset_for_tests() -> None:
    _devices.clear()
    set_thread(None)
