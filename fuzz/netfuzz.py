"""Network fuzzer in the style of SPDK's nvme_fuzz and iscsi_fuzz: real connections to a running
target, streams of random but well-framed PDUs (every opcode, random fields, random
interleaving, disconnects in the middle of a PDU or a command).

    python -m fuzz.netfuzz --nvme 127.0.0.1:4420 --nqn NQN [--iscsi 127.0.0.1:3260 --iqn IQN]
                           [--sessions N] [--seed S]

Run it against a subsystem / target node whose data nobody else needs: it writes anywhere.
"""
from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
from dataclasses import dataclass, field

from spydk.nvme import spec, tcp
from spydk.nvme.spec import fabrics as fab

_CH = struct.Struct("<BBBBI")
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0000000-fuzz"
ADMIN_OPCODES = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x10, 0x11, 0x14,
                 0x18, 0x19, 0x1A, 0x1C, 0x1D, 0x1E, 0x20, 0x24, 0x7C, 0x7F, 0x80, 0x81, 0x82, 0x84,
                 0x86, 0xC0, 0xC1, 0xC2]
IO_OPCODES = [0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0C, 0x0D, 0x0E, 0x11, 0x12, 0x15, 0x19, 0x1D,
              0x7F, 0x80, 0x81, 0x82]
ISCSI_OPCODES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x1C, 0x1D, 0x1E]


@dataclass
class Stats:
    sessions: int = 0
    pdus: int = 0
    cut: int = 0            # sessions ended in the middle of a PDU
    refused: int = 0        # sessions the target closed before they were set up
    errors: list[str] = field(default_factory=list)


def _drain(s: socket.socket) -> bool:
    """Read what the target sent; False once it closed the connection."""
    s.setblocking(False)
    try:
        while True:
            try:
                b = s.recv(1 << 20)
            except BlockingIOError:
                return True
            if not b:
                return False
    except OSError:
        return False
    finally:
        s.setblocking(True)


def _recv_pdu(s: socket.socket) -> bytes:
    hdr = b""
    while len(hdr) < 8:
        b = s.recv(8 - len(hdr))
        if not b:
            raise ConnectionError("closed")
        hdr += b
    plen = struct.unpack_from("<I", hdr, 4)[0]
    rest = b""
    while len(rest) < plen - 8:
        b = s.recv(plen - 8 - len(rest))
        if not b:
            raise ConnectionError("closed")
        rest += b
    return hdr + rest


class NvmeFuzzer:
    def __init__(self, host: str, port: int, nqn: str, rng: random.Random):
        self.addr = (host, port)
        self.nqn = nqn
        self.rng = rng

    def _connect(self, s: socket.socket, qid: int, cntlid: int) -> int | None:
        s.sendall(b"".join(bytes(b) for b in tcp.TcpQueuePair(tcp.Role.HOST).send_icreq()))
        if _recv_pdu(s)[0] != 1:
            return None
        data = fab.build_connect_data(fab.ConnectData(bytes(16), cntlid, self.nqn, HOSTNQN))
        sqe = fab.build_connect_command(fab.ConnectCommand(1, qid, 31, 0), spec.build_sgl(0, 1024, 0, 1))
        s.sendall(_CH.pack(4, 0, 72, 72, 72 + 1024) + sqe + data)
        rsp = _recv_pdu(s)
        if rsp[0] != 5:
            return None
        dw0, _, _, _, _, status = spec.CQE.unpack_from(rsp, 8)
        return dw0 & 0xFFFF if not status & ~1 else None

    def _pdu(self, io: bool) -> bytes:
        r = self.rng
        kind = r.random()
        if kind < 0.8:
            sqe = bytearray(r.randbytes(64))
            sqe[0] = r.choice(IO_OPCODES if io else ADMIN_OPCODES) if r.random() < 0.9 else sqe[0]
            if io and r.random() < 0.7:  # the namespace, an LBA in range, a few blocks
                sqe[4:8] = (1).to_bytes(4, "little")
                sqe[40:48] = r.randrange(2048).to_bytes(8, "little")
                sqe[48:52] = r.randrange(64).to_bytes(4, "little")
            data = b""
            if r.random() < 0.5:
                sqe[1] = (sqe[1] & 0x3F) | 0x40
                if r.random() < 0.5:
                    data = r.randbytes(r.choice((0, 16, 512, 1024, 4096)))
                    sqe[24:40] = spec.build_sgl(0, len(data), 0, 1)
                else:
                    sqe[24:40] = spec.build_sgl(0, r.choice((512, 4096, 65536, 1 << 20, 1 << 31)), 5, 0xA)
            return _CH.pack(4, 0, 72, 72 if data else 0, 72 + len(data)) + bytes(sqe) + data
        if kind < 0.95:
            n = r.choice((0, 1, 512, 4096))
            return _CH.pack(6, r.choice((0, 4)), 24, 24, 24 + n) + struct.pack(
                "<HHII", r.randrange(65536), r.randrange(8), r.choice((0, 512, r.randrange(1 << 20))), n) \
                + bytes(4) + r.randbytes(n)
        ptype = r.randrange(256)
        hlen = r.randrange(256)
        n = r.randrange(64)
        return _CH.pack(ptype, r.randrange(256), hlen, 0, 8 + n) + r.randbytes(n)

    def session(self, st: Stats, npdus: int) -> None:
        r = self.rng
        with socket.create_connection(self.addr, timeout=10.0) as s:
            try:
                cntlid = self._connect(s, 0, 0xFFFF)
                if cntlid is None:
                    st.refused += 1
                    return
                io = r.random() < 0.6
                if io:  # enable the controller, then an I/O queue
                    en = fab.build_property_set(2, fab.Property.CC, 4, fab.make_cc(en=True))
                    s.sendall(_CH.pack(4, 0, 72, 0, 72) + en)
                    _recv_pdu(s)
                    s2 = socket.create_connection(self.addr, timeout=10.0)
                    try:
                        if self._connect(s2, 1, cntlid) is None:
                            st.refused += 1
                            return
                        self._stream(s2, st, npdus, io=True)
                    finally:
                        s2.close()
                else:
                    self._stream(s, st, npdus, io=False)
            except (ConnectionError, OSError):
                pass
        st.sessions += 1

    def _stream(self, s: socket.socket, st: Stats, npdus: int, *, io: bool) -> None:
        r = self.rng
        for _ in range(r.randint(1, npdus)):
            pdu = self._pdu(io)
            if r.random() < 0.03:  # disconnect in the middle of a PDU
                s.sendall(pdu[:r.randrange(1, len(pdu))])
                st.cut += 1
                return
            s.sendall(pdu)
            st.pdus += 1
            if r.random() < 0.2 and not _drain(s):
                return
        _drain(s)


