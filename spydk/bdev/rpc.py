"""The bdev layer's RPCs and the "bdev" subsystem (init, fini, config dump)."""
from __future__ import annotations

import asyncio
import errno
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from spydk.bdev import registry as core
from spydk.bdev.bdev import Bdev, BdevError
from spydk.bdev.histogram import Histogram
from spydk.bdev.io import SUPPORTED_IO_TYPE_KEYS, IoType
from spydk.bdev.module import modules
from spydk.bdev.qos import IOS_PER_SEC_MULTIPLE, LIMIT_NAMES, Qos
from spydk.bdev.registry import get_bdev
from spydk.init.subsystem import Subsystem, register_subsystem
from spydk.rpc import STARTUP, AppContext, Param, RpcContext, RpcError, rpc_method
from spydk.rpc.errors import invalid_params, not_found
from spydk.rpc.replica import replicated
from spydk.thread import TICK_RATE, get_thread
from spydk.thread.cores import register_op, workers

RESET_MODES = ("all", "maxmin", "error", "none")


def rpc_error(e: BdevError) -> RpcError:
    return RpcError(-e.errno, e.message)


def lookup(name: str) -> Bdev:
    b = get_bdev(name)
    if b is None:
        raise not_found("bdev", name)
    return b


def unregister_future(start: Callable[[Callable[[int], Any]], None]) -> Awaitable[bool]:
    """Run an unregister that reports through cb(rc) and return a future of True."""
    fut: asyncio.Future[bool] = asyncio.get_event_loop().create_future()

    def done(rc: int) -> None:
        if fut.done():
            return
        if rc == 0:
            fut.set_result(True)
        else:
            fut.set_exception(RpcError(rc, f"unregister failed: {errno.errorcode.get(-rc, rc)}"))
    try:
        start(done)
    except BdevError as e:
        raise rpc_error(e) from None
    return fut


# -- bdev_get_bdevs -----------------------------------------------------------------------


def bdev_info(b: Bdev) -> dict[str, Any]:
    qos = b.qos.to_json() if b.qos is not None else {k: 0 for k in LIMIT_NAMES}
    info: dict[str, Any] = {
        "name": b.name,
        "aliases": list(b.aliases),
        "product_name": b.product_name,
        "block_size": b.block_size,
        "num_blocks": b.num_blocks,
        "uuid": str(b.uuid),
    }
    if b.optimal_io_boundary:
        info["optimal_io_boundary"] = b.optimal_io_boundary
    if b.physical_block_size != b.block_size:
        info["physical_block_size"] = b.physical_block_size
    info["assigned_rate_limits"] = qos
    info["claimed"] = b.claimed
    if b.claimed:
        ct = b.claim_type
        info["claim_type"] = ct.value if ct is not None else "exclusive_write"
    info["zoned"] = False
    info["supported_io_types"] = {k: b.supports(t) for k, t in SUPPORTED_IO_TYPE_KEYS}
    info["driver_specific"] = b.dump_info_json()
    return info


@rpc_method("bdev_get_bdevs", [Param("name", "string"), Param("timeout", "uint64")])
def bdev_get_bdevs(ctx: RpcContext, name: str | None = None, timeout: int = 0) -> Any:
    """List bdevs (or one, waiting up to timeout ms for it to appear)."""
    if name is None:
        return [bdev_info(b) for b in core.bdevs()]
    b = get_bdev(name)
    if b is not None:
        return [bdev_info(b)]
    if not timeout:
        raise not_found("bdev", name)

    async def wait() -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            b = get_bdev(name)
            if b is not None:
                return [bdev_info(b)]
        raise not_found("bdev", name, f"waited {timeout} ms")
    return wait()


# -- iostat -------------------------------------------------------------------------------


# "name" is the single-bdev form older SPDK releases and clients use (rpc.py -b); SPDK
# deprecated it for "names" and dropped it from the schema, but still decodes it.
@rpc_method("bdev_get_iostat", [Param("name", "string", deprecated=True),
                                Param("names", "array", items=Param("name", "string")),
                                Param("per_channel", "boolean"),
                                Param("reset_mode", "enum", choices=RESET_MODES)])
async def bdev_get_iostat(ctx: RpcContext, name: str | None = None, names: list[str] | None = None,
                          per_channel: bool = False, reset_mode: str | None = None) -> Any:
    """I/O statistics of every bdev, or of the named ones (summed over every reactor)."""
    wanted = list(names or []) + ([name] if name else [])
    targets = [lookup(n) for n in wanted] if wanted else core.bdevs()
    out: dict[str, Any] = {"tick_rate": TICK_RATE, "ticks": time.perf_counter_ns(),
                           "bdevs": _iostat([b.name for b in targets], per_channel, reset_mode)}
    ws = workers()
    if ws is not None:
        for theirs in await ws.call_all("bdev_iostat", [b.name for b in targets], per_channel, reset_mode):
            _merge_iostat(out["bdevs"], theirs)
    return out


