"""Test and benchmark helpers: an in-memory namespace, a minimal NVMe/TCP host built on the
codec's host role, and an in-memory link between that host and a target connection."""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spydk.nvme import spec, tcp
from spydk.nvme.spec import SglSubtype, SglType
from spydk.nvme.spec import fabrics as fab
from spydk.nvmf.io import ST_COMPARE_FAILURE, complete_fused
from spydk.nvmf.request import Buffer, Request

HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"
HOSTID = bytes(range(16))


class MemoryBackend:
    """A NamespaceBackend in a bytearray; completes synchronously (or via ``defer``)."""

    def __init__(self, num_blocks: int = 2048, block_size: int = 512, uuid: bytes = b"\x11" * 16,
                 defer: Callable[[Callable[[], None]], None] | None = None):
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.uuid = uuid
        self.mem = bytearray(num_blocks * block_size)
        self.defer = defer
        self.closed = False
        self.ops: list[str] = []

    def _done(self, req: Request, status: int) -> None:
        if self.defer is not None:
            self.defer(lambda: req.io_done(status))
        else:
            req.io_done(status)

    def _span(self, off: int, n: int) -> slice:
        bs = self.block_size
        return slice(off * bs, (off + n) * bs)

    def read(self, req: Request, offset_blocks: int, num_blocks: int) -> None:
        self.ops.append("read")
        req.data = bytes(self.mem[self._span(offset_blocks, num_blocks)])
        self._done(req, 0)

    def write(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None:
        self.ops.append("write")
        self.mem[self._span(offset_blocks, num_blocks)] = data
        self._done(req, 0)

    def flush(self, req: Request) -> None:
        self.ops.append("flush")
        self._done(req, 0)

    def write_zeroes(self, req: Request, offset_blocks: int, num_blocks: int) -> None:
        self.ops.append("write_zeroes")
        s = self._span(offset_blocks, num_blocks)
        self.mem[s] = bytes(s.stop - s.start)
        self._done(req, 0)

    def unmap(self, req: Request, ranges: list[tuple[int, int]]) -> None:
        self.ops.append("unmap")
        for off, n in ranges:
            s = self._span(off, n)
            self.mem[s] = bytes(s.stop - s.start)
        self._done(req, 0)

    def compare(self, req: Request, offset_blocks: int, num_blocks: int, data: Buffer) -> None:
        self.ops.append("compare")
        same = self.mem[self._span(offset_blocks, num_blocks)] == bytes(data)
        self._done(req, 0 if same else ST_COMPARE_FAILURE)

    def compare_and_write(self, req: Request, offset_blocks: int, num_blocks: int,
                          compare_data: Buffer, write_data: Buffer) -> None:
        self.ops.append("compare_and_write")
        s = self._span(offset_blocks, num_blocks)
        if self.mem[s] == bytes(compare_data):
            self.mem[s] = write_data
            complete_fused(req, 0)
        else:
            complete_fused(req, ST_COMPARE_FAILURE)

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------------
# A minimal host
# --------------------------------------------------------------------------------------------


@dataclass
class Completion:
    cid: int
    status: int  # CQE status field without the phase bit (0 = success)
    dw0: int = 0
    dw1: int = 0
    data: bytes | None = None
    c2h_success: bool = False  # completed by a C2HData SUCCESS flag (no CapsuleResp)
    sqhd: int | None = None  # the CQE's SQ head pointer (None: no CapsuleResp)

    @property
    def sc(self) -> int:
        return (self.status >> 1) & 0xFF

    @property
    def sct(self) -> int:
        return (self.status >> 9) & 0x7


def sgl_incapsule(length: int) -> bytes:
    return spec.build_sgl(0, length, SglType.DATA_BLOCK, SglSubtype.OFFSET)


def sgl_transport(length: int) -> bytes:
    return spec.build_sgl(0, length, SglType.TRANSPORT_DATA_BLOCK, SglSubtype.TRANSPORT)


class TestHost:
    """Drives the host role of the NVMe/TCP codec: builds commands, collects completions."""

    __test__ = False  # not a pytest class

    def __init__(self, *, header_digest: bool = False, data_digest: bool = False):
        self.tq = tcp.TcpQueuePair(tcp.Role.HOST)
        self.hdgst = header_digest
        self.ddgst = data_digest
        self.out: list[Buffer] = []
        self.completions: dict[int, Completion] = {}
        self.ready = False
        self.terminated: tcp.Event | None = None
        self._cid = 0
        self._write_data: dict[int, Buffer] = {}
        self._read_bufs: dict[int, bytearray] = {}
        self.icd = 8192  # in-capsule data the controller accepts (admin queue)
        self.events: list[tcp.Event] = []

    def icreq(self) -> None:
        self.out += self.tq.send_icreq(header_digest=self.hdgst, data_digest=self.ddgst, maxr2t=0)

    def next_cid(self) -> int:
        self._cid = (self._cid + 1) & 0xFFFF
        return self._cid

    def take_output(self) -> bytes:
        data = b"".join(bytes(b) for b in self.out)
        self.out = []
        return data

    # -- commands ---------------------------------------------------------------------------

    def submit(self, sqe: bytes, write: Buffer | None = None, read_len: int = 0) -> int:
        cid = spec.sqe_cid(sqe)
        dest = None
        if read_len:
            buf = bytearray(read_len)
            self._read_bufs[cid] = buf
            dest = memoryview(buf)
        if write is not None and len(write) <= self.icd:
            self.out += self.tq.send_capsule_cmd(sqe, write, dest=dest)
        else:
            if write is not None:
                self._write_data[cid] = write
            self.out += self.tq.send_capsule_cmd(sqe, dest=dest)
        return cid

    def io_sqe(self, opcode: int, nsid: int, nbytes: int, *, incapsule: bool, fuse: int = 0,
               cdw10: int = 0, cdw11: int = 0, cdw12: int = 0) -> bytes:
        sgl = sgl_incapsule(nbytes) if incapsule else sgl_transport(nbytes)
        return spec.build_sqe(opcode, self.next_cid(), nsid, fuse=fuse, psdt=1, dptr=sgl,
                              cdw10=cdw10, cdw11=cdw11, cdw12=cdw12)

    def connect(self, subnqn: str, *, qid: int = 0, sqsize: int = 31, cntlid: int = 0xFFFF,
                kato: int = 0, hostnqn: str = HOSTNQN, hostid: bytes = HOSTID) -> int:
        cid = self.next_cid()
        data = fab.build_connect_data(fab.ConnectData(hostid, cntlid, subnqn, hostnqn))
        sqe = fab.build_connect_command(fab.ConnectCommand(cid, qid, sqsize, kato), sgl_incapsule(1024))
        return self.submit(sqe, data)

    def property_get(self, offset: int, size: int) -> int:
        return self.submit(fab.build_property_get(self.next_cid(), offset, size))

    def property_set(self, offset: int, value: int, size: int = 4) -> int:
        return self.submit(fab.build_property_set(self.next_cid(), offset, size, value))

    def admin(self, opcode: int, *, nsid: int = 0, read_len: int = 0, write: bytes | None = None,
              cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0) -> int:
        n = read_len or (len(write) if write is not None else 0)
        sgl = b""
        psdt = 0
        if n:
            psdt = 1
            sgl = sgl_incapsule(n) if write is not None else sgl_transport(n)
        sqe = spec.build_sqe(opcode, self.next_cid(), nsid, psdt=psdt, dptr=sgl, cdw10=cdw10,
                             cdw11=cdw11, cdw12=cdw12, cdw13=cdw13)
        return self.submit(sqe, write, read_len)

    def identify(self, cns: int, nsid: int = 0, csi: int = 0) -> int:
        return self.admin(spec.AdminOpcode.IDENTIFY, nsid=nsid, read_len=4096, cdw10=cns,
                          cdw11=csi << 24)

    def get_log_page(self, lid: int, nbytes: int, *, nsid: int = 0xFFFFFFFF, offset: int = 0,
                     lsp: int = 0, rae: bool = False) -> int:
        numd = nbytes // 4 - 1
        cdw10 = lid | (lsp << 8) | (int(rae) << 15) | ((numd & 0xFFFF) << 16)
        return self.admin(spec.AdminOpcode.GET_LOG_PAGE, nsid=nsid, read_len=nbytes, cdw10=cdw10,
                          cdw11=numd >> 16, cdw12=offset & 0xFFFFFFFF, cdw13=offset >> 32)

    def read(self, nsid: int, slba: int, nlb: int, block_size: int) -> int:
        n = nlb * block_size
        sqe = self.io_sqe(spec.NvmOpcode.READ, nsid, n, incapsule=False, cdw10=slba & 0xFFFFFFFF,
                          cdw11=slba >> 32, cdw12=nlb - 1)
        return self.submit(sqe, read_len=n)

    def write(self, nsid: int, slba: int, data: bytes, block_size: int, *, opcode: int = 1,
              fuse: int = 0) -> int:
        nlb = len(data) // block_size
        sqe = self.io_sqe(opcode, nsid, len(data), incapsule=len(data) <= self.icd, fuse=fuse,
                          cdw10=slba & 0xFFFFFFFF, cdw11=slba >> 32, cdw12=nlb - 1)
        return self.submit(sqe, data)

    # -- receiving --------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.tq.receive_data(data)
        while True:
            ev = self.tq.next_event()
            if ev is None:
                return
            self.events.append(ev)
            self._on_event(ev)

    def _on_event(self, ev: tcp.Event) -> None:
        if isinstance(ev, tcp.ICRespReceived):
            self.ready = True
        elif isinstance(ev, tcp.R2TReceived):
            data = self._write_data[ev.cccid]
            last = ev.offset + ev.length == len(data)
            if last:
                del self._write_data[ev.cccid]
            self.out += self.tq.send_h2c_data(ev.cccid, ev.ttag, ev.offset,
                                              memoryview(data)[ev.offset:ev.offset + ev.length])
        elif isinstance(ev, tcp.C2HData):
            if ev.success:
                buf = self._read_bufs.pop(ev.cccid, None)
                self.completions[ev.cccid] = Completion(ev.cccid, 0, data=bytes(buf) if buf is not None else None,
                                                        c2h_success=True)
        elif isinstance(ev, tcp.CapsuleResponse):
            dw0, dw1, sqhd, _sqid, cid, status = spec.CQE.unpack(ev.cqe)
            buf = self._read_bufs.pop(cid, None)
            self._write_data.pop(cid, None)
            self.completions[cid] = Completion(cid, status & ~1, dw0, dw1,
                                               bytes(buf) if buf is not None else None, sqhd=sqhd)
        elif isinstance(ev, tcp.TermReqReceived | tcp.ProtocolError | tcp.ConnectionClosed):
            self.terminated = ev


# --------------------------------------------------------------------------------------------
# In-memory link: a target TcpConnection with a fake asyncio transport
# --------------------------------------------------------------------------------------------


class FakeTransport:
    """Just enough of asyncio.Transport for TcpConnection."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)):
        self.written: list[bytes] = []
        self.closed = False
        self.peer = peer

    def writelines(self, bufs: Any) -> None:
        self.written.append(b"".join(bytes(b) for b in bufs))

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        return default


def push_bytes(conn: Any, data: bytes, chunk: int = 1 << 20) -> None:
    """Deliver bytes to a target TcpConnection the way asyncio's BufferedProtocol would."""
    pos = 0
    while pos < len(data) and not conn.closing:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(data) - pos, chunk)
        buf[:n] = data[pos:pos + n]
        conn.buffer_updated(n)
        pos += n