class IscsiFuzzer:
    def __init__(self, host: str, port: int, iqn: str, rng: random.Random):
        self.host, self.port, self.iqn, self.rng = host, port, iqn, rng
        self._isid = rng.randrange(1 << 16)

    def _pdu(self, itt: int, cmd_sn: int) -> bytes:
        r = self.rng
        bhs = bytearray(r.randbytes(48))
        bhs[0] = (r.choice(ISCSI_OPCODES) | (0x40 if r.random() < 0.3 else 0)) if r.random() < 0.95 else bhs[0]
        bhs[4] = 0  # TotalAHSLength: no AHS
        n = r.choice((0, 0, 16, 512, 4096))
        bhs[5:8] = n.to_bytes(3, "big")
        if r.random() < 0.7:
            bhs[8:16] = bytes(8)  # LUN 0
            bhs[16:20] = itt.to_bytes(4, "big")
            bhs[24:28] = cmd_sn.to_bytes(4, "big")
        if bhs[0] & 0x3F == 0x01 and r.random() < 0.7:
            bhs[32] = r.choice((0x00, 0x03, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x42, 0x5E, 0x5F, 0x88,
                                0x8A, 0x9E, 0xA0, 0x89, 0x93, 0x2F, 0x41))
        return bytes(bhs) + r.randbytes(n) + bytes(-n % 4)

    def session(self, st: Stats, npdus: int) -> None:
        from tests.iscsi_tgt.initiator import Initiator, IscsiTestError
        r = self.rng
        self._isid = (self._isid + 1) & 0xFFFF
        ini = Initiator(self.host, self.port, isid=b"\x80\0\0\1" + self._isid.to_bytes(2, "big"))
        try:
            ini.login(self.iqn)
        except (IscsiTestError, ConnectionError, OSError):
            st.refused += 1
            ini.close()
            return
        s = ini.sock
        assert s is not None
        try:
            cmd_sn = ini.cmd_sn
            for i in range(r.randint(1, npdus)):
                pdu = self._pdu(0x1000 + i, cmd_sn)
                if pdu[0] & 0x40 == 0:
                    cmd_sn += 1
                if r.random() < 0.03:
                    s.sendall(pdu[:r.randrange(1, len(pdu))])
                    st.cut += 1
                    break
                s.sendall(pdu)
                st.pdus += 1
                if r.random() < 0.2 and not _drain(s):
                    break
            _drain(s)
        except (ConnectionError, OSError):
            pass
        finally:
            ini.close()
        st.sessions += 1


def run(sessions: int, seed: int, nvme: tuple[str, int, str] | None, iscsi: tuple[str, int, str] | None,
        npdus: int = 40) -> Stats:
    rng = random.Random(seed)
    st = Stats()
    fuzzers: list[NvmeFuzzer | IscsiFuzzer] = []
    if nvme:
        fuzzers.append(NvmeFuzzer(nvme[0], nvme[1], nvme[2], rng))
    if iscsi:
        fuzzers.append(IscsiFuzzer(iscsi[0], iscsi[1], iscsi[2], rng))
    for i in range(sessions):
        fuzzers[i % len(fuzzers)].session(st, npdus)
    return st


def _hostport(v: str) -> tuple[str, int]:
    h, _, p = v.rpartition(":")
    return h, int(p)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.netfuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvme", type=_hostport)
    ap.add_argument("--nqn", default="nqn.2016-06.io.spdk:cnode1")
    ap.add_argument("--iscsi", type=_hostport)
    ap.add_argument("--iqn", default="iqn.2016-06.io.spdk:disk1")
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv[1:])
    st = run(a.sessions, a.seed, (*a.nvme, a.nqn) if a.nvme else None, (*a.iscsi, a.iqn) if a.iscsi else None)
    print(f"sessions {st.sessions} pdus {st.pdus} cut {st.cut} refused {st.refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