def _iostat(wanted: list[str], per_channel: bool, reset_mode: str | None) -> list[dict[str, Any]]:
    out = []
    for n in wanted:
        b = get_bdev(n)
        if b is None:   # a worker lacks the bdevs that exist on the main reactor only
            continue
        if per_channel:
            chans = []
            for ch in sorted(b._channels, key=lambda c: c.thread.id):
                chans.append({"thread_id": ch.thread.id, **ch.stat.to_json()})
            out.append({"name": b.name, "channels": chans})
        else:
            out.append({"name": b.name, **b.iostat().to_json()})
        if reset_mode is not None:
            b.reset_iostat(reset_mode)
    return out


def _merge_iostat(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Add another reactor's statistics of the same bdevs: counters sum, max/min combine,
    per-channel lists concatenate (thread ids are unique across reactors)."""
    by_name = {d["name"]: d for d in mine}
    for d in theirs:
        m = by_name.get(d["name"])
        if m is None:
            continue
        for k, v in d.items():
            if k == "name":
                continue
            if k == "channels":
                m[k] = m[k] + v
            elif k == "io_error":
                for ek, ev in v.items():
                    m[k][ek] = m[k].get(ek, 0) + ev
            elif k.startswith("max_"):
                m[k] = max(m[k], v)
            elif k.startswith("min_"):
                m[k] = min(x for x in (m[k], v) if x) if (m[k] or v) else 0
            elif isinstance(v, int):
                m[k] = m[k] + v


register_op("bdev_iostat", lambda wanted, per_channel, reset_mode, *, fds: _iostat(wanted, per_channel, reset_mode))


@rpc_method("bdev_reset_iostat", [Param("name", "string"), Param("mode", "enum", choices=RESET_MODES)])
def bdev_reset_iostat(ctx: RpcContext, name: str | None = None, mode: str = "all") -> bool:
    """Reset the I/O statistics of one or all bdevs."""
    for b in [lookup(name)] if name else core.bdevs():
        b.reset_iostat(mode)
    return True


# -- histograms ---------------------------------------------------------------------------


def _opc(opc: str | None) -> int:
    if opc is None:
        return -1
    try:
        return int(IoType[opc.upper()])
    except KeyError:
        valid = ", ".join(t.name.lower() for t in IoType if t is not IoType.INVALID)
        raise invalid_params(f"parameter 'opc': unknown I/O type {opc!r} (one of {valid})") from None


@rpc_method("bdev_enable_histogram", [Param("name", "string", required=True),
                                      Param("enable", "boolean", required=True), Param("opc", "string"),
                                      Param("granularity", "uint8"), Param("min_nsec", "uint64"),
                                      Param("max_nsec", "uint64")])
def bdev_enable_histogram(ctx: RpcContext, name: str, enable: bool, opc: str | None = None,
                          granularity: int = 7, min_nsec: int = 0, max_nsec: int = 0) -> bool:
    """Start (or stop) collecting a latency histogram."""
    b = lookup(name)
    if not 1 <= granularity <= 32:
        raise invalid_params(f"parameter 'granularity' must be 1..32, got {granularity}")
    if max_nsec and min_nsec > max_nsec:
        raise invalid_params(f"parameter 'min_nsec' ({min_nsec}) is larger than 'max_nsec' ({max_nsec})")
    b.enable_histogram(enable, _opc(opc), granularity, min_nsec, max_nsec)
    return True


@rpc_method("bdev_get_histogram", [Param("name", "string", required=True)])
def bdev_get_histogram(ctx: RpcContext, name: str) -> dict[str, Any]:
    """The latency histogram: base64 little-endian uint64 bucket counts."""
    b = lookup(name)
    h = b.histogram
    if h is None:
        raise RpcError(-errno.EFAULT, f"histogram is not enabled on bdev {b.name!r}; use bdev_enable_histogram")
    return {"histogram": h.encode(), "tsc_rate": TICK_RATE, "bucket_shift": h.granularity,
            "granularity": h.granularity, "min_range": 0, "max_range": h.num_ranges - 1}


# -- QoS ----------------------------------------------------------------------------------


@rpc_method("bdev_set_qos_limit", [Param("name", "string", required=True)] +
            [Param(n, "uint64") for n in LIMIT_NAMES])
def bdev_set_qos_limit(ctx: RpcContext, name: str, **limits: int) -> bool:
    """Rate-limit a bdev (0 turns a limit off)."""
    b = lookup(name)
    if not limits:
        raise invalid_params(f"give at least one of {', '.join(LIMIT_NAMES)}")
    ios = limits.get("rw_ios_per_sec")
    if ios and ios % IOS_PER_SEC_MULTIPLE:
        raise invalid_params(f"parameter 'rw_ios_per_sec' must be a multiple of {IOS_PER_SEC_MULTIPLE}, got {ios}")
    if b.qos is None:
        b.qos = Qos(b, get_thread())
    b.qos.set_limits(**limits)
    if not b.qos.active:
        b.qos = None
    return True


# -- options and examine ------------------------------------------------------------------


@rpc_method("bdev_set_options", [Param("bdev_io_pool_size", "uint32"), Param("bdev_io_cache_size", "uint32"),
                                 Param("bdev_auto_examine", "boolean"),
                                 Param("iobuf_small_cache_size", "uint32"),
                                 Param("iobuf_large_cache_size", "uint32")], states=STARTUP)
def bdev_set_options(ctx: RpcContext, **opts: Any) -> bool:
    """Set bdev layer options (before framework_start_init)."""
    for k in ("bdev_io_pool_size", "bdev_io_cache_size"):
        if k in opts and opts[k] < 1:
            raise invalid_params(f"parameter '{k}' must be at least 1, got {opts[k]}")
    pool = opts.get("bdev_io_pool_size", core.options.bdev_io_pool_size)
    cache = opts.get("bdev_io_cache_size", core.options.bdev_io_cache_size)
    if pool < cache:
        raise invalid_params(f"parameter 'bdev_io_pool_size' ({pool}) must not be smaller than "
                             f"'bdev_io_cache_size' ({cache})")
    for k, v in opts.items():
        setattr(core.options, k, v)
    return True


@rpc_method("bdev_wait_for_examine", [])
def bdev_wait_for_examine(ctx: RpcContext) -> Any:
    """Return once every bdev's examine has finished."""
    if core.examine_in_progress() == 0:
        return True
    fut: asyncio.Future[bool] = asyncio.get_event_loop().create_future()

    def done() -> None:
        if not fut.done():
            fut.set_result(True)
    core.wait_for_examine(done)
    return fut


@rpc_method("bdev_examine", [Param("name", "string", required=True)])
def bdev_examine(ctx: RpcContext, name: str) -> bool:
    """Examine a bdev (only when bdev_auto_examine is false)."""
    if core.options.bdev_auto_examine:
        raise invalid_params("bdev_examine is only allowed when bdev_auto_examine is false (see bdev_set_options)")
    core.examine(name)
    return True


# -- subsystem ----------------------------------------------------------------------------


async def _maybe_await(x: Any) -> None:
    if inspect.isawaitable(x):
        await x


async def bdev_subsystem_init(app: AppContext) -> None:
    for m in modules():
        await _maybe_await(m.init())


async def bdev_subsystem_fini(app: AppContext) -> None:
    # Unregister every bdev, newest first (virtual bdevs sit on older ones), and wait.
    loop = asyncio.get_event_loop()
    for b in reversed(core.bdevs()):
        if b._status is not core._Status.READY:
            continue
        fut: asyncio.Future[int] = loop.create_future()
        try:
            core.unregister_bdev(b, lambda rc, fut=fut: fut.done() or fut.set_result(rc))  # type: ignore[misc]
        except BdevError:
            continue
        try:
            await asyncio.wait_for(fut, 10)
        except TimeoutError:
            core.log.warning("bdev %s: still open after 10 s at shutdown", b.name)
    for m in reversed(modules()):
        await _maybe_await(m.fini())


def bdev_subsystem_config(app: AppContext | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"method": "bdev_set_options", "params": core.options.to_json()}]
    for m in modules():
        out.extend(m.config_json())
    for b in core.bdevs():
        entry = b.write_config_json()
        if entry is not None:
            out.append(entry)
    for b in core.bdevs():
        if b.qos is not None and b.qos.active:
            out.append({"method": "bdev_set_qos_limit", "params": {"name": b.name, **b.qos.to_json()}})
        if b.histogram is not None:
            p: dict[str, Any] = {"name": b.name, "enable": True, "granularity": b.histogram.granularity}
            if b.histogram_opc >= 0:
                p["opc"] = IoType(b.histogram_opc).name.lower()
            out.append({"method": "bdev_enable_histogram", "params": p})
    out.append({"method": "bdev_wait_for_examine"})
    return out


register_subsystem(Subsystem("bdev", init=bdev_subsystem_init, fini=bdev_subsystem_fini,
                             config=bdev_subsystem_config))

__all__ = ["Histogram", "bdev_info", "bdev_subsystem_config", "lookup", "rpc_error", "unregister_future"]


# -- several cores: which bdev RPCs every reactor repeats (spydk.rpc.replica) -----------------

def same_bdev_on_every_reactor(params: Any, result: Any) -> tuple[Any, list[int]]:
    """A create's params as the worker reactors repeat them: the name and UUID main chose, so
    the bdev is the same object (same identity on every reactor)."""
    b = get_bdev(result) if isinstance(result, str) else None
    out = dict(params or {})
    if b is not None:
        out["name"] = b.name
        out["uuid"] = str(b.uuid)
    return out, []


replicated("bdev_set_options")
