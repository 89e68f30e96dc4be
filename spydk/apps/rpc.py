"""Framework RPCs: version, method list, init, subsystems, reactors, threads, log, notify."""
from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from typing import Any

import spydk
from spydk import log as spydk_log
from spydk import notify
from spydk.apps import trace_rpc as _trace_rpc  # noqa: F401,E402  (registers the trace_* methods)
from spydk.init.subsystem import get_subsystem
from spydk.rpc import errors
from spydk.rpc.errors import RpcError, invalid_params
from spydk.rpc.registry import RpcContext, State, all_methods, rpc_method
from spydk.rpc.schema import Param
from spydk.thread import TICK_RATE, Reactor, get_reactor
from spydk.thread.cores import register_op, workers
from spydk.thread.io_channel import io_devices

ANY = State.STARTUP | State.RUNTIME
LOG_LEVELS = tuple(spydk_log.LEVELS)
KILL_SIGNALS = ("SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1")

spydk_log.register_flag("rpc")
spydk_log.register_flag("app")


def _reactor(ctx: RpcContext) -> Reactor:
    r = ctx.app.reactor
    assert r is not None, "the app has no reactor before start()"
    return r


def _version_fields() -> dict[str, Any]:
    major, minor = (int(x) for x in spydk.SPDK_COMPAT_VERSION.lstrip("v").split(".")[:2])
    return {"major": major, "minor": minor, "patch": 0, "suffix": ""}


@rpc_method("spdk_get_version", states=ANY)
def spdk_get_version(ctx: RpcContext) -> dict[str, Any]:
    """Version string and the SPDK release whose RPC interface is implemented."""
    return {
        "version": f"spydk v{spydk.__version__} (SPDK {spydk.SPDK_COMPAT_VERSION} compatible)",
        "fields": _version_fields(),
    }


@rpc_method("rpc_get_methods", [Param("current", "boolean"), Param("include_aliases", "boolean")], states=ANY)
def rpc_get_methods(ctx: RpcContext, current: bool = False, include_aliases: bool = False) -> list[str]:
    """Names of the registered methods (only those callable now with current=true)."""
    state = ctx.app.rpc_state
    return [m.name for m in all_methods(include_aliases) if not current or m.states & state]


@rpc_method("framework_start_init", states=State.STARTUP)
async def framework_start_init(ctx: RpcContext) -> bool:
    """Initialize the subsystems (the app was started with --wait-for-rpc) and enter RUNTIME."""
    from spydk.apps.app import StartupError
    try:
        await ctx.app.start_init()
    except StartupError as e:
        raise RpcError(errors.INTERNAL_ERROR, str(e)) from None
    return True


@rpc_method("framework_wait_init", states=ANY)
async def framework_wait_init(ctx: RpcContext) -> bool:
    """Return once the subsystems are initialized (at once if they already are)."""
    await ctx.app.wait_init()
    return True


@rpc_method("framework_get_subsystems")
def framework_get_subsystems(ctx: RpcContext) -> list[dict[str, Any]]:
    """The app's subsystems in initialization order, each with its dependencies."""
    present = {s.name for s in ctx.app.subsystems}
    return [{"subsystem": s.name, "depends_on": [d for d in s.depends_on if d in present]}
            for s in ctx.app.subsystems]


@rpc_method("framework_get_config", [Param("name", "string", required=True), Param("with_batches", "boolean")])
def framework_get_config(ctx: RpcContext, name: str, with_batches: bool = False) -> list[dict[str, Any]] | None:
    """The RPC calls that rebuild a subsystem's current state (what save_config writes)."""
    s = get_subsystem(name)
    if s is None or s not in ctx.app.subsystems:
        known = ", ".join(x.name for x in ctx.app.subsystems) or "none"
        raise RpcError(-19, f"subsystem {name!r} is not part of this application (subsystems: {known})")
    if s.config is None:
        return None
    return s.config(ctx.app)


def _fan_out(op: str) -> Any:
    """The answers of every worker reactor to ``op`` (none on a single-core app)."""
    ws = workers()
    if ws is None:
        return _no_workers()
    return ws.call_all(op)


async def _no_workers() -> list[Any]:
    return []


def reactor_stats(reactor: Reactor) -> dict[str, Any]:
    return reactor.stats()


def threads_stats(reactor: Reactor) -> list[dict[str, Any]]:
    now = time.monotonic_ns()
    return [t.stats(now) for t in reactor.threads]


def _poller_json(p: Any, state: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": p.name, "id": p.id, "state": state, "run_count": p.run_count,
                         "busy_count": p.busy_count}
    if p.period_ns:
        d["period_ticks"] = p.period_ns * TICK_RATE // 1_000_000_000
    return d


def pollers_json(reactor: Reactor) -> list[dict[str, Any]]:
    threads = []
    for t in reactor.threads:
        active, timed, paused = t.pollers()
        threads.append({
            "name": t.name, "id": t.id,
            "active_pollers": [_poller_json(p, "waiting") for p in active],
            "timed_pollers": [_poller_json(p, "waiting") for p in timed],
            "paused_pollers": [_poller_json(p, "paused") for p in paused],
        })
    return threads


