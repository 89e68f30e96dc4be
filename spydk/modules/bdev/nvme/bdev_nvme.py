"""bdev_nvme: every active namespace of an attached NVMe controller becomes a bdev
``<name>n<nsid>``.

Structure (after SPDK's module/bdev/nvme):
- ``NvmeCtrlr``: one controller reached over one path (its transport ID, plus alternate
  transport IDs for failover) with its reset/reconnect state machine.
- ``NvmeBdevCtrlr``: the name given to attach_controller; several NvmeCtrlrs when paths
  were added with multipath="multipath".
- ``NvmeBdev``: one namespace; its I/O paths are the NvmeCtrlrs that expose that namespace.
  The multipath policy picks the path: active_passive (the first usable, preferring ANA
  optimized), active_active with round_robin (rr_min_io per path) or queue_depth.

When a controller fails (the connection drops, keep-alive or a command times out), its
I/O is retried on another path, or held until the controller reconnects. Reconnect: every
``reconnect_delay_sec`` (once at once when 0) cycling through the transport IDs, until
``ctrlr_loss_timeout_sec`` (-1 = forever; 0 = one attempt) after which the controller is
deleted; held I/O fails after ``fast_io_fail_timeout_sec`` (0 = when the controller is
deleted).
"""
from __future__ import annotations

import asyncio
import errno
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from spydk.bdev import Bdev, BdevError, BdevModule, get_bdev, register_bdev, register_module, unregister_bdev
from spydk.bdev.io import FAILED, FLUSH, READ, RESET, SUCCESS, UNMAP, WRITE, WRITE_ZEROES, BdevIO
from spydk.log import get_logger
from spydk.nvme.host import Controller, ControllerOpts, NvmeError, TransportId
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION, ST_TRANSIENT
from spydk.nvme.spec import AnaState
from spydk.thread import get_thread, io_device_register, is_io_device, set_thread

log = get_logger("bdev_nvme")

_SUPPORTED = frozenset((READ, WRITE, FLUSH, RESET, WRITE_ZEROES, UNMAP))
_USABLE_ANA = (AnaState.OPTIMIZED, AnaState.NON_OPTIMIZED)


