"""The bdev registry: register/unregister, names and aliases, open_ext, examine."""
from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from spydk import notify
from spydk import trace as _trace
from spydk.bdev import channel
from spydk.bdev.bdev import Bdev, BdevError, BdevEvent, EventCb, _Status, log, options
from spydk.bdev.channel import create_channel, destroy_channel
from spydk.bdev.desc import BdevDesc
from spydk.bdev.io import (
    NUM_IO_TYPES,
)
from spydk.bdev.module import BdevModule, modules
from spydk.thread import (
    get_thread,
    io_device_register,
    io_device_unregister,
)
from spydk.thread.cores import worker_core
from spydk.trace import tpoints as _tp

_bdevs: dict[str, Bdev] = {}          # primary names, registration order
_names: dict[str, Bdev] = {}          # names and aliases
_examine_allowed: set[str] = set()
_examine_waiters: list[Callable[[], Any]] = []


def get_bdev(name: str) -> Bdev | None:
    """By name, alias or UUID string."""
    b = _names.get(name)
    if b is not None:
        return b
    for b in _bdevs.values():
        if str(b.uuid) == name:
            return b
    return None


def bdevs() -> list[Bdev]:
    return list(_bdevs.values())


def register_bdev(bdev: Bdev) -> None:
    """Make a bdev visible: names checked, channels possible, notification sent,
    examine started (on the current thread's next message batch)."""
    for n in [bdev.name, *bdev.aliases]:
        if not n:
            raise BdevError(errno.EINVAL, "bdev name must not be empty")
        if n in _names:
            raise BdevError(errno.EEXIST, f"bdev name {n!r} already exists")
    if bdev.block_size <= 0 or bdev.num_blocks <= 0:
        raise BdevError(errno.EINVAL, f"bdev {bdev.name!r}: block_size and num_blocks must be positive")
    if get_bdev(str(bdev.uuid)) is not None:
        raise BdevError(errno.EEXIST, f"bdev UUID {bdev.uuid} already exists")
    bdev._supported = [bool(bdev.io_type_supported(t)) for t in range(NUM_IO_TYPES)]
    io_device_register(bdev, create_channel, destroy_channel, f"bdev_{bdev.name}")
    _bdevs[bdev.name] = bdev
    for n in [bdev.name, *bdev.aliases]:
        _names[n] = bdev
    bdev._status = _Status.READY
    notify.send("bdev_register", bdev.name)
    _start_examine(bdev)


def add_alias(bdev: Bdev, alias: str) -> None:
    if alias in _names:
        raise BdevError(errno.EEXIST, f"bdev name {alias!r} already exists")
    bdev.aliases.append(alias)
    _names[alias] = bdev


def remove_alias(bdev: Bdev, alias: str) -> None:
    if alias not in bdev.aliases:
        raise BdevError(errno.ENOENT, f"bdev {bdev.name!r} has no alias {alias!r}")
    bdev.aliases.remove(alias)
    if _names.get(alias) is bdev:
        del _names[alias]


def open_ext(name: str, write: bool, event_cb: EventCb, event_ctx: Any = None) -> BdevDesc:
    """Open a bdev by name/alias/UUID. Raises BdevError: ENODEV (no such bdev or being
    removed), EPERM (write refused by a claim)."""
    bdev = get_bdev(name)
    if bdev is None:
        core = worker_core()
        if core is not None:
            raise BdevError(errno.ENODEV, f"bdev {name!r} does not exist on the reactor of core {core}: only bdevs "
                                          f"of replicated modules (malloc, null, aio, uring, passthru, delay, split) "
                                          f"exist on every reactor; others live on the main reactor only")
        raise BdevError(errno.ENODEV, f"bdev {name!r} does not exist")
    if bdev._status is not _Status.READY:
        raise BdevError(errno.ENODEV, f"bdev {bdev.name!r} is being removed")
    if event_cb is None:
        raise BdevError(errno.EINVAL, "open_ext needs an event callback (for REMOVE and RESIZE)")
    if write and bdev._claims:
        owner = next(iter(bdev._claims))
        raise BdevError(errno.EPERM, f"bdev {bdev.name!r} is claimed by module {owner!r}; cannot open it for writing")
    desc = BdevDesc(bdev, write, event_cb, event_ctx, get_thread())
    bdev._descs.append(desc)
    return desc


