"""The NVMe-oF controller: Fabrics Connect/Property commands, admin commands, AERs, keep-alive.

Sans-IO: requests come in through ``exec_request`` already decoded by a transport, and
leave through ``Request.complete``; time is read from the target's clock only when a
keep-alive is checked. I/O commands are handed to io.py.
"""
from __future__ import annotations

import struct
import uuid as _uuid
from collections import deque
from typing import TYPE_CHECKING

from spydk import keyring
from spydk import trace as _trace
from spydk.log import get_logger
from spydk.nvme import spec
from spydk.nvme.auth import dhchap
from spydk.nvme.spec import (
    AdminOpcode,
    AnaState,
    CommandSpecificStatus,
    FabricsStatus,
    FeatureId,
    GenericStatus,
    IdentifyCns,
    LogPageId,
    StatusCodeType,
)
from spydk.nvme.spec import auth as spec_auth
from spydk.nvme.spec import fabrics as fab
from spydk.nvmf import auth as nvmf_auth
from spydk.nvmf import io as nvmf_io
from spydk.nvmf import reservation_cmds as resv
from spydk.nvmf.request import Qpair, Request
from spydk.trace import tpoints as _tp

if TYPE_CHECKING:
    from spydk.nvmf.subsystem import Namespace, Subsystem
    from spydk.nvmf.tgt import Target

log = get_logger("nvmf")
_TRACE_CTRLR = False
_trace.bind_flag(globals(), "_TRACE_CTRLR", _tp.GROUP_NVMF_CTRLR)

SCT_GENERIC = StatusCodeType.GENERIC
SCT_SPECIFIC = StatusCodeType.COMMAND_SPECIFIC
VS_1_3 = spec.nvme_version(1, 3)
FIRMWARE_REV = "0.1"
ADMIN_ICD = 8192  # NVMe/TCP: the admin queue always takes 8 KiB of in-capsule data
_U32 = struct.Struct("<I")

# Asynchronous event: type 2 = notice; information values; log page to read.
AER_NOTICE = 2
AEI_NS_ATTR_CHANGED = 0x00
AEI_ANA_CHANGE = 0x03
AEI_DISCOVERY_CHANGE = 0xF0
AEN_CFG_NS_ATTR = 1 << 8
AEN_CFG_ANA = 1 << 11
AEN_CFG_DISCOVERY = 1 << 31


def status_of(sc: int, sct: int = 0, dnr: bool = True) -> int:
    return (sc << 1) | (sct << 9) | (int(dnr) << 15)


# Commands Supported and Effects tables: opcode -> effects (CSUPP, LBCC).
_ADMIN_EFFECTS = {op: spec.CmdEffect.CSUPP for op in (
    AdminOpcode.GET_LOG_PAGE, AdminOpcode.IDENTIFY, AdminOpcode.ABORT, AdminOpcode.SET_FEATURES,
    AdminOpcode.GET_FEATURES, AdminOpcode.ASYNC_EVENT_REQUEST, AdminOpcode.KEEP_ALIVE)}
_IO_EFFECTS = {
    spec.NvmOpcode.FLUSH: spec.CmdEffect.CSUPP | spec.CmdEffect.LBCC,
    spec.NvmOpcode.WRITE: spec.CmdEffect.CSUPP | spec.CmdEffect.LBCC,
    spec.NvmOpcode.READ: spec.CmdEffect.CSUPP,
    spec.NvmOpcode.COMPARE: spec.CmdEffect.CSUPP,
    spec.NvmOpcode.WRITE_ZEROES: spec.CmdEffect.CSUPP | spec.CmdEffect.LBCC,
    spec.NvmOpcode.DATASET_MANAGEMENT: spec.CmdEffect.CSUPP | spec.CmdEffect.LBCC,
    spec.NvmOpcode.RESERVATION_REGISTER: spec.CmdEffect.CSUPP,
    spec.NvmOpcode.RESERVATION_REPORT: spec.CmdEffect.CSUPP,
    spec.NvmOpcode.RESERVATION_ACQUIRE: spec.CmdEffect.CSUPP,
    spec.NvmOpcode.RESERVATION_RELEASE: spec.CmdEffect.CSUPP,
}
COMMANDS_EFFECTS_LOG = spec.build_commands_effects_log(
    {int(k): int(v) for k, v in _ADMIN_EFFECTS.items()},
    {int(k): int(v) for k, v in _IO_EFFECTS.items()})


