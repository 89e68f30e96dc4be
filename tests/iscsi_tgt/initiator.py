"""A small blocking iSCSI initiator for tests, written straight from RFC 7143 with struct
(deliberately not sharing code with spydk.iscsi, so codec bugs do not cancel out)."""
from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass, field

BHS = struct.Struct(">BBBBI8sIII20s")  # opcode, flags, b2, b3, ahs/dlen, lun, itt, f20, f24, rest


class IscsiTestError(Exception):
    pass


@dataclass
class Pdu:
    header: bytes
    data: bytes

    @property
    def opcode(self) -> int:
        return self.header[0] & 0x3F

    @property
    def flags(self) -> int:
        return self.header[1]

    def u32(self, off: int) -> int:
        return int(struct.unpack_from(">I", self.header, off)[0])


@dataclass
class ScsiResult:
    status: int
    data: bytes = b""
    sense: bytes = b""
    residual: int = 0
    flags: int = 0  # response flags: 0x04 residual overflow, 0x02 underflow


def text(pairs: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def parse_text(data: bytes) -> list[tuple[str, str]]:
    out = []
    for rec in data.split(b"\0"):
        if rec:
            k, _, v = rec.decode().partition("=")
            out.append((k, v))
    return out


def lun_field(lun: int) -> bytes:
    return struct.pack(">HHI", lun if lun < 256 else 0x4000 | lun, 0, 0)


@dataclass
class Initiator:
    host: str
    port: int
    name: str = "iqn.2024-01.org.spydk.test:init"
    isid: bytes = b"\x80\x00\x00\x00\x00\x01"
    timeout: float = 10.0
    sock: socket.socket | None = None
    itt: int = 0
    cmd_sn: int = 1
    exp_stat_sn: int = 0
    tsih: int = 0
    params: dict[str, str] = field(default_factory=dict)
    async_pdus: list[Pdu] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)

    def connect(self) -> Initiator:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- raw PDUs ----------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def send_pdu(self, header: bytes, data: bytes = b"") -> None:
        assert len(header) == 48
        pad = b"\0" * (-len(data) & 3)
        self.send_raw(header + data + pad)

    def _recv_exact(self, n: int) -> bytes:
        assert self.sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the target")
            buf += chunk
        return bytes(buf)

    def recv_pdu(self) -> Pdu:
        hdr = self._recv_exact(48)
        ahs = hdr[4] * 4
        dlen = int.from_bytes(hdr[5:8], "big")
        if ahs:
            self._recv_exact(ahs)
        data = self._recv_exact(dlen + (-dlen & 3))[:dlen] if dlen else b""
        return Pdu(hdr, data)

    def next_itt(self) -> int:
        self.itt = (self.itt + 1) & 0x7FFFFFFF
        return self.itt

    # -- login ---------------------------------------------------------------------------

    def _login_pdu(self, csg: int, nsg: int, transit: bool, pairs: list[tuple[str, str]], itt: int) -> Pdu:
        flags = (0x80 if transit else 0) | (csg << 2) | (nsg if transit else 0)
        data = text(pairs)
        hdr = struct.pack(">BBBBI6sHIHHII16x", 0x43, flags, 0, 0, len(data), self.isid, self.tsih,
                          itt, 0, 0, self.cmd_sn, self.exp_stat_sn)
        self.send_pdu(hdr, data)
        rsp = self.recv_pdu()
        if rsp.opcode != 0x23:
            raise IscsiTestError(f"expected a login response, got opcode {rsp.opcode:#x}")
        status = (rsp.header[36] << 8) | rsp.header[37]
        if status:
            raise IscsiTestError(f"login failed: status {status:#06x}")
        self.exp_stat_sn = (rsp.u32(24) + 1) & 0xFFFFFFFF
        self.tsih = struct.unpack_from(">H", rsp.header, 14)[0]
        self.window = (rsp.u32(28), rsp.u32(32))  # ExpCmdSN, MaxCmdSN
        return rsp

    def login(self, target: str | None = None, *, chap: tuple[str, str] | None = None,
              mutual: tuple[str, str] | None = None, extra: list[tuple[str, str]] | None = None,
              digests: str = "None") -> dict[str, str]:
        """Log in (discovery when target is None); returns the negotiated keys."""
        if self.sock is None:
            self.connect()
        itt = self.next_itt()
        first: list[tuple[str, str]] = [("InitiatorName", self.name)]
        first += [("SessionType", "Discovery")] if target is None else [("TargetName", target)]
        if chap is None:
            rsp = self._login_pdu(0, 1, True, first + [("AuthMethod", "None")], itt)
            keys = dict(parse_text(rsp.data))
        else:
            rsp = self._login_pdu(0, 1, False, first + [("AuthMethod", "CHAP,None")], itt)
            if dict(parse_text(rsp.data)).get("AuthMethod") != "CHAP":
                raise IscsiTestError(f"target did not choose CHAP: {rsp.data!r}")
            rsp = self._login_pdu(0, 1, False, [("CHAP_A", "5")], itt)
            keys = dict(parse_text(rsp.data))
            ident = int(keys["CHAP_I"])
            challenge = bytes.fromhex(keys["CHAP_C"][2:])
            answer = hashlib.md5(bytes((ident,)) + chap[1].encode() + challenge).hexdigest()
            pairs = [("CHAP_N", chap[0]), ("CHAP_R", "0x" + answer)]
            my_ident, my_challenge = 77, bytes(range(16))
            if mutual is not None:
                pairs += [("CHAP_I", str(my_ident)), ("CHAP_C", "0x" + my_challenge.hex())]
            rsp = self._login_pdu(0, 1, True, pairs, itt)
            keys = dict(parse_text(rsp.data))
            if mutual is not None:
                want = hashlib.md5(bytes((my_ident,)) + mutual[1].encode() + my_challenge).hexdigest()
                if keys.get("CHAP_N") != mutual[0] or keys.get("CHAP_R", "").lower() != "0x" + want:
                    raise IscsiTestError(f"target failed mutual CHAP: {keys}")
        ops = [("HeaderDigest", digests), ("DataDigest", digests),
               ("MaxRecvDataSegmentLength", "262144")]
        if target is not None:
            ops += [("InitialR2T", "No"), ("ImmediateData", "Yes"), ("MaxBurstLength", "262144"),
                    ("FirstBurstLength", "65536"), ("MaxOutstandingR2T", "1"),
                    ("ErrorRecoveryLevel", "0"), ("MaxConnections", "1")]
        ops += extra or []
        rsp = self._login_pdu(1, 3, True, ops, itt)
        if not rsp.flags & 0x80 or rsp.flags & 0x03 != 3:
            raise IscsiTestError("target did not move to Full Feature Phase")
        self.params = dict(parse_text(rsp.data))
        return self.params

    # -- full feature phase --------------------------------------------------------------

    def _take_cmd_sn(self, immediate: bool) -> int:
        sn = self.cmd_sn
        if not immediate:
            self.cmd_sn = (sn + 1) & 0xFFFFFFFF
        return sn

    def send_targets(self, which: str = "All") -> list[tuple[str, str]]:
        itt = self.next_itt()
        data = text([("SendTargets", which)])
        hdr = struct.pack(">BBxxI8sIIII16x", 0x04, 0x80, len(data), bytes(8), itt, 0xFFFFFFFF,
                          self._take_cmd_sn(False), self.exp_stat_sn)
        self.send_pdu(hdr, data)
        out = b""
        while True:
            rsp = self.expect(0x24)
            out += rsp.data
            if rsp.flags & 0x80:
                return parse_text(out)
            hdr = struct.pack(">BBxxI8sIIII16x", 0x04, 0x80, 0, bytes(8), itt, rsp.u32(20),
                              self._take_cmd_sn(False), self.exp_stat_sn)
            self.send_pdu(hdr)

    def expect(self, opcode: int) -> Pdu:
        while True:
            p = self.recv_pdu()
            if p.opcode in (0x21, 0x22, 0x24, 0x25, 0x26, 0x3F, 0x31):
                if p.opcode != 0x25 or p.flags & 0x01:
                    self.exp_stat_sn = (p.u32(24) + 1) & 0xFFFFFFFF
            if p.opcode == 0x20 and p.u32(20) != 0xFFFFFFFF:  # NOP-In ping: answer it
                hdr = struct.pack(">BBxxI8sIIII16x", 0x40, 0x80, 0, p.header[8:16], 0xFFFFFFFF,
                                  p.u32(20), self.cmd_sn, self.exp_stat_sn)
                self.send_pdu(hdr)
                continue
            if p.opcode == opcode:
                return p
            if p.opcode == 0x3F and opcode != 0x3F:
                raise IscsiTestError(f"Reject, reason {p.header[2]:#x}")
            self.async_pdus.append(p)
            if p.opcode not in (0x20, 0x32):
                raise IscsiTestError(f"expected opcode {opcode:#x}, got {p.opcode:#x}")

    def scsi(self, lun: int, cdb: bytes, *, data_out: bytes = b"", read_len: int = 0,
             immediate_max: int = 65536) -> ScsiResult:
        itt = self.next_itt()
        write = bool(data_out)
        edtl = len(data_out) if write else read_len
        limit = min(immediate_max, int(self.params.get("MaxRecvDataSegmentLength", "8192")),
                    int(self.params.get("FirstBurstLength", "65536")))
        imm = data_out[:limit] if write and self.params.get("ImmediateData") == "Yes" else b""
        # F=1: no unsolicited Data-Out follows the immediate data; the rest goes by R2T.
        flags = 0x80 | (0x20 if write else 0) | (0x40 if read_len else 0) | 0x01
        hdr = struct.pack(">BBxxI8sIIII16s", 0x01, flags, len(imm), lun_field(lun), itt, edtl,
                          self._take_cmd_sn(False), self.exp_stat_sn, cdb.ljust(16, b"\0"))
        self.send_pdu(hdr, imm)
        sent = len(imm)
        data = bytearray()
        while True:
            p = self.recv_pdu()
            op = p.opcode
            if op == 0x20 and p.u32(20) != 0xFFFFFFFF:
                ping = struct.pack(">BBxxI8sIIII16x", 0x40, 0x80, 0, p.header[8:16], 0xFFFFFFFF,
                                   p.u32(20), self.cmd_sn, self.exp_stat_sn)
                self.send_pdu(ping)
                continue
            if op == 0x31:  # R2T
                ttt, off, length = p.u32(20), p.u32(40), p.u32(44)
                mrdsl = int(self.params.get("MaxRecvDataSegmentLength", "8192"))
                datasn = 0
                pos = off
                while pos < off + length:
                    n = min(mrdsl, off + length - pos)
                    final = 0x80 if pos + n == off + length else 0
                    dh = struct.pack(">BBxxI8sII4xI4xII4x", 0x05, final, n, lun_field(lun), itt, ttt,
                                     self.exp_stat_sn, datasn, pos)
                    self.send_pdu(dh, data_out[pos:pos + n])
                    pos += n
                    datasn += 1
                sent = max(sent, off + length)
                continue
            if op == 0x25:  # Data-In
                off = p.u32(40)
                if len(data) < off:
                    data.extend(bytes(off - len(data)))
                data[off:off + len(p.data)] = p.data
                if p.flags & 0x01:
                    self.exp_stat_sn = (p.u32(24) + 1) & 0xFFFFFFFF
                    return ScsiResult(p.header[3], bytes(data), b"", p.u32(44), p.flags & 0x06)
                continue
            if op == 0x21:
                self.exp_stat_sn = (p.u32(24) + 1) & 0xFFFFFFFF
                sense = b""
                if p.data:
                    n = struct.unpack_from(">H", p.data)[0]
                    sense = p.data[2:2 + n]
                return ScsiResult(p.header[3], bytes(data), sense, p.u32(44), p.flags & 0x06)
            if op == 0x3F:
                raise IscsiTestError(f"Reject, reason {p.header[2]:#x}")
            raise IscsiTestError(f"unexpected opcode {op:#x} during a command")

    def read10(self, lun: int, lba: int, blocks: int, block_size: int = 512) -> ScsiResult:
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
        return self.scsi(lun, cdb, read_len=blocks * block_size)

    def write10(self, lun: int, lba: int, data: bytes, block_size: int = 512) -> ScsiResult:
        cdb = struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // block_size, 0)
        return self.scsi(lun, cdb, data_out=data)

    def nop(self) -> None:
        itt = self.next_itt()
        hdr = struct.pack(">BBxxI8sIIII16x", 0x00, 0x80, 0, bytes(8), itt, 0xFFFFFFFF,
                          self._take_cmd_sn(False), self.exp_stat_sn)
        self.send_pdu(hdr)
        self.expect(0x20)

    def tmf(self, function: int, lun: int = 0, ref_itt: int = 0xFFFFFFFF) -> int:
        itt = self.next_itt()
        hdr = struct.pack(">BBxxI8sIIIIII8x", 0x42, 0x80 | function, 0, lun_field(lun), itt, ref_itt,
                          self.cmd_sn, self.exp_stat_sn, 0, 0)
        self.send_pdu(hdr)
        return self.expect(0x22).header[2]

    def logout(self) -> None:
        itt = self.next_itt()
        hdr = struct.pack(">BBxxI8sIH2xII16x", 0x46, 0x80, 0, bytes(8), itt, 0,
                          self._take_cmd_sn(True), self.exp_stat_sn)
        self.send_pdu(hdr)
        rsp = self.expect(0x26)
        if rsp.header[2] != 0:
            raise IscsiTestError(f"logout response {rsp.header[2]}")
        self.close()