@dataclass
class NvmeOptions:
    """bdev_nvme_set_options (SPDK's names and defaults)."""

    action_on_timeout: str = "none"
    timeout_us: int = 0
    timeout_admin_us: int = 0
    keep_alive_timeout_ms: int = 10000
    arbitration_burst: int = 0
    low_priority_weight: int = 0
    medium_priority_weight: int = 0
    high_priority_weight: int = 0
    nvme_adminq_poll_period_us: int = 10000
    nvme_ioq_poll_period_us: int = 0
    io_queue_requests: int = 0
    delay_cmd_submit: bool = True
    transport_retry_count: int = 4
    bdev_retry_count: int = 3
    transport_ack_timeout: int = 0
    ctrlr_loss_timeout_sec: int = 0
    reconnect_delay_sec: int = 0
    fast_io_fail_timeout_sec: int = 0
    disable_auto_failback: bool = False
    generate_uuids: bool = False
    transport_tos: int = 0
    nvme_error_stat: bool = False
    rdma_srq_size: int = 0
    io_path_stat: bool = False
    allow_accel_sequence: bool = False
    rdma_max_cq_size: int = 0
    rdma_cm_event_timeout_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # accepted, no effect

    def as_params(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


# Options that change what spydk does; the rest are accepted for compatibility.
HONOURED_OPTIONS = frozenset({
    "action_on_timeout", "timeout_us", "timeout_admin_us", "keep_alive_timeout_ms",
    "bdev_retry_count", "ctrlr_loss_timeout_sec", "reconnect_delay_sec",
    "fast_io_fail_timeout_sec", "disable_auto_failback"})


@dataclass
class ReconnectOpts:
    ctrlr_loss_timeout_sec: int = 0
    reconnect_delay_sec: int = 0
    fast_io_fail_timeout_sec: int = 0


def check_reconnect_opts(r: ReconnectOpts) -> None:
    """SPDK's rules for the three timeouts; a ValueError names the broken one."""
    loss, delay, fast = r.ctrlr_loss_timeout_sec, r.reconnect_delay_sec, r.fast_io_fail_timeout_sec
    if loss < -1:
        raise ValueError("ctrlr_loss_timeout_sec must be -1 (forever), 0 or positive")
    if loss == 0:
        if delay or fast:
            raise ValueError("reconnect_delay_sec and fast_io_fail_timeout_sec need a nonzero "
                             "ctrlr_loss_timeout_sec")
        return
    if delay == 0:
        raise ValueError("reconnect_delay_sec must be nonzero when ctrlr_loss_timeout_sec is set")
    if loss != -1 and delay > loss:
        raise ValueError("reconnect_delay_sec must not exceed ctrlr_loss_timeout_sec")
    if fast and loss != -1 and fast > loss:
        raise ValueError("fast_io_fail_timeout_sec must not exceed ctrlr_loss_timeout_sec")
    if fast and fast < delay:
        raise ValueError("fast_io_fail_timeout_sec must be at least reconnect_delay_sec")


class NvmeModule(BdevModule):
    name = "nvme"

    def __init__(self) -> None:
        super().__init__()
        self.opts = NvmeOptions()
        self.ctrlrs: dict[str, NvmeBdevCtrlr] = {}
        self.discoveries: dict[str, Any] = {}
        # how a path's Controller is made (Controller picks TCP or PCIe from the trid); tests
        # replace it to reach a fake PCIe device
        self.new_controller: Callable[[TransportId, ControllerOpts], Controller] = Controller

    def io_device(self) -> Any:
        if not is_io_device(self):
            io_device_register(self, lambda dev, ch: None, lambda dev, ch: None, "bdev_nvme")
        return self

    def config_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"method": "bdev_nvme_set_options", "params": self.opts.as_params()}]
        for bc in self.ctrlrs.values():
            if bc.discovery is not None:
                continue
            for c in bc.ctrlrs:
                for t in c.trids:
                    out.append({"method": "bdev_nvme_attach_controller",
                                "params": c.attach_params(t)})
        for d in self.discoveries.values():
            out.append({"method": "bdev_nvme_start_discovery", "params": d.params})
        return out

    def fini(self) -> Any:
        return self.detach_all()

    async def detach_all(self) -> None:
        for d in list(self.discoveries.values()):
            await d.stop()
        for bc in list(self.ctrlrs.values()):
            for c in list(bc.ctrlrs):
                await c.delete()


module = NvmeModule()
register_module(module)