def _c2h(req: Request, payload: bytes, offset: int = 0) -> None:
    """Answer a read-type admin command with exactly req.length bytes of ``payload``."""
    n = req.length
    chunk = payload[offset:offset + n]
    if len(chunk) < n:
        chunk = chunk + bytes(n - len(chunk))
    req.data = chunk
    req.complete()


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def exec_request(tgt: Target, req: Request) -> None:
    """Execute one command; its completion is sent now or later (never dropped)."""
    qp = req.qpair
    qp.outstanding[req.cid] = req
    ctrlr = qp.ctrlr
    if _TRACE_CTRLR:
        # ctx: the transport's request is the same object (its id), the innermost started last
        _trace.record(_tp.NVMF_CTRLR_IO_START, ctrlr.cntlid if ctrlr is not None else 0, id(req), req.length,
                      req.opcode, id(req), req.nsid,
                      ctrlr.subsys.nqn.rsplit(":", 1)[-1].encode() if ctrlr is not None else b"")
    if req.opcode == spec.FABRICS_OPCODE:
        fctype = req.sqe[4]
        if fctype == fab.FabricsCommandType.CONNECT:
            if ctrlr is not None or qp.auth is not None:
                req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
                return
            connect(tgt, req)
            return
        if fctype in (fab.FabricsCommandType.AUTH_SEND, fab.FabricsCommandType.AUTH_RECV):
            nvmf_auth.exec_auth(req, fctype, _attach_authenticated)
            return
        if ctrlr is None:
            if qp.auth is not None and fctype != fab.FabricsCommandType.DISCONNECT:
                nvmf_auth.fail_auth_required(req)
            elif fctype == fab.FabricsCommandType.DISCONNECT and qp.auth is not None:
                req.complete()
                qp.owner.disconnect("host sent Fabrics Disconnect")
            else:
                req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
            return
        if fctype == fab.FabricsCommandType.PROPERTY_GET and qp.qid == 0:
            ctrlr.property_get(req)
        elif fctype == fab.FabricsCommandType.PROPERTY_SET and qp.qid == 0:
            ctrlr.property_set(req)
        elif fctype == fab.FabricsCommandType.DISCONNECT:
            req.complete()
            qp.owner.disconnect("host sent Fabrics Disconnect")
        else:
            req.fail(GenericStatus.INVALID_OPCODE)
        return
    if ctrlr is None:
        if qp.auth is not None:
            nvmf_auth.fail_auth_required(req)
        else:
            req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
        return
    if qp.qid == 0:
        ctrlr.exec_admin(req)
    else:
        ctrlr.exec_io(req)


# --------------------------------------------------------------------------------------------
# Connect
# --------------------------------------------------------------------------------------------


def _connect_invalid(req: Request, ipo: int, in_data: bool) -> None:
    req.dw0 = fab.connect_rsp_dw0_invalid(ipo, in_data)
    req.fail(FabricsStatus.CONNECT_INVALID_PARAMETERS, SCT_SPECIFIC)


def _auth_exchange(tgt: Target, subsys: Subsystem, hostnqn: str) -> nvmf_auth.ControllerAuth | None | str:
    """The DH-HMAC-CHAP exchange a host must pass on every queue, None when it needs none,
    or a message when its keys cannot be read (the Connect is then refused)."""
    keys = subsys.host_keys.get(hostnqn)
    if keys is None:
        return None
    try:
        host, ctrl = keys.secrets()
    except (keyring.KeyringError, dhchap.SecretError) as e:
        return f"its DH-HMAC-CHAP key cannot be used: {e}"
    return nvmf_auth.ControllerAuth(hostnqn, subsys.nqn, host, ctrl, tgt.dhchap_digests, tgt.dhchap_dhgroups)


def _attach_authenticated(qa: nvmf_auth.QpairAuth) -> None:
    """The queue pair passed DH-HMAC-CHAP: attach it to its controller as Connect would have."""
    ctrlr = qa.ctrlr
    qp = qa.qpair
    if ctrlr.dead:
        qp.owner.disconnect("controller freed during authentication")
        return
    if qa.qid == 0:
        qp.ctrlr = ctrlr
    else:
        if qa.qid in ctrlr.io_qpairs:
            qp.owner.disconnect(f"qid {qa.qid} was connected meanwhile by another queue pair")
            return
        ctrlr.io_qpairs[qa.qid] = qp
        qp.ctrlr = ctrlr
    qp.state = "active"


def _secure_channel_refusal(subsys: Subsystem, qp: Qpair, hostnqn: str, subnqn: str) -> str | None:
    """Why a Connect may not use this queue's channel (None: it may). A secure-channel listener
    takes only TLS connections whose PSK identity names this very host and subsystem."""
    lst = subsys.find_listener(qp.listen_address) if qp.listen_address is not None else None
    if lst is None or not lst.secure_channel:
        return None
    if qp.tls_identity is None:
        return "the listener is a secure channel and this connection is not TLS"
    if qp.tls_identity != (hostnqn, subnqn):
        return (f"the TLS PSK identity names host {qp.tls_identity[0]} and subsystem "
                f"{qp.tls_identity[1]}, not this Connect's")
    return None