def io_channels_json(reactor: Reactor) -> list[dict[str, Any]]:
    by_thread: dict[int, list[dict[str, Any]]] = {}
    for dev in io_devices():
        for tid, ch in dev.channels.items():
            by_thread.setdefault(tid, []).append({"name": dev.name, "ref": ch.ref})
    return [{"name": t.name, "id": t.id, "io_channels": by_thread.get(t.id, [])} for t in reactor.threads]


# What a worker reactor answers when main fans a stats RPC out (run on its reactor_<core> Thread).
register_op("reactor_stats", lambda *, fds: reactor_stats(get_reactor()))
register_op("thread_stats", lambda *, fds: threads_stats(get_reactor()))
register_op("thread_pollers", lambda *, fds: pollers_json(get_reactor()))
register_op("thread_io_channels", lambda *, fds: io_channels_json(get_reactor()))
register_op("set_poll_mode", lambda enabled, *, fds: get_reactor().set_poll_mode(enabled))


@rpc_method("framework_get_reactors")
async def framework_get_reactors(ctx: RpcContext) -> dict[str, Any]:
    """Busy/idle time and lightweight threads of each reactor (one per core, each a process)."""
    r = _reactor(ctx)
    others = await _fan_out("reactor_stats")
    return {"tick_rate": TICK_RATE, "pid": os.getpid(), "reactors": [r.stats(), *others]}


_scheduler = {"scheduler_name": "static", "scheduler_period": 1_000_000}


@rpc_method("framework_get_scheduler")
def framework_get_scheduler(ctx: RpcContext) -> dict[str, Any]:
    """The thread scheduler: "static" (threads stay where they were created), as SPDK's default."""
    return dict(_scheduler)


@rpc_method("framework_set_scheduler", [Param("name", "string", required=True), Param("period", "uint64"),
                                        Param("load_limit", "uint8"), Param("core_limit", "uint8"),
                                        Param("core_busy", "uint8"), Param("mappings", "string")], states=ANY)
def framework_set_scheduler(ctx: RpcContext, name: str, period: int | None = None, **tuning: Any) -> bool:
    """Select the thread scheduler: "static" only (spydk threads never move between reactor processes)."""
    if name != "static":
        raise invalid_params(f"scheduler {name!r} is not available: spydk has the \"static\" scheduler only "
                             f"(a thread's state lives in its reactor's process, so threads do not move)")
    if tuning:
        raise invalid_params(f"{', '.join(sorted(tuning))}: options of the dynamic/gscheduler schedulers, "
                             f"which spydk does not have")
    if period is not None:
        if period < 1:
            raise invalid_params("parameter 'period' must be at least 1 microsecond")
        _scheduler["scheduler_period"] = period
    return True


def _set_cpumask(tid: int, mask: int) -> bool:
    t = get_reactor().thread_by_id(tid)
    if t is None:
        raise RpcError(-errno.ENOENT, f"thread {tid} does not exist (thread_get_stats lists the threads)")
    core = get_reactor().lcore
    if not mask >> core & 1:
        raise invalid_params(f"thread {tid} ({t.name}) lives on core {core}, in that reactor's process: "
                             f"a cpumask without core {core} would move it, which spydk threads cannot do")
    t.cpumask = mask
    return True


register_op("thread_set_cpumask", lambda tid, mask, *, fds: _set_cpumask(tid, mask))


@rpc_method("thread_set_cpumask", [Param("id", "uint64", required=True), Param("cpumask", "string", required=True)])
async def thread_set_cpumask(ctx: RpcContext, id: int, cpumask: str) -> bool:
    """Set a thread's cpumask (it must keep the thread's own core: threads stay on their reactor)."""
    try:
        mask = int(cpumask, 16) if not cpumask.startswith("[") else \
            sum(1 << c for c in _core_list(cpumask))
    except ValueError:
        raise invalid_params(f"cpumask {cpumask!r} is neither a hex mask (0x3) nor a core list ([0,1])") from None
    app_mask = 1 << ctx.app.opts.lcore
    ws = workers()
    for w in ws or ():
        app_mask |= 1 << w.core
    if not mask or mask & ~app_mask:
        raise invalid_params(f"cpumask {cpumask} is not within the app's cores ({app_mask:#x})")
    from spydk.apps.worker import ID_SHIFT
    core = id >> ID_SHIFT
    w = ws.by_core(core) if ws is not None and core else None
    if w is not None and w.link is not None:
        try:
            result: bool = await w.link.call("thread_set_cpumask", id, mask)
        except Exception as e:
            raise invalid_params(str(e).split(": ", 1)[-1]) from None
        return result
    return _set_cpumask(id, mask)


def _core_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip("[]").split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


@rpc_method("thread_get_stats")
async def thread_get_stats(ctx: RpcContext) -> dict[str, Any]:
    """Busy/idle time and poller counts of each thread, on every reactor."""
    mine = threads_stats(_reactor(ctx))
    others = await _fan_out("thread_stats")
    return {"tick_rate": TICK_RATE, "threads": [*mine, *(t for o in others for t in o)]}


