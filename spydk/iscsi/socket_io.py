"""The iSCSI target's I/O glue: listening sockets, one asyncio protocol per connection
driving the sans-IO ``conn.Connection``, SCSI execution and the NOP/login timers.

Received bytes go straight into the codec's buffer (BufferedProtocol.get_buffer ->
Connection.get_buffer); everything the connection wants to send after one batch of input
leaves in one ``transport.writelines`` call. Completions that arrive later (bdev I/O) are
gathered and flushed once per event-loop turn.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import itertools
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from spydk.iscsi.conn import (
    Connection,
    ConnectionFailed,
    ConnState,
    LoggedOut,
    LoginComplete,
    ScsiCommandReady,
    TargetConfig,
    TaskManagementRequest,
)
from spydk.iscsi.conn_core import ConnectionCore
from spydk.iscsi.iscsi_tgt import IscsiConfigError, IscsiTarget
from spydk.iscsi.negotiation import Limits
from spydk.iscsi.policy import PortalPolicy
from spydk.iscsi.portal_group import PortalGroup
from spydk.iscsi.session import SessionRegistry
from spydk.iscsi.target_node import TargetNode
from spydk.log import NOTICE, get_logger
from spydk.rpc.registry import AppContext
from spydk.scsi.task import ScsiTask, TmfResponse
from spydk.thread.thread import Thread, set_thread

log = get_logger("iscsi")

_conn_ids = itertools.count()
MAX_WRITE_LENGTH = 32 << 20
# Limits an initiator cannot negotiate (docs/reliability.md): connections per portal group
# past the cap are closed at accept; login must reach Full Feature Phase within LOGIN_TIMEOUT
# seconds (a client that connects and sends nothing, or half a PDU, is closed then).
MAX_CONNECTIONS_PER_PORTAL_GROUP = 1024
LOGIN_TIMEOUT = 30.0


def target_config(t: IscsiTarget) -> TargetConfig:
    o = t.options
    limits = Limits(first_burst_length=o.first_burst_length, immediate_data=o.immediate_data,
                    max_connections=o.max_connections_per_session,
                    default_time2wait=o.default_time2wait, default_time2retain=o.default_time2retain,
                    max_outstanding_r2t=max(1, o.max_r2t_per_connection))
    # Writes up to what the SCSI layer advertises as MAXIMUM TRANSFER LENGTH (32 MiB) must
    # reach it; larger ones are refused by the connection before any buffer is allocated.
    return TargetConfig(limits=limits, queue_depth=o.max_queue_depth,
                        nop_interval=float(o.nop_in_interval), nop_timeout=float(o.nop_timeout),
                        max_write_length=MAX_WRITE_LENGTH, login_timeout=LOGIN_TIMEOUT)


class IscsiProtocol(asyncio.BufferedProtocol):
    """One TCP connection."""

    def __init__(self, glue: TargetGlue, group: PortalGroup) -> None:
        self.glue = glue
        self.group = group
        self.id = next(_conn_ids)
        self.conn: Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.node: TargetNode | None = None
        self.device: Any = None
        self.target_port = ""
        self.initiator_addr = ""
        self.target_addr = ""
        self.state_name = "invalid"
        self._pending: list[Any] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")
        self._inflight = 0  # tasks with the SCSI layer
        self._started: dict[ScsiTask, int] = {}  # only while the node keeps a histogram
        self._in_input = False  # inside buffer_updated (which flushes at its end)
        self._on_complete = self._task_done  # one bound method for every task
        self._loop = glue.loop
        self._thread = glue.thread
        self.counted = False  # counted in its portal group's connections

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.initiator_addr, self.target_addr = str(peer[0]), str(local[0])
        g = self.glue
        n = g.per_group.get(self.group.tag, 0)
        if n >= MAX_CONNECTIONS_PER_PORTAL_GROUP:
            g.refused += 1
            if g.refused == 1 or g.refused % 1000 == 0:
                log.warning("iSCSI portal group %d: %d connections open (limit %d); refusing %s "
                            "(%d refused so far)", self.group.tag, n, MAX_CONNECTIONS_PER_PORTAL_GROUP,
                            self.initiator_addr, g.refused)
            self.state_name = "exited"
            self.transport = None
            transport.close()
            return
        g.per_group[self.group.tag] = n + 1
        self.counted = True
        config = dataclasses.replace(self.glue.config)
        policy = PortalPolicy(self.glue.target, self.group, self.target_addr, str(local[1]), config,
                              self.glue.session_count)
        self.conn = Connection(config, policy, self.glue.registry,
                               initiator_address=self.initiator_addr,
                               target_address=f"{self.target_addr}:{local[1]}",
                               now=self._loop.time())
        self.glue.protocols[self.conn] = self
        self.state_name = "running"
        self.glue.target.connections[self.id] = self
        self._arm_timer()

    def get_buffer(self, sizehint: int) -> memoryview:
        assert self.conn is not None
        return self.conn.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        conn = self.conn
        assert conn is not None
        prev = set_thread(self._thread)
        self._in_input = True
        try:
            events = conn.buffer_updated(nbytes, self._loop.time())
            if events:
                self._handle(events)
            out = conn.data_to_send()
            if out:
                self._pending.extend(out)
            if self._pending:
                self._flush()
            due = conn.get_timer()
            if due is not None and due < self._timer_due:
                self._arm_timer()  # a deadline moved earlier (login finished, ping sent)
        finally:
            self._in_input = False
            set_thread(prev)

    def eof_received(self) -> bool:
        return False  # close our side too

    def pause_writing(self) -> None:
        # The initiator does not read what we send: stop reading its commands until it does.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counted:
            return  # refused at accept
        self.counted = False
        left = self.glue.per_group.get(self.group.tag, 1) - 1
        if left > 0:
            self.glue.per_group[self.group.tag] = left
        else:
            self.glue.per_group.pop(self.group.tag, None)
        self.state_name = "exited"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn = self.conn
        if conn is not None:
            session = conn.session
            conn.connection_lost()
            if session is not None and session.closed and self.device is not None:
                self.device.nexus_lost(conn.initiator_port)
        if self.node is not None:
            self.node.connections.discard(self)
        self.glue.target.connections.pop(self.id, None)
        if conn is not None:
            self.glue.protocols.pop(conn, None)
        self.transport = None
        # Our one bound method for every task is a reference cycle: drop it so that the closed
        # connection goes now, not at the next cyclic collection (tasks still with the SCSI
        # layer hold their own reference to it and complete into nothing).
        self.__dict__.pop("_on_complete", None)

    # -- events -----------------------------------------------------------------------

    def _handle(self, events: list[Any]) -> None:
        conn = self.conn
        assert conn is not None
        for ev in events:
            if isinstance(ev, ScsiCommandReady):
                task = ev.task
                task.on_complete = self._on_complete
                task.target_port = self.target_port
                self._inflight += 1
                if self.node is not None and self.node.histogram is not None:
                    self._started[task] = time.perf_counter_ns()
                self.device.execute(task)
            elif isinstance(ev, TaskManagementRequest):
                self._tmf(ev)
            elif isinstance(ev, LoginComplete):
                self._logged_in(ev)
            elif isinstance(ev, LoggedOut | ConnectionFailed):
                if isinstance(ev, ConnectionFailed):
                    log.info("iSCSI connection %d from %s: %s", self.id, self.initiator_addr, ev.reason)
                self._close_after_flush()

    def _logged_in(self, ev: LoginComplete) -> None:
        conn = self.conn
        assert conn is not None
        info = conn.target
        if info is None or not isinstance(info.context, TargetNode):
            return  # discovery session
        node = info.context
        if node.destroying or node.device is None:
            conn.fail("target node removed")
            return
        self.node = node
        self.device = node.device
        self.target_port = f"{node.name},t,0x{self.group.tag:04x}"
        node.connections.add(self)

    def _tmf(self, req: TaskManagementRequest) -> None:
        conn = self.conn
        assert conn is not None
        if self.device is None:
            self._queue(conn.task_management_done(req, TmfResponse.NOT_SUPPORTED))
            return
        ref = req.task.tag if req.task is not None else req.ref_itt

        def done(resp: TmfResponse) -> None:
            if self.conn is conn and self.transport is not None:
                self._queue(conn.task_management_done(req, resp))
        self.device.task_mgmt(req.function, req.lun, ref, conn.initiator_port, done)

    def _task_done(self, task: ScsiTask) -> None:
        self._inflight -= 1
        if self._started:
            t0 = self._started.pop(task, None)
            node = self.node
            if t0 is not None and node is not None and node.histogram is not None:
                node.histogram.tally(time.perf_counter_ns() - t0)
        conn = self.conn
        if conn is None or self.transport is None:
            return
        if conn.state is ConnState.FAILED:
            return
        bufs = conn.complete_task(task)
        if self._inflight or self._in_input:
            self._queue(bufs)  # more completions (or our own output) follow: send them together
        elif bufs:
            # The last task in flight: send now rather than a loop turn later (latency at
            # low queue depth).
            self._pending.extend(bufs)
            self._flush()

    # -- output -----------------------------------------------------------------------

    def _queue(self, bufs: list[Any]) -> None:
        if not bufs:
            return
        self._pending.extend(bufs)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._pending
        if not out or self.transport is None:
            return
        self._pending = []
        self.transport.writelines(out)

    def _close_after_flush(self) -> None:
        conn = self.conn
        if conn is not None:
            self._pending.extend(conn.data_to_send())
        self._flush()
        self.state_name = "exiting"
        if self.transport is not None:
            self.transport.close()

    def request_logout(self, deadline: float) -> bool:
        """Ask the initiator to log out (Async Message); drop the connection if it has not
        after ``deadline`` seconds. False when not in Full Feature Phase."""
        conn = self.conn
        if conn is None or self.transport is None or conn.state is not ConnState.FULL_FEATURE:
            return False
        self._queue(conn.request_logout())
        self._loop.call_later(deadline, self._logout_overdue, conn)
        return True

    def _logout_overdue(self, conn: Connection) -> None:
        if self.conn is conn and self.transport is not None and conn.state is ConnState.FULL_FEATURE:
            self.drop("no logout after the target asked for one")

    def drop(self, reason: str) -> None:
        """End this connection from the target side (node deleted, shutdown)."""
        if self.conn is not None:
            self.conn.fail(reason)
        self._close_after_flush()

    # -- timers -----------------------------------------------------------------------

    def _arm_timer(self) -> None:
        """One timer per connection, at the connection's earliest deadline. Deadlines that
        move later (every received PDU pushes the NOP deadline) only re-arm when it fires."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = float("inf")
        conn = self.conn
        if conn is None or self.transport is None:
            return
        due = conn.get_timer()
        if due is not None:
            self._timer_due = due
            self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = float("inf")
        conn = self.conn
        if conn is None or self.transport is None:
            return
        due = conn.get_timer()
        if due is not None and due <= self._loop.time():
            prev = set_thread(self._thread)
            try:
                events = conn.handle_timer(self._loop.time())
                self._pending.extend(conn.data_to_send())
                if events:
                    self._handle(events)
                self._flush()
            finally:
                set_thread(prev)
        self._arm_timer()

    def wake(self) -> None:
        """The session layer has events for us without input of ours."""
        conn = self.conn
        if conn is None or self.transport is None:
            return
        prev = set_thread(self._thread)
        try:
            events = conn.pending_events()
            if events:
                self._handle(events)
            self._queue(conn.data_to_send())
        finally:
            set_thread(prev)

    # -- RPC view ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        conn = self.conn
        s = conn.session if conn is not None else None
        return {
            "id": self.id,
            "cid": conn.cid if conn is not None else 0,
            "tsih": s.tsih if s is not None else 0,
            "state": self.state_name,
            "initiator_name": conn.initiator_name if conn is not None else "",
            "initiator_addr": self.initiator_addr,
            "target_addr": self.target_addr,
            "target_node_name": self.node.name.split(":", 1)[-1] if self.node is not None else "",
            "lcore_id": self.glue.lcore,
            "thread_id": self._thread.id,
            "thread_name": self._thread.name,
        }