def connect(tgt: Target, req: Request) -> None:
    qp = req.qpair
    cmd = fab.parse_connect_command(req.sqe)
    if cmd.recfmt != 0:
        req.fail(FabricsStatus.INCOMPATIBLE_FORMAT, SCT_SPECIFIC)
        return
    data = req.data
    if data is None or len(data) < fab.CONNECT_DATA.size:
        log.error("Connect without its 1024 bytes of data (got %d)", 0 if data is None else len(data))
        req.fail(GenericStatus.INVALID_FIELD)
        return
    cd = fab.parse_connect_data(data)
    addr = qp.listen_address
    where = f" on {addr}" if addr is not None else ""
    subsys = tgt.subsystems.get(cd.subnqn)
    if subsys is None:
        log.error("Connect from host %s%s: subsystem %s does not exist", cd.hostnqn, where, cd.subnqn)
        _connect_invalid(req, fab.CONNECT_DATA_OFF_SUBNQN, True)
        return
    if not subsys.listener_allows(addr):
        log.error("Connect from host %s to subsystem %s refused: the subsystem does not listen%s",
                  cd.hostnqn, cd.subnqn, where)
        _connect_invalid(req, fab.CONNECT_DATA_OFF_SUBNQN, True)
        return
    tls_refusal = _secure_channel_refusal(subsys, qp, cd.hostnqn, cd.subnqn)
    if tls_refusal is not None:
        log.error("Connect from host %s to %s%s refused: %s", cd.hostnqn, cd.subnqn, where, tls_refusal)
        req.dw0 = fab.connect_rsp_dw0_invalid(fab.CONNECT_DATA_OFF_HOSTNQN, True)
        req.fail(FabricsStatus.CONNECT_INVALID_HOST, SCT_SPECIFIC)
        return
    if not subsys.host_allowed(cd.hostnqn):
        allowed = ", ".join(subsys.hosts) if subsys.hosts else "none"
        log.error("Connect refused: host NQN %s is not allowed to access subsystem %s%s "
                  "(allow_any_host is false; allowed hosts: %s). Add it with "
                  "nvmf_subsystem_add_host.", cd.hostnqn, cd.subnqn, where, allowed)
        req.dw0 = fab.connect_rsp_dw0_invalid(fab.CONNECT_DATA_OFF_HOSTNQN, True)
        req.fail(FabricsStatus.CONNECT_INVALID_HOST, SCT_SPECIFIC)
        return
    auth = _auth_exchange(tgt, subsys, cd.hostnqn) if not subsys.discovery else None
    if isinstance(auth, str):
        log.error("Connect from host %s to %s%s refused: %s", cd.hostnqn, cd.subnqn, where, auth)
        req.dw0 = fab.connect_rsp_dw0_invalid(fab.CONNECT_DATA_OFF_HOSTNQN, True)
        req.fail(FabricsStatus.CONNECT_INVALID_HOST, SCT_SPECIFIC)
        return
    opts = tgt.transport_opts()
    limit = opts.max_aq_depth if cmd.qid == 0 else opts.max_queue_depth
    if cmd.sqsize == 0 or cmd.sqsize + 1 > limit:
        log.error("Connect from host %s to %s: queue size %d (qid %d) outside 2..%d",
                  cd.hostnqn, cd.subnqn, cmd.sqsize + 1, cmd.qid, limit)
        _connect_invalid(req, fab.CONNECT_OFF_SQSIZE, False)
        return
    if cmd.qid == 0:
        if cd.cntlid != fab.CNTLID_DYNAMIC:
            log.error("Connect from host %s: static controller ID %#x requested; %s uses the "
                      "dynamic controller model", cd.hostnqn, cd.cntlid, cd.subnqn)
            _connect_invalid(req, fab.CONNECT_DATA_OFF_CNTLID, True)
            return
        cntlid = subsys.allocate_cntlid()
        if cntlid == 0:
            log.error("Connect from host %s: no free controller ID in %s", cd.hostnqn, cd.subnqn)
            req.fail(FabricsStatus.CONTROLLER_BUSY, SCT_SPECIFIC)
            return
        ctrlr = Controller(tgt, subsys, cntlid, cd.hostnqn, bytes(cd.hostid), cmd.kato, qp)
        qp.qid = 0
        qp.sqsize = cmd.sqsize
        qp.ctrlr = ctrlr
        qp.kato_ms = cmd.kato
        qp.hostnqn = cd.hostnqn
        qp.connected = True
        qp.state = "active"
        tgt.qpair_connected(qp)
        log.info("controller %d of %s created for host %s%s", cntlid, subsys.nqn, cd.hostnqn, where)
        authreq = 0
        if auth is not None:
            # Not attached until the host authenticates: commands other than AUTH_* are refused.
            qp.ctrlr = None
            qp.state = "authenticating"
            qp.auth = nvmf_auth.QpairAuth(auth, ctrlr, qp, 0)
            authreq = spec_auth.AUTHREQ_ATR
        req.dw0 = fab.connect_rsp_dw0_success(cntlid, authreq)
        req.complete()
        return
    found = subsys.controllers.get(cd.cntlid)
    if found is None or found.dead:
        log.error("I/O queue Connect from host %s: %s has no controller %d", cd.hostnqn,
                  cd.subnqn, cd.cntlid)
        _connect_invalid(req, fab.CONNECT_DATA_OFF_CNTLID, True)
        return
    ctrlr = found
    if ctrlr.hostnqn != cd.hostnqn or ctrlr.hostid != bytes(cd.hostid):
        log.error("I/O queue Connect to controller %d of %s: host %s does not own it (owner %s)",
                  cd.cntlid, cd.subnqn, cd.hostnqn, ctrlr.hostnqn)
        _connect_invalid(req, fab.CONNECT_DATA_OFF_HOSTNQN, True)
        return
    if not ctrlr.ready:
        req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
        return
    if subsys.discovery:
        req.fail(FabricsStatus.INVALID_QUEUE_TYPE, SCT_SPECIFIC)
        return
    if cmd.qid > min(ctrlr.num_io_queues, opts.max_io_qpairs_per_ctrlr) or cmd.qid in ctrlr.io_qpairs:
        log.error("I/O queue Connect to controller %d of %s: qid %d is invalid or in use "
                  "(%d I/O queues)", cd.cntlid, cd.subnqn, cmd.qid, ctrlr.num_io_queues)
        _connect_invalid(req, fab.CONNECT_OFF_QID, False)
        return
    qp.qid = cmd.qid
    qp.sqsize = cmd.sqsize
    qp.hostnqn = cd.hostnqn
    qp.connected = True
    tgt.qpair_connected(qp)
    if auth is not None:
        qp.state = "authenticating"
        qp.auth = nvmf_auth.QpairAuth(auth, ctrlr, qp, cmd.qid)
        req.dw0 = fab.connect_rsp_dw0_success(ctrlr.cntlid, spec_auth.AUTHREQ_ATR)
        req.complete()
        return
    qp.ctrlr = ctrlr
    qp.state = "active"
    ctrlr.io_qpairs[cmd.qid] = qp
    req.dw0 = fab.connect_rsp_dw0_success(ctrlr.cntlid)
    req.complete()