class NvmeCtrlr:
    """One controller (one path), with failover transport IDs and reconnect."""

    def __init__(self, bctrlr: NvmeBdevCtrlr, trid: TransportId, opts: ControllerOpts,
                 reconnect: ReconnectOpts, hdgst: bool, ddgst: bool, extra: dict[str, Any]) -> None:
        self.bctrlr = bctrlr
        self.trids = [trid]
        self.opts = opts
        self.reconnect = reconnect
        self.hdgst = hdgst
        self.ddgst = ddgst
        self.extra = extra
        self.ctrlr = module.new_controller(trid, opts)
        self.state = "new"  # enabled, resetting, failed, deleting
        self.lost_at = 0.0
        self.fast_failed = False
        self.held: deque[BdevIO] = deque()  # I/O waiting for the reconnect
        self.reconnect_task: asyncio.Task[None] | None = None
        self.reset_waiters: list[asyncio.Future[bool]] = []
        self.thread = get_thread()
        self.ctrlr.failure_callbacks.append(self._failed)
        self.ctrlr.ns_change_callbacks.append(self._ns_changed)

    @property
    def trid(self) -> TransportId:
        return self.trids[0]

    def _ns_changed(self, _c: Controller) -> None:
        prev = set_thread(self.thread)
        try:
            self.bctrlr.sync_namespaces()
        finally:
            set_thread(prev)

    @property
    def usable(self) -> bool:
        return self.state == "enabled" and self.ctrlr.state == "ready"

    def attach_params(self, t: TransportId) -> dict[str, Any]:
        if t.trtype == "PCIE":
            p: dict[str, Any] = {"name": self.bctrlr.name, "trtype": "PCIe", "traddr": t.traddr,
                                 "num_io_queues": self.opts.num_io_queues,
                                 "ctrlr_loss_timeout_sec": self.reconnect.ctrlr_loss_timeout_sec,
                                 "reconnect_delay_sec": self.reconnect.reconnect_delay_sec,
                                 "fast_io_fail_timeout_sec": self.reconnect.fast_io_fail_timeout_sec}
            p.update(self.extra)
            return p
        p = {"name": self.bctrlr.name, "trtype": t.trtype, "adrfam": t.adrfam,
                             "traddr": t.traddr, "trsvcid": t.trsvcid, "subnqn": t.subnqn,
                             "hostnqn": self.opts.hostnqn, "hdgst": self.hdgst, "ddgst": self.ddgst,
                             "multipath": self.bctrlr.multipath,
                             "num_io_queues": self.opts.num_io_queues,
                             "ctrlr_loss_timeout_sec": self.reconnect.ctrlr_loss_timeout_sec,
                             "reconnect_delay_sec": self.reconnect.reconnect_delay_sec,
                             "fast_io_fail_timeout_sec": self.reconnect.fast_io_fail_timeout_sec}
        p.update(self.extra)
        return p

    async def connect(self) -> None:
        await self.ctrlr.connect()
        for q in self.ctrlr.io_qpairs:
            q.thread = self.thread
        self.state = "enabled"

    # -- failure and reconnect -----------------------------------------------------------------

    def _failed(self, _c: Controller, reason: str) -> None:
        if self.state in ("deleting", "resetting"):
            return
        log.warning("bdev_nvme %s: controller %s failed (%s); reconnecting", self.bctrlr.name,
                    self.trid, reason)
        self.state = "resetting"
        self.lost_at = time.monotonic()
        self.fast_failed = False
        self.reconnect_task = asyncio.ensure_future(self._reconnect_loop())

    async def reset(self) -> bool:
        """bdev_nvme_reset_controller / a bdev RESET: disconnect and connect again."""
        if self.state == "resetting":
            fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self.reset_waiters.append(fut)
            return await fut
        if self.state == "deleting":
            return False
        self.state = "resetting"
        self.lost_at = time.monotonic()
        self.reconnect_task = asyncio.ensure_future(self._reconnect_loop())
        fut = asyncio.get_running_loop().create_future()
        self.reset_waiters.append(fut)
        return await fut

    async def _reconnect_loop(self) -> None:
        r = self.reconnect
        attempt = 0
        while self.state == "resetting":
            t = self.trids[attempt % len(self.trids)]
            attempt += 1
            self.ctrlr.trid = t
            try:
                await self.ctrlr.reset()
            except (NvmeError, ConnectionError, OSError) as e:
                log.info("bdev_nvme %s: reconnect to %s failed: %s", self.bctrlr.name, t, e)
            except Exception as e:  # a bug must not leave the controller resetting forever
                log.error("bdev_nvme %s: reconnect to %s failed unexpectedly: %r", self.bctrlr.name, t, e)
            else:
                if t is not self.trids[0]:
                    self.trids.remove(t)
                    self.trids.insert(0, t)
                for q in self.ctrlr.io_qpairs:
                    q.thread = self.thread
                self.state = "enabled"
                log.info("bdev_nvme %s: reconnected to %s", self.bctrlr.name, t)
                self._done_resetting(True)
                self.bctrlr.sync_namespaces()
                self.bctrlr.kick_held(self)
                return
            if self.state != "resetting":
                return
            elapsed = time.monotonic() - self.lost_at
            if r.ctrlr_loss_timeout_sec == 0 and attempt >= len(self.trids):
                break
            if r.ctrlr_loss_timeout_sec > 0 and elapsed >= r.ctrlr_loss_timeout_sec:
                break
            if r.fast_io_fail_timeout_sec and elapsed >= r.fast_io_fail_timeout_sec and not self.fast_failed:
                self.fast_failed = True
                self._fail_held()
            delay: float = r.reconnect_delay_sec
            if r.fast_io_fail_timeout_sec and not self.fast_failed:
                delay = min(delay, max(0.0, r.fast_io_fail_timeout_sec - elapsed)) or delay
            if r.ctrlr_loss_timeout_sec > 0:
                delay = min(delay, max(0.05, r.ctrlr_loss_timeout_sec - elapsed))
            if attempt % len(self.trids) and len(self.trids) > 1:
                delay = 0  # try the other addresses first
            await asyncio.sleep(delay)
        if self.state == "resetting":
            log.error("bdev_nvme %s: controller %s lost for good (ctrlr_loss_timeout_sec %d); deleting it",
                      self.bctrlr.name, self.trid, r.ctrlr_loss_timeout_sec)
            self._done_resetting(False)
            await self.delete()

    def _done_resetting(self, ok: bool) -> None:
        waiters, self.reset_waiters = self.reset_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(ok)

    def _fail_held(self) -> None:
        held, self.held = self.held, deque()
        prev = set_thread(self.thread)
        try:
            for io in held:
                self.bctrlr.retry_or_fail(io, self, final=True)
        finally:
            set_thread(prev)

    async def delete(self) -> None:
        if self.state == "deleting":
            return
        self.state = "deleting"
        task = self.reconnect_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        self._done_resetting(False)
        await self.ctrlr.detach()
        self.bctrlr.remove_ctrlr(self)
        self._fail_held()


