"""The NVMe controller as the host sees it: initialization state machine, admin commands,
namespaces, I/O queue pairs, keep-alive, asynchronous events, timeouts, reset.

Control-path operations are coroutines on the event loop (one per operation, not per I/O);
the I/O path is the qpair's callback API (``Qpair.read/write/...``).

Initialization over Fabrics (NVMe-oF 1.1, 3.5): connect the admin queue, Connect (qid 0),
Property Get CAP/VS, Property Set CC.EN=1, wait for CSTS.RDY within CAP.TO, Identify
Controller, Set Features Number of Queues, Identify Active Namespace List and each namespace,
configure and arm Asynchronous Event Requests, start keep-alive, connect the I/O queues.
"""
from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spydk.log import get_logger
from spydk.nvme import spec, tls_psk
from spydk.nvme.auth import dhchap
from spydk.nvme.host.codec import LocalProtocolError
from spydk.nvme.host.identify import (
    IdentifyController,
    IdentifyNamespace,
    parse_identify_controller,
    parse_identify_namespace,
    parse_ns_list,
)
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION, Qpair
from spydk.nvme.host.tcp import Connector, TcpQpair
from spydk.nvme.host.trid import DISCOVERY_NQN, TransportId
from spydk.nvme.spec import AdminOpcode, FeatureId, IdentifyCns, LogPageId
from spydk.nvme.spec import auth as sa
from spydk.nvme.spec import fabrics as fab

log = get_logger("nvme")

_ANA_HDR = struct.Struct("<QH6x")
_ANA_DESC = struct.Struct("<IIQB15x")
ADMIN_ICD = 4096  # in-capsule data on the admin queue (the Connect data needs 1024)
AUTH_RECV_LEN = 4096  # AUTH_Receive allocation: a challenge with an ffdhe8192 value is ~1.1 KiB


def default_hostnqn() -> str:
    return f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, 'spydk-host')}"


