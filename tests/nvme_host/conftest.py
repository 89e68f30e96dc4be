"""The host driver against spydk's own NVMe/TCP target classes, in memory: a Target with
MemoryBackend namespaces (as in tests/nvmf) and a connector that joins a host TcpQpair to a
target TcpConnection through two fake transports delivering bytes with call_soon. A mutator
can rewrite the target's PDUs to play a misbehaving target."""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from spydk.nvme.host import Controller, ControllerOpts, TransportId
from spydk.nvmf.subsystem import ListenAddress, Listener, Subsystem
from spydk.nvmf.tgt import Target
from spydk.nvmf.transport import TransportOptions
from spydk.nvmf.transports.tcp import TcpConnection, TcpTransport
from tests.nvmf.helpers import MemoryBackend, push_bytes

NQN = "nqn.2016-06.io.spdk:cnode1"
ADDR = ListenAddress("TCP", "127.0.0.1", "4420")
_CH = struct.Struct("<BBBBI")

Mutator = Callable[[bytearray], bytes | None]  # one target PDU in; None drops it


def split_pdus(data: bytes) -> list[bytearray]:
    out = []
    pos = 0
    while pos < len(data):
        plen = _CH.unpack_from(data, pos)[4]
        out.append(bytearray(data[pos:pos + plen]))
        pos += plen
    return out


class _Side:
    """A write-only fake asyncio transport delivering to a protocol on the next loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes], None],
                 lost: Callable[[], None]) -> None:
        self.loop = loop
        self.deliver = deliver
        self.lost = lost
        self.closed = False
        self.peer = ("127.0.0.1", 40000)

    def writelines(self, bufs: Any) -> None:
        if not self.closed:
            self.loop.call_soon(self.deliver, b"".join(bytes(b) for b in bufs))

    def write(self, data: Any) -> None:
        self.writelines([data])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.lost)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default


def _feed(proto: Any, data: bytes) -> None:
    pos = 0
    while pos < len(data) and proto.transport is not None:
        buf = proto.get_buffer(-1)
        n = min(len(buf), len(data) - pos)
        buf[:n] = data[pos:pos + n]
        proto.buffer_updated(n)
        pos += n


class Env:
    def __init__(self, *, num_blocks: int = 4096, block_size: int = 512) -> None:
        self.tgt = Target()
        self.tr = TcpTransport(self.tgt, TransportOptions())
        self.tgt.add_transport(self.tr)
        self.subsys = Subsystem(NQN, serial_number="SPDYK0001", model_number="spydk test ctrl",
                                allow_any_host=True)
        self.tgt.add_subsystem(self.subsys)
        self.subsys.listeners.append(Listener(ADDR))
        self.backend = MemoryBackend(num_blocks=num_blocks, block_size=block_size)
        self.subsys.add_namespace("Mem0", self.backend, nsid=1)
        self.mutator: Mutator | None = None
        self.conns: list[TcpConnection] = []

    def _from_target(self, proto: Any, data: bytes) -> None:
        if self.mutator is not None:
            parts = []
            for pdu in split_pdus(data):
                out = self.mutator(pdu) if pdu[0] not in (1,) else bytes(pdu)
                if out is not None:
                    parts.append(bytes(out))
            data = b"".join(parts)
        if proto.transport is not None and data:
            _feed(proto, data)

    async def connector(self, proto: Any) -> None:
        loop = asyncio.get_running_loop()
        conn = TcpConnection(self.tr, ADDR)
        self.conns.append(conn)
        host_side = _Side(loop, lambda d: push_bytes(conn, d) if not conn.closing else None,
                          lambda: conn.connection_lost(None) if not conn.closing else None)
        tgt_side = _Side(loop, lambda d: self._from_target(proto, d),
                         lambda: proto.connection_lost(None) if proto.transport is not None else None)
        conn.connection_made(tgt_side)  # type: ignore[arg-type]
        proto.connection_made(host_side)

    def controller(self, **kw: Any) -> Controller:
        opts = ControllerOpts(**kw)
        return Controller(TransportId(traddr="127.0.0.1", trsvcid="4420", subnqn=NQN), opts,
                          connector=self.connector)


def run(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