@rpc_method("thread_get_pollers")
async def thread_get_pollers(ctx: RpcContext) -> dict[str, Any]:
    """Active, timed and paused pollers of each thread, on every reactor, with run and busy counts."""
    mine = pollers_json(_reactor(ctx))
    others = await _fan_out("thread_pollers")
    return {"tick_rate": TICK_RATE, "threads": [*mine, *(t for o in others for t in o)]}


@rpc_method("thread_get_io_channels")
async def thread_get_io_channels(ctx: RpcContext) -> dict[str, Any]:
    """The io_channels each thread holds (on every reactor), with their reference counts."""
    mine = io_channels_json(_reactor(ctx))
    others = await _fan_out("thread_io_channels")
    return {"tick_rate": TICK_RATE, "threads": [*mine, *(t for o in others for t in o)]}


@rpc_method("spydk_set_poll_mode", [Param("enabled", "boolean", required=True)], states=ANY)
async def spydk_set_poll_mode(ctx: RpcContext, enabled: bool) -> bool:
    """spydk only: busy-poll the reactor (lower latency, one core at 100%) or go back to events."""
    _reactor(ctx).set_poll_mode(enabled)
    ctx.app.opts.poll = enabled
    ws = workers()
    if ws is not None:
        await ws.call_all("set_poll_mode", enabled)
    return True


@rpc_method("spdk_kill_instance", [Param("sig_name", "enum", required=True, choices=KILL_SIGNALS)], states=ANY)
def spdk_kill_instance(ctx: RpcContext, sig_name: str) -> bool:
    """SIGINT/SIGTERM: orderly shutdown after this reply. Others are raised on the process."""
    app = ctx.app
    loop = asyncio.get_running_loop()
    if sig_name in ("SIGINT", "SIGTERM"):
        # New requests are refused from now on; this reply is still sent before the
        # connection closes (RpcServer.close lets a request in progress finish).
        loop.call_soon(app.shutdown, f"spdk_kill_instance {sig_name}")
    elif sig_name == "SIGUSR1":
        spydk_log.notice(spydk_log.get_logger("app"), "SIGUSR1 received through spdk_kill_instance: ignored")
    else:
        loop.call_later(0.05, os.kill, os.getpid(), getattr(signal, sig_name))
    return True


# -- log ----------------------------------------------------------------------------------

def _flag_op(flag: str, enabled: bool) -> bool:
    try:
        spydk_log.set_flag(flag, enabled)
    except ValueError as e:
        raise invalid_params(str(e)) from None
    return True


@rpc_method("log_set_flag", [Param("flag", "string", required=True)], states=ANY)
def log_set_flag(ctx: RpcContext, flag: str) -> bool:
    """Turn on debug logging of one component ("all": every component)."""
    return _flag_op(flag, True)


@rpc_method("log_clear_flag", [Param("flag", "string", required=True)], states=ANY)
def log_clear_flag(ctx: RpcContext, flag: str) -> bool:
    """Turn off debug logging of one component ("all": every component)."""
    return _flag_op(flag, False)


@rpc_method("log_get_flags", states=ANY)
def log_get_flags(ctx: RpcContext) -> dict[str, bool]:
    """Every log flag and whether it is on."""
    return spydk_log.flags()


@rpc_method("log_set_level", [Param("level", "enum", required=True, choices=LOG_LEVELS)], states=ANY)
def log_set_level(ctx: RpcContext, level: str) -> bool:
    """Drop log records below this level (flagged debug output is kept)."""
    spydk_log.set_level(level)
    return True


@rpc_method("log_get_level", states=ANY)
def log_get_level(ctx: RpcContext) -> str:
    """The level below which records are dropped."""
    return spydk_log.get_level()


@rpc_method("log_set_print_level", [Param("level", "enum", required=True, choices=LOG_LEVELS)], states=ANY)
def log_set_print_level(ctx: RpcContext, level: str) -> bool:
    """Print records at or above this level to stderr."""
    spydk_log.set_print_level(level)
    return True


@rpc_method("log_get_print_level", states=ANY)
def log_get_print_level(ctx: RpcContext) -> str:
    """The level from which records are printed to stderr."""
    return spydk_log.get_print_level()


@rpc_method("log_enable_timestamps", [Param("enabled", "boolean", required=True)], states=ANY)
def log_enable_timestamps(ctx: RpcContext, enabled: bool) -> bool:
    """Prefix printed log lines with the wall-clock time."""
    spydk_log.enable_timestamps(enabled)
    return True


# -- notify -------------------------------------------------------------------------------

@rpc_method("notify_get_types")
def notify_get_types(ctx: RpcContext) -> list[str]:
    """The notification types that can appear in notify_get_notifications."""
    return notify.types()


@rpc_method("notify_get_notifications", [Param("id", "uint64"), Param("max", "uint64")])
def notify_get_notifications(ctx: RpcContext, id: int = 0, max: int = 0) -> list[dict[str, object]]:
    """Notifications with an id at or above ``id``, oldest first, at most ``max`` (0: all)."""
    return [n.to_json() for n in notify.get(id, max)]