class NvmeBdevCtrlr:
    """The name of attach_controller: its controllers (paths) and namespace bdevs."""

    def __init__(self, name: str, multipath: str, discovery: Any = None) -> None:
        self.name = name
        self.multipath = multipath
        self.ctrlrs: list[NvmeCtrlr] = []
        self.bdevs: dict[int, NvmeBdev] = {}
        self.discovery = discovery
        self.policy = "active_passive"
        self.selector = "round_robin"
        self.rr_min_io = 1

    def add_ctrlr(self, c: NvmeCtrlr) -> list[str]:
        self.ctrlrs.append(c)
        return self.sync_namespaces()

    def sync_namespaces(self) -> list[str]:
        """Create bdevs for new namespaces, attach paths, drop vanished namespaces."""
        names = []
        present: set[int] = set()
        for c in self.ctrlrs:
            if not c.usable:
                continue
            for nsid, ns in c.ctrlr.namespaces.items():
                present.add(nsid)
                b = self.bdevs.get(nsid)
                if b is None:
                    b = NvmeBdev(self, nsid, ns.block_size, ns.num_blocks, ns.uuid)
                    register_bdev(b)
                    self.bdevs[nsid] = b
                if c not in b.paths:
                    b.paths.append(c)
                names.append(b.name)
        for nsid, b in list(self.bdevs.items()):
            if nsid not in present and all(c.usable for c in self.ctrlrs) and self.ctrlrs:
                del self.bdevs[nsid]
                _unregister(b)
        return sorted(set(names))

    def remove_ctrlr(self, c: NvmeCtrlr) -> None:
        if c in self.ctrlrs:
            self.ctrlrs.remove(c)
        for nsid, b in list(self.bdevs.items()):
            if c in b.paths:
                b.paths.remove(c)
            if not b.paths:
                del self.bdevs[nsid]
                b.fail_all_held()
                _unregister(b)
        if not self.ctrlrs:
            module.ctrlrs.pop(self.name, None)

    def kick_held(self, c: NvmeCtrlr) -> None:
        held, c.held = c.held, deque()
        prev = set_thread(c.thread)
        try:
            for b in self.bdevs.values():
                b.resubmit_held()
            for io in held:
                nb = io.bdev
                assert isinstance(nb, NvmeBdev)
                if nb.submit_request(None, io) == FAILED:
                    io.complete(FAILED)
        finally:
            set_thread(prev)

    def retry_or_fail(self, io: BdevIO, failed_path: NvmeCtrlr | None, final: bool = False) -> None:
        b = io.bdev
        assert isinstance(b, NvmeBdev)
        if final:
            alt = b.select_path()
            if alt is not None:
                b.submit_on(alt, io)
            else:
                io.complete(FAILED)
            return
        b.submit_request(None, io)


