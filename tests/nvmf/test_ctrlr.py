"""Controller behaviour through the real codec: Connect, properties, admin commands, AERs,
keep-alive, refused hosts."""
from __future__ import annotations

import logging
import struct

import pytest

from spydk.nvme import spec
from spydk.nvme.spec import AdminOpcode, FabricsStatus, GenericStatus, IdentifyCns, LogPageId
from spydk.nvme.spec import fabrics as fab
from spydk.nvmf.subsystem import DISCOVERY_NQN

from .conftest import NQN, Env


def test_connect_admin_and_io_queue(env: Env) -> None:
    lk, cntlid = env.admin()
    assert 1 <= cntlid <= 0xFFEF
    assert cntlid in env.subsys.controllers
    io = env.io(cntlid)
    assert env.subsys.controllers[cntlid].io_qpairs[1] is io.conn.qp
    st = env.tgt.stats()
    assert st["current_admin_qpairs"] == 1 and st["current_io_qpairs"] == 1


def test_dynamic_controller_ids_are_distinct(env: Env) -> None:
    ids = {env.admin()[1] for _ in range(3)}
    assert len(ids) == 3


def test_properties(env: Env) -> None:
    lk = env.link()
    assert lk.establish().status == 0
    cap = lk.wait(lk.host.property_get(fab.Property.CAP, 8))
    capv = cap.dw0 | cap.dw1 << 32
    assert fab.cap_mqes(capv) == env.tr.opts.max_queue_depth - 1
    assert fab.cap_to(capv) > 0
    assert (capv >> 37) & 1  # NVM command set
    vs = lk.wait(lk.host.property_get(fab.Property.VS, 4))
    assert vs.dw0 == spec.nvme_version(1, 3)
    # admin commands need CC.EN first
    assert lk.wait(lk.host.identify(IdentifyCns.CONTROLLER)).sc == GenericStatus.COMMAND_SEQUENCE_ERROR
    lk.enable()
    assert lk.wait(lk.host.property_get(fab.Property.CSTS, 4)).dw0 & 1
    lk.wait(lk.host.property_set(fab.Property.CC, fab.make_cc(en=True, shn=1)))
    csts = lk.wait(lk.host.property_get(fab.Property.CSTS, 4)).dw0
    assert csts & fab.CSTS_SHST_MASK == fab.Csts.SHST_COMPLETE
    assert lk.wait(lk.host.property_get(0x40, 4)).sc == GenericStatus.INVALID_FIELD


def test_io_queue_needs_enabled_controller(env: Env) -> None:
    lk = env.link()
    cntlid = lk.establish().dw0
    io = env.link()
    c = io.establish(qid=1, cntlid=cntlid)
    assert c.sc == GenericStatus.COMMAND_SEQUENCE_ERROR


def test_identify_controller_and_namespace(env: Env) -> None:
    lk, cntlid = env.admin()
    c = lk.wait(lk.host.identify(IdentifyCns.CONTROLLER))
    d = c.data
    assert d is not None and len(d) == 4096
    assert d[4:24].decode().rstrip() == "SPDYK0001"
    assert d[24:64].decode().rstrip() == "spydk test ctrl"
    assert struct.unpack_from("<H", d, spec.IdCtrlOff.CNTLID)[0] == cntlid
    assert d[spec.IdCtrlOff.SUBNQN:].split(b"\0")[0].decode() == NQN
    assert struct.unpack_from("<I", d, spec.IdCtrlOff.SGLS)[0] & 1
    ioccsz = struct.unpack_from("<I", d, spec.IdCtrlOff.IOCCSZ)[0]
    assert ioccsz * 16 == 64 + env.tr.opts.in_capsule_data_size
    ns = lk.wait(lk.host.identify(IdentifyCns.NAMESPACE, nsid=1)).data
    assert ns is not None and struct.unpack_from("<Q", ns, 0)[0] == env.backend.num_blocks
    assert ns[spec.IdNsOff.LBAF0 + 2] == 9  # 512-byte blocks
    assert ns[spec.IdNsOff.NGUID:spec.IdNsOff.NGUID + 16] == env.backend.uuid
    inactive = lk.wait(lk.host.identify(IdentifyCns.NAMESPACE, nsid=7)).data
    assert inactive == bytes(4096)
    assert lk.wait(lk.host.identify(IdentifyCns.NAMESPACE, nsid=0)).sc == \
        GenericStatus.INVALID_NAMESPACE_OR_FORMAT
    lst = lk.wait(lk.host.identify(IdentifyCns.ACTIVE_NS_LIST)).data
    assert lst is not None and struct.unpack_from("<2I", lst) == (1, 0)
    desc = lk.wait(lk.host.identify(IdentifyCns.NS_ID_DESCRIPTOR_LIST, nsid=1)).data
    assert desc is not None and desc[0] in (spec.NsIdType.NGUID, spec.NsIdType.UUID)
    # I/O command set specific data for the NVM set; anything else is an invalid field
    assert lk.wait(lk.host.identify(IdentifyCns.IOCS_CONTROLLER, csi=0)).status == 0
    assert lk.wait(lk.host.identify(IdentifyCns.IOCS_CONTROLLER, csi=2)).sc == GenericStatus.INVALID_FIELD
    assert lk.wait(lk.host.identify(IdentifyCns.INDEPENDENT_NAMESPACE, nsid=1)).sc == GenericStatus.INVALID_FIELD