# --------------------------------------------------------------------------------------------
# Controller
# --------------------------------------------------------------------------------------------


class Controller:
    def __init__(self, tgt: Target, subsys: Subsystem, cntlid: int, hostnqn: str, hostid: bytes,
                 kato_ms: int, admin_qpair: Qpair):
        self.tgt = tgt
        self.subsys = subsys
        self.cntlid = cntlid
        self.hostnqn = hostnqn
        self.hostid = hostid
        self.admin_qpair = admin_qpair
        self.listen_address = admin_qpair.listen_address
        self.io_qpairs: dict[int, Qpair] = {}
        self.dead = False
        opts = tgt.transport_opts()
        self.opts = opts
        self.cc = 0
        self.csts = 0
        self.kato_ms = kato_ms
        self.last_keep_alive_ns = tgt.clock()
        self.num_io_queues = opts.max_io_qpairs_per_ctrlr
        self.aer_reqs: list[Request] = []
        self.aer_config = 0
        self.pending_events: deque[int] = deque()
        self.masked_events: set[int] = set()
        self.changed_ns: set[int] = set()
        self.ana_change_count = 0
        self.resv_notices = resv.ControllerNotices()
        self.features: dict[int, int] = {
            FeatureId.ARBITRATION: 0,
            FeatureId.POWER_MANAGEMENT: 0,
            FeatureId.VOLATILE_WRITE_CACHE: 1,
            FeatureId.ERROR_RECOVERY: 0,  # TLER in 100 ms units; DULBE unsupported
        }
        self.temp_thresholds: dict[tuple[int, int], int] = {}
        self.errors: deque[spec.ErrorLogEntry] = deque(maxlen=128)
        self.error_count = 0
        # SMART counters (in commands and 512-byte units)
        self.reads = 0
        self.writes = 0
        self.read_units = 0
        self.write_units = 0
        subsys.controllers[cntlid] = self
        self.cap = fab.make_cap(mqes=opts.max_queue_depth - 1, cqr=True, to=15, css=0x01)

    # -- state ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return bool(self.csts & fab.Csts.RDY)

    def ns(self, nsid: int) -> Namespace | None:
        """The namespace if it is active for this controller's host (namespace masking)."""
        ns = self.subsys.namespaces.get(nsid)
        if ns is not None and not ns.auto_visible and self.hostnqn not in ns.hosts:
            return None
        return ns

    def active_nsids(self) -> list[int]:
        return [n.nsid for n in self.subsys.namespaces.values() if n.visible_to(self.hostnqn)]

    def qpairs(self) -> list[Qpair]:
        return [self.admin_qpair, *self.io_qpairs.values()]

    def exec_io(self, req: Request) -> None:
        nvmf_io.exec_io(self, req)

    def qpair_gone(self, qp: Qpair) -> None:
        """A transport connection closed under this controller's queue pair."""
        if qp is self.admin_qpair:
            self.destroy(f"admin queue of host {self.hostnqn} closed")
        else:
            if self.io_qpairs.get(qp.qid) is qp:
                del self.io_qpairs[qp.qid]

    def destroy(self, reason: str) -> None:
        """Free the controller: drop its AERs and disconnect every queue pair."""
        if self.dead:
            return
        self.dead = True
        if self.subsys.controllers.get(self.cntlid) is self:
            del self.subsys.controllers[self.cntlid]
        self.aer_reqs.clear()
        log.info("controller %d of %s (host %s) freed: %s", self.cntlid, self.subsys.nqn,
                 self.hostnqn, reason)
        for qp in list(self.io_qpairs.values()):
            qp.owner.disconnect(reason)
        self.io_qpairs.clear()
        self.admin_qpair.owner.disconnect(reason)

    def keep_alive_expired(self, now_ns: int) -> bool:
        return self.kato_ms > 0 and now_ns - self.last_keep_alive_ns > self.kato_ms * 1_000_000

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "cntlid": self.cntlid, "hostnqn": self.hostnqn,
            "hostid": str(_uuid.UUID(bytes=self.hostid)) if len(self.hostid) == 16 else "",
            "num_io_qpairs": len(self.io_qpairs)}
        qa = self.admin_qpair.auth
        if qa is not None:
            d["auth"] = qa.to_json()
        return d

    # -- properties -------------------------------------------------------------------------

    def property_get(self, req: Request) -> None:
        size, ofst = fab.parse_property_get(req.sqe)
        if ofst == fab.Property.CAP and size == 8:
            value = self.cap
        elif ofst == fab.Property.VS and size == 4:
            value = VS_1_3
        elif ofst == fab.Property.CC and size == 4:
            value = self.cc
        elif ofst == fab.Property.CSTS and size == 4:
            value = self.csts
        else:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        req.dw0 = value & 0xFFFFFFFF
        req.dw1 = value >> 32
        req.complete()

    def property_set(self, req: Request) -> None:
        size, ofst, value = fab.parse_property_set(req.sqe)
        if ofst != fab.Property.CC or size != 4:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        old = fab.parse_cc(self.cc)
        new = fab.parse_cc(value)
        self.cc = value
        if new.en and not old.en:
            if new.iosqes not in (0, 6) or new.iocqes not in (0, 4) or new.mps != 0 or new.css != 0:
                log.error("controller %d: CC %#x has unsupported queue entry or page sizes",
                          self.cntlid, value)
                self.csts |= fab.Csts.CFS
            else:
                self.csts |= fab.Csts.RDY
        elif old.en and not new.en:
            # Controller reset: I/O queues go, the admin queue stays.
            self.csts &= ~(fab.Csts.RDY | fab.CSTS_SHST_MASK)
            for qp in list(self.io_qpairs.values()):
                qp.owner.disconnect("controller reset (CC.EN cleared)")
            self.io_qpairs.clear()
        if new.shn and not old.shn:
            self.csts = (self.csts & ~fab.CSTS_SHST_MASK) | fab.Csts.SHST_COMPLETE
        elif not new.shn:
            self.csts &= ~fab.CSTS_SHST_MASK
        req.complete()

    # -- admin commands ---------------------------------------------------------------------

    def exec_admin(self, req: Request) -> None:
        opc = req.opcode
        if not self.ready and opc != AdminOpcode.KEEP_ALIVE:
            req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
            return
        if req.flags & 0x3:  # fused admin commands do not exist
            req.fail(GenericStatus.INVALID_FIELD)
            return
        if opc == AdminOpcode.IDENTIFY:
            self.identify(req)
        elif opc == AdminOpcode.GET_LOG_PAGE:
            self.get_log_page(req)
        elif opc == AdminOpcode.GET_FEATURES:
            self.get_features(req)
        elif opc == AdminOpcode.SET_FEATURES:
            self.set_features(req)
        elif opc == AdminOpcode.KEEP_ALIVE:
            self.last_keep_alive_ns = self.tgt.clock()
            req.complete()
        elif opc == AdminOpcode.ASYNC_EVENT_REQUEST:
            self.async_event_request(req)
        elif opc == AdminOpcode.ABORT:
            self.abort(req)
        else:
            req.fail(GenericStatus.INVALID_OPCODE)

    # Identify

    def controller_data(self) -> spec.ControllerData:
        s = self.subsys
        opts = self.opts
        mdts = max(0, (opts.max_io_size // 4096).bit_length() - 1)
        if s.discovery:
            return spec.ControllerData(
                vid=0, ssvid=0, serial=s.serial_number, model="spydk discovery",
                firmware_rev=FIRMWARE_REV, ieee=0, cmic=0, mdts=mdts, cntlid=self.cntlid,
                ver=VS_1_3, oaes=0, ctratt=0, cntrltype=2, acl=3, aerl=3, frmw=0x3, lpa=0x4,
                elpe=127, kas=opts.kas, anatt=0, anacap=0, anagrpmax=0, nanagrpid=0,
                maxcmd=opts.max_aq_depth, nn=0, oncs=0, fuses=0, vwc=0, sgls=1 | (1 << 20),
                subnqn=s.nqn, ioccsz=0, iorcsz=0, msdbd=1)
        ana = s.ana_reporting
        return spec.ControllerData(
            vid=0x4E58, ssvid=0x4E58, serial=s.serial_number, model=s.model_number,
            firmware_rev=FIRMWARE_REV, ieee=0x000000, cmic=0b011 | (0b1000 if ana else 0),
            mdts=mdts, cntlid=self.cntlid, ver=VS_1_3,
            oaes=spec.Oaes.NS_ATTRIBUTE_NOTICES | (spec.Oaes.ANA_CHANGE_NOTICES if ana else 0),
            ctratt=0x1, crdt=self.tgt.crdt, cntrltype=1, oacs=0, acl=3, aerl=3, frmw=0x3, lpa=0x6, elpe=127,
            kas=opts.kas, anatt=10 if ana else 0, anacap=0x47 if ana else 0,
            anagrpmax=s.max_namespaces if ana else 0, nanagrpid=s.max_namespaces if ana else 0,
            maxcmd=opts.max_queue_depth, nn=s.max_namespaces,
            mnan=s.max_namespaces,  # Linux refuses ANA (multipath) with MNAN 0
            oncs=spec.Oncs.COMPARE | spec.Oncs.DATASET_MANAGEMENT | spec.Oncs.WRITE_ZEROES
            | spec.Oncs.RESERVATIONS,
            fuses=0x1, vwc=0x1, sgls=1 | (1 << 20), subnqn=s.nqn,
            ioccsz=(64 + opts.in_capsule_data_size) // 16, iorcsz=1, icdoff=0, fcatt=0, msdbd=1)

    def identify(self, req: Request) -> None:
        cdw10 = spec.sqe_cdw(req.sqe, 10)
        cdw11 = spec.sqe_cdw(req.sqe, 11)
        cns = cdw10 & 0xFF
        csi = (cdw11 >> 24) & 0xFF
        nsid = req.nsid
        s = self.subsys
        if req.length < 4096 and cns in (0, 1, 2, 3):
            pass  # short transfers are allowed; _c2h truncates
        if cns == IdentifyCns.CONTROLLER:
            _c2h(req, spec.build_identify_controller(self.controller_data()))
        elif cns == IdentifyCns.NAMESPACE:
            if s.discovery or nsid == 0 or (nsid > s.max_namespaces and nsid != 0xFFFFFFFF):
                req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
                return
            ns = self.ns(nsid)
            if ns is None:
                _c2h(req, bytes(spec.IDENTIFY_SIZE))  # inactive namespace: all zeroes
                return
            b = ns.backend
            _c2h(req, spec.build_identify_namespace(spec.NamespaceData(
                nsze=b.num_blocks, block_size=b.block_size, nsfeat=0, nmic=1, rescap=resv.rescap(ns),
                anagrpid=ns.anagrpid if s.ana_reporting else 0, nguid=ns.nguid, eui64=ns.eui64)))
        elif cns == IdentifyCns.ACTIVE_NS_LIST:
            if nsid >= 0xFFFFFFFE:
                req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
                return
            _c2h(req, spec.build_ns_list(self.active_nsids(), nsid))
        elif cns == IdentifyCns.NS_ID_DESCRIPTOR_LIST:
            ns = self.ns(nsid)
            if ns is None:
                req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
                return
            _c2h(req, spec.build_ns_id_descriptors(eui64=ns.eui64, nguid=ns.nguid, uuid=ns.uuid))
        elif cns in (IdentifyCns.IOCS_NAMESPACE, IdentifyCns.IOCS_CONTROLLER) and csi == 0:
            # NVM command set specific data: every limit 0 means "no limit" / "not reported".
            if cns == IdentifyCns.IOCS_NAMESPACE and self.ns(nsid) is None:
                req.fail(GenericStatus.INVALID_NAMESPACE_OR_FORMAT)
                return
            _c2h(req, bytes(spec.IDENTIFY_SIZE))
        else:
            req.fail(GenericStatus.INVALID_FIELD)

    # Log pages

    def get_log_page(self, req: Request) -> None:
        cdw10, cdw11, cdw12, cdw13, _, _ = spec.sqe_cdw10_15(req.sqe)
        lid = cdw10 & 0xFF
        lsp = (cdw10 >> 8) & 0x7F
        rae = bool(cdw10 & (1 << 15))
        numd = ((cdw11 & 0xFFFF) << 16 | (cdw10 >> 16)) + 1
        offset = cdw12 | (cdw13 << 32)
        if offset & 3 or numd * 4 > max(req.length, 0) or req.length == 0:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        s = self.subsys
        if s.discovery:
            if lid == LogPageId.DISCOVERY:
                page = self.tgt.discovery_log(self.hostnqn, self.listen_address)
                _c2h(req, page, offset)
                if not rae:
                    self.masked_events.discard(AEI_DISCOVERY_CHANGE)
            elif lid == LogPageId.ERROR:
                _c2h(req, self._error_log(), offset)
            else:
                req.fail(CommandSpecificStatus.INVALID_LOG_PAGE, SCT_SPECIFIC)
            return
        if lid == LogPageId.ERROR:
            _c2h(req, self._error_log(), offset)
        elif lid == LogPageId.HEALTH:
            _c2h(req, spec.build_health_log(spec.HealthData(
                data_units_read=-(-self.read_units // 1000),
                data_units_written=-(-self.write_units // 1000),
                host_read_commands=self.reads, host_write_commands=self.writes,
                power_cycles=1, num_error_log_entries=self.error_count)), offset)
        elif lid == LogPageId.FIRMWARE_SLOT:
            _c2h(req, spec.build_firmware_slot_log([FIRMWARE_REV]), offset)
        elif lid == LogPageId.CHANGED_NS_LIST:
            page = spec.build_changed_ns_list(sorted(self.changed_ns))
            if not rae:
                self.changed_ns.clear()
                self.masked_events.discard(AEI_NS_ATTR_CHANGED)
            _c2h(req, page, offset)
        elif lid == LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS:
            _c2h(req, COMMANDS_EFFECTS_LOG, offset)
        elif lid == LogPageId.RESERVATION_NOTIFICATION:
            _c2h(req, self.resv_notices.page(rae), offset)
        elif lid == LogPageId.ANA and s.ana_reporting:
            _c2h(req, self._ana_log(include_nsids=not lsp & 1), offset)
            if not rae:
                self.masked_events.discard(AEI_ANA_CHANGE)
        else:
            req.fail(CommandSpecificStatus.INVALID_LOG_PAGE, SCT_SPECIFIC)

    def _error_log(self) -> bytes:
        return spec.build_error_log(list(reversed(self.errors)))

    def _ana_log(self, include_nsids: bool) -> bytes:
        s = self.subsys
        addr = self.listen_address
        lst = s.find_listener(addr) if addr is not None else None
        groups = []
        for grp in s.ana_groups():
            state = lst.ana_state(grp) if lst is not None else AnaState.OPTIMIZED
            nsids = [n.nsid for n in s.namespaces.values() if n.anagrpid == grp and n.visible_to(self.hostnqn)]
            groups.append(spec.AnaGroup(grp, state, nsids, s.ana_change_count))
        return spec.build_ana_log(s.ana_change_count, groups, include_nsids=include_nsids)

    def record_error(self, req: Request) -> None:
        self.error_count += 1
        self.errors.append(spec.ErrorLogEntry(
            error_count=self.error_count, sqid=max(req.qpair.qid, 0), cid=req.cid,
            status=req.status, nsid=req.nsid, trtype=spec.TransportType.TCP))

    # Features

    def get_features(self, req: Request) -> None:
        cdw10 = spec.sqe_cdw(req.sqe, 10)
        cdw11 = spec.sqe_cdw(req.sqe, 11)
        fid = cdw10 & 0xFF
        sel = (cdw10 >> 8) & 0x7
        if sel == 3:  # supported capabilities: changeable, not saveable, not per-namespace
            if fid in self._settable:
                req.dw0 = 0x4
                req.complete()
            else:
                req.fail(GenericStatus.INVALID_FIELD)
            return
        if fid in (FeatureId.ARBITRATION, FeatureId.POWER_MANAGEMENT, FeatureId.ERROR_RECOVERY):
            req.dw0 = 0 if sel == 1 else self.features[fid]
        elif fid == FeatureId.VOLATILE_WRITE_CACHE:
            req.dw0 = 1 if sel == 1 else self.features[fid]
        elif fid == FeatureId.TEMPERATURE_THRESHOLD:
            tmpsel = (cdw11 >> 16) & 0xF
            thsel = (cdw11 >> 20) & 0x3
            if tmpsel not in (0, 0xF) or thsel > 1:
                req.fail(GenericStatus.INVALID_FIELD)
                return
            default = 0x0157 if thsel == 0 else 0  # 343 K over-temperature
            req.dw0 = default if sel == 1 else self.temp_thresholds.get((tmpsel, thsel), default)
        elif fid == FeatureId.NUMBER_OF_QUEUES:
            n = self.num_io_queues - 1
            req.dw0 = n | (n << 16)
        elif fid == FeatureId.ASYNC_EVENT_CONFIG:
            req.dw0 = 0 if sel == 1 else self.aer_config
        elif fid == FeatureId.KEEP_ALIVE_TIMER:
            req.dw0 = self.kato_ms
        elif fid == FeatureId.HOST_IDENTIFIER:
            if not cdw11 & 1:  # only the 128-bit identifier exists over Fabrics
                req.fail(GenericStatus.INVALID_FIELD)
                return
            _c2h(req, self.hostid.ljust(16, b"\0"))
            return
        elif fid in (FeatureId.HOST_RESERVE_MASK, FeatureId.HOST_RESERVE_PERSIST):
            dw0 = resv.get_feature(self, req, fid)
            if dw0 is None:
                return
            req.dw0 = dw0
        else:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        req.complete()

    _settable = frozenset({FeatureId.ARBITRATION, FeatureId.POWER_MANAGEMENT,
                           FeatureId.TEMPERATURE_THRESHOLD, FeatureId.VOLATILE_WRITE_CACHE,
                           FeatureId.NUMBER_OF_QUEUES, FeatureId.ASYNC_EVENT_CONFIG,
                           FeatureId.KEEP_ALIVE_TIMER, FeatureId.ERROR_RECOVERY})

    def set_features(self, req: Request) -> None:
        cdw10 = spec.sqe_cdw(req.sqe, 10)
        cdw11 = spec.sqe_cdw(req.sqe, 11)
        fid = cdw10 & 0xFF
        if cdw10 & (1 << 31):
            req.fail(CommandSpecificStatus.FEATURE_ID_NOT_SAVEABLE, SCT_SPECIFIC)
            return
        if fid == FeatureId.ARBITRATION:
            self.features[fid] = cdw11
        elif fid == FeatureId.POWER_MANAGEMENT:
            if cdw11 & 0x1F:  # only power state 0 exists
                req.fail(GenericStatus.INVALID_FIELD)
                return
            self.features[fid] = cdw11 & 0xFF
        elif fid == FeatureId.TEMPERATURE_THRESHOLD:
            tmpsel = (cdw11 >> 16) & 0xF
            thsel = (cdw11 >> 20) & 0x3
            if tmpsel not in (0, 0xF) or thsel > 1:
                req.fail(GenericStatus.INVALID_FIELD)
                return
            self.temp_thresholds[(tmpsel, thsel)] = cdw11 & 0xFFFF
        elif fid == FeatureId.VOLATILE_WRITE_CACHE:
            self.features[fid] = cdw11 & 1
        elif fid == FeatureId.ERROR_RECOVERY:
            if cdw11 & (1 << 16):  # DULBE: we do not report deallocated blocks as errors
                req.fail(GenericStatus.INVALID_FIELD)
                return
            self.features[fid] = cdw11 & 0xFFFF
        elif fid == FeatureId.NUMBER_OF_QUEUES:
            if self.io_qpairs:
                req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)
                return
            nsqr = cdw11 & 0xFFFF
            ncqr = cdw11 >> 16
            if nsqr == 0xFFFF or ncqr == 0xFFFF:
                req.fail(GenericStatus.INVALID_FIELD)
                return
            self.num_io_queues = min(self.opts.max_io_qpairs_per_ctrlr, max(nsqr, ncqr) + 1)
            n = self.num_io_queues - 1
            req.dw0 = n | (n << 16)
        elif fid == FeatureId.ASYNC_EVENT_CONFIG:
            self.aer_config = cdw11
        elif fid == FeatureId.KEEP_ALIVE_TIMER:
            kato = cdw11
            if kato and kato < self.opts.kas * 100:
                kato = self.opts.kas * 100  # round up to the granularity
            self.kato_ms = kato
            self.last_keep_alive_ns = self.tgt.clock()
        elif fid == FeatureId.HOST_IDENTIFIER:
            req.fail(GenericStatus.COMMAND_SEQUENCE_ERROR)  # set by Connect over Fabrics
            return
        elif fid in (FeatureId.HOST_RESERVE_MASK, FeatureId.HOST_RESERVE_PERSIST):
            if not resv.set_feature(self, req, fid, cdw11):
                return
        else:
            req.fail(GenericStatus.INVALID_FIELD)
            return
        req.complete()

    # Asynchronous events

    def async_event_request(self, req: Request) -> None:
        if len(self.aer_reqs) >= 4:
            req.fail(CommandSpecificStatus.ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED, SCT_SPECIFIC)
            return
        self.aer_reqs.append(req)
        self._deliver_events()

    def withdraw_aer(self, req: Request) -> bool:
        """Forget an Async Event Request the host gave up on, without answering it. SPDK's
        host, when it detaches, completes its AERs locally and reuses their CIDs for the
        shutdown's Property Gets; the target must then let those CIDs go."""
        if req not in self.aer_reqs:
            return False
        self.aer_reqs.remove(req)
        req.qpair.outstanding.pop(req.cid, None)
        return True

    def _post_event(self, info: int, log_page: int) -> None:
        if info in self.masked_events:
            return  # reported already; the host has not read the log page yet
        self.post_event(AER_NOTICE, info, log_page)

    def post_event(self, aer_type: int, info: int, log_page: int) -> None:
        """Queue an asynchronous event; the caller has checked its own masking rules."""
        dw0 = aer_type | (info << 8) | (log_page << 16)
        if dw0 not in self.pending_events:
            self.pending_events.append(dw0)
        self._deliver_events()

    def _deliver_events(self) -> None:
        while self.aer_reqs and self.pending_events:
            dw0 = self.pending_events.popleft()
            if dw0 & 0x7 == AER_NOTICE:  # notices stay masked until their log page is read
                self.masked_events.add((dw0 >> 8) & 0xFF)
            req = self.aer_reqs.pop(0)
            req.dw0 = dw0
            req.complete()

    def namespace_changed(self, nsid: int) -> None:
        if len(self.changed_ns) <= 1024:
            self.changed_ns.add(nsid)
        if self.aer_config & AEN_CFG_NS_ATTR:
            self._post_event(AEI_NS_ATTR_CHANGED, LogPageId.CHANGED_NS_LIST)

    def ana_changed(self) -> None:
        if self.subsys.ana_reporting and self.aer_config & AEN_CFG_ANA:
            self._post_event(AEI_ANA_CHANGE, LogPageId.ANA)

    def discovery_changed(self) -> None:
        if self.aer_config & AEN_CFG_DISCOVERY:
            self._post_event(AEI_DISCOVERY_CHANGE, LogPageId.DISCOVERY)

    # Abort

    def abort(self, req: Request) -> None:
        cdw10 = spec.sqe_cdw(req.sqe, 10)
        sqid = cdw10 & 0xFFFF
        cid = cdw10 >> 16
        req.dw0 = 1  # not aborted, unless found below
        qp = self.admin_qpair if sqid == 0 else self.io_qpairs.get(sqid)
        if qp is not None:
            victim = qp.outstanding.get(cid)
            if victim is not None and victim is not req and victim in self.aer_reqs:
                self.aer_reqs.remove(victim)
                victim.fail(GenericStatus.ABORTED_BY_REQUEST, dnr=False)
                req.dw0 = 0
            elif victim is not None and qp.fused_first is victim:
                qp.fused_first = None
                victim.fail(GenericStatus.ABORTED_BY_REQUEST, dnr=False)
                req.dw0 = 0
            elif victim is not None and victim is not req:
                # Not started yet (waiting for a buffer or its data): the transport can abort
                # it. Commands executing in a bdev (and the I/O fast path's, which are always
                # executing) are not aborted: no bdev module implements ABORT.
                abort = getattr(qp.owner, "abort_request", None)
                if abort is not None and abort(victim):
                    req.dw0 = 0
        req.complete()