class TargetGlue:
    """Per-app runtime state: the session registry, listeners, the app thread."""

    def __init__(self, app: AppContext, target: IscsiTarget,
                 open_backend: Callable[[str], Any]) -> None:
        assert app.thread is not None
        self.app = app
        self.target = target
        self.thread: Thread = app.thread
        self.lcore = app.opts.lcore
        self.loop = asyncio.get_running_loop()
        self.registry = SessionRegistry(on_wake=self._wake)
        self.config = target_config(target)
        self.open_backend = open_backend
        self.protocols: dict[ConnectionCore, IscsiProtocol] = {}
        self.per_group: dict[int, int] = {}  # open connections per portal group tag
        self.refused = 0

    def session_count(self) -> int:
        return len(self.registry)

    def _wake(self, conn: ConnectionCore) -> None:
        proto = self.protocols.get(conn)
        if proto is not None:
            self.loop.call_soon(proto.wake)

    async def start_listening(self, pg: PortalGroup) -> None:
        servers = []
        try:
            for p in pg.portals:
                server = await self.loop.create_server(
                    lambda: IscsiProtocol(self, pg), p.bind_host, int(p.port), reuse_address=True)
                servers.append(server)
        except OSError:
            for s in servers:
                s.close()
            raise
        for p in pg.portals:
            host = p.host if p.host.startswith("[") or ":" not in p.host else f"[{p.host}]"
            log.log(NOTICE, "iSCSI target listening on TCP %s:%s (portal group %d)", host, p.port, pg.tag)
        pg.servers = servers
        pg.started = True

    async def stop_listening(self, pg: PortalGroup) -> None:
        for s in pg.servers:
            s.close()
        for c in list(self.target.connections.values()):
            if c.group is pg:
                c.drop("portal group deleted")
        pg.servers = []
        pg.started = False

    def _open(self, node: TargetNode, lun_id: int, bdev: str) -> Any:
        try:
            backend = self.open_backend(bdev)
        except Exception as e:  # bdev.BdevError and friends: name the bdev
            err = getattr(e, "errno", None) or errno.ENODEV
            raise IscsiConfigError(f"LUN {lun_id} of {node.name}: cannot open bdev {bdev!r}: {e}",
                                   err) from None
        if hasattr(backend, "on_remove"):
            backend.on_remove = lambda b: self._bdev_removed(node, lun_id, b)
        return backend

    def _bdev_removed(self, node: TargetNode, lun_id: int, backend: Any) -> None:
        """Hot remove: the LUN disappears (initiators get REPORTED LUNS DATA HAS CHANGED)."""
        dev = node.device
        if dev is not None and dev.get_lun(lun_id) is not None:
            dev.remove_lun(lun_id)
        node.luns.pop(lun_id, None)
        if backend in node.backends:
            node.backends.remove(backend)
        backend.close()

    def build_device(self, node: TargetNode) -> None:
        from spydk.scsi.device import ScsiDevice
        dev = ScsiDevice(node.name)
        opened: list[Any] = []
        try:
            for lun_id, bdev in sorted(node.luns.items()):
                backend = self._open(node, lun_id, bdev)
                opened.append(backend)
                lun = dev.add_lun(lun_id, backend)
                if hasattr(backend, "lun"):
                    backend.lun = lun
        except IscsiConfigError:
            for b in opened:
                b.close()
            raise
        node.device = dev
        node.backends = opened

    def add_lun(self, node: TargetNode, lun_id: int, bdev: str) -> None:
        backend = self._open(node, lun_id, bdev)
        lun = node.device.add_lun(lun_id, backend)
        if hasattr(backend, "lun"):
            backend.lun = lun
        node.backends.append(backend)

    def drop_device(self, node: TargetNode) -> None:
        for c in list(node.connections):
            c.drop("target node deleted")
        for b in node.backends:
            b.close()
        node.backends = []
        node.device = None


_glues: dict[int, TargetGlue] = {}

# How a LUN's bdev name becomes a BlockBackend (with close()); tests may replace it.
backend_opener: Callable[[str], Any] | None = None


def attach(app: AppContext, target: IscsiTarget) -> None:
    opener = backend_opener
    if opener is None:
        from spydk.scsi.bdev_backend import open_bdev_backend
        opener = open_bdev_backend
    glue = TargetGlue(app, target, opener)
    _glues[id(app)] = glue
    target.start_listening = glue.start_listening
    target.stop_listening = glue.stop_listening
    target.build_device = glue.build_device
    target.drop_device = glue.drop_device
    target.add_lun_device = glue.add_lun


async def detach(app: AppContext, target: IscsiTarget) -> None:
    glue = _glues.pop(id(app), None)
    if glue is None:
        return
    for pg in target.portal_groups.values():
        await glue.stop_listening(pg)
    for c in list(target.connections.values()):
        c.drop("shutting down")
    for node in target.nodes.values():
        glue.drop_device(node)