def test_features(env: Env) -> None:
    lk, _ = env.admin()
    h = lk.host
    nq = lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.NUMBER_OF_QUEUES,
                         cdw11=(3 << 16) | 3))
    assert nq.status == 0 and nq.dw0 == (3 << 16) | 3
    assert lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.KEEP_ALIVE_TIMER,
                           cdw11=5000)).status == 0
    assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, cdw10=spec.FeatureId.KEEP_ALIVE_TIMER)).dw0 == 5000
    for fid in (spec.FeatureId.ARBITRATION, spec.FeatureId.POWER_MANAGEMENT,
                spec.FeatureId.VOLATILE_WRITE_CACHE, spec.FeatureId.ASYNC_EVENT_CONFIG,
                spec.FeatureId.TEMPERATURE_THRESHOLD):
        assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, cdw10=fid)).status == 0, fid
    hid = lk.wait(h.admin(AdminOpcode.GET_FEATURES, cdw10=spec.FeatureId.HOST_IDENTIFIER,
                          cdw11=1, read_len=16))
    assert hid.data == bytes(range(16))
    assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, cdw10=spec.FeatureId.LBA_RANGE_TYPE)).sc == \
        GenericStatus.INVALID_FIELD
    assert lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.POWER_MANAGEMENT,
                           cdw11=3)).sc == GenericStatus.INVALID_FIELD
    saved = lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=(1 << 31) | spec.FeatureId.ARBITRATION))
    assert saved.sct == 1 and saved.sc == spec.CommandSpecificStatus.FEATURE_ID_NOT_SAVEABLE


def test_log_pages(env: Env) -> None:
    lk, _ = env.admin()
    h = lk.host
    for lid, n in ((LogPageId.ERROR, 64), (LogPageId.HEALTH, 512), (LogPageId.FIRMWARE_SLOT, 512),
                   (LogPageId.CHANGED_NS_LIST, 4096), (LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS, 4096)):
        c = lk.wait(h.get_log_page(lid, n))
        assert c.status == 0 and c.data is not None and len(c.data) == n, lid
    eff = lk.wait(h.get_log_page(LogPageId.COMMANDS_SUPPORTED_AND_EFFECTS, 4096)).data
    assert eff is not None
    assert struct.unpack_from("<I", eff, 4 * AdminOpcode.IDENTIFY)[0] & 1
    assert struct.unpack_from("<I", eff, 1024 + 4 * spec.NvmOpcode.WRITE)[0] & 3 == 3
    bad = lk.wait(h.get_log_page(LogPageId.ANA, 64))  # no ANA reporting on this subsystem
    assert bad.sct == 1 and bad.sc == spec.CommandSpecificStatus.INVALID_LOG_PAGE


def test_unknown_admin_and_io_opcodes(env: Env) -> None:
    lk, cntlid = env.admin()
    assert lk.wait(lk.host.admin(0xC5)).sc == GenericStatus.INVALID_OPCODE
    assert lk.wait(lk.host.admin(AdminOpcode.CREATE_IO_SQ)).sc == GenericStatus.INVALID_OPCODE
    io = env.io(cntlid)
    sqe = spec.build_sqe(0x7E, io.host.next_cid(), 1)
    assert io.wait(io.host.submit(sqe)).sc == GenericStatus.INVALID_OPCODE
    assert io.wait(io.host.submit(spec.build_sqe(spec.NvmOpcode.WRITE_UNCORRECTABLE,
                                                 io.host.next_cid(), 1))).sc == GenericStatus.INVALID_OPCODE


