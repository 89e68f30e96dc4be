"""NVMe spec builders: sizes and key field offsets (read back by hand, not with our structs)."""
from __future__ import annotations

import pytest

from spydk.nvme import spec
from spydk.nvme.spec import fabrics as fs


def u16(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 2], "little")


def u32(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 4], "little")


def u64(b: bytes, off: int) -> int:
    return int.from_bytes(b[off:off + 8], "little")


def test_sqe_layout_and_accessors() -> None:
    sqe = spec.build_sqe(0x02, 0xBEEF, 7, fuse=1, psdt=1, cdw10=0x11, cdw11=0x22, cdw12=0x33,
                         cdw15=0x66, dptr=spec.build_sgl(0x1000, 4096, 5, 0xA))
    assert len(sqe) == 64
    assert sqe[0] == 0x02 and sqe[1] == 0x41 and u16(sqe, 2) == 0xBEEF and u32(sqe, 4) == 7
    assert u64(sqe, 24) == 0x1000 and u32(sqe, 32) == 4096 and sqe[39] == 0x5A
    assert u32(sqe, 40) == 0x11 and u32(sqe, 48) == 0x33 and u32(sqe, 60) == 0x66
    assert spec.sqe_header(sqe) == (2, 0x41, 0xBEEF, 7)
    assert (spec.sqe_fuse(sqe), spec.sqe_psdt(sqe), spec.sqe_cid(sqe), spec.sqe_nsid(sqe)) == (1, 1, 0xBEEF, 7)
    assert spec.sqe_cdw10_15(sqe) == (0x11, 0x22, 0x33, 0, 0, 0x66)
    assert spec.sqe_cdw(sqe, 11) == 0x22
    assert spec.sqe_sgl1(sqe) == (0x1000, 4096, 5, 0xA)
    assert spec.sqe_data_transfer(sqe) == spec.DataTransfer.CONTROLLER_TO_HOST


def test_cqe_and_status() -> None:
    st = spec.make_status(0x82, 1, dnr=True, phase=1)
    assert st == 1 | (0x82 << 1) | (1 << 9) | (1 << 15)
    cqe = spec.build_cqe(9, st, dw0=5, dw1=6, sqhd=7, sqid=8)
    assert len(cqe) == 16 and u32(cqe, 0) == 5 and u32(cqe, 4) == 6 and u16(cqe, 8) == 7
    assert u16(cqe, 10) == 8 and u16(cqe, 12) == 9 and u16(cqe, 14) == st
    assert spec.cqe_cid(cqe) == 9 and spec.status_sc(st) == 0x82 and spec.status_sct(st) == 1
    assert spec.status_dnr(st) and spec.status_phase(st) == 1
    buf = bytearray(20)
    spec.pack_cqe_into(buf, 4, 9, st, 5, 6, 7, 8)
    assert bytes(buf[4:]) == cqe


def test_identify_controller_offsets() -> None:
    c = spec.ControllerData(serial="SPDK00000000000000001", model="spydk ctrl", firmware_rev="24.01",
                            ieee=0x38A5D0, cntlid=0x17, mdts=5, subnqn="nqn.2016-06.io.spdk:cnode1",
                            nn=32, maxcmd=128, kas=10, ioccsz=260, iorcsz=1, msdbd=1, anagrpmax=8,
                            nanagrpid=8)
    d = spec.build_identify_controller(c)
    assert len(d) == 4096
    assert d[4:24] == b"SPDK0000000000000000"  # truncated to 20
    assert d[24:64] == b"spydk ctrl".ljust(40) and d[64:72] == b"24.01   "
    assert d[73:76] == bytes([0xD0, 0xA5, 0x38]) and d[77] == 5 and u16(d, 78) == 0x17
    assert u32(d, 80) == 0x10400 and d[111] == 1
    assert d[512] == 0x66 and d[513] == 0x44 and u16(d, 514) == 128 and u32(d, 516) == 32
    assert u16(d, 320) == 10 and u32(d, 344) == 8 and u32(d, 348) == 8
    assert u32(d, 536) == c.sgls and u16(d, 520) == c.oncs and d[525] == 1
    assert d[768:768 + 26] == b"nqn.2016-06.io.spdk:cnode1" and d[768 + 26] == 0
    assert u32(d, 1792) == 260 and u32(d, 1796) == 1 and u16(d, 1800) == 0 and d[1803] == 1