class NvmeError(Exception):
    """A command failed (status set) or the controller cannot be used (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def status_str(status: int) -> str:
    sct, sc = (status >> 9) & 7, (status >> 1) & 0xFF
    name = ""
    try:
        if sct == 0:
            name = spec.GenericStatus(sc).name
        elif sct == 1:
            name = spec.CommandSpecificStatus(sc).name
        elif sct == 3:
            name = spec.PathStatus(sc).name
    except ValueError:
        pass
    return f"sct {sct:#x} sc {sc:#x}{' ' + name if name else ''}"


@dataclass(slots=True)
class ControllerOpts:
    hostnqn: str = field(default_factory=default_hostnqn)
    hostid: bytes = field(default_factory=lambda: uuid.uuid5(uuid.NAMESPACE_DNS, "spydk-host").bytes)
    num_io_queues: int = 1  # asked for with Set Features Number of Queues
    connect_io_queues: int | None = None  # I/O qpairs connected at init (None: num_io_queues)
    io_queue_size: int = 128
    admin_queue_size: int = 32
    keep_alive_timeout_ms: int = 10000
    header_digest: bool = False
    data_digest: bool = False
    command_timeout_ms: int = 0  # I/O commands; 0 = no limit
    timeout_action: str = "reset"  # on an I/O timeout: "reset" (fail the controller) or "abort"
    admin_timeout_ms: int = 30000
    connect_timeout: float = 10.0
    arm_aer: bool = True
    # TLS 1.3 secure channel: the configured PSK in interchange format (NVMeTLSkey-1:HH:...:)
    psk: str | None = None
    # DH-HMAC-CHAP (in-band authentication, when the controller asks for it after Connect):
    # the host's secret and, for bidirectional authentication, the controller's (DHHC-1:..:)
    dhchap_key: str | None = None
    dhchap_ctrlr_key: str | None = None


@dataclass(slots=True)
class Namespace:
    nsid: int
    data: IdentifyNamespace
    ana_group: int = 0
    ana_state: int = spec.AnaState.OPTIMIZED

    @property
    def block_size(self) -> int:
        return self.data.block_size

    @property
    def num_blocks(self) -> int:
        return self.data.nsze

    @property
    def uuid(self) -> str | None:
        n = self.data.nguid
        return str(uuid.UUID(bytes=n)) if any(n) else None


class Controller:
    """One controller reached over one transport ID: TCP here, PCIe in pcie.py
    (``Controller(trid)`` with trtype:PCIe gives a ``PcieController``)."""

    TRTYPES: tuple[str, ...] = ("TCP",)

    def __new__(cls, trid: TransportId, *args: Any, **kw: Any) -> Controller:
        if cls is Controller and trid.trtype == "PCIE":
            from spydk.nvme.host.pcie import PcieController  # pcie.py subclasses this class
            return super().__new__(PcieController)
        return super().__new__(cls)

    def __init__(self, trid: TransportId, opts: ControllerOpts | None = None, *,
                 connector: Connector | None = None) -> None:
        if trid.trtype not in self.TRTYPES:
            raise NvmeError(f"trtype {trid.trtype} is not supported by this build (TCP, PCIe)")
        self.trid = trid
        self.opts = opts or ControllerOpts()
        self.connector = connector
        self.state = "new"
        self.failure: str | None = None
        self.cntlid = 0
        self.cap = 0
        self.vs = 0
        self.cdata: IdentifyController | None = None
        self.namespaces: dict[int, Namespace] = {}
        self.io_qpairs: list[TcpQpair] = []
        self.admin_q: TcpQpair | None = None
        self.max_xfer = 128 * 1024
        self.io_icd = 0
        self.num_io_queues_granted = 0
        self.aer_callbacks: list[Callable[[int], None]] = []
        self.failure_callbacks: list[Callable[[Controller, str], None]] = []
        self.ns_change_callbacks: list[Callable[[Controller], None]] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}  # the keep-alive and timeout timers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ka_inflight = False
        self._aborts: dict[tuple[int, int, int], int] = {}  # (qid, cid, submit time) -> deadline
        self.is_discovery = trid.subnqn == DISCOVERY_NQN

    @property
    def name(self) -> str:
        return f"{self.trid.traddr}:{self.trid.trsvcid} {self.trid.subnqn}"

    # -- admin command plumbing ------------------------------------------------------------------

    def _admin_cb(self, fut: asyncio.Future[tuple[int, int]], status: int, dw0: int) -> None:
        if not fut.done():
            fut.set_result((status, dw0))

    async def _cmd(self, q: Qpair, *, opc: int = 0, nsid: int = 0, cdw: tuple[int, ...] = (0,) * 6,
                   sqe: bytes | None = None, write: bytes | None = None, read_len: int = 0,
                   what: str = "", check: bool = True) -> tuple[int, int, bytes | None]:
        """Submit on q, wait (bounded by the admin timeout); (status, dw0, read data)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, int]] = loop.create_future()
        buf = bytearray(read_len) if read_len else None
        data = memoryview(write) if write is not None else None
        dest = memoryview(buf) if buf is not None else None
        q._submit(opc, nsid, data, dest, len(write) if write is not None else read_len, cdw,
                  self._admin_cb, fut, sqe)
        timeout = self.opts.admin_timeout_ms / 1000
        try:
            status, dw0 = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self.fail(f"{what or 'admin command'} got no completion within {timeout:g} s")
            raise NvmeError(f"controller {self.name}: {what or 'admin command'} timed out") from None
        if status == ST_ABORTED_SQ_DELETION and self.failure is not None:
            raise NvmeError(f"controller {self.name} failed: {self.failure}", status)
        if check and status:
            raise NvmeError(f"controller {self.name}: {what or f'admin opcode {opc:#x}'} failed: "
                            f"{status_str(status)}", status)
        return status, dw0, bytes(buf) if buf is not None else None

    async def admin(self, opc: int, *, nsid: int = 0, cdw10: int = 0, cdw11: int = 0, cdw12: int = 0,
                    cdw13: int = 0, cdw14: int = 0, cdw15: int = 0, read_len: int = 0,
                    write: bytes | None = None, what: str = "", check: bool = True
                    ) -> tuple[int, int, bytes | None]:
        """An admin command; returns (status, dw0, data read)."""
        if self.admin_q is None or self.admin_q.failed is not None:
            raise NvmeError(f"controller {self.name} is not connected"
                            f"{': ' + self.failure if self.failure else ''}")
        return await self._cmd(self.admin_q, opc=opc, nsid=nsid,
                               cdw=(cdw10, cdw11, cdw12, cdw13, cdw14, cdw15), write=write,
                               read_len=read_len, what=what or AdminOpcode(opc).name.lower()
                               if opc in AdminOpcode._value2member_map_ else what, check=check)

    async def property_get(self, prop: int, size: int = 4) -> int:
        """Fabrics Property Get; an 8-byte value spans CQE DW0 and DW1."""
        q = self.admin_q
        assert q is not None
        _st, dw0, _d = await self._cmd(q, opc=spec.FABRICS_OPCODE,
                                       sqe=fab.build_property_get(0, prop, size),
                                       what=f"Property Get {fab.Property(prop).name}")
        return dw0 | (q.last_dw1 << 32) if size == 8 else dw0

    async def property_set(self, prop: int, value: int, size: int = 4) -> None:
        assert self.admin_q is not None
        await self._cmd(self.admin_q, opc=spec.FABRICS_OPCODE,
                        sqe=fab.build_property_set(0, prop, size, value),
                        what=f"Property Set {fab.Property(prop).name}")

    async def identify(self, cns: int, nsid: int = 0, cntid: int = 0, csi: int = 0) -> bytes:
        _, _, data = await self.admin(AdminOpcode.IDENTIFY, nsid=nsid, cdw10=cns | (cntid << 16),
                                      cdw11=csi << 24, read_len=spec.IDENTIFY_SIZE,
                                      what=f"Identify CNS {cns:#x}")
        assert data is not None
        return data

    async def get_log_page(self, lid: int, nbytes: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                           lsp: int = 0, rae: bool = False) -> bytes:
        numd = nbytes // 4 - 1
        _, _, data = await self.admin(
            AdminOpcode.GET_LOG_PAGE, nsid=nsid, read_len=nbytes,
            cdw10=lid | (lsp << 8) | (int(rae) << 15) | ((numd & 0xFFFF) << 16), cdw11=numd >> 16,
            cdw12=offset & 0xFFFFFFFF, cdw13=offset >> 32, what=f"Get Log Page {lid:#x}")
        assert data is not None
        return data

    async def set_features(self, fid: int, cdw11: int = 0, *, cdw12: int = 0) -> int:
        return (await self.admin(AdminOpcode.SET_FEATURES, cdw10=fid, cdw11=cdw11, cdw12=cdw12,
                                 what=f"Set Features {fid:#x}"))[1]

    async def get_features(self, fid: int, cdw11: int = 0, *, sel: int = 0) -> int:
        return (await self.admin(AdminOpcode.GET_FEATURES, cdw10=fid | (sel << 8), cdw11=cdw11,
                                 what=f"Get Features {fid:#x}"))[1]

    async def _fabric_connect(self, q: TcpQpair, qid: int, sqsize: int, cntlid: int) -> int:
        kato = self.opts.keep_alive_timeout_ms if qid == 0 else 0
        data = fab.build_connect_data(fab.ConnectData(self.opts.hostid, cntlid, self.trid.subnqn,
                                                      self.opts.hostnqn))
        sqe = fab.build_connect_command(fab.ConnectCommand(0, qid, sqsize - 1, kato),
                                        spec.build_sgl(0, len(data), 0, 1))
        st, dw0, _ = await self._cmd(q, opc=spec.FABRICS_OPCODE, sqe=sqe, write=data,
                                     what=f"Connect (qid {qid})", check=False)
        if st:
            raise NvmeError(f"controller {self.name}: Connect of queue {qid} refused: "
                            f"{status_str(st)} (check subnqn, hostnqn and the target's allowed hosts)", st)
        if (dw0 >> 16) & sa.AUTHREQ_ATR:
            await self._authenticate(q, qid)
        return dw0 & 0xFFFF

    async def _authenticate(self, q: TcpQpair, qid: int) -> None:
        """The DH-HMAC-CHAP transaction the controller asked for in its Connect response."""
        o = self.opts
        if o.dhchap_key is None:
            raise NvmeError(f"controller {self.name}: the controller requires DH-HMAC-CHAP "
                            "authentication; give the host's secret (dhchap_key)")
        try:
            auth = dhchap.HostAuth(o.hostnqn, self.trid.subnqn, dhchap.parse_secret(o.dhchap_key),
                                   dhchap.parse_secret(o.dhchap_ctrlr_key) if o.dhchap_ctrlr_key else None,
                                   t_id=qid)
        except dhchap.SecretError as e:
            raise NvmeError(f"controller {self.name}: dhchap key: {e}") from None

        async def send(msg: bytes) -> None:
            await self._cmd(q, opc=spec.FABRICS_OPCODE, write=msg, what=f"AUTH_Send (qid {qid})",
                            sqe=sa.build_auth_command(0, True, len(msg), bytes(16)))

        async def receive() -> bytes:
            _, _, data = await self._cmd(q, opc=spec.FABRICS_OPCODE, read_len=AUTH_RECV_LEN,
                                         what=f"AUTH_Receive (qid {qid})",
                                         sqe=sa.build_auth_command(0, False, AUTH_RECV_LEN, bytes(16)))
            assert data is not None
            return data

        try:
            await send(auth.negotiate())
            msg = await receive()
            try:
                reply = auth.challenge(msg)
            except (dhchap.HostAuthError, sa.AuthFormatError) as e:
                if sa.message_head(msg)[1] != sa.AuthId.FAILURE1:  # the host refuses: tell why
                    await send(auth.failure2(e.reason))
                raise
            await send(reply)
            out = auth.success1(await receive())
            if out is not None:
                await send(out)
        except (dhchap.HostAuthError, sa.AuthFormatError) as e:
            raise NvmeError(f"controller {self.name}: DH-HMAC-CHAP on queue {qid} failed: {e}") from None
        if not auth.done:
            raise NvmeError(f"controller {self.name}: DH-HMAC-CHAP on queue {qid} failed: the "
                            "controller did not prove it knows the controller key (Failure2 sent)")
        log.info("controller %s: queue %d authenticated (%s, DH group %d%s)", self.name, qid,
                 dhchap.hash_name(auth.hash_id), auth.dhgroup_id,
                 ", bidirectional" if auth.ctrlr_secret is not None else "")

    # -- initialization --------------------------------------------------------------------------

    def _new_qpair(self, qid: int, depth: int, icd: int) -> TcpQpair:
        return TcpQpair(qid, depth, max_xfer=self.max_xfer, incapsule_data=icd,
                        header_digest=self.opts.header_digest, data_digest=self.opts.data_digest,
                        track_time=bool(self.opts.command_timeout_ms) and qid > 0,
                        on_failure=self._qpair_failed)

    async def _connect_qpair(self, q: TcpQpair) -> None:
        t = self.trid
        tls = None
        if self.opts.psk is not None:
            try:
                tls = tls_psk.derive(tls_psk.parse_interchange(self.opts.psk), self.opts.hostnqn, t.subnqn)
            except tls_psk.PskError as e:
                raise NvmeError(f"controller {self.name}: psk: {e}") from None
        await q.connect(t.traddr, t.trsvcid, adrfam=t.adrfam, timeout=self.opts.connect_timeout,
                        connector=self.connector, tls=tls)

    async def connect(self) -> None:
        """Bring the controller up (raises NvmeError / ConnectionError with the reason)."""
        self._loop = asyncio.get_running_loop()
        self.state = "initializing"
        self.failure = None
        try:
            try:
                await self._init()
            except (ValueError, LocalProtocolError) as e:
                raise NvmeError(f"controller {self.name}: {e}") from None
        except BaseException as e:
            self.state = "failed"
            if self.failure is None:
                self.failure = str(e)
            self._stop_timers()
            if self.admin_q is not None:
                self.admin_q.disconnect()
            for q in self.io_qpairs:
                q.disconnect()
            raise
        self.state = "ready"

    async def _init(self) -> None:
        aq = self.admin_q = self._new_qpair(0, self.opts.admin_queue_size, ADMIN_ICD)
        aq.track_time = False
        await self._connect_qpair(aq)
        self.cntlid = await self._fabric_connect(aq, 0, self.opts.admin_queue_size, 0xFFFF)
        self.cap = await self.property_get(fab.Property.CAP, 8)
        self.vs = await self.property_get(fab.Property.VS)
        cc = await self.property_get(fab.Property.CC)
        if cc & 1:
            raise NvmeError(f"controller {self.name}: CC.EN is already set right after Connect")
        await self.property_set(fab.Property.CC, fab.make_cc(en=True, iosqes=6, iocqes=4))
        await self._wait_ready()
        self.cdata = parse_identify_controller(await self.identify(IdentifyCns.CONTROLLER))
        mdts = self.cdata.mdts
        mpsmin = 4096 << ((self.cap >> 48) & 0xF)
        self.max_xfer = min(mpsmin << mdts, 1 << 20) if mdts else 1 << 20
        aq.max_xfer = max(self.max_xfer, spec.IDENTIFY_SIZE)
        self.io_icd = self.cdata.incapsule_data_size
        if self.is_discovery:
            if self.opts.arm_aer and self.cdata.oaes >> 31 & 1:
                await self.set_features(FeatureId.ASYNC_EVENT_CONFIG, 1 << 31)
                self._submit_aer()
            self._start_keep_alive()
            return
        want = self.opts.num_io_queues
        dw0 = await self.set_features(FeatureId.NUMBER_OF_QUEUES, ((want - 1) << 16) | (want - 1))
        self.num_io_queues_granted = min((dw0 & 0xFFFF) + 1, (dw0 >> 16) + 1)
        await self.scan_namespaces()
        if self.opts.arm_aer:
            await self._arm_aer()
        self._start_keep_alive()
        n = min(want if self.opts.connect_io_queues is None else self.opts.connect_io_queues,
                self.num_io_queues_granted)
        mqes = (self.cap & 0xFFFF) + 1
        depth = min(self.opts.io_queue_size, mqes)
        if not self.io_qpairs:
            self.io_qpairs = [self._new_qpair(i + 1, depth, self.io_icd) for i in range(n)]
        for q in self.io_qpairs:
            await self._connect_io(q)

    async def _connect_io(self, q: TcpQpair) -> None:
        q.max_xfer = self.max_xfer
        await self._connect_qpair(q)
        await self._fabric_connect(q, q.qid, q.depth, self.cntlid)
        q.set_incapsule_data(self.io_icd)

    async def alloc_io_qpair(self, depth: int | None = None) -> TcpQpair:
        """One more I/O queue pair, connected."""
        qid = max((q.qid for q in self.io_qpairs), default=0) + 1
        if qid > self.num_io_queues_granted:
            raise NvmeError(f"controller {self.name} granted {self.num_io_queues_granted} I/O queues; "
                            "ask for more with num_io_queues")
        q = self._new_qpair(qid, depth or min(self.opts.io_queue_size, (self.cap & 0xFFFF) + 1),
                            self.io_icd)
        await self._connect_io(q)
        self.io_qpairs.append(q)
        return q

    async def _wait_ready(self) -> None:
        to_ms = max(500, ((self.cap >> 24) & 0xFF) * 500)
        deadline = time.monotonic() + to_ms / 1000
        while True:
            csts = await self.property_get(fab.Property.CSTS)
            if csts & fab.Csts.CFS:
                raise NvmeError(f"controller {self.name}: fatal status (CSTS.CFS) during enable")
            if csts & fab.Csts.RDY:
                return
            if time.monotonic() > deadline:
                raise NvmeError(f"controller {self.name} never became ready: CSTS.RDY still 0 "
                                f"{to_ms} ms (CAP.TO) after CC.EN=1")
            await asyncio.sleep(0.01)

    async def scan_namespaces(self) -> None:
        """Active namespace list, then Identify Namespace for each (and ANA states)."""
        assert self.cdata is not None
        nsids = parse_ns_list(await self.identify(IdentifyCns.ACTIVE_NS_LIST))
        found: dict[int, Namespace] = {}
        for nsid in nsids:
            data = parse_identify_namespace(await self.identify(IdentifyCns.NAMESPACE, nsid=nsid))
            if data.nsze == 0:
                continue
            old = self.namespaces.get(nsid)
            found[nsid] = Namespace(nsid, data, data.anagrpid,
                                    old.ana_state if old else spec.AnaState.OPTIMIZED)
        self.namespaces = found
        if self.cdata.cmic & 0x8:
            await self.update_ana()

    async def update_ana(self) -> None:
        """Read the ANA log page and set each namespace's ANA state."""
        page = await self.get_log_page(LogPageId.ANA, 4096)
        _chg, ngroups = _ANA_HDR.unpack_from(page, 0)
        off = _ANA_HDR.size
        states: dict[int, int] = {}
        for _ in range(ngroups):
            if off + _ANA_DESC.size > len(page):
                break
            grp, nnsids, _cc, state = _ANA_DESC.unpack_from(page, off)
            off += _ANA_DESC.size
            states[grp] = state & 0xF
            off += 4 * nnsids
        for ns in self.namespaces.values():
            if ns.ana_group in states:
                ns.ana_state = states[ns.ana_group]

    # -- asynchronous events ---------------------------------------------------------------------

    async def _arm_aer(self) -> None:
        assert self.cdata is not None
        oaes = self.cdata.oaes & ((1 << 8) | (1 << 11))
        if oaes:
            await self.set_features(FeatureId.ASYNC_EVENT_CONFIG, oaes)
        for _ in range(min(self.cdata.aerl + 1, 4)):
            self._submit_aer()

    def _submit_aer(self) -> None:
        q = self.admin_q
        if q is None or q.failed is not None:
            return
        q._submit(AdminOpcode.ASYNC_EVENT_REQUEST, 0, None, None, 0, (0,) * 6, self._aer_done, q)

    def _aer_done(self, q: Qpair, status: int, dw0: int) -> None:
        if status or q is not self.admin_q or self.state != "ready":
            return
        self._submit_aer()
        for cb in self.aer_callbacks:
            cb(dw0)
        etype, info, lid = dw0 & 0x7, (dw0 >> 8) & 0xFF, (dw0 >> 16) & 0xFF
        if etype == 2 and lid in (LogPageId.CHANGED_NS_LIST, LogPageId.ANA):
            asyncio.ensure_future(self._notice(lid))
        del info

    async def _notice(self, lid: int) -> None:
        try:
            if lid == LogPageId.CHANGED_NS_LIST:
                await self.get_log_page(LogPageId.CHANGED_NS_LIST, 4096)
                await self.scan_namespaces()
            else:
                await self.update_ana()
        except NvmeError as e:
            log.warning("controller %s: handling an async event failed: %s", self.name, e)
            return
        for cb in self.ns_change_callbacks:
            cb(self)

    # -- keep-alive and timeouts -----------------------------------------------------------------

    def _start_keep_alive(self) -> None:
        loop = asyncio.get_running_loop()
        kato = self.opts.keep_alive_timeout_ms
        if kato:
            self._timers["ka"] = loop.call_later(kato / 2000, self._keep_alive)
        if self.opts.command_timeout_ms:
            self._timers["to"] = loop.call_later(self.opts.command_timeout_ms / 4000, self._check_timeouts)

    def _stop_timers(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

    def _keep_alive(self) -> None:
        q = self.admin_q
        if q is None or q.failed is not None or self.state != "ready":
            return
        if self._ka_inflight:
            self.fail("keep-alive got no answer within half the keep-alive timeout")
            return
        self._ka_inflight = True
        q._submit(AdminOpcode.KEEP_ALIVE, 0, None, None, 0, (0,) * 6, self._ka_done, None)
        assert self._loop is not None
        self._timers["ka"] = self._loop.call_later(self.opts.keep_alive_timeout_ms / 2000,
                                                   self._keep_alive)

    def _ka_done(self, _arg: Any, status: int, dw0: int) -> None:
        self._ka_inflight = False
        if status and self.state == "ready" and status != ST_ABORTED_SQ_DELETION:
            self.fail(f"keep-alive failed: {status_str(status)}")

    def _check_timeouts(self) -> None:
        if self.state != "ready":
            return
        ms = self.opts.command_timeout_ms
        limit = ms * 1_000_000
        now = time.monotonic_ns()
        for q in self.io_qpairs:
            tr = q.expired(now, limit)
            if tr is None:
                continue
            key = (q.qid, tr.cid, tr.t_submit)
            if self.opts.timeout_action == "abort" and key not in self._aborts:
                # Ask the controller to abort it; if it is still there one timeout later, reset.
                self._aborts[key] = now + limit
                asyncio.ensure_future(self.abort(q.qid, tr.cid))
                continue
            if key in self._aborts and now < self._aborts[key]:
                continue
            what = " (an Abort did not end it)" if key in self._aborts else ""
            self.fail(f"command CID {tr.cid} on I/O queue {q.qid} got no completion within {ms} ms{what}")
            return
        if len(self._aborts) > 64:  # forget aborts of commands that have completed since
            self._aborts = {k: v for k, v in self._aborts.items()
                            if self._still_outstanding(k)}
        assert self._loop is not None
        self._timers["to"] = self._loop.call_later(ms / 4000, self._check_timeouts)

    def _still_outstanding(self, key: tuple[int, int, int]) -> bool:
        qid, cid, t = key
        for q in self.io_qpairs:
            if q.qid == qid:
                tr = q.trackers[cid]
                return tr.busy and tr.t_submit == t
        return False

    async def abort(self, qid: int, cid: int) -> bool:
        """Admin Abort of command cid on queue qid; True if the controller says it aborted it."""
        try:
            st, dw0, _ = await self.admin(AdminOpcode.ABORT, cdw10=qid | (cid << 16), check=False)
        except NvmeError:
            return False
        return st == 0 and not dw0 & 1

    # -- failure, reset, detach ------------------------------------------------------------------

    def _qpair_failed(self, q: TcpQpair, reason: str) -> None:
        if self.state in ("ready", "initializing"):  # not while detaching or resetting
            self.fail(f"queue {q.qid}: {reason}")

    def fail(self, reason: str) -> None:
        """Mark the controller failed, drop every connection; commands complete as aborted."""
        if self.state in ("failed", "detached"):
            return
        was_init = self.state == "initializing"
        self.state = "failed"
        self.failure = reason
        self._stop_timers()
        log.error("NVMe controller %s failed: %s", self.name, reason)
        for q in [self.admin_q, *self.io_qpairs]:
            if q is not None:
                q.disconnect()
        if not was_init:
            for cb in list(self.failure_callbacks):
                cb(self, reason)

    async def reset(self) -> None:
        """Disconnect every queue and bring the controller up again (same qpair objects)."""
        self._stop_timers()
        self.state = "resetting"
        for q in [self.admin_q, *self.io_qpairs]:
            if q is not None:
                q.disconnect()
        for q in self.io_qpairs:
            q.renew()
        self.admin_q = None
        await self.connect()

    async def detach(self) -> None:
        """Shut down: CC.SHN normal when reachable, then close every connection."""
        self._stop_timers()
        if self.state == "ready" and self.admin_q is not None:
            self.state = "detaching"  # the target may close the connections now: not a failure
            try:
                await asyncio.wait_for(self.property_set(fab.Property.CC, fab.make_cc(en=True, shn=1)), 2)
            except (TimeoutError, NvmeError, ConnectionError):
                pass
        self.state = "detached"
        for q in [self.admin_q, *self.io_qpairs]:
            if q is not None:
                q.disconnect()