_U16 = struct.Struct("<H")


class SocketHost:
    """TestHost over a real blocking TCP socket (tests and the benchmark's sanity checks)."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0, **kw: bool):
        import socket
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h = TestHost(**kw)
        self.bs = 512

    def flush(self) -> None:
        out = self.h.take_output()
        if out:
            self.sock.sendall(out)

    def wait(self, cid: int) -> Completion:
        self.flush()
        while cid not in self.h.completions:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("target closed the connection")
            self.h.feed(data)
            self.flush()
        return self.h.completions.pop(cid)

    def start(self) -> None:
        self.h.icreq()
        self.flush()
        while not self.h.ready:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("target closed the connection during ICReq")
            self.h.feed(data)

    def connect_admin(self, subnqn: str, *, kato: int = 0, hostnqn: str = HOSTNQN) -> Completion:
        self.start()
        c = self.wait(self.h.connect(subnqn, kato=kato, hostnqn=hostnqn))
        if c.status == 0:
            en = self.wait(self.h.property_set(fab.Property.CC, fab.make_cc(en=True)))
            assert en.status == 0
        return c

    def connect_io(self, subnqn: str, cntlid: int, qid: int = 1, *, icd: int = 4096,
                   sqsize: int = 127) -> Completion:
        self.start()
        c = self.wait(self.h.connect(subnqn, qid=qid, cntlid=cntlid, sqsize=sqsize))
        self.h.icd = icd
        return c

    def close(self) -> None:
        self.sock.close()
