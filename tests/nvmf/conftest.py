"""In-memory NVMe/TCP: a Target with the TCP transport (no sockets), MemoryBackend
namespaces, and links from TestHost to a target connection through a fake transport."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from spydk.nvme.spec import fabrics as fab
from spydk.nvmf.subsystem import ListenAddress, Listener, Subsystem
from spydk.nvmf.tgt import Target
from spydk.nvmf.transport import TransportOptions
from spydk.nvmf.transports.tcp import TcpConnection, TcpTransport
from tests.nvmf.helpers import FakeTransport, MemoryBackend, TestHost, push_bytes

NQN = "nqn.2016-06.io.spdk:cnode1"
ADDR = ListenAddress("TCP", "127.0.0.1", "4420")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


class Link:
    """A TestHost wired to a target TcpConnection; pump() moves bytes both ways."""

    def __init__(self, tr: TcpTransport, host: TestHost, addr: ListenAddress = ADDR):
        self.host = host
        self.ft = FakeTransport()
        self.conn = TcpConnection(tr, addr)
        self.conn.connection_made(self.ft)  # type: ignore[arg-type]

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            out = self.host.take_output()
            if out and not self.conn.closing:
                push_bytes(self.conn, out)
                moved = True
            if self.ft.written:
                data = b"".join(self.ft.written)
                self.ft.written.clear()
                self.host.feed(data)
                moved = True
            if self.ft.closed and not self.conn.closing:
                pass
            if not moved:
                break
        if self.ft.closed and self.conn.transport is not None:
            self.conn.connection_lost(None)

    def wait(self, cid: int):  # type: ignore[no-untyped-def]
        self.pump()
        assert cid in self.host.completions, f"command {cid} did not complete"
        return self.host.completions.pop(cid)

    def establish(self, *, subnqn: str = NQN, qid: int = 0, cntlid: int = 0xFFFF, kato: int = 0,
                  hostnqn: str | None = None, sqsize: int = 31):  # type: ignore[no-untyped-def]
        self.host.icreq()
        self.pump()
        assert self.host.ready
        kw = {"hostnqn": hostnqn} if hostnqn else {}
        return self.wait(self.host.connect(subnqn, qid=qid, sqsize=sqsize, cntlid=cntlid, kato=kato, **kw))

    def enable(self) -> None:
        c = self.wait(self.host.property_set(fab.Property.CC, fab.make_cc(en=True)))
        assert c.status == 0


class Env:
    def __init__(self, opts: TransportOptions | None = None):
        self.clock = Clock()
        self.tgt = Target(clock=self.clock)
        self.tr = TcpTransport(self.tgt, opts or TransportOptions())
        self.tgt.add_transport(self.tr)
        self.subsys = Subsystem(NQN, serial_number="SPDYK0001", model_number="spydk test ctrl",
                                allow_any_host=True)
        self.tgt.add_subsystem(self.subsys)
        self.subsys.listeners.append(Listener(ADDR))
        self.backend = MemoryBackend()
        self.subsys.add_namespace("Mem0", self.backend, nsid=1)
        self.links: list[Link] = []

    def link(self, **kw: bool) -> Link:
        lk = Link(self.tr, TestHost(**kw))
        self.links.append(lk)
        return lk

    def close(self) -> None:
        """The hosts go away: each connection still up is lost, as a real socket's would be,
        so what it holds of the process-wide buffer pool (buffers, waits) goes back."""
        for lk in self.links:
            if lk.conn.transport is not None:
                lk.conn.connection_lost(None)
        self.links.clear()

    def admin(self, **kw: bool) -> tuple[Link, int]:
        """An enabled admin queue; returns the link and the controller ID."""
        lk = self.link(**kw)
        c = lk.establish()
        assert c.status == 0, c
        lk.enable()
        return lk, c.dw0 & 0xFFFF

    def io(self, cntlid: int, qid: int = 1, **kw: bool) -> Link:
        lk = self.link(**kw)
        c = lk.establish(qid=qid, cntlid=cntlid)
        assert c.status == 0, c
        lk.host.icd = self.tr.opts.in_capsule_data_size
        return lk


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    yield e
    e.close()
