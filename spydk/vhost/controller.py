"""A vhost controller: its Unix socket, its front-end connection and its rings' data path.

This is the glue between the sans-IO pieces (``BackendSession``, ``DeviceQueue``) and the
reactor: the listening socket, the connection (``recvmsg`` with SCM_RIGHTS) and every
ring's kick eventfd are readers on the reactor's event loop, so an idle controller costs
no CPU. A kick drains the ring; completions push used elements and ask for one interrupt
flush per reactor iteration (coalescing), or per ``delay_base_us`` while the completion
rate is above ``iops_threshold`` (vhost_controller_set_coalescing).

Subclasses (vhost-blk, vhost-scsi) implement ``device_features``, ``config_space``,
``max_queues`` and ``handle_chain``; they finish each chain with ``complete``.
"""
from __future__ import annotations

import array
import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spydk.thread import Poller, Thread, get_reactor, get_thread
from spydk.vhost.codec import MAX_FDS_PER_MSG, ProtocolError, close_quietly
from spydk.vhost.session import BackendSession, Vring
from spydk.vhost.virtqueue import Chain, VirtqError

log = logging.getLogger("spydk.vhost")

_FD_SPACE = socket.CMSG_SPACE(MAX_FDS_PER_MSG * array.array("i").itemsize)


class VhostError(Exception):
    def __init__(self, message: str, err: int = errno.EINVAL):
        super().__init__(message)
        self.err = err


class RingState:
    """Per started ring: outstanding requests and the stop waiting for them."""

    __slots__ = ("vring", "outstanding", "stop_cbs", "pending_irq", "poller", "session")

    def __init__(self, session: BackendSession, vring: Vring):
        self.session = session
        self.vring = vring
        self.outstanding = 0
        self.stop_cbs: list[Callable[[], None]] = []
        self.pending_irq = False
        self.poller: Poller | None = None