def test_identify_namespace_offsets() -> None:
    n = spec.NamespaceData(nsze=1 << 20, block_size=4096, anagrpid=3, nguid=bytes(range(16)),
                           eui64=bytes(range(8, 16)), dlfeat=0x9, nmic=1)
    d = spec.build_identify_namespace(n)
    assert len(d) == 4096
    assert u64(d, 0) == u64(d, 8) == u64(d, 16) == 1 << 20
    assert d[25] == 0 and d[26] == 0 and d[30] == 1 and d[33] == 0x9
    assert int.from_bytes(d[48:64], "little") == (1 << 20) * 4096
    assert u32(d, 92) == 3 and d[104:120] == bytes(range(16)) and d[120:128] == bytes(range(8, 16))
    assert d[128:132] == bytes([0, 0, 12, 0])  # LBAF0: MS 0, LBADS 12
    multi = spec.build_identify_namespace(spec.NamespaceData(nsze=8, lba_formats=[(0, 512), (8, 4096)],
                                                             flbas=1))
    assert multi[25] == 1 and multi[26] == 1 and multi[132:136] == bytes([8, 0, 12, 0])
    with pytest.raises(ValueError):
        spec.build_identify_namespace(spec.NamespaceData(nsze=8, block_size=1000))


def test_ns_lists_and_descriptors() -> None:
    d = spec.build_ns_list([5, 1, 9, 3], start_after=2)
    assert len(d) == 4096 and [u32(d, 4 * i) for i in range(4)] == [3, 5, 9, 0]
    desc = spec.build_ns_id_descriptors(eui64=b"\x01" * 8, nguid=b"\x02" * 16, uuid=bytes(16), csi=0)
    assert len(desc) == 4096
    assert desc[0:4] == bytes([1, 8, 0, 0]) and desc[4:12] == b"\x01" * 8
    assert desc[12:16] == bytes([2, 16, 0, 0]) and desc[16:32] == b"\x02" * 16
    assert desc[32:36] == bytes([4, 1, 0, 0]) and desc[36] == 0 and desc[37:] == bytes(4096 - 37)


def test_log_pages() -> None:
    err = spec.build_error_log([spec.ErrorLogEntry(error_count=3, sqid=1, cid=2, status=0x4, lba=99,
                                                   nsid=1, trtype=3)])
    assert len(err) == 64 and u64(err, 0) == 3 and u16(err, 8) == 1 and u16(err, 10) == 2
    assert u16(err, 12) == 4 and u16(err, 14) == 0xFFFF and u64(err, 16) == 99
    assert u32(err, 24) == 1 and err[29] == 3

    h = spec.build_health_log(spec.HealthData(temperature_k=310, data_units_read=5,
                                              host_write_commands=7, power_on_hours=1 << 70))
    assert len(h) == 512 and u16(h, 1) == 310 and h[3] == 100 and h[4] == 10
    assert int.from_bytes(h[32:48], "little") == 5 and int.from_bytes(h[80:96], "little") == 7
    assert int.from_bytes(h[128:144], "little") == 1 << 70

    fw = spec.build_firmware_slot_log(["24.01"])
    assert len(fw) == 512 and fw[0] == 1 and fw[8:16] == b"24.01   "

    ch = spec.build_changed_ns_list([2, 1])
    assert len(ch) == 4096 and u32(ch, 0) == 1 and u32(ch, 4) == 2 and u32(ch, 8) == 0
    assert u32(spec.build_changed_ns_list(list(range(1, 1100))), 0) == 0xFFFFFFFF

    eff = spec.build_commands_effects_log({0x06: spec.CmdEffect.CSUPP},
                                          {0x01: spec.CmdEffect.CSUPP | spec.CmdEffect.LBCC})
    assert len(eff) == 4096 and u32(eff, 4 * 6) == 1 and u32(eff, 1024 + 4) == 3

    ana = spec.build_ana_log(7, [spec.AnaGroup(1, spec.AnaState.OPTIMIZED, [3, 1], change_count=2),
                                 spec.AnaGroup(2, spec.AnaState.INACCESSIBLE, [])])
    assert len(ana) == 16 + 32 + 8 + 32
    assert u64(ana, 0) == 7 and u16(ana, 8) == 2
    assert u32(ana, 16) == 1 and u32(ana, 20) == 2 and u64(ana, 24) == 2 and ana[32] == 1
    assert u32(ana, 48) == 1 and u32(ana, 52) == 3 and u32(ana, 56) == 2 and ana[56 + 16] == 3
    assert len(spec.build_ana_log(7, [spec.AnaGroup(1, 1, [1, 2])], include_nsids=False)) == 48