def unregister_bdev(bdev: Bdev, cb: Callable[[int], Any] | None = None) -> None:
    """Remove a bdev: open descriptors get REMOVE and must close; once they have (and
    their channels are released) the module's destruct runs, then cb(0)."""
    if bdev._status is _Status.REMOVED or _bdevs.get(bdev.name) is not bdev:
        raise BdevError(errno.ENODEV, f"bdev {bdev.name!r} does not exist")
    if cb is not None:
        bdev._unregister_cbs.append(cb)
    if bdev._status is _Status.REMOVING:
        return
    bdev._status = _Status.REMOVING
    if bdev.qos is not None:
        bdev.qos.stop()
    if not bdev._descs:
        finish_unregister(bdev)
        return
    for d in list(bdev._descs):
        d._event(BdevEvent.REMOVE)


def unregister_bdev_by_name(name: str, module: BdevModule | None = None,
                            cb: Callable[[int], Any] | None = None) -> None:
    bdev = _bdevs.get(name)
    if bdev is None:
        raise BdevError(errno.ENODEV, f"bdev {name!r} does not exist")
    if module is not None and bdev.module is not module:
        raise BdevError(errno.ENODEV, f"bdev {name!r} is not a {module.name} bdev")
    unregister_bdev(bdev, cb)


def finish_unregister(bdev: Bdev) -> None:
    io_device_unregister(bdev, _io_device_gone)


def _io_device_gone(bdev: Bdev) -> None:
    def destructed(rc: int) -> None:
        _bdevs.pop(bdev.name, None)
        for n in [bdev.name, *bdev.aliases]:
            if _names.get(n) is bdev:
                del _names[n]
        bdev._status = _Status.REMOVED
        notify.send("bdev_unregister", bdev.name)
        cbs, bdev._unregister_cbs = bdev._unregister_cbs, []
        for cb in cbs:
            cb(rc)
    try:
        bdev.destruct(destructed)
    except Exception:
        log.exception("bdev %s: destruct raised", bdev.name)
        destructed(-errno.EIO)


# -- examine ------------------------------------------------------------------------------


def _start_examine(bdev: Bdev) -> None:
    if not options.bdev_auto_examine and bdev.name not in _examine_allowed:
        return
    bdev._examine_pending += 1
    t = get_thread()
    if t is not None:
        t.send_msg(_examine, bdev)
    else:
        _examine(bdev)


def examine(name: str) -> None:
    """bdev_examine: allow (and run) examine of ``name`` when auto-examine is off."""
    _examine_allowed.add(name)
    b = get_bdev(name)
    if b is not None and b._status is _Status.READY:
        b._examine_pending += 1
        _examine(b)


def _examine(bdev: Bdev) -> None:
    if bdev._status is not _Status.READY:
        _examine_step_done(bdev)
        return
    mods = modules()
    for m in mods:
        if m.has_examine_config():
            try:
                m.examine_config(bdev)
            except Exception:
                log.exception("module %s: examine_config(%s) raised", m.name, bdev.name)
    if bdev._claims:
        disk_mods = [m for m in mods if m.name in bdev._claims and m.has_examine_disk()]
    else:
        disk_mods = [m for m in mods if m.has_examine_disk()]
    bdev._examine_pending += len(disk_mods)
    for m in disk_mods:
        fired = [False]

        def done(bdev: Bdev = bdev, fired: list[bool] = fired) -> None:
            if not fired[0]:
                fired[0] = True
                _examine_step_done(bdev)
        try:
            m.examine_disk(bdev, done)
        except Exception:
            log.exception("module %s: examine_disk(%s) raised", m.name, bdev.name)
            done()
    _examine_step_done(bdev)


def _examine_step_done(bdev: Bdev) -> None:
    bdev._examine_pending -= 1
    if examine_in_progress() == 0 and _examine_waiters:
        waiters = list(_examine_waiters)
        _examine_waiters.clear()
        for w in waiters:
            w()


def examine_in_progress() -> int:
    return sum(b._examine_pending for b in _bdevs.values())


def wait_for_examine(cb: Callable[[], Any]) -> None:
    """cb() once no examine is running (at once if none is)."""
    if examine_in_progress() == 0:
        cb()
    else:
        _examine_waiters.append(cb)


def _reset_for_tests() -> None:
    _bdevs.clear()
    _names.clear()
    _examine_allowed.clear()
    _examine_waiters.clear()
    channel._reset_for_tests()
    options.__init__()  # type: ignore[misc]
    for m in modules():  # vbdev modules' pending configs (delay, passthru, split) are per app
        configs = getattr(m, "configs", None)
        if isinstance(configs, dict):
            configs.clear()


def _trace_changed() -> None:
    """The bdev trace group went on or off: every channel swaps its submit/complete paths."""
    on = _trace.group_on(_tp.GROUP_BDEV)
    for b in _bdevs.values():
        for ch in b._channels:
            if ch.traced != on:
                ch.set_traced(on)


_trace.on_change(_trace_changed)
