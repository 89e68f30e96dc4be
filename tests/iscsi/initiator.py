"""A minimal test-only iSCSI initiator driving a target ``Connection`` in memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spydk.iscsi import pdu, spec
from spydk.iscsi.chap import chap_md5, decode_binary, encode_binary
from spydk.iscsi.conn import Connection, ConnectionFailed, ScsiCommandReady
from spydk.iscsi.negotiation import encode_text, parse_text
from spydk.iscsi.spec import Opcode
from spydk.scsi.task import ScsiStatus, ScsiTask

INAME = "iqn.2024-01.org.test:initiator"
TNAME = "iqn.2016-06.io.spdk:disk1"


@dataclass
class Rx:
    """One PDU received from the target."""

    f: dict[str, Any]
    data: bytes

    @property
    def op(self) -> int:
        return int(self.f["opcode"])

    @property
    def keys(self) -> dict[str, str]:
        return dict(parse_text(self.data))


@dataclass
class FakeScsi:
    """Executes reads (pattern data) and writes (stores data) at once."""

    disk: dict[int, bytes] = field(default_factory=dict)
    pending: list[ScsiTask] = field(default_factory=list)
    auto: bool = True
    sense: bytes = b""

    def execute(self, task: ScsiTask) -> None:
        if task.cdb[0] in (0x28, 0x08):  # READ
            n = task.transfer_length if task.cdb[0] == 0x28 else task.cdb[4] * 512
            # Byte i is (7*i + tag) mod 256: the pattern repeats every 256 bytes, so build one
            # period and repeat it (a byte at a time took seconds for the megabytes a fuzzed
            # READ asks for).
            period = bytes((i * 7 + task.tag) & 0xFF for i in range(256))
            data = (period * (n // 256 + 1))[:n]
            task.data_in = [memoryview(data)]
            task.data_in_length = n
        elif task.cdb[0] == 0x2A:  # WRITE
            self.disk[task.tag] = b"".join(bytes(v) for v in task.data_out)
        if self.sense:
            task.status = ScsiStatus.CHECK_CONDITION
            task.sense = self.sense


class Initiator:
    def __init__(self, conn: Connection, name: str = INAME, isid: bytes = b"\x80\x12\x34\x56\x78\x9a",
                 tsih: int = 0, cid: int = 0, cmd_sn: int = 100, scsi: FakeScsi | None = None,
                 max_rx_data: int = 1 << 20) -> None:
        self.conn = conn
        self.name = name
        self.isid = isid
        self.tsih = tsih
        self.cid = cid
        self.cmd_sn = cmd_sn
        self.exp_stat_sn = 5000
        self.itt = 0x10
        self.hd = False
        self.dd = False
        self.mrdsl = 262144
        self.events: list[Any] = []
        self.scsi = scsi if scsi is not None else FakeScsi()
        self.reader = pdu.PduReader(max_rx_data)  # the longest data segment it takes from the target
        self.failed: ConnectionFailed | None = None
        self.max_cmd_sn = 0

    # -- plumbing ---------------------------------------------------------------------------
    def next_itt(self) -> int:
        self.itt += 1
        return self.itt

    def raw(self, data: bytes) -> list[Rx]:
        evs = self.conn.receive_data(data)
        return self._after(evs)

    def send(self, header: bytes | bytearray, data: bytes = b"") -> list[Rx]:
        bufs = pdu.frame(bytes(header), [data] if data else [], len(data), self.hd, self.dd)
        return self.raw(b"".join(bytes(b) for b in bufs))

    def _after(self, evs: list[Any]) -> list[Rx]:
        out = self.collect(self.conn.data_to_send())
        for ev in evs:
            self.events.append(ev)
            if isinstance(ev, ConnectionFailed):
                self.failed = ev
            if isinstance(ev, ScsiCommandReady) and self.scsi.auto:
                self.scsi.execute(ev.task)
                out += self.collect(self.conn.complete_task(ev.task))
            elif isinstance(ev, ScsiCommandReady):
                self.scsi.pending.append(ev.task)
        return out

    def collect(self, bufs: list[Any]) -> list[Rx]:
        self.reader.header_digest, self.reader.data_digest = self.hd, self.dd
        self.reader.receive_data(b"".join(bytes(b) for b in bufs))
        out = []
        while (p := self.reader.next_pdu()) is not None:
            assert p.data_digest_ok
            f = pdu.decode(p.header)
            out.append(Rx(f, bytes(p.data)))
            if "maxcmdsn" in f:
                self.max_cmd_sn = f["maxcmdsn"]
        return out

    # -- login --------------------------------------------------------------------------------
    def login_pdu(self, keys: list[tuple[str, str]], csg: int, nsg: int, transit: bool,
                  cont: bool = False, version_min: int = 0) -> list[Rx]:
        flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
        text = encode_text(keys)
        h = pdu.encode(Opcode.LOGIN_REQ, immediate=True, flags=flags, data_len=len(text), isid=self.isid,
                       tsih=self.tsih, itt=self.next_itt(), cid=self.cid, cmdsn=self.cmd_sn,
                       expstatsn=self.exp_stat_sn, version_min=version_min)
        rx = self.send(h, text)
        for r in rx:
            if r.op == Opcode.LOGIN_RSP:
                self.exp_stat_sn = (r.f["statsn"] + 1) & 0xFFFFFFFF
        return rx

    def login(self, target: str | None = TNAME, *, discovery: bool = False, chap: tuple[str, bytes] | None = None,
              mutual: tuple[str, bytes] | None = None, op_keys: list[tuple[str, str]] | None = None,
              auth_offer: str | None = None, skip_security: bool = False) -> Rx:
        """Full login; returns the last login response (check status_class)."""
        first: list[tuple[str, str]] = [("InitiatorName", self.name)]
        first.append(("SessionType", "Discovery" if discovery else "Normal"))
        if target is not None and not discovery:
            first.append(("TargetName", target))
        if op_keys is None:
            op_keys = [("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength",
                                                                          str(self.mrdsl))]
        if skip_security:
            rx = self.login_pdu(first + op_keys, 1, 3, True)
            return self._login_done(rx)
        offer = auth_offer or ("CHAP,None" if chap else "None")
        rx = self.login_pdu(first + [("AuthMethod", offer)], 0, 1, chap is None)
        r = rx[-1]
        if r.f["status_class"] or chap is None and not r.f["flags"] & 0x80:
            return r
        if chap is not None:
            assert r.keys.get("AuthMethod") == "CHAP", r.keys
            r = self.login_pdu([("CHAP_A", "5")], 0, 1, False)[-1]
            if r.f["status_class"]:
                return r
            k = r.keys
            ident, challenge = int(k["CHAP_I"]), decode_binary(k["CHAP_C"])
            resp = [("CHAP_N", chap[0]), ("CHAP_R", encode_binary(chap_md5(ident, chap[1], challenge)))]
            my_id, my_chal = 77, bytes(range(16))
            if mutual is not None:
                resp += [("CHAP_I", str(my_id)), ("CHAP_C", encode_binary(my_chal, b64=True))]
            r = self.login_pdu(resp, 0, 1, True)[-1]
            if r.f["status_class"]:
                return r
            if mutual is not None:
                k = r.keys
                assert k["CHAP_N"] == mutual[0]
                assert decode_binary(k["CHAP_R"]) == chap_md5(my_id, mutual[1], my_chal)
        rx = self.login_pdu(op_keys, 1, 3, True)
        return self._login_done(rx)

    def _login_done(self, rx: list[Rx]) -> Rx:
        r = rx[-1]
        if r.f["status_class"] == 0 and r.f["flags"] & 0x80 and r.f["flags"] & 3 == 3:
            self.tsih = r.f["tsih"]
            k = r.keys
            if k.get("HeaderDigest") == "CRC32C":
                self.hd = True
            if k.get("DataDigest") == "CRC32C":
                self.dd = True
        return r

    # -- full feature -----------------------------------------------------------------------------
    def _sn(self, immediate: bool) -> int:
        sn = self.cmd_sn
        if not immediate:
            self.cmd_sn = (sn + 1) & 0xFFFFFFFF
        return sn

    def text(self, keys: list[tuple[str, str]]) -> list[Rx]:
        text = encode_text(keys)
        itt = self.next_itt()
        h = pdu.encode(Opcode.TEXT_REQ, flags=0x80, data_len=len(text), itt=itt, ttt=spec.RESERVED_TAG,
                       cmdsn=self._sn(False), expstatsn=self.exp_stat_sn)
        rx = self.send(h, text)
        out = list(rx)
        while rx and rx[-1].op == Opcode.TEXT_RSP and rx[-1].f["flags"] & 0x40:
            h = pdu.encode(Opcode.TEXT_REQ, flags=0x80, itt=itt, ttt=rx[-1].f["ttt"], cmdsn=self._sn(False),
                           expstatsn=self.exp_stat_sn)
            rx = self.send(h)
            out += rx
        return out

    def scsi_cmd(self, cdb: bytes, *, read: int = 0, write: bytes = b"", immediate_len: int = 0,
                 final: bool = True, lun: int = 0, itt: int | None = None, cmd_sn: int | None = None,
                 immediate: bool = False) -> tuple[int, list[Rx]]:
        itt = self.next_itt() if itt is None else itt
        flags = 0x80 if final else 0
        edtl = read
        if read:
            flags |= spec.CMD_READ
        if write:
            flags |= spec.CMD_WRITE
            edtl = len(write)
        data = write[:immediate_len]
        sn = self._sn(immediate) if cmd_sn is None else cmd_sn
        h = pdu.encode(Opcode.SCSI_CMD, immediate=immediate, flags=flags | 1, data_len=len(data),
                       lun=spec.encode_lun(lun), itt=itt, edtl=edtl, cmdsn=sn, expstatsn=self.exp_stat_sn,
                       cdb=cdb.ljust(16, b"\0"))
        return itt, self.send(h, data)

    def data_out(self, itt: int, ttt: int, offset: int, data: bytes, datasn: int, final: bool) -> list[Rx]:
        h = pdu.encode(Opcode.DATA_OUT, flags=0x80 if final else 0, data_len=len(data), itt=itt, ttt=ttt,
                       buffer_offset=offset, datasn=datasn, expstatsn=self.exp_stat_sn)
        return self.send(h, data)

    def write(self, data: bytes, *, immediate_len: int = 0, unsolicited: int = 0, burst: int = 8192,
              lba: int = 0) -> tuple[int, list[Rx]]:
        """A WRITE(10) that answers R2Ts until the SCSI Response comes back."""
        cdb = bytes([0x2A, 0]) + lba.to_bytes(4, "big") + b"\0" + (len(data) // 512).to_bytes(2, "big") + b"\0"
        itt, rx = self.scsi_cmd(cdb, write=data, immediate_len=immediate_len, final=unsolicited == 0)
        allrx = list(rx)
        off, sn = immediate_len, 0
        while off < immediate_len + unsolicited:
            n = min(burst, immediate_len + unsolicited - off)
            rx = self.data_out(itt, spec.RESERVED_TAG, off, data[off:off + n], sn, off + n == immediate_len + unsolicited)
            allrx += rx
            off += n
            sn += 1
        pending = [r for r in allrx if r.op == Opcode.R2T]
        while pending:
            r2t = pending.pop(0)
            off, end, sn = r2t.f["buffer_offset"], r2t.f["buffer_offset"] + r2t.f["desired_length"], 0
            while off < end:
                n = min(burst, end - off)
                rx = self.data_out(itt, r2t.f["ttt"], off, data[off:off + n], sn, off + n == end)
                allrx += rx
                pending += [r for r in rx if r.op == Opcode.R2T]
                off += n
                sn += 1
        return itt, allrx

    def read(self, length: int, lba: int = 0) -> tuple[int, list[Rx]]:
        cdb = bytes([0x28, 0]) + lba.to_bytes(4, "big") + b"\0" + (length // 512).to_bytes(2, "big") + b"\0"
        return self.scsi_cmd(cdb, read=length)

    def nop(self, data: bytes = b"", immediate: bool = True) -> list[Rx]:
        h = pdu.encode(Opcode.NOP_OUT, immediate=immediate, data_len=len(data), itt=self.next_itt(),
                       ttt=spec.RESERVED_TAG, cmdsn=self._sn(immediate), expstatsn=self.exp_stat_sn)
        return self.send(h, data)

    def tmf(self, function: int, ref_itt: int = spec.RESERVED_TAG, lun: int = 0) -> list[Rx]:
        h = pdu.encode(Opcode.TASK_MGMT_REQ, immediate=True, flags=0x80 | function, lun=spec.encode_lun(lun),
                       itt=self.next_itt(), rtt=ref_itt, cmdsn=self.cmd_sn, expstatsn=self.exp_stat_sn)
        return self.send(h)

    def logout(self, reason: int = 0, cid: int | None = None) -> list[Rx]:
        h = pdu.encode(Opcode.LOGOUT_REQ, immediate=True, flags=0x80 | reason, itt=self.next_itt(),
                       cid=self.cid if cid is None else cid, cmdsn=self.cmd_sn, expstatsn=self.exp_stat_sn)
        return self.send(h)