def test_host_refused_with_log_line(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.subsys.allow_any_host = False
    env.subsys.add_host("nqn.2014-08.org.example:allowed-host")
    lk = env.link()
    bad_host = "nqn.2014-08.org.example:intruder"
    with caplog.at_level(logging.ERROR, logger="spydk.nvmf"):
        c = lk.establish(hostnqn=bad_host)
    assert c.sct == 1 and c.sc == FabricsStatus.CONNECT_INVALID_HOST
    assert c.dw0 & 0xFFFF == fab.CONNECT_DATA_OFF_HOSTNQN and (c.dw0 >> 16) & 1
    msg = "\n".join(r.getMessage() for r in caplog.records)
    assert bad_host in msg and NQN in msg and "nqn.2014-08.org.example:allowed-host" in msg
    assert not env.subsys.controllers
    ok = env.link().establish(hostnqn="nqn.2014-08.org.example:allowed-host")
    assert ok.status == 0


def test_connect_errors(env: Env) -> None:
    c = env.link().establish(subnqn="nqn.2016-06.io.spdk:nope")
    assert c.sc == FabricsStatus.CONNECT_INVALID_PARAMETERS and c.dw0 & 0xFFFF == 256
    c = env.link().establish(sqsize=4096)
    assert c.sc == FabricsStatus.CONNECT_INVALID_PARAMETERS and c.dw0 & 0xFFFF == fab.CONNECT_OFF_SQSIZE
    c = env.link().establish(qid=1, cntlid=999)
    assert c.sc == FabricsStatus.CONNECT_INVALID_PARAMETERS
    lk, cntlid = env.admin()
    env.io(cntlid, qid=1)
    c = env.link().establish(qid=1, cntlid=cntlid)  # qid in use
    assert c.sc == FabricsStatus.CONNECT_INVALID_PARAMETERS


def test_keep_alive_expiry_frees_controller_and_qpairs(env: Env) -> None:
    lk = env.link()
    c = lk.establish(kato=2000)
    cntlid = c.dw0
    lk.enable()
    io = env.io(cntlid)
    env.clock.now += 1_500_000_000
    assert lk.wait(lk.host.admin(AdminOpcode.KEEP_ALIVE)).status == 0
    env.clock.now += 1_500_000_000
    assert env.tgt.check_keep_alive(env.clock.now) == 0  # keep-alive reset the timer
    env.clock.now += 2_100_000_000
    assert env.tgt.check_keep_alive(env.clock.now) == 1
    assert cntlid not in env.subsys.controllers
    lk.pump()
    io.pump()
    assert lk.ft.closed and io.ft.closed
    assert env.tgt.stats()["current_admin_qpairs"] == 0
    assert env.tgt.stats()["current_io_qpairs"] == 0


def test_keep_alive_poller_with_reactor(rh, env: Env) -> None:  # type: ignore[no-untyped-def]
    import time
    env.tgt.clock = time.monotonic_ns
    lk = env.link()
    lk.establish(kato=1)  # rounded to nothing smaller than the poll period in practice
    env.tgt.start(rh.thread)
    rh.run_until(lambda: lk.ft.closed, timeout=5)
    assert not env.subsys.controllers


def test_aer_namespace_added_and_removed(env: Env) -> None:
    lk, _ = env.admin()
    h = lk.host
    lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.ASYNC_EVENT_CONFIG, cdw11=1 << 8))
    aer = h.admin(AdminOpcode.ASYNC_EVENT_REQUEST)
    lk.pump()
    assert aer not in h.completions
    from tests.nvmf.helpers import MemoryBackend
    env.subsys.add_namespace("Mem1", MemoryBackend(), nsid=5)
    c = lk.wait(aer)
    assert c.status == 0
    assert c.dw0 & 7 == 2 and (c.dw0 >> 8) & 0xFF == 0 and (c.dw0 >> 16) & 0xFF == LogPageId.CHANGED_NS_LIST
    # a second change is masked until the log is read
    aer2 = h.admin(AdminOpcode.ASYNC_EVENT_REQUEST)
    env.subsys.remove_namespace(5)
    lk.pump()
    assert aer2 not in h.completions
    log = lk.wait(h.get_log_page(LogPageId.CHANGED_NS_LIST, 4096)).data
    assert log is not None and struct.unpack_from("<2I", log) == (5, 0)
    env.subsys.add_namespace("Mem2", MemoryBackend(), nsid=6)
    c2 = lk.wait(aer2)
    assert (c2.dw0 >> 16) & 0xFF == LogPageId.CHANGED_NS_LIST
    lst = lk.wait(h.identify(IdentifyCns.ACTIVE_NS_LIST)).data
    assert lst is not None and struct.unpack_from("<3I", lst) == (1, 6, 0)


