"""The application framework: reactor, app thread, subsystems, RPC server, config replay.

    app = App(AppOptions(rpc_socket="/tmp/x.sock", config=cfg))
    await app.start()          # returns once RPCs are served and the config is applied
    ...
    app.shutdown()             # from a signal, spdk_kill_instance or a test
    await app.wait_shutdown()

States: STARTUP (only before init: with --wait-for-rpc, until framework_start_init) ->
RUNTIME -> SHUTDOWN (new RPCs refused, subsystems finalized in reverse, files flushed).

Handlers and subsystem hooks run on the app thread, through ``run_on_app_thread``: a plain
function runs as a message on the Thread; a returned awaitable is driven by an asyncio
task that makes the app thread current around each step (``on_thread``), so code that
calls get_thread()/get_io_channel() works before and after every await.
"""
from __future__ import annotations

import asyncio
import enum
import inspect
import json
import os
import sys
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from spydk import log as spydk_log
from spydk import trace
from spydk.apps.json_config import ConfigEntry, ConfigError, SubsystemConfig, parse_config, read_config_file
from spydk.apps.plugins import load_plugins
from spydk.init.subsystem import Subsystem, all_subsystems, get_subsystem, sorted_subsystems
from spydk.rpc import errors
from spydk.rpc.errors import RpcError
from spydk.rpc.registry import State
from spydk.rpc.replica import replication_of
from spydk.rpc.server import DEFAULT_SOCKET, Dispatcher, RpcServer, SocketInUse
from spydk.thread import Reactor, Thread, init_reactor
from spydk.thread.cores import Worker, WorkerSet
from spydk.thread.link import LinkClosed
from spydk.thread.thread import set_thread

log = spydk_log.get_logger("app")

# Which subsystems each application wants (missing ones are simply not present yet).
APP_SUBSYSTEMS: dict[str, tuple[str, ...] | None] = {
    "tgt": None,  # everything registered
    "nvmf_tgt": ("keyring", "bdev", "nvmf"),
    "iscsi_tgt": ("bdev", "scsi", "iscsi"),
    "vhost": ("bdev", "scsi", "vhost_blk", "vhost_scsi"),
}


class AppState(enum.Enum):
    STARTUP = "STARTUP"
    RUNTIME = "RUNTIME"
    SHUTDOWN = "SHUTDOWN"


class StartupError(Exception):
    """The app could not start (bad config, socket in use, failed subsystem init)."""


@dataclass
class AppOptions:
    name: str = "spydk_tgt"
    rpc_socket: str | None = DEFAULT_SOCKET       # None: no RPC server (in-process use)
    json_config: str | None = None                # path of a config file to replay
    config: dict[str, Any] | None = None          # an already-parsed config (default config, tests)
    config_source: str = "<config>"               # how messages name ``config``
    json_ignore_init_errors: bool = False
    wait_for_rpc: bool = False
    subsystems: tuple[str, ...] | None = None     # None: every registered subsystem
    poll: bool = False
    spin_us: int = 0                              # --spin-us: poll this long after work, then sleep
    lcore: int = 0
    cpumask: int = 1
    tpoint_group_mask: str | None = None          # -e: trace groups to enable at start
    shm_id: int = -1                              # -i: names the trace ring like SPDK's shm id
    num_trace_entries: int = 32768
    metrics: str | None = None                    # --metrics ADDR:PORT: serve Prometheus metrics
    metrics_allow_remote: bool = False            # --metrics-allow-remote: bind a non-loopback ADDR
    workers: WorkerSet | None = None              # worker reactors forked for the other cores of -m
    thread_name: str = "app_thread"
    replica: bool = False                         # a worker reactor's App: state comes from main


