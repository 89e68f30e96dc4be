"""Write the seed inputs of fuzz/corpus/<target>/ (well-formed examples the fuzzer mutates).

    python -m fuzz.seeds        # (re)writes the seed-*.bin files; fuzzer finds are kept beside them
"""
from __future__ import annotations

import json
import os
import struct

from spydk.nvme import spec, tcp
from spydk.nvme.spec import fabrics as fab

_CH = struct.Struct("<BBBBI")
ROOT = os.path.join(os.path.dirname(__file__), "corpus")


def _capsule(sqe: bytes, data: bytes = b"") -> bytes:
    return _CH.pack(4, 0, 72, 72 if data else 0, 72 + len(data)) + sqe + data


def _sgl_in(n: int) -> bytes:
    return spec.build_sgl(0, n, 0, 1)


def _sgl_tr(n: int) -> bytes:
    return spec.build_sgl(0, n, 5, 0xA)


def nvme_tcp_controller() -> list[bytes]:
    conn = fab.build_connect_command(fab.ConnectCommand(1, 0, 31, 0), _sgl_in(1024))
    cdata = fab.build_connect_data(fab.ConnectData(bytes(16), 0xFFFF, "nqn.2016-06.io.spdk:cnode1",
                                                   "nqn.2014-08.org.nvmexpress:uuid:1"))
    w = spec.build_sqe(1, 2, 1, psdt=1, dptr=_sgl_tr(4096), cdw12=7)
    h2c = _CH.pack(6, 0x04, 24, 24, 24 + 4096) + struct.pack("<HHII", 2, 1, 0, 4096) + bytes(4) + b"\x5a" * 4096
    r = spec.build_sqe(2, 3, 1, psdt=1, dptr=_sgl_tr(512))
    term = _CH.pack(2, 0, 24, 0, 24) + bytes(16)
    return [b"\x01" + _capsule(conn, cdata) + _capsule(w) + h2c + _capsule(r),
            b"\x01" + _capsule(r) + term,
            b"\x00" + b"".join(bytes(b) for b in tcp.TcpQueuePair(tcp.Role.HOST).send_icreq()),
            b"\x07" + _capsule(w) + h2c]


def nvme_tcp_host() -> list[bytes]:
    cqe = spec.build_cqe(1, 0)
    resp = _CH.pack(5, 0, 24, 0, 24) + cqe
    c2h = _CH.pack(7, 0x0C, 24, 24, 24 + 8192) + struct.pack("<HHII", 1, 0, 0, 8192) + bytes(4) + b"\x11" * 8192
    r2t = _CH.pack(9, 0, 24, 0, 24) + struct.pack("<HHII", 2, 7, 0, 8192) + bytes(4)
    return [b"\x01" + c2h + r2t + _CH.pack(5, 0, 24, 0, 24) + spec.build_cqe(2, 0),
            b"\x01" + resp, b"\x00" + bytes(128)]


def _rec(queue: int, sqe: bytes, data: bytes = b"") -> bytes:
    return bytes([queue]) + sqe + len(data).to_bytes(2, "little") + data


def nvmf_controller() -> list[bytes]:
    A, IO = 0, 1
    ident = spec.build_sqe(0x06, 10, 0, psdt=1, dptr=_sgl_tr(4096), cdw10=1)
    glp = spec.build_sqe(0x02, 11, 0xFFFFFFFF, psdt=1, dptr=_sgl_tr(512), cdw10=0x02 | (127 << 16))
    setf = spec.build_sqe(0x09, 12, 0, cdw10=0x07, cdw11=0x00030003)
    getf = spec.build_sqe(0x0A, 13, 0, cdw10=0x07)
    aer = spec.build_sqe(0x0C, 14, 0)
    abort = spec.build_sqe(0x08, 15, 0, cdw10=1 | (40 << 16))
    w = spec.build_sqe(1, 40, 1, psdt=1, dptr=_sgl_in(1024), cdw12=1)
    r = spec.build_sqe(2, 41, 1, psdt=1, dptr=_sgl_tr(1024), cdw12=1)
    dsm = spec.build_sqe(9, 42, 1, psdt=1, dptr=_sgl_in(16), cdw11=4)
    wz = spec.build_sqe(8, 43, 1, cdw10=8, cdw12=7)
    fl = spec.build_sqe(0, 44, 1)
    cmp_ = spec.build_sqe(5, 45, 1, psdt=1, dptr=_sgl_in(512))
    resv = spec.build_sqe(0x0D, 46, 1, psdt=1, dptr=_sgl_in(16), cdw10=0)
    return [_rec(A, ident) + _rec(A, glp) + _rec(A, setf) + _rec(A, getf),
            _rec(A, aer) + _rec(IO, w, b"\xa5" * 1024) + _rec(IO, r) + _rec(A, abort),
            _rec(IO, dsm, struct.pack("<IIQ", 0, 8, 0)) + _rec(IO, wz) + _rec(IO, fl),
            _rec(IO, cmp_, bytes(512)) + _rec(IO, resv, bytes(16)),
            _rec(IO | 2, spec.build_sqe(1, 47, 1, cdw12=3), bytes(2048))]