def test_aer_limit_and_abort(env: Env) -> None:
    lk, _ = env.admin()
    h = lk.host
    cids = [h.admin(AdminOpcode.ASYNC_EVENT_REQUEST) for _ in range(5)]
    lk.pump()
    over = h.completions.pop(cids[4])
    assert over.sct == 1 and over.sc == spec.CommandSpecificStatus.ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED
    ab = lk.wait(h.admin(AdminOpcode.ABORT, cdw10=cids[0] << 16))
    assert ab.status == 0 and ab.dw0 & 1 == 0
    assert h.completions.pop(cids[0]).sc == GenericStatus.ABORTED_BY_REQUEST
    nothing = lk.wait(h.admin(AdminOpcode.ABORT, cdw10=(999 << 16)))
    assert nothing.dw0 & 1 == 1


def test_ana_reporting_log_and_aen() -> None:
    from spydk.nvme.spec import AnaState
    e = Env()
    e.subsys.ana_reporting = True
    lk, _ = e.admin()
    h = lk.host
    lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.ASYNC_EVENT_CONFIG, cdw11=1 << 11))
    aer = h.admin(AdminOpcode.ASYNC_EVENT_REQUEST)
    e.subsys.set_ana_state(e.subsys.listeners[0].address, AnaState.INACCESSIBLE, 1)
    c = lk.wait(aer)
    assert (c.dw0 >> 8) & 0xFF == 3 and (c.dw0 >> 16) & 0xFF == LogPageId.ANA
    log = lk.wait(h.get_log_page(LogPageId.ANA, 4096)).data
    assert log is not None
    chg, ngrps = struct.unpack_from("<QH", log)
    assert ngrps == 1
    grp, nnsid, _, state = struct.unpack_from("<IIQB", log, 16)
    assert (grp, nnsid, state) == (1, 1, AnaState.INACCESSIBLE)
    io = e.io(e.subsys.controllers and next(iter(e.subsys.controllers)))
    r = io.wait(io.host.read(1, 0, 1, 512))
    assert r.sct == 3 and r.sc == spec.PathStatus.ANA_INACCESSIBLE



def test_set_ns_ana_group_moves_the_namespace() -> None:
    """nvmf_subsystem_set_ns_ana_group: the namespace leaves group 1 (inaccessible on this path)
    for group 2 (optimized): the host gets an ANA change event, the ANA log and Identify
    Namespace show the new group, and I/O is served again."""
    from spydk.nvme.spec import AnaState
    from spydk.nvmf import rpc as nvmf_rpc
    from spydk.nvmf.subsystem import NvmfConfigError
    from spydk.nvmf.tgt import set_target
    from spydk.rpc.errors import RpcError
    e = Env()
    s = e.subsys
    s.ana_reporting = True
    s.set_ana_state(s.listeners[0].address, AnaState.INACCESSIBLE, 1)
    lk, cntlid = e.admin()
    h = lk.host
    lk.wait(h.admin(AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.ASYNC_EVENT_CONFIG, cdw11=1 << 11))
    io = e.io(cntlid)
    assert io.wait(io.host.read(1, 0, 1, 512)).sc == spec.PathStatus.ANA_INACCESSIBLE
    aer = h.admin(AdminOpcode.ASYNC_EVENT_REQUEST)
    set_target(e.tgt)
    try:
        assert nvmf_rpc.nvmf_subsystem_set_ns_ana_group(None, NQN, 1, 2)  # type: ignore[arg-type]
        for nsid, grp, why in ((7, 2, "parameter 'nsid'.*no namespace 7"),
                               (1, s.max_namespaces + 1, "parameter 'anagrpid'.*out of range")):
            with pytest.raises(RpcError, match=why):
                nvmf_rpc.nvmf_subsystem_set_ns_ana_group(None, NQN, nsid, grp)  # type: ignore[arg-type]
    finally:
        set_target(None)
    with pytest.raises(NvmfConfigError):
        s.set_ns_ana_group(1, 0)
    c = lk.wait(aer)
    assert (c.dw0 >> 8) & 0xFF == 3 and (c.dw0 >> 16) & 0xFF == LogPageId.ANA
    log = lk.wait(h.get_log_page(LogPageId.ANA, 4096)).data
    assert log is not None
    _, ngrps = struct.unpack_from("<QH", log)
    grp, nnsid, _, state = struct.unpack_from("<IIQB", log, 16)
    assert (ngrps, grp, nnsid, state) == (1, 2, 1, AnaState.OPTIMIZED)
    idns = lk.wait(h.identify(IdentifyCns.NAMESPACE, nsid=1)).data
    assert idns is not None and struct.unpack_from("<I", idns, 92)[0] == 2  # ANAGRPID
    assert io.wait(io.host.read(1, 0, 1, 512)).status == 0
    assert s.namespaces[1].to_json()["anagrpid"] == 2