def test_discovery_log() -> None:
    e = spec.DiscoveryEntry(subnqn="nqn.2016-06.io.spdk:cnode1", traddr="127.0.0.1", trsvcid="4420",
                            portid=1)
    d = spec.build_discovery_log(42, [e, e])
    assert len(d) == 1024 * 3
    assert u64(d, 0) == 42 and u64(d, 8) == 2 and u16(d, 16) == 0
    ent = d[1024:2048]
    assert ent[0] == 3 and ent[1] == 1 and ent[2] == 2 and ent[3] == 2
    assert u16(ent, 4) == 1 and u16(ent, 6) == 0xFFFF and u16(ent, 8) == 32
    assert ent[32:64] == b"4420".ljust(32) and ent[256:256 + 26] == b"nqn.2016-06.io.spdk:cnode1"
    assert ent[512:768] == b"127.0.0.1".ljust(256) and ent[768] == 0


def test_connect_command_and_data_roundtrip() -> None:
    cmd = fs.ConnectCommand(cid=3, qid=1, sqsize=127, kato=0, cattr=0)
    sgl = spec.build_sgl(0, 1024, spec.SglType.DATA_BLOCK, spec.SglSubtype.OFFSET)
    sqe = fs.build_connect_command(cmd, sgl)
    assert len(sqe) == 64 and sqe[0] == 0x7F and sqe[4] == 0x01
    assert u16(sqe, 42) == 1 and u16(sqe, 44) == 127 and sqe[39] == 0x01
    assert fs.parse_connect_command(sqe) == cmd
    assert spec.sqe_data_transfer(sqe) == spec.DataTransfer.HOST_TO_CONTROLLER
    data = fs.build_connect_data(fs.ConnectData(hostid=bytes(range(16)), cntlid=0xFFFF,
                                                subnqn="nqn.sub", hostnqn="nqn.host"))
    assert len(data) == 1024 and data[:16] == bytes(range(16)) and u16(data, 16) == 0xFFFF
    assert data[256:263] == b"nqn.sub" and data[512:520] == b"nqn.host"
    assert fs.parse_connect_data(data) == fs.ConnectData(bytes(range(16)), 0xFFFF, "nqn.sub", "nqn.host")
    with pytest.raises(ValueError):
        fs.parse_connect_data(data[:100])
    assert fs.connect_rsp_dw0_invalid(256, True) == 256 | (1 << 16)
    assert fs.connect_rsp_dw0_success(5) == 5


def test_properties() -> None:
    get = fs.build_property_get(1, fs.Property.CAP, 8)
    assert get[4] == 0x04 and get[40] == 1 and u32(get, 44) == 0
    assert fs.parse_property_get(get) == (8, 0)
    st = fs.build_property_set(2, fs.Property.CC, 4, fs.make_cc(en=True))
    assert st[4] == 0x00 and u32(st, 44) == 0x14 and u64(st, 48) == 0x460001
    assert fs.parse_property_set(st) == (4, 0x14, 0x460001)
    cc = fs.parse_cc(0x460001)
    assert cc.en and cc.iosqes == 6 and cc.iocqes == 4 and cc.shn == 0
    cap = fs.make_cap(mqes=127, to=30, css=1)
    assert fs.cap_mqes(cap) == 127 and fs.cap_to(cap) == 30 and cap >> 37 & 0xFF == 1 and cap >> 16 & 1
    assert fs.Csts.SHST_COMPLETE == 0x8 and fs.CSTS_SHST_MASK == 0xC