class VhostController:
    kind = "generic"

    def __init__(self, name: str, socket_dir: Path, cpumask: int = 1):
        self.name = name
        self.socket_path = socket_dir / name
        self.cpumask = cpumask
        self.thread: Thread = get_thread() or _app_thread()
        self.delay_base_us = 0
        self.iops_threshold = 60000
        self.session: BackendSession | None = None
        self._sock: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._rings: dict[int, RingState] = {}
        self._kick_fds: dict[int, int] = {}      # ring index -> fd registered with the loop
        self._flush_scheduled = False
        self._in_kick = False
        self._irq_poller: Poller | None = None
        self._completions = 0
        self._rate_t0 = time.monotonic_ns()
        self._rate = 0.0
        self.deleted = False

    # -- Device protocol (subclasses add the device specifics) ----------------------------

    def device_features(self) -> int:
        raise NotImplementedError

    def max_queues(self) -> int:
        raise NotImplementedError

    def config_space(self) -> bytes:
        raise NotImplementedError

    def handle_chain(self, rs: RingState, chain: Chain) -> None:
        raise NotImplementedError

    def processes(self, index: int) -> bool:
        """Whether ring ``index`` is served (vhost-scsi leaves its event queue alone)."""
        return True

    def on_ring_started(self, rs: RingState) -> None:
        """Hook: a ring's data path is about to start (the io channel may be taken here)."""

    def on_all_stopped(self) -> None:
        """Hook: no ring is running anymore."""

    # -- socket ---------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def listen(self) -> None:
        path = self.socket_path
        if path.exists() or path.is_symlink():
            if not path.is_socket():
                raise VhostError(f"cannot create socket {path}: a file that is not a socket is in the way",
                                 errno.EEXIST)
            path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(str(path))
            s.listen(1)
        except OSError as e:
            s.close()
            raise VhostError(f"cannot listen on {path}: {e.strerror}", e.errno or errno.EIO) from None
        s.setblocking(False)
        self._listener = s
        get_reactor().add_reader(s.fileno(), self.thread, self._accept)

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if self.session is not None:
            log.warning("%s: a front end is already connected; refusing a second connection", self.name)
            conn.close()
            return
        conn.setblocking(False)
        self._sock = conn
        self.session = BackendSession(self, self._send, name=self.name)
        get_reactor().add_reader(conn.fileno(), self.thread, self._readable)
        log.info("%s: front end connected", self.name)

    def _send(self, buf: bytes, fds: list[int]) -> None:
        s = self._sock
        if s is None:
            return
        try:
            if fds:
                s.sendmsg([buf], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            else:
                s.sendall(buf)
        except OSError as e:
            log.error("%s: cannot send to the front end: %s", self.name, e)
            self.disconnect()

    def _readable(self) -> None:
        for _ in range(64):   # a batch of messages per wake-up, then back to the loop
            s, sess = self._sock, self.session
            if s is None or sess is None:
                return
            try:
                data, anc, _flags, _addr = s.recvmsg(sess.decoder.wanted(), _FD_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.error("%s: connection error: %s", self.name, e)
                self.disconnect()
                return
            fds: list[int] = []
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[:len(payload) - len(payload) % a.itemsize])
                    fds.extend(a)
            if not data:
                for fd in fds:
                    close_quietly(fd)
                log.info("%s: front end disconnected", self.name)
                self.disconnect()
                return
            try:
                sess.receive(data, fds)
            except ProtocolError as e:
                log.error("%s: closing the front end's connection: %s", self.name, e)
                self.disconnect()
                return

    def disconnect(self, done: Callable[[], None] | None = None) -> None:
        """Drop the connection: rings stop after their in-flight requests complete."""
        s, sess = self._sock, self.session
        self._sock = None
        if s is not None:
            try:
                get_reactor().remove_reader(s.fileno())
            except (ValueError, OSError):
                pass
            s.close()
        if sess is None:
            if done is not None:
                done()
            return

        def closed() -> None:
            if self.session is sess:
                self.session = None
            if done is not None:
                done()
        sess.close(closed)

    def close(self, done: Callable[[], None]) -> None:
        """Stop listening, disconnect, then done() once no I/O is in flight."""
        self.deleted = True
        if self._listener is not None:
            try:
                get_reactor().remove_reader(self._listener.fileno())
            except (ValueError, OSError):
                pass
            self._listener.close()
            self._listener = None
            try:
                self.socket_path.unlink()
            except OSError:
                pass
        if self._irq_poller is not None:
            self._irq_poller.unregister()
            self._irq_poller = None
        self.disconnect(done)

    # -- rings ----------------------------------------------------------------------------

    def start_queue(self, session: BackendSession, vring: Vring) -> None:
        rs = self._rings.get(vring.index)
        if rs is None or rs.session is not session:
            rs = RingState(session, vring)
            self._rings[vring.index] = rs
            self.on_ring_started(rs)
        self._unwatch_kick(vring.index)
        fd = vring.kick_fd
        if not self.processes(vring.index):
            return
        if fd is not None:
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
            self._kick_fds[vring.index] = fd
            get_reactor().add_reader(fd, self.thread, lambda: self._kicked(rs, fd))
        elif rs.poller is None:
            rs.poller = self.thread.poller_register(lambda _a: self._process(rs), None, 0,
                                                    name=f"vhost_{self.name}_vq{vring.index}")
        self._process(rs)   # buffers posted before the kick was registered

    def _unwatch_kick(self, index: int) -> None:
        fd = self._kick_fds.pop(index, None)
        if fd is not None:
            try:
                get_reactor().remove_reader(fd)
            except (ValueError, OSError):
                pass

    def stop_queue(self, session: BackendSession, vring: Vring, done: Callable[[], None]) -> None:
        rs = self._rings.get(vring.index)
        self._unwatch_kick(vring.index)
        if rs is None:
            done()
            return
        if rs.poller is not None:
            rs.poller.unregister()
            rs.poller = None
        rs.stop_cbs.append(done)
        self._maybe_stopped(rs)

    def _maybe_stopped(self, rs: RingState) -> None:
        if rs.outstanding or not rs.stop_cbs:
            return
        self._signal(rs)
        if self._rings.get(rs.vring.index) is rs:
            del self._rings[rs.vring.index]
        cbs, rs.stop_cbs = rs.stop_cbs, []
        if not self._rings:
            self.on_all_stopped()
        for cb in cbs:
            cb()

    def _kicked(self, rs: RingState, fd: int) -> None:
        try:
            os.read(fd, 8)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return
        # One wake-up per kick: completions the bdev queued during submit (malloc, null) are
        # delivered here and the interrupt goes out before we return to the loop, instead of
        # a reactor iteration for the completions and another for the flush message.
        self._in_kick = True
        try:
            if self._process(rs):
                self.thread.poll_if_messages()
        finally:
            self._in_kick = False
        if self._flush_scheduled and self._irq_poller is None:
            self._flush()

    def _process(self, rs: RingState) -> int:
        q = rs.vring.queue
        sess = rs.session
        if q is None or rs.stop_cbs or sess.failed is not None:
            return 0
        n = 0
        try:
            while True:
                q.disable_kicks()
                while True:
                    chain = q.pop()
                    if chain is None:
                        break
                    rs.outstanding += 1
                    n += 1
                    self.handle_chain(rs, chain)
                q.enable_kicks()
                if not q.has_avail():   # a buffer posted after the last pop would wait for a kick
                    break
        except VirtqError as e:
            self.fail(rs, str(e))
        return n

    def fail(self, rs: RingState, why: str) -> None:
        """Invalid guest data: this controller's device stops; nothing else is affected."""
        rs.session.fail(f"ring {rs.vring.index}: {why}")
        if self.session is rs.session:
            self.thread.send_msg(self.disconnect)

    # -- completions and interrupts -------------------------------------------------------

    def complete(self, rs: RingState, head: int, written: int) -> None:
        q = rs.vring.queue
        rs.outstanding -= 1
        if q is not None:
            q.push(head, written)
        self._completions += 1
        if not rs.pending_irq:
            rs.pending_irq = True
            if not self._flush_scheduled:
                self._flush_scheduled = True
                if self._irq_poller is None and not self._in_kick:   # _kicked flushes itself
                    self.thread.send_msg(self._flush)
        if rs.stop_cbs and not rs.outstanding:
            self._maybe_stopped(rs)

    def _flush(self, _arg: Any = None) -> int:
        self._flush_scheduled = False
        n = 0
        for rs in self._rings.values():
            if rs.pending_irq:
                rs.pending_irq = False
                self._signal(rs)
                n += 1
        if self.delay_base_us:
            self._update_rate()
        return n

    def _signal(self, rs: RingState) -> None:
        q = rs.vring.queue
        fd = rs.vring.call_fd
        if q is not None and fd is not None and q.need_interrupt():
            try:
                os.eventfd_write(fd, 1)
            except OSError:
                pass

    def _update_rate(self) -> None:
        now = time.monotonic_ns()
        dt = now - self._rate_t0
        if dt < 100_000_000:
            return
        self._rate = self._completions * 1e9 / dt
        self._completions = 0
        self._rate_t0 = now
        delayed = self._rate >= self.iops_threshold
        if delayed and self._irq_poller is None:
            self._irq_poller = self.thread.poller_register(self._flush, None, self.delay_base_us,
                                                           name=f"vhost_{self.name}_irq")
        elif not delayed and self._irq_poller is not None:
            self._irq_poller.unregister()
            self._irq_poller = None
            self.thread.send_msg(self._flush)

    def set_coalescing(self, delay_base_us: int, iops_threshold: int) -> None:
        if delay_base_us and not iops_threshold:
            raise VhostError("iops_threshold must be above 0 when delay_base_us is set")
        self.delay_base_us = delay_base_us
        self.iops_threshold = iops_threshold
        if not delay_base_us and self._irq_poller is not None:
            self._irq_poller.unregister()
            self._irq_poller = None
            self.thread.send_msg(self._flush)

    # -- introspection --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "ctrlr": self.name,
            "cpumask": f"0x{self.cpumask:x}",
            "delay_base_us": self.delay_base_us,
            "iops_threshold": self.iops_threshold,
            "socket": str(self.socket_path),
            "sessions": [] if self.session is None else [{
                "vid": 0, "id": 0, "name": f"{self.name}s0",
                "started": bool(self._rings), "failed": self.session.failed,
            }],
            "backend_specific": self.backend_info(),
        }

    def backend_info(self) -> dict[str, Any]:
        return {}

    def config_entries(self) -> list[dict[str, Any]]:
        return []

    def coalescing_entries(self) -> list[dict[str, Any]]:
        if not self.delay_base_us:
            return []
        return [{"method": "vhost_controller_set_coalescing", "params": {
            "ctrlr": self.name, "delay_base_us": self.delay_base_us,
            "iops_threshold": self.iops_threshold}}]


def _app_thread() -> Thread:
    t = get_reactor().app_thread
    if t is None:
        raise VhostError("no spydk thread to run the controller on")
    return t