def iscsi_pdus() -> list[bytes]:
    from spydk.iscsi import pdu
    from spydk.iscsi.spec import Opcode
    read = pdu.encode(Opcode.SCSI_CMD, flags=0xC1, lun=0, itt=0x20, edtl=4096, cmdsn=100, expstatsn=5001,
                      cdb=bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]).ljust(16, b"\0"))
    write = pdu.encode(Opcode.SCSI_CMD, flags=0xA1, data_len=512, lun=0, itt=0x21, edtl=512, cmdsn=101,
                       expstatsn=5001, cdb=bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]).ljust(16, b"\0"))
    text = b"SendTargets=All\0"
    treq = pdu.encode(Opcode.TEXT_REQ, flags=0x80, data_len=len(text), itt=0x22, ttt=0xFFFFFFFF, cmdsn=102,
                      expstatsn=5001)
    nop = pdu.encode(Opcode.NOP_OUT, immediate=True, itt=0x23, ttt=0xFFFFFFFF, cmdsn=103, expstatsn=5001)
    keys = (b"InitiatorName=iqn.2024-01.org.test:x\0SessionType=Normal\0"
            b"TargetName=iqn.2016-06.io.spdk:disk1\0AuthMethod=None\0")
    login = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=0x81, data_len=len(keys),
                       isid=b"\x80\x12\x34\x56\x78\x9a", itt=1, cmdsn=100)

    def pad(b: bytes) -> bytes:
        return b + bytes(-len(b) % 4)
    return [b"\x01" + bytes(read) + bytes(write) + b"\x77" * 512 + bytes(treq) + pad(text) + bytes(nop),
            b"\x00" + bytes(login) + pad(keys)]


def iscsi_text() -> list[bytes]:
    return [b"HeaderDigest=CRC32C,None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0"
            b"MaxBurstLength=1048576\0FirstBurstLength=65536\0InitialR2T=No\0ImmediateData=Yes\0"
            b"MaxOutstandingR2T=1\0MaxConnections=2\0ErrorRecoveryLevel=0\0DefaultTime2Wait=2\0"
            b"DefaultTime2Retain=20\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0X-com.example=1\0",
            b"SendTargets=All\0"]


def scsi_cdbs() -> list[bytes]:
    def rec(cdb: bytes, out: bytes = b"") -> bytes:
        return bytes([len(cdb)]) + cdb + len(out).to_bytes(2, "little") + out
    inq = bytes([0x12, 0, 0, 0, 0xFF, 0])
    vpd = bytes([0x12, 1, 0x83, 0, 0xFF, 0])
    rc16 = bytes([0x9E, 0x10]) + bytes(8) + (32).to_bytes(4, "big") + b"\0\0"
    r10 = bytes([0x28, 0, 0, 0, 0, 1, 0, 0, 2, 0])
    w10 = bytes([0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0])
    ms = bytes([0x1A, 0, 0x3F, 0, 0xFF, 0])
    rl = bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    prout = bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0])
    unmap = bytes([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0])
    return [rec(inq) + rec(vpd) + rec(rc16) + rec(rl) + rec(ms),
            rec(w10, b"\x42" * 512) + rec(r10),
            rec(prout, (1).to_bytes(8, "big") * 2 + bytes(8)) + rec(unmap, bytes(8) + (1).to_bytes(8, "big") + bytes(8))]


def jsonrpc_framing() -> list[bytes]:
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bdev_get_bdevs", "params": {"name": "x"}}).encode()
    return [b"\x07" + req + b" " + req, b"\x00" + b'{"a": ["\\"}", {}]}[1,2]"s"']


def rpc_params() -> list[bytes]:
    return [b"\x00\x00" + json.dumps({"name": "Malloc0", "num_blocks": 8, "block_size": 512}).encode(),
            b"\x10\x00" + json.dumps({"nqn": "nqn.2016-06.io.spdk:cnode1", "listen_address": {
                "trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "4420"}}).encode(),
            b"\x20\x00{}", b"\x30\x00null"]


def json_config() -> list[bytes]:
    here = os.path.join(os.path.dirname(__file__), "..", "spydk", "data", "default_config.json")
    with open(here, "rb") as f:
        return [f.read(), b'{"subsystems": [{"subsystem": "bdev", "config": [[{"method": "x"}]]}]}']


SEEDS = {f.__name__: f for f in (nvme_tcp_controller, nvme_tcp_host, nvmf_controller, iscsi_pdus, iscsi_text,
                                   scsi_cdbs, jsonrpc_framing, rpc_params, json_config)}


def main() -> None:
    for name, fn in SEEDS.items():
        d = os.path.join(ROOT, name)
        os.makedirs(d, exist_ok=True)
        for i, data in enumerate(fn()):
            with open(os.path.join(d, f"seed-{i}.bin"), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