def default_config() -> dict[str, Any]:
    """The embedded config that ``--default-config`` starts with."""
    text = resources.files("spydk").joinpath("data/default_config.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def describe_exports(config: dict[str, Any]) -> list[str]:
    """One line per exported disk in a config, with the command that connects to it.

    Read from the config itself (NVMe-oF subsystems with a listener, iSCSI target nodes with a
    portal group), so what the log says is what the file asked for."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for sub in config.get("subsystems", []):
        entries[sub.get("subsystem", "")] = [e.get("params") or {} for e in sub.get("config") or []
                                             if isinstance(e, dict)]
    methods = {sub.get("subsystem", ""): [e.get("method") for e in sub.get("config") or [] if isinstance(e, dict)]
               for sub in config.get("subsystems", [])}
    lines = []
    nvmf = list(zip(methods.get("nvmf", []), entries.get("nvmf", []), strict=True))
    for method, params in nvmf:
        if method != "nvmf_subsystem_add_listener" or "discovery" in params.get("nqn", ""):
            continue
        la = params.get("listen_address", {})
        nqn, addr, port = params.get("nqn"), la.get("traddr"), la.get("trsvcid")
        bdevs = [p.get("namespace", {}).get("bdev_name") for m, p in nvmf
                 if m == "nvmf_subsystem_add_ns" and p.get("nqn") == nqn]
        lines.append(f"{', '.join(b for b in bdevs if b) or 'no namespace'} exported over NVMe/{la.get('trtype', 'TCP')} "
                     f"as {nqn} on {addr}:{port}: nvme connect -t tcp -a {addr} -s {port} -n {nqn}")
    iscsi = list(zip(methods.get("iscsi", []), entries.get("iscsi", []), strict=True))
    portals = {p.get("tag"): p.get("portals", []) for m, p in iscsi if m == "iscsi_create_portal_group"}
    for method, params in iscsi:
        if method != "iscsi_create_target_node":
            continue
        name = params.get("name", "")
        iqn = name if ":" in name else f"iqn.2016-06.io.spdk:{name}"
        luns = ", ".join(f"{lun.get('bdev_name')} as LUN {lun.get('lun_id')}" for lun in params.get("luns", []))
        for m in params.get("pg_ig_maps", []):
            for portal in portals.get(m.get("pg_tag"), []):
                where = f"{portal.get('host')}:{portal.get('port')}"
                lines.append(f"{luns} exported over iSCSI as {iqn} on {where}: "
                             f"iscsiadm -m discovery -t sendtargets -p {where}")
    return lines


def on_thread(aw: Awaitable[Any], thread: Thread) -> Awaitable[Any]:
    """Wrap an awaitable so ``thread`` is the current Thread while each of its steps runs."""
    return _OnThread(aw, thread)


class _OnThread:
    __slots__ = ("_aw", "_thread")

    def __init__(self, aw: Awaitable[Any], thread: Thread):
        self._aw = aw
        self._thread = thread

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self._aw.__await__()
        send_value: Any = None
        exc: BaseException | None = None
        while True:
            prev = set_thread(self._thread)
            try:
                if exc is not None:
                    e, exc = exc, None
                    yielded = it.throw(e)
                else:
                    yielded = it.send(send_value)
            except StopIteration as stop:
                return stop.value
            finally:
                set_thread(prev)
            try:
                send_value = yield yielded
            except BaseException as e:  # cancellation and errors go into the wrapped coroutine
                exc = e


def select_subsystems(wanted: tuple[str, ...] | None) -> list[Subsystem]:
    """The wanted subsystems that are registered (with all their dependencies), init order."""
    names = [s.name for s in all_subsystems()] if wanted is None else list(wanted)

    def complete(name: str, seen: tuple[str, ...] = ()) -> bool:
        s = get_subsystem(name)
        if s is None or name in seen:
            return s is not None
        return all(complete(d, seen + (name,)) for d in s.depends_on)

    usable = []
    for n in names:
        if complete(n):
            usable.append(n)
        elif get_subsystem(n) is not None:
            log.warning("subsystem %s left out: a subsystem it depends on is not available", n)
    return sorted_subsystems(usable)


class App:
    def __init__(self, opts: AppOptions | None = None):
        self.opts = opts or AppOptions()
        self.state = AppState.STARTUP
        self.loop: asyncio.AbstractEventLoop | None = None
        self.reactor: Reactor | None = None
        self.thread: Thread | None = None   # "app_thread"
        self.subsystems: list[Subsystem] = []
        self.initialized: list[Subsystem] = []
        self.dispatcher = Dispatcher(self)
        self.server: RpcServer | None = None
        self._init_started = False
        self._init_done: asyncio.Event | None = None
        self._shutdown_done: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._pending_runtime: list[ConfigEntry] = []
        self._config_source = "<config>"
        self.exit_code = 0
        self.pid = os.getpid()

    # -- state ------------------------------------------------------------------------

    @property
    def rpc_state(self) -> State:
        if self.state is AppState.STARTUP:
            return State.STARTUP
        if self.state is AppState.RUNTIME:
            return State.RUNTIME
        return State(0)

    @property
    def shutting_down(self) -> bool:
        return self.state is AppState.SHUTDOWN

    # -- running code on the app thread -------------------------------------------------

    async def run_on_app_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call fn on the app thread; if it returns an awaitable, await it there too."""
        assert self.reactor is not None and self.thread is not None, "App.start() has not run"
        res = await self.reactor.call_on(self.thread, lambda: fn(*args, **kwargs))
        if inspect.isawaitable(res):
            res = await on_thread(res, self.thread)
        return res

    # -- start ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring the app up: reactor, RPC server, config pass 1, init (unless --wait-for-rpc),
        config pass 2. Raises StartupError; everything started is torn down first."""
        load_plugins()
        trace.configure(self.opts.name, self.opts.shm_id, self.opts.num_trace_entries, self.opts.lcore)
        if self.opts.tpoint_group_mask:
            try:
                unknown = trace.apply_arg(self.opts.tpoint_group_mask)
            except trace.TraceError as e:
                raise StartupError(f"-e {self.opts.tpoint_group_mask}: {e}") from None
            if unknown:
                log.info("-e %s: bits %#x name no spydk trace group (ignored); groups: %s",
                         self.opts.tpoint_group_mask, unknown,
                         ", ".join(f"{n}={1 << g:#x}" for g, n in trace.GROUP_NAMES.items()))
        if self.opts.rpc_socket:
            # First, so a second app on a live socket touches nothing (the reactor is per process).
            self.server = RpcServer(self.dispatcher, self.opts.rpc_socket)
            try:
                self.server.claim()
            except SocketInUse as e:
                self.server = None
                raise StartupError(str(e)) from None
        self.loop = asyncio.get_running_loop()
        self._init_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self.reactor = init_reactor(self.loop, poll_mode=self.opts.poll, lcore=self.opts.lcore,
                                    spin_us=self.opts.spin_us)
        self.thread = self.reactor.create_thread(self.opts.thread_name, self.opts.cpumask)
        self.subsystems = select_subsystems(self.opts.subsystems)
        try:
            if self.opts.workers is not None:
                try:
                    await asyncio.wait_for(self.opts.workers.attach(self.loop, self.run_on_app_thread,
                                                                    self._worker_lost), timeout=10)
                except (LinkClosed, TimeoutError) as e:
                    raise StartupError(f"a worker reactor did not start: {e or 'no answer in 10 s'}") from None
                self.dispatcher.replicate = self._replicate
            configs = self._load_config()
            if self.server is not None:
                try:
                    await self.server.start()
                except SocketInUse as e:
                    raise StartupError(str(e)) from None
            if self.opts.metrics:
                from spydk import metrics
                try:
                    await metrics.start(self, self.opts.metrics, allow_remote=self.opts.metrics_allow_remote)
                except metrics.MetricsError as e:
                    raise StartupError(f"--metrics {self.opts.metrics}: {e}") from None
            startup, runtime = self._split_config(configs)
            await self._apply(startup)
            self._pending_runtime = runtime
            if not self.opts.wait_for_rpc:
                await self.start_init()
            elif runtime:
                log.info("--wait-for-rpc: %d config entries wait for framework_start_init", len(runtime))
        except StartupError:
            await self._teardown()
            raise
        except ConfigError as e:
            await self._teardown()
            raise StartupError(str(e)) from None
        where = f"RPC at {self.opts.rpc_socket}" if self.opts.rpc_socket else "no RPC server"
        cores = f"core {self.opts.lcore}" + "".join(f", worker on core {w.core} (pid {w.pid})"
                                                     for w in self.opts.workers or ())
        if self.opts.replica:   # main reports the app once it is up, naming its workers
            log.debug("worker reactor %s started (pid %d)", self.opts.name, self.pid)
            return
        spydk_log.notice(log, "%s started (pid %d, %s, state %s, %s mode, %s)", self.opts.name, self.pid, where,
                         self.state.value, "poll" if self.opts.poll else "event", cores)

    def _load_config(self) -> list[SubsystemConfig]:
        if self.opts.json_config:
            source = self.opts.json_config
            doc = read_config_file(source)
        elif self.opts.config is not None:
            source, doc = self.opts.config_source, self.opts.config
        else:
            return []
        self._config_source = source
        present = {s.name for s in self.subsystems}
        out = []
        for sc in parse_config(doc, source):
            if sc.name not in present:
                why = "is not part of this application" if get_subsystem(sc.name) else "is unknown"
                if sc.entries:
                    log.warning("config %s: skipping subsystem %r (%d entries): it %s",
                                source, sc.name, len(sc.entries), why)
                continue
            out.append(sc)
        return out

    def _split_config(self, configs: list[SubsystemConfig]) -> tuple[list[ConfigEntry], list[ConfigEntry]]:
        startup: list[ConfigEntry] = []
        runtime: list[ConfigEntry] = []
        for sc in configs:
            for e in sc.entries:
                m = self._config_method(e)
                if m is None:
                    continue
                (startup if m.states & State.STARTUP else runtime).append(e)
        return startup, runtime

    def _where(self, e: ConfigEntry) -> str:
        return (f"config {self._config_source}: subsystem {e.subsystem!r}, "
                f"method {e.method!r} (entry {e.index})")

    def _config_method(self, e: ConfigEntry) -> Any:
        try:
            return self.dispatcher.lookup(e.method)
        except RpcError as err:
            msg = f"{self._where(e)}: {err.message}"
            if self.opts.json_ignore_init_errors:
                log.error("%s (ignored: --json-ignore-init-errors)", msg)
                return None
            raise ConfigError(msg) from None

    async def _apply(self, entries: list[ConfigEntry]) -> None:
        for e in entries:
            try:
                await self.dispatcher.call(e.method, e.params)
            except RpcError as err:
                msg = f"{self._where(e)}: {err.message}"
                if self.opts.json_ignore_init_errors:
                    log.error("%s (ignored: --json-ignore-init-errors)", msg)
                    continue
                raise ConfigError(msg) from None

    async def start_init(self) -> None:
        """Initialize the subsystems in dependency order, enter RUNTIME, replay the rest of
        the config (framework_start_init)."""
        if self._init_started:
            raise RpcError(errors.INVALID_STATE, "framework_start_init was already called; the subsystems "
                                                 "are initialized once")
        self._init_started = True
        # The workers initialize their replicas while main initializes its own subsystems (each
        # reactor's are its own; nothing else is sent to them until both are done).
        replicas = (asyncio.ensure_future(self.opts.workers.call_all("replica_start_init"))
                    if self.opts.workers is not None else None)
        try:
            for s in self.subsystems:
                if s.init is not None:
                    try:
                        await self.run_on_app_thread(s.init, self)
                    except Exception as e:
                        raise StartupError(f"subsystem {s.name!r} failed to initialize: {e}") from e
                self.initialized.append(s)
                log.debug("subsystem %s initialized", s.name)
        except BaseException:
            if replicas is not None:
                await asyncio.gather(replicas, return_exceptions=True)   # no stray task at teardown
            raise
        if replicas is not None:
            try:
                await replicas
            except Exception as e:
                raise StartupError(f"a worker reactor failed to initialize its subsystems: {e}") from e
        if self.state is AppState.STARTUP:
            self.state = AppState.RUNTIME
        pending, self._pending_runtime = self._pending_runtime, []
        await self._apply(pending)
        assert self._init_done is not None
        self._init_done.set()

    async def wait_init(self) -> None:
        assert self._init_done is not None
        await self._init_done.wait()

    # -- shutdown ---------------------------------------------------------------------

    def shutdown(self, reason: str = "") -> None:
        """Begin an orderly shutdown (idempotent; safe from signal handlers on the loop)."""
        if self._shutdown_task is not None or self.loop is None:
            return
        if reason:
            spydk_log.notice(log, "shutting down: %s", reason)
        self.state = AppState.SHUTDOWN
        if self.server is not None:
            self.server.stop_accepting()
        self._shutdown_task = self.loop.create_task(self._teardown())

    async def _replicate(self, method: str, params: Any, result: Any) -> None:
        """After ``method`` succeeded here: apply it on every worker reactor, before the answer."""
        r = replication_of(method)
        ws = self.opts.workers
        if r is None or ws is None:
            return
        fds: list[int] = []
        if r.share is not None:
            params, fds = r.share(params, result)
        futs = [(w, w.link.call("rpc_replica", method, params, fds=fds)) for w in ws if w.link is not None]
        failed = []
        for w, fut in futs:
            try:
                await fut
            except Exception as e:
                failed.append(f"core {w.core}: {e}")
        if failed:
            raise RpcError(errors.INTERNAL_ERROR,
                           f"{method} was applied on the main reactor but failed on {'; '.join(failed)}; "
                           f"the reactors now differ: undo it (or restart the app)")

    def _worker_lost(self, w: Worker, why: str) -> None:
        # A reactor's threads, channels and connections died with its process; what remains
        # cannot serve them, so the app goes down (exit code 1) rather than limp on.
        log.error("%s exited (%s, exit status %s): stopping the app", w.describe(), why, w.exit_status)
        self.exit_code = 1
        self.shutdown(f"{w.describe()} exited")

    async def wait_shutdown(self) -> None:
        assert self._shutdown_done is not None
        await self._shutdown_done.wait()

    async def run(self) -> int:
        """start(), then serve until shutdown() completes; returns the exit code."""
        await self.start()
        await self.wait_shutdown()
        return self.exit_code

    async def _teardown(self) -> None:
        self.state = AppState.SHUTDOWN
        for s in reversed(self.initialized):
            if s.fini is None:
                continue
            try:
                await asyncio.wait_for(self.run_on_app_thread(s.fini, self), timeout=30)
                log.debug("subsystem %s finalized", s.name)
            except Exception as e:
                log.error("subsystem %s failed to finalize: %s", s.name, e)
                self.exit_code = 1
        self.initialized.clear()
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.opts.workers is not None:
            await self.opts.workers.stop()
        if self.thread is not None and not self.thread.exited:
            exited = asyncio.Event()
            self.thread.exit(exited.set)
            try:
                await asyncio.wait_for(exited.wait(), timeout=2)
            except TimeoutError:
                log.warning("app_thread still holds io_channels or pollers at exit")
        if self.reactor is not None:
            self.reactor.stop()
        if "spydk.metrics" in sys.modules:
            sys.modules["spydk.metrics"].stop_exporter()
        trace.close()
        spydk_log.flush()
        if self._shutdown_done is not None:
            self._shutdown_done.set()