def test_discovery_controller_log(env: Env) -> None:
    env.subsys.allow_any_host = False
    lk = env.link()
    c = lk.establish(subnqn=DISCOVERY_NQN)
    assert c.status == 0
    lk.enable()
    idc = lk.wait(lk.host.identify(IdentifyCns.CONTROLLER)).data
    assert idc is not None and idc[spec.IdCtrlOff.CNTRLTYPE] == 2
    hdr = lk.wait(lk.host.get_log_page(LogPageId.DISCOVERY, 1024)).data
    assert hdr is not None and struct.unpack_from("<QQ", hdr)[1] == 0  # host not allowed: hidden
    env.subsys.add_host("nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001")
    env.tgt.bump_generation()
    page = lk.wait(lk.host.get_log_page(LogPageId.DISCOVERY, 2048)).data
    assert page is not None
    gen, numrec = struct.unpack_from("<QQ", page)
    assert numrec == 1 and gen == env.tgt.generation
    e = page[1024:]
    assert e[0] == spec.TransportType.TCP and e[2] == spec.SubsystemType.NVME
    assert e[256:512].split(b"\0")[0].decode() == NQN
    assert e[32:64].decode().strip() == "4420"
    assert e[512:768].decode().strip(" \0") == "127.0.0.1"
    # I/O queues do not exist on a discovery controller; I/O-type commands are refused
    assert lk.wait(lk.host.get_log_page(LogPageId.HEALTH, 512)).sc == spec.CommandSpecificStatus.INVALID_LOG_PAGE


def test_fabrics_disconnect_and_command_before_connect(env: Env) -> None:
    lk = env.link()
    lk.host.icreq()
    lk.pump()
    c = lk.wait(lk.host.identify(IdentifyCns.CONTROLLER))
    assert c.sc == GenericStatus.COMMAND_SEQUENCE_ERROR


def test_data_less_command_with_empty_incapsule_sgl(env: Env) -> None:
    """SPDK's C host describes "no data" on a host-to-controller admin command (Set Features)
    as an in-capsule data block of length 0, where Linux uses a transport data block; both
    must work, or SPDK's initiator can never set the number of queues (found with
    spdk_nvme_perf)."""
    from tests.nvmf.helpers import sgl_incapsule, sgl_transport

    lk, _ = env.admin()
    h = lk.host
    for sgl in (sgl_incapsule(0), sgl_transport(0)):
        sqe = spec.build_sqe(AdminOpcode.SET_FEATURES, h.next_cid(), 0, psdt=1, dptr=sgl,
                             cdw10=spec.FeatureId.NUMBER_OF_QUEUES, cdw11=(3 << 16) | 3)
        c = lk.wait(h.submit(sqe))
        assert c.status == 0 and c.dw0 == (3 << 16) | 3


def test_error_recovery_feature(env: Env) -> None:
    """Error Recovery (FID 05h) is mandatory: SPDK's identify tool reads it."""
    lk, _ = env.admin()
    h = lk.host
    fid = spec.FeatureId.ERROR_RECOVERY
    assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, nsid=1, cdw10=fid)).dw0 == 0
    assert lk.wait(h.admin(AdminOpcode.SET_FEATURES, nsid=1, cdw10=fid, cdw11=30)).status == 0
    assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, nsid=1, cdw10=fid)).dw0 == 30
    assert lk.wait(h.admin(AdminOpcode.GET_FEATURES, nsid=1, cdw10=fid | (1 << 8))).dw0 == 0  # default
    dulbe = lk.wait(h.admin(AdminOpcode.SET_FEATURES, nsid=1, cdw10=fid, cdw11=1 << 16))
    assert dulbe.sc == GenericStatus.INVALID_FIELD
