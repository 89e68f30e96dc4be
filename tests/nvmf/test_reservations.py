"""NVMe reservations: the state machine against the specification's tables, then the commands
through a controller with two hosts (conflicts, notices and their event, identify, features),
persistence through power loss in SPDK's ptpl_file format, and random command sequences."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme import spec
from spydk.nvme.spec import GenericStatus, NvmOpcode
from spydk.nvmf.reservation import NoticeType, NsReservation, PtplError, ResvType
from tests.nvmf.helpers import MemoryBackend

from .conftest import NQN, Env, Link

A, B, C = b"\xaa" * 16, b"\xbb" * 16, b"\xcc" * 16
CONFLICT = GenericStatus.RESERVATION_CONFLICT
INVALID = GenericStatus.INVALID_FIELD


def keys(crkey: int, other: int = 0) -> bytes:
    return struct.pack("<QQ", crkey, other)


def reg(r: NsReservation, host: bytes, key: int, *, action: int = 0, crkey: int = 0, iekey: bool = False,
        cptpl: int = 0) -> int:
    return r.register(host, action | (8 if iekey else 0) | (cptpl << 30), keys(crkey, key)).status


def acq(r: NsReservation, host: bytes, crkey: int, rtype: int, *, action: int = 0, prkey: int = 0) -> int:
    return r.acquire(host, action | (rtype << 8), keys(crkey, prkey)).status


def rel(r: NsReservation, host: bytes, crkey: int, rtype: int, *, action: int = 0) -> int:
    return r.release(host, action | (rtype << 8), struct.pack("<Q", crkey)).status


# (type, who, write) -> allowed; from NVMe Base 2.0, "Command Behavior in the Presence of a Reservation"
ACCESS = {
    ResvType.WRITE_EXCLUSIVE: {"holder": (True, True), "registrant": (True, False), "other": (True, False)},
    ResvType.EXCLUSIVE_ACCESS: {"holder": (True, True), "registrant": (False, False), "other": (False, False)},
    ResvType.WRITE_EXCLUSIVE_REG_ONLY: {"holder": (True, True), "registrant": (True, True), "other": (True, False)},
    ResvType.EXCLUSIVE_ACCESS_REG_ONLY: {"holder": (True, True), "registrant": (True, True), "other": (False, False)},
    ResvType.WRITE_EXCLUSIVE_ALL_REGS: {"holder": (True, True), "registrant": (True, True), "other": (True, False)},
    ResvType.EXCLUSIVE_ACCESS_ALL_REGS: {"holder": (True, True), "registrant": (True, True), "other": (False, False)},
}


@pytest.mark.parametrize("rtype", list(ResvType))
def test_access_matrix(rtype: ResvType) -> None:
    r = NsReservation()
    assert reg(r, A, 1) == 0 and reg(r, B, 2) == 0
    assert acq(r, A, 1, rtype) == 0
    for who, host in (("holder", A), ("registrant", B), ("other", C)):
        read_ok, write_ok = ACCESS[rtype][who]
        assert r.io_allowed(host, write=False) is read_ok, (rtype, who, "read")
        assert r.io_allowed(host, write=True) is write_ok, (rtype, who, "write")


def test_register_replace_unregister() -> None:
    r = NsReservation()
    assert reg(r, A, 0x11) == 0 and r.gen == 1
    assert reg(r, A, 0x11) == 0  # the same key again: no change, success
    assert reg(r, A, 0x22) == CONFLICT  # another key while registered
    assert reg(r, A, 0x33, action=2, crkey=0x99) == CONFLICT  # replace with the wrong key
    assert reg(r, A, 0x33, action=2, crkey=0x11) == 0 and r.registrants[A].rkey == 0x33
    assert reg(r, A, 0x44, action=2, crkey=0x99, iekey=True) == 0 and r.registrants[A].rkey == 0x44
    assert reg(r, A, 0, action=1, crkey=0x11) == CONFLICT
    assert reg(r, A, 0, action=1, crkey=0x44) == 0 and not r.active
    assert reg(r, B, 0x55, action=2) == 0  # replace when not registered, CRKEY 0: registers
    assert reg(r, B, 0, action=7) == INVALID
    assert reg(r, B, 0, cptpl=1) == INVALID  # reserved CPTPL value
    assert reg(r, B, 0x55, cptpl=3) == INVALID  # PTPL asked for without a ptpl_file
    assert r.register(B, 0, b"short").status == INVALID


def test_acquire_release_and_clear() -> None:
    r = NsReservation()
    reg(r, A, 1)
    reg(r, B, 2)
    assert acq(r, C, 3, 1) == CONFLICT  # not registered
    assert acq(r, A, 9, 1) == CONFLICT  # wrong key
    assert acq(r, A, 1, 9) == INVALID  # no such type
    assert acq(r, A, 1, ResvType.WRITE_EXCLUSIVE) == 0 and r.holder == A
    assert acq(r, A, 1, ResvType.WRITE_EXCLUSIVE) == 0  # again, same type: success
    assert acq(r, B, 2, ResvType.WRITE_EXCLUSIVE) == CONFLICT
    assert rel(r, B, 2, ResvType.WRITE_EXCLUSIVE) == 0 and r.holder == A  # not the holder: no effect
    assert rel(r, A, 1, ResvType.EXCLUSIVE_ACCESS) == INVALID  # the type must match
    assert rel(r, A, 1, ResvType.WRITE_EXCLUSIVE) == 0 and r.rtype == 0
    assert acq(r, B, 2, ResvType.EXCLUSIVE_ACCESS_REG_ONLY) == 0
    res = r.release(A, 1, struct.pack("<Q", 1))  # clear, by any registrant
    assert res.status == 0 and not r.registrants and r.rtype == 0
    assert res.notices[0].hostid == B and res.notices[0].type == NoticeType.RESERVATION_PREEMPTED


def test_preempt() -> None:
    r = NsReservation()
    reg(r, A, 1)
    reg(r, B, 2)
    reg(r, C, 3)
    acq(r, A, 1, ResvType.WRITE_EXCLUSIVE)
    assert acq(r, B, 2, ResvType.EXCLUSIVE_ACCESS, action=1, prkey=0) == INVALID
    assert acq(r, B, 2, ResvType.EXCLUSIVE_ACCESS, action=1, prkey=77) == CONFLICT  # nobody has it
    res = r.acquire(B, 1 | (ResvType.EXCLUSIVE_ACCESS << 8), keys(2, 1))  # preempt the holder's key
    assert res.status == 0 and r.holder == B and r.rtype == ResvType.EXCLUSIVE_ACCESS
    assert A not in r.registrants and [(n.hostid, n.type) for n in res.notices] == \
        [(A, NoticeType.REGISTRATION_PREEMPTED)]
    res = r.acquire(B, 2 | (ResvType.EXCLUSIVE_ACCESS << 8), keys(2, 3))  # preempt-and-abort C
    assert res.status == 0 and C not in r.registrants and r.holder == B
    # all-registrants: PRKEY 0 takes it over from everyone
    r2 = NsReservation()
    reg(r2, A, 1)
    reg(r2, B, 2)
    acq(r2, A, 1, ResvType.EXCLUSIVE_ACCESS_ALL_REGS)
    assert r2.is_holder(B)
    assert acq(r2, B, 2, ResvType.WRITE_EXCLUSIVE, action=1, prkey=0) == 0
    assert list(r2.registrants) == [B] and r2.holder == B and r2.rtype == ResvType.WRITE_EXCLUSIVE


def test_holder_leaving_releases() -> None:
    r = NsReservation()
    reg(r, A, 1)
    reg(r, B, 2)
    acq(r, A, 1, ResvType.WRITE_EXCLUSIVE_REG_ONLY)
    res = r.register(A, 1, keys(1, 0))
    assert res.status == 0 and r.rtype == 0
    assert [(n.hostid, n.type) for n in res.notices] == [(B, NoticeType.RESERVATION_RELEASED)]
    r2 = NsReservation()
    reg(r2, A, 1)
    reg(r2, B, 2)
    acq(r2, A, 1, ResvType.WRITE_EXCLUSIVE_ALL_REGS)
    reg(r2, A, 0, action=1, crkey=1)
    assert r2.rtype == ResvType.WRITE_EXCLUSIVE_ALL_REGS and r2.is_holder(B)  # still held by B
    reg(r2, B, 0, action=1, crkey=2)
    assert r2.rtype == 0


def test_report_layout() -> None:
    r = NsReservation()
    reg(r, A, 0x0102030405060708)
    reg(r, B, 9)
    acq(r, A, 0x0102030405060708, ResvType.EXCLUSIVE_ACCESS)
    assert r.report(0, 4096).status == GenericStatus.HOSTID_INCONSISTENT_FORMAT
    data = r.report(1, 4096).data
    assert len(data) == 64 + 2 * 64
    gen, rtype, regctl, ptpls = struct.unpack_from("<IBH2xB", data)
    assert (gen, rtype, regctl, ptpls) == (2, 2, 2, 0)
    cntlid, rcsts, rkey, hostid = struct.unpack_from("<HB5xQ16s", data, 64)
    assert (cntlid, rcsts, rkey, hostid) == (0xFFFF, 1, 0x0102030405060708, A)
    assert struct.unpack_from("<HB5xQ16s", data, 128) == (0xFFFF, 0, 9, B)
    assert len(r.report(1, 100).data) == 100  # truncated to the host's buffer


def test_ptpl_file_round_trip_in_spdks_format(tmp_path: Path) -> None:
    f = tmp_path / "ptpl.json"
    r = NsReservation(str(f), "11111111-1111-1111-1111-111111111111")
    assert reg(r, A, 5, cptpl=3) == 0
    assert acq(r, A, 5, ResvType.WRITE_EXCLUSIVE_REG_ONLY) == 0
    assert reg(r, B, 6) == 0
    d = json.loads(f.read_text())
    assert d == {"ptpl": True, "rtype": 3, "crkey": 5, "bdev_uuid": "11111111-1111-1111-1111-111111111111",
                 "holder_uuid": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
                 "registrants": [{"rkey": 5, "host_uuid": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"},
                                 {"rkey": 6, "host_uuid": "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"}]}
    again = NsReservation(str(f), "11111111-1111-1111-1111-111111111111")
    again.load()
    assert again.holder == A and again.rtype == 3 and again.registrants[B].rkey == 6 and again.ptpl
    assert reg(again, A, 5, cptpl=2) == 0 and not f.exists()  # PTPL off: nothing persists


@pytest.mark.parametrize("text,why", [
    ("{", "cannot read"),
    ('{"rtype": 1, "registrants": []}', "without a registered holder"),
    ('{"registrants": [{"rkey": 1}]}', "not a reservation state"),
    ('[1, 2]', "not a reservation state"),
    ('{"bdev_uuid": "22222222-2222-2222-2222-222222222222", "registrants": []}', "belongs to bdev"),
])
def test_bad_ptpl_files_are_refused(tmp_path: Path, text: str, why: str) -> None:
    f = tmp_path / "ptpl.json"
    f.write_text(text)
    r = NsReservation(str(f), "11111111-1111-1111-1111-111111111111")
    with pytest.raises(PtplError) as e:
        r.load()
    assert why in str(e.value) and str(f) in str(e.value)
    assert f.read_text() == text  # nothing written


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["reg", "acq", "rel"]), st.sampled_from([A, B, C]),
                          st.integers(0, 7), st.integers(0, 3), st.integers(0, 3), st.integers(0, 7)),
                max_size=40))
def test_random_command_sequences_keep_the_state_consistent(ops: list[tuple[str, bytes, int, int, int, int]]) -> None:
    r = NsReservation()
    for op, host, action, crkey, other, rtype in ops:
        cdw10 = action | (rtype << 8)
        if op == "reg":
            r.register(host, cdw10 & 0xF, keys(crkey, other))
        elif op == "acq":
            r.acquire(host, cdw10, keys(crkey, other))
        else:
            r.release(host, cdw10, struct.pack("<Q", crkey))
        if r.rtype and r.rtype not in (5, 6):
            assert r.holder in r.registrants
        if r.rtype in (5, 6):
            assert r.registrants
        assert r.rtype in (0, 1, 2, 3, 4, 5, 6)
        data = r.report(1, 1 << 16).data
        assert struct.unpack_from("<H", data, 5)[0] == len(r.registrants)


# -- through a controller -------------------------------------------------------------------

def _host(env: Env, hostid: bytes, hostnqn: str) -> tuple[Link, Link]:
    adm = env.link()
    adm.host.icreq()
    adm.pump()
    c = adm.wait(adm.host.connect(NQN, hostnqn=hostnqn, hostid=hostid))
    assert c.status == 0
    adm.enable()
    io = env.link()
    io.host.icreq()
    io.pump()
    assert io.wait(io.host.connect(NQN, qid=1, cntlid=c.dw0 & 0xFFFF, hostnqn=hostnqn, hostid=hostid)).status == 0
    io.host.icd = env.tr.opts.in_capsule_data_size
    return adm, io


def _cmd(io: Link, opc: int, cdw10: int, data: bytes | None = None, read_len: int = 0, cdw11: int = 0):  # type: ignore[no-untyped-def]
    n = len(data) if data is not None else read_len
    sqe = io.host.io_sqe(opc, 1, n, incapsule=data is not None, cdw10=cdw10, cdw11=cdw11)
    return io.wait(io.host.submit(sqe, data, read_len))


def test_two_hosts_through_the_controller(env: Env) -> None:
    a_adm, a = _host(env, A, "nqn.2014-08.org.nvmexpress:uuid:host-a")
    b_adm, b = _host(env, B, "nqn.2014-08.org.nvmexpress:uuid:host-b")
    ident = a_adm.wait(a_adm.host.identify(1))  # CNS 1: the controller
    assert struct.unpack_from("<H", ident.data, 520)[0] & spec.Oncs.RESERVATIONS
    ns = a_adm.wait(a_adm.host.identify(0, nsid=1))  # CNS 0: the namespace
    assert ns.data[31] == 0xFE  # all six types and IEKEY; no PTPL without a ptpl_file
    # B waits for events
    aer = b_adm.host.admin(spec.AdminOpcode.ASYNC_EVENT_REQUEST)
    b_adm.pump()
    assert _cmd(a, NvmOpcode.RESERVATION_REGISTER, 0, keys(0, 0xA)).status == 0
    assert _cmd(b, NvmOpcode.RESERVATION_REGISTER, 0, keys(0, 0xB)).status == 0
    assert _cmd(a, NvmOpcode.RESERVATION_ACQUIRE, ResvType.WRITE_EXCLUSIVE << 8, keys(0xA)).status == 0
    assert env.subsys.reservations_active
    w = b.wait(b.host.write(1, 0, b"b" * 512, 512))
    assert (w.sct, w.sc) == (0, CONFLICT)
    assert b.wait(b.host.read(1, 0, 1, 512)).status == 0  # reads stay open under Write Exclusive
    assert a.wait(a.host.write(1, 0, b"a" * 512, 512)).status == 0
    rep = _cmd(b, NvmOpcode.RESERVATION_REPORT, (4096 // 4) - 1, read_len=4096, cdw11=1)
    assert rep.status == 0 and rep.data[4] == ResvType.WRITE_EXCLUSIVE and rep.data[5] == 2
    # A preempts B: B is told through an event and the notification log page
    assert _cmd(a, NvmOpcode.RESERVATION_ACQUIRE, 1 | (ResvType.EXCLUSIVE_ACCESS << 8), keys(0xA, 0xB)).status == 0
    ev = b_adm.wait(aer)
    assert ev.dw0 & 0x7 == 6 and (ev.dw0 >> 16) & 0xFF == 0x80
    page = b_adm.wait(b_adm.host.get_log_page(0x80, 64))
    count, ntype, avail, nsid = struct.unpack_from("<QBBxxI", page.data)
    assert (count, ntype, avail, nsid) == (1, NoticeType.REGISTRATION_PREEMPTED, 0, 1)
    empty = b_adm.wait(b_adm.host.get_log_page(0x80, 64))
    assert struct.unpack_from("<Q", empty.data)[0] == 0
    # PRKEY was not the holder's key: B lost its registration, A keeps its Write Exclusive
    assert env.subsys.namespaces[1].resv.rtype == ResvType.WRITE_EXCLUSIVE
    assert b.wait(b.host.write(1, 0, b"b" * 512, 512)).sc == CONFLICT
    # A changes the type by preempting its own key: now B may not even read
    assert _cmd(a, NvmOpcode.RESERVATION_ACQUIRE, 1 | (ResvType.EXCLUSIVE_ACCESS << 8), keys(0xA, 0xA)).status == 0
    assert b.wait(b.host.read(1, 0, 1, 512)).sc == CONFLICT
    # features: the notification mask and PTPL (refused without a ptpl_file)
    mask = b_adm.wait(b_adm.host.admin(spec.AdminOpcode.SET_FEATURES, nsid=1, cdw10=0x82, cdw11=0x2))
    assert mask.status == 0
    got = b_adm.wait(b_adm.host.admin(spec.AdminOpcode.GET_FEATURES, nsid=1, cdw10=0x82))
    assert got.dw0 == 0x2
    ptpl = a_adm.wait(a_adm.host.admin(spec.AdminOpcode.SET_FEATURES, nsid=1, cdw10=0x83, cdw11=1))
    assert ptpl.sc == INVALID
    # release: back to the fast path
    assert _cmd(a, NvmOpcode.RESERVATION_RELEASE, 1, keys(0xA)[:8]).status == 0  # clear
    assert not env.subsys.reservations_active
    assert b.wait(b.host.write(1, 0, b"b" * 512, 512)).status == 0


def test_ptpl_survives_a_restart_of_the_namespace(tmp_path: Path) -> None:
    f = str(tmp_path / "ns1.ptpl")
    env = Env()
    env.subsys.remove_namespace(1)
    env.subsys.add_namespace("Mem0", env.backend, nsid=1, ptpl_file=f)
    _, a = _host(env, A, "nqn.2014-08.org.nvmexpress:uuid:host-a")
    assert _cmd(a, NvmOpcode.RESERVATION_REGISTER, 3 << 30, keys(0, 0xA)).status == 0  # CPTPL=3
    assert _cmd(a, NvmOpcode.RESERVATION_ACQUIRE, ResvType.EXCLUSIVE_ACCESS << 8, keys(0xA)).status == 0
    env2 = Env()  # a new target process, as after a power loss
    env2.subsys.remove_namespace(1)
    ns = env2.subsys.add_namespace("Mem0", MemoryBackend(), nsid=1, ptpl_file=f)
    assert ns.resv.holder == A and ns.resv.rtype == ResvType.EXCLUSIVE_ACCESS and env2.subsys.reservations_active
    _, b = _host(env2, B, "nqn.2014-08.org.nvmexpress:uuid:host-b")
    assert b.wait(b.host.read(1, 0, 1, 512)).sc == CONFLICT


def test_the_fast_path_honours_reservations(rh: object) -> None:
    """Bdev namespaces take the transport's fast path; while anyone is registered, I/O goes
    through the checked path and a conflicting host is refused there too."""
    from spydk.modules.bdev.malloc.malloc import module as malloc_module
    from tests.nvmf.helpers import TestHost

    from .test_fast_path import BdevEnv, core  # the bdev registry, as the fast-path tests reset it
    core._reset_for_tests()
    malloc_module.count = 0
    e = BdevEnv(rh)
    try:
        a = e.io()  # the default host ID
        adm = Link(e.tr, TestHost())
        adm.host.icreq()
        adm.pump()
        c = adm.wait(adm.host.connect(NQN, hostnqn="nqn.2014-08.org.nvmexpress:uuid:host-b", hostid=B))
        adm.enable()
        b = Link(e.tr, TestHost())
        b.host.icreq()
        b.pump()
        assert b.wait(b.host.connect(NQN, qid=1, cntlid=c.dw0 & 0xFFFF,
                                     hostnqn="nqn.2014-08.org.nvmexpress:uuid:host-b", hostid=B)).status == 0
        b.host.icd = e.tr.opts.in_capsule_data_size
        assert b.wait(b.host.write(1, 0, b"1" * 512, 512)).status == 0 and e.general == 0
        assert _cmd(a, NvmOpcode.RESERVATION_REGISTER, 0, keys(0, 7)).status == 0
        assert _cmd(a, NvmOpcode.RESERVATION_ACQUIRE, ResvType.EXCLUSIVE_ACCESS << 8, keys(7)).status == 0
        assert b.wait(b.host.write(1, 0, b"2" * 512, 512)).sc == CONFLICT
        assert b.wait(b.host.read(1, 0, 1, 512)).sc == CONFLICT
        assert bytes(e.disk.mem[:512]) == b"1" * 512
        assert a.wait(a.host.write(1, 0, b"3" * 512, 512)).status == 0
        assert e.general >= 3  # the checked path while the reservation exists
    finally:
        e.close()
        core._reset_for_tests()