class NvmeBdev(Bdev):
    zcopy_read = False

    def __init__(self, bctrlr: NvmeBdevCtrlr, nsid: int, block_size: int, num_blocks: int,
                 uuid: str | None) -> None:
        super().__init__(f"{bctrlr.name}n{nsid}", module, block_size, num_blocks, uuid=uuid,
                         product_name="NVMe disk", write_cache=True)
        self.io_device = module.io_device()
        self.bctrlr = bctrlr
        self.nsid = nsid
        self.paths: list[NvmeCtrlr] = []
        self.rr_next = 0
        self.rr_count = 0
        self.held: deque[BdevIO] = deque()

    def io_type_supported(self, io_type: int) -> bool:
        return io_type in _SUPPORTED

    # -- path selection -----------------------------------------------------------------------

    def _ana(self, c: NvmeCtrlr) -> int:
        ns = c.ctrlr.namespaces.get(self.nsid)
        return ns.ana_state if ns is not None else AnaState.INACCESSIBLE

    def select_path(self) -> NvmeCtrlr | None:
        usable = [c for c in self.paths if c.usable and self._ana(c) in _USABLE_ANA]
        if not usable:
            return None
        best = [c for c in usable if self._ana(c) == AnaState.OPTIMIZED] or usable
        bc = self.bctrlr
        if bc.policy == "active_passive" or len(best) == 1:
            return best[0]
        if bc.selector == "queue_depth":
            return min(best, key=lambda c: c.ctrlr.io_qpairs[0].outstanding)
        self.rr_count += 1
        if self.rr_count >= bc.rr_min_io:
            self.rr_count = 0
            self.rr_next += 1
        return best[self.rr_next % len(best)]

    def _reconnecting(self) -> NvmeCtrlr | None:
        for c in self.paths:
            if c.state == "resetting" and not c.fast_failed:
                return c
        return None

    # -- I/O ------------------------------------------------------------------------------------

    def submit_request(self, ctx: Any, io: BdevIO) -> int | None:
        if io.type == RESET:
            asyncio.ensure_future(self._reset(io))
            return None
        c = self.select_path()
        if c is None:
            waiting = self._reconnecting()
            if waiting is not None:
                waiting.held.append(io)
                return None
            return FAILED
        self.submit_on(c, io)
        return None

    def submit_on(self, c: NvmeCtrlr, io: BdevIO) -> None:
        q = c.ctrlr.io_qpairs[0]
        t = io.type
        io.driver_ctx = c
        if t == READ:
            iovs = io.iovs
            n = io.nbytes
            if iovs is not None and len(iovs) == 1 and len(iovs[0]) == n:
                buf = iovs[0]
                if not isinstance(buf, memoryview):
                    buf = memoryview(buf)
                q.read(self.nsid, buf, io.offset_blocks, io.num_blocks, self._read_done, io)
            else:
                bounce = memoryview(bytearray(n))
                q.read(self.nsid, bounce, io.offset_blocks, io.num_blocks, self._bounce_done,
                       (io, bounce))
        elif t == WRITE:
            iovs = io.iovs
            assert iovs is not None
            if len(iovs) == 1 and len(iovs[0]) == io.nbytes:
                buf = iovs[0]
                data = buf if isinstance(buf, memoryview) else memoryview(buf)
            else:
                data = memoryview(io.data())
            q.write(self.nsid, data, io.offset_blocks, io.num_blocks, self._done, io)
        elif t == FLUSH:
            q.flush(self.nsid, self._done, io)
        elif t == WRITE_ZEROES:
            q.write_zeroes(self.nsid, io.offset_blocks, io.num_blocks, self._done, io)
        elif t == UNMAP:
            ranges = []
            off, left = io.offset_blocks, io.num_blocks
            while left:
                k = min(left, 0xFFFFFFFF)
                ranges.append((off, k))
                off += k
                left -= k
            q.dataset_management(self.nsid, ranges[:256], self._done, io)
        else:
            io.complete(FAILED)

    def _read_done(self, io: BdevIO, status: int, dw0: int) -> None:
        if status:
            self._error(io, status, dw0)
        else:
            _complete(io, SUCCESS)

    def _bounce_done(self, arg: tuple[BdevIO, memoryview], status: int, dw0: int) -> None:
        io, bounce = arg
        if status:
            self._error(io, status, dw0)
            return
        if io.iovs is None:
            io.iovs = [bounce]
        else:
            io.scatter(bounce)
        _complete(io, SUCCESS)

    def _done(self, io: BdevIO, status: int, dw0: int) -> None:
        if status:
            self._error(io, status, dw0)
        else:
            _complete(io, SUCCESS)

    def _error(self, io: BdevIO, status: int, dw0: int) -> None:
        sct, sc = (status >> 9) & 7, (status >> 1) & 0xFF
        path_error = status in (ST_ABORTED_SQ_DELETION, ST_TRANSIENT) or sct == 3
        if path_error and not status >> 15:
            retries = io.nvme_cdw0  # reused as the retry counter until completion
            if retries < max(module.opts.bdev_retry_count, 0) or module.opts.bdev_retry_count == -1:
                io.nvme_cdw0 = retries + 1
                c = io.driver_ctx
                if isinstance(c, NvmeCtrlr) and c.state == "resetting" and not c.fast_failed:
                    alt = self.select_path()
                    if alt is None:
                        c.held.append(io)
                        return
                    self.submit_on(alt, io)
                    return
                # Give the failure handler a turn to mark the controller, then route again.
                asyncio.get_running_loop().call_soon(self._retry, io)
                return
        th = io.ch.thread
        prev = set_thread(th)
        try:
            io.complete_nvme(dw0, sct, sc)
        finally:
            set_thread(prev)

    def _retry(self, io: BdevIO) -> None:
        c = io.driver_ctx
        prev = set_thread(c.thread if isinstance(c, NvmeCtrlr) else get_thread())
        try:
            if self.submit_request(None, io) == FAILED:
                io.complete(FAILED)
        finally:
            set_thread(prev)

    def resubmit_held(self) -> None:
        held, self.held = self.held, deque()
        for io in held:
            if self.submit_request(None, io) == FAILED:
                io.complete(FAILED)

    def fail_all_held(self) -> None:
        held, self.held = self.held, deque()
        for io in held:
            io.complete(FAILED)

    async def _reset(self, io: BdevIO) -> None:
        ok = True
        th = self.paths[0].thread if self.paths else None
        for c in list(self.paths):
            ok = await c.reset() and ok
        prev = set_thread(th) if th is not None else get_thread()
        try:
            io.complete(SUCCESS if ok else FAILED)
        finally:
            set_thread(prev)

    def destruct(self, done: Callable[[int], Any]) -> None:
        if self.bctrlr.bdevs.get(self.nsid) is self:
            del self.bctrlr.bdevs[self.nsid]
        done(0)

    def dump_info_json(self) -> dict[str, Any]:
        out = []
        for c in self.paths:
            cd = c.ctrlr.cdata
            ns = c.ctrlr.namespaces.get(self.nsid)
            t = c.trid
            out.append({
                "trid": {"trtype": "PCIe", "traddr": t.traddr} if t.trtype == "PCIE" else
                        {"trtype": t.trtype, "adrfam": t.adrfam, "traddr": t.traddr,
                         "trsvcid": t.trsvcid, "subnqn": t.subnqn},
                "ctrlr_data": {"cntlid": c.ctrlr.cntlid, "vendor_id": f"0x{cd.vid:04x}" if cd else "",
                               "model_number": cd.mn if cd else "", "serial_number": cd.sn if cd else "",
                               "firmware_revision": cd.fr if cd else "",
                               "subnqn": cd.subnqn if cd else "",
                               "ana_reporting": bool(cd and cd.cmic & 8),
                               "multi_ctrlr": bool(cd and cd.cmic & 2)},
                "ns_data": {"id": self.nsid,
                            "ana_state": _ana_name(ns.ana_state) if ns else "inaccessible",
                            "can_share": bool(ns and ns.data.nmic & 1)},
            })
        return {"nvme": out, "mp_policy": self.bctrlr.policy}

    def write_config_json(self) -> dict[str, Any] | None:
        return None  # the module's config_json re-attaches the controller


def _complete(io: BdevIO, status: int) -> None:
    """Complete on the submitting channel's Thread (the qpair's receive path runs on the
    Thread that attached the controller; other Threads may submit too)."""
    th = io.ch.thread
    if th is _get_thread():
        io.complete(status)
        return
    prev = set_thread(th)
    try:
        io.complete(status)
    finally:
        set_thread(prev)


_get_thread = get_thread


def _unregister(b: NvmeBdev) -> None:
    try:
        unregister_bdev(b, lambda rc: None)
    except BdevError:
        pass  # already being removed (e.g. at shutdown the layer unregisters every bdev first)


def _ana_name(state: int) -> str:
    return {1: "optimized", 2: "non_optimized", 3: "inaccessible", 4: "persistent_loss",
            15: "change"}.get(state, "unknown")


async def attach_controller(name: str, trid: TransportId, *, hostnqn: str | None = None,
                            hdgst: bool = False, ddgst: bool = False, multipath: str = "",
                            num_io_queues: int = 0, fabrics_connect_timeout_us: int = 0,
                            reconnect: ReconnectOpts | None = None,
                            extra: dict[str, Any] | None = None) -> list[str]:
    """Connect and create the namespace bdevs; returns their names.

    A name already in use: multipath="failover" (or unset, SPDK's default) adds trid as an
    alternate address of the existing controller if it reaches the same subsystem;
    "multipath" connects a second controller and adds it as another I/O path."""
    o = module.opts
    r = reconnect or ReconnectOpts(o.ctrlr_loss_timeout_sec, o.reconnect_delay_sec,
                                   o.fast_io_fail_timeout_sec)
    check_reconnect_opts(r)
    copts = ControllerOpts(header_digest=hdgst, data_digest=ddgst,
                           keep_alive_timeout_ms=o.keep_alive_timeout_ms,
                           num_io_queues=num_io_queues or 1,
                           command_timeout_ms=o.timeout_us // 1000 if o.action_on_timeout != "none" else 0,
                           timeout_action="abort" if o.action_on_timeout == "abort" else "reset",
                           admin_timeout_ms=o.timeout_admin_us // 1000 or 30000)
    if hostnqn:
        copts.hostnqn = hostnqn
    if fabrics_connect_timeout_us:
        copts.connect_timeout = fabrics_connect_timeout_us / 1e6
    bc = module.ctrlrs.get(name)
    if bc is not None:
        mode = multipath or "failover"
        if mode == "disable":
            raise BdevError(errno.EEXIST, f"controller {name!r} already exists and multipath is disabled")
        existing = bc.ctrlrs[0] if bc.ctrlrs else None
        if existing is not None and existing.trid.subnqn != trid.subnqn:
            raise BdevError(errno.EINVAL, f"controller {name!r} reaches {existing.trid.subnqn}, "
                                          f"not {trid.subnqn}: use another name")
        for c in bc.ctrlrs:
            for t in c.trids:
                if (t.traddr, t.trsvcid, t.subnqn) == (trid.traddr, trid.trsvcid, trid.subnqn):
                    raise BdevError(errno.EEXIST, f"controller {name!r} already has path {trid}")
        if mode == "failover":
            assert existing is not None
            existing.trids.append(trid)
            return sorted(b.name for b in bc.bdevs.values())
        bc.multipath = mode
    else:
        bc = NvmeBdevCtrlr(name, multipath or "failover")
    c = NvmeCtrlr(bc, trid, copts, r, hdgst, ddgst, extra or {})
    try:
        await c.connect()
    except (NvmeError, ConnectionError) as e:
        raise BdevError(errno.EIO, f"cannot attach controller {name!r} at {trid}: {e}") from None
    module.ctrlrs[name] = bc
    if bc.ctrlrs:
        first = bc.ctrlrs[0].ctrlr.cdata
        if first is not None and c.ctrlr.cdata is not None and first.subnqn != c.ctrlr.cdata.subnqn:
            await c.ctrlr.detach()
            raise BdevError(errno.EINVAL, f"controller {name!r}: the new path reaches another subsystem")
    try:
        return bc.add_ctrlr(c)
    except BdevError:
        await c.delete()
        raise


async def detach_controller(name: str, match: Callable[[TransportId], bool] | None = None) -> None:
    bc = module.ctrlrs.get(name)
    if bc is None:
        raise BdevError(errno.ENODEV, f"no NVMe controller named {name!r}")
    found = False
    for c in list(bc.ctrlrs):
        if match is None:
            found = True
            await c.delete()
            continue
        alts = [t for t in c.trids if match(t)]
        if not alts:
            continue
        found = True
        if len(alts) == len(c.trids) or c.trid in alts and len(c.trids) == 1:
            await c.delete()
        else:
            for t in alts:
                if t is c.trid:
                    # The active path goes: fail over to the next address.
                    c.trids.remove(t)
                    await c.reset()
                else:
                    c.trids.remove(t)
    if not found:
        raise BdevError(errno.ENODEV, f"controller {name!r} has no path matching the given address")


def get_ctrlr_bdev(name: str) -> Bdev | None:
    return get_bdev(name)
