"""Every resource limit of docs/reliability.md that needs a running target: a client is driven
past it over a real socket, and the test checks that only that client is refused, that a
well-behaved client keeps working, and that memory stays bounded (tracemalloc, generous
margins).  The limits are lowered for the test (the defaults are in the table)."""
from __future__ import annotations

import os
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spydk.iscsi import socket_io as iscsi_portal
from spydk.nvme import tcp
from spydk.nvme.spec import fabrics as fab
from spydk.nvmf.tgt import get_target
from spydk.nvmf.transports import tcp as transport_tcp
from spydk.testing import AppHarness
from tests.iscsi_tgt.initiator import Initiator, IscsiTestError
from tests.nvmf.helpers import SocketHost

NQN = "nqn.2016-06.io.spdk:cnode1"
IQN = "iqn.2016-06.io.spdk:disk1"
LIMIT = 8          # connections per listener / portal group, lowered for the test
TIMEOUT = 0.5      # admission / login timeout, lowered for the test
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(nvme_port: int, iscsi_port: int, aio_file: str) -> dict[str, Any]:
    addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(nvme_port)}
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 8192,
                                                        "block_size": 512}},
            # Not zero-copy: its reads go through pooled buffers (for the slow-reader test).
            {"method": "bdev_aio_create", "params": {"name": "Aio0", "filename": aio_file, "block_size": 512}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP", "max_io_qpairs_per_ctrlr": 2}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": True}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Aio0"}}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": addr}},
        ]},
        {"subsystem": "iscsi", "config": [
            {"method": "iscsi_set_options", "params": {"max_sessions": 4, "max_connections_per_session": 1}},
            {"method": "iscsi_create_portal_group",
             "params": {"tag": 1, "portals": [{"host": "127.0.0.1", "port": str(iscsi_port)}]}},
            {"method": "iscsi_create_initiator_group",
             "params": {"tag": 1, "initiators": ["ANY"], "netmasks": ["127.0.0.1/32"]}},
            {"method": "iscsi_create_target_node", "params": {
                "name": "disk1", "alias_name": "", "luns": [{"bdev_name": "Malloc0", "lun_id": 0}],
                "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 32}},
        ]},
    ]}


class Target:
    def __init__(self, h: AppHarness, nvme_port: int, iscsi_port: int):
        self.h = h
        self.nvme_port = nvme_port
        self.iscsi_port = iscsi_port
        self._isid = 0x100

    def transport(self) -> Any:
        return get_target().transports["TCP"]

    def nvme_host(self) -> SocketHost:
        return SocketHost("127.0.0.1", self.nvme_port, timeout=10.0)

    def nvme_verify(self) -> None:
        """A well-behaved NVMe/TCP host: connect, write, read back, disconnect."""
        a = self.nvme_host()
        c = a.connect_admin(NQN)
        assert c.status == 0, c
        io = self.nvme_host()
        assert io.connect_io(NQN, c.dw0 & 0xFFFF).status == 0
        data = bytes(range(256)) * 16
        assert io.wait(io.h.write(1, 64, data, 512)).status == 0
        r = io.wait(io.h.read(1, 64, len(data) // 512, 512))
        assert r.status == 0 and r.data == data
        io.close()
        a.close()

    def iscsi_initiator(self) -> Initiator:
        self._isid += 1
        return Initiator("127.0.0.1", self.iscsi_port, isid=b"\x80\0\0\0" + self._isid.to_bytes(2, "big"))

    def iscsi_verify(self) -> None:
        i = self.iscsi_initiator()
        i.login(IQN)
        data = bytes(range(256)) * 16
        assert i.write10(0, 200, data).status == 0
        r = i.read10(0, 200, len(data) // 512)
        assert r.status == 0 and r.data == data
        i.logout()
        i.close()


@pytest.fixture(scope="module")
def tgt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    aio_file = tmp_path_factory.mktemp("aio") / "disk.img"
    with open(aio_file, "wb") as f:
        f.truncate(8 * MiB)
    saved = (transport_tcp.MAX_CONNECTIONS_PER_LISTENER, transport_tcp.ADMISSION_TIMEOUT,
             iscsi_portal.MAX_CONNECTIONS_PER_PORTAL_GROUP, iscsi_portal.LOGIN_TIMEOUT)
    transport_tcp.MAX_CONNECTIONS_PER_LISTENER = LIMIT
    transport_tcp.ADMISSION_TIMEOUT = TIMEOUT
    iscsi_portal.MAX_CONNECTIONS_PER_PORTAL_GROUP = LIMIT
    iscsi_portal.LOGIN_TIMEOUT = TIMEOUT
    nvme_port, iscsi_port = free_port(), free_port()
    h = AppHarness(config(nvme_port, iscsi_port, str(aio_file)), subsystems=("bdev", "nvmf", "iscsi")).start()
    try:
        yield Target(h, nvme_port, iscsi_port)
    finally:
        h.stop()
        (transport_tcp.MAX_CONNECTIONS_PER_LISTENER, transport_tcp.ADMISSION_TIMEOUT,
         iscsi_portal.MAX_CONNECTIONS_PER_PORTAL_GROUP, iscsi_portal.LOGIN_TIMEOUT) = saved


def closed_by_peer(s: socket.socket, timeout: float = 10.0) -> bool:
    """True once the target closes s (reads until EOF; a reset counts as closed)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10.0)


def within(limit_bytes: int, fn: Callable[[], None]) -> None:
    """Run fn and check the process's Python allocations grew by less than limit_bytes."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - base < limit_bytes, f"{(peak - base) / MiB:.1f} MiB allocated"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def icreq() -> bytes:
    return b"".join(bytes(b) for b in tcp.TcpQueuePair(tcp.Role.HOST).send_icreq())


# ---------------------------------------------------------------------------------------------
# NVMe/TCP


def test_nvme_tcp_connections_per_listener(tgt: Target) -> None:
    def run() -> None:
        held = []
        for _ in range(LIMIT - 1):
            s = raw(tgt.nvme_port)
            held.append(s)
        a = tgt.nvme_host()
        assert a.connect_admin(NQN).status == 0  # the LIMIT-th connection is admitted
        over = raw(tgt.nvme_port)
        over.sendall(icreq())
        assert closed_by_peer(over)
        # The admitted host is unaffected; once the idle ones are gone others get in again.
        assert a.wait(a.h.property_get(fab.Property.CSTS, 4)).status == 0
        for s in held:
            s.close()
        a.close()
        tgt.nvme_verify()
    within(32 * MiB, run)
    assert tgt.transport().refused >= 1


@pytest.mark.parametrize("send", [b"", b"\x00\x00\x80\x00", "icreq", "icreq+half-connect"])
def test_nvme_tcp_admission_timeout(tgt: Target, send: Any) -> None:
    """A client that connects and sends nothing, or half a PDU, is closed."""
    s = raw(tgt.nvme_port)
    data = icreq() if send in ("icreq", "icreq+half-connect") else send
    s.sendall(data)
    if send == "icreq+half-connect":
        s.recv(128)  # ICResp
        s.sendall(struct.pack("<BBBBI", 4, 0, 72, 72, 72 + 1024) + bytes(40))
    assert closed_by_peer(s)
    s.close()
    tgt.nvme_verify()


def test_nvme_tcp_keep_alive_expiry(tgt: Target) -> None:
    a = tgt.nvme_host()
    assert a.connect_admin(NQN, kato=1000).status == 0
    a.sock.settimeout(10.0)
    # Nothing more is sent: the controller expires and the connection closes.
    assert closed_by_peer(a.sock)
    a.close()
    tgt.nvme_verify()


def test_nvmf_queues_per_controller(tgt: Target) -> None:
    a = tgt.nvme_host()
    c = a.connect_admin(NQN)
    cntlid = c.dw0 & 0xFFFF
    ok = [tgt.nvme_host() for _ in range(2)]
    for qid, h in enumerate(ok, 1):
        assert h.connect_io(NQN, cntlid, qid=qid).status == 0
    extra = tgt.nvme_host()
    assert extra.connect_io(NQN, cntlid, qid=3).status != 0
    extra.close()
    assert ok[0].wait(ok[0].h.read(1, 0, 1, 512)).status == 0
    for h in ok:
        h.close()
    a.close()


def test_nvme_tcp_queue_depth_and_pool_over_sockets(tgt: Target) -> None:
    """A host that fills its queue with writes whose data never comes, on several queues:
    each queue holds at most its SQ size of pooled buffers; one more command ends that
    connection (C2HTermReq) and its buffers go back."""
    from spydk.bdev.iobuf import pool

    def run() -> None:
        a = tgt.nvme_host()
        cntlid = a.connect_admin(NQN).dw0 & 0xFFFF
        before = pool.large_created
        h = tgt.nvme_host()
        assert h.connect_io(NQN, cntlid, sqsize=15).status == 0
        from spydk.nvme import spec
        from tests.nvmf.helpers import sgl_transport
        out = b""
        for cid in range(17):
            sqe = spec.build_sqe(spec.NvmOpcode.WRITE, cid, 1, psdt=1, dptr=sgl_transport(131072),
                                 cdw12=255)
            out += struct.pack("<BBBBI", 4, 0, 72, 0, 72) + sqe
        h.sock.sendall(out)
        got = b""
        h.sock.settimeout(10.0)
        try:
            while chunk := h.sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        types = []
        pos = 0
        while pos + 8 <= len(got):
            types.append(got[pos])
            pos += struct.unpack_from("<I", got, pos + 4)[0]
        assert types.count(9) == 16 and types[-1] == 3
        assert pool.large_created - before <= 16
        h.close()
        a.close()
        tgt.nvme_verify()
    within(64 * MiB, run)


# ---------------------------------------------------------------------------------------------
# iSCSI


def test_iscsi_connections_per_portal_group(tgt: Target) -> None:
    def run() -> None:
        held = [raw(tgt.iscsi_port) for _ in range(LIMIT - 1)]
        i = tgt.iscsi_initiator()
        i.login(IQN)
        over = raw(tgt.iscsi_port)
        assert closed_by_peer(over)
        assert i.read10(0, 0, 1).status == 0
        for s in held:
            s.close()
        i.logout()
        i.close()
        tgt.iscsi_verify()
    within(32 * MiB, run)


@pytest.mark.parametrize("send", [b"", b"\x43\x87\x00\x00", "half-login"])
def test_iscsi_login_timeout(tgt: Target, send: Any) -> None:
    s = raw(tgt.iscsi_port)
    if send == "half-login":
        s.sendall(struct.pack(">BBBBI", 0x43, 0x87, 0, 0, 200) + bytes(40) + b"InitiatorName=iqn.x")
    else:
        s.sendall(send)
    assert closed_by_peer(s)
    s.close()
    tgt.iscsi_verify()


def test_iscsi_sessions_and_connections_per_session(tgt: Target) -> None:
    sessions = [tgt.iscsi_initiator() for _ in range(4)]
    for i in sessions:
        i.login(IQN)
    over = tgt.iscsi_initiator()
    with pytest.raises(IscsiTestError, match="0x0302"):  # out of resources: too many sessions
        over.login(IQN)
    over.close()
    # A second connection to an existing session, over max_connections_per_session (1).
    first = sessions[0]
    join = Initiator("127.0.0.1", tgt.iscsi_port, isid=first.isid, tsih=first.tsih)
    with pytest.raises(IscsiTestError):
        join.login(IQN, extra=[("MaxConnections", "1")])
    join.close()
    assert sessions[1].read10(0, 0, 1).status == 0
    for i in sessions:
        i.logout()
        i.close()
    tgt.iscsi_verify()


# ---------------------------------------------------------------------------------------------
# RPC


def test_rpc_connections_and_request_size(tgt: Target) -> None:
    server = tgt.h.app.server
    saved = server.max_connections
    server.max_connections = 4
    try:
        def run() -> None:
            held = []
            for _ in range(4):
                s = socket.socket(socket.AF_UNIX)
                s.connect(tgt.h.sock)
                held.append(s)
            time.sleep(0)  # connections are accepted by the app's loop
            over = socket.socket(socket.AF_UNIX)
            over.connect(tgt.h.sock)
            assert closed_by_peer(over)
            over.close()
            for s in held:
                s.close()
            # An oversized request is refused; the server keeps serving.
            big = socket.socket(socket.AF_UNIX)
            big.connect(tgt.h.sock)
            try:
                big.sendall(b'{"jsonrpc":"2.0","id":1,"method":"x","params":"' + b"a" * (9 * MiB))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_by_peer(big)
            big.close()
        within(48 * MiB, run)
    finally:
        server.max_connections = saved
    assert tgt.h.client.call("spdk_get_version")["version"]


def test_nvme_tcp_host_that_does_not_read(tgt: Target) -> None:
    """A host that sends reads and never reads the data: once the target's send buffer is
    full it stops reading that host's commands, instead of queueing every completion."""
    from spydk.nvme import spec
    from tests.nvmf.helpers import sgl_transport
    a = tgt.nvme_host()
    cntlid = a.connect_admin(NQN).dw0 & 0xFFFF
    h = tgt.nvme_host()
    h.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert h.connect_io(NQN, cntlid, sqsize=127).status == 0
    n = 128 * 1024
    pdus = b"".join(struct.pack("<BBBBI", 4, 0, 72, 0, 72) + spec.build_sqe(
        spec.NvmOpcode.READ, i & 0xFFFF, 2, psdt=1, dptr=sgl_transport(n), cdw12=n // 512 - 1)
        for i in range(1600))  # 200 MiB of read data asked for from the aio namespace
    before = rss_bytes()
    h.sock.setblocking(False)
    sent = 0
    # Batches below the queue size, spaced so the target has answered the previous one: a
    # host that times its commands instead of reading completions stays within its SQ size.
    batch = 32 * 72
    for _ in range(len(pdus) // batch):
        end = sent + batch
        for _ in range(20):
            try:
                sent += h.sock.send(pdus[sent:end])
            except BlockingIOError:
                pass
            if sent == end:
                break
            time.sleep(0.02)
        if sent < end:
            break  # the target stopped taking commands
        time.sleep(0.05)
    time.sleep(1.0)  # let the target work through what it took
    grown = rss_bytes() - before
    print(f"sent {sent} of {len(pdus)}, RSS grew {grown / MiB:.0f} MiB")
    assert grown < 96 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
    h.close()
    a.close()
    tgt.nvme_verify()


def test_iscsi_initiator_that_does_not_read(tgt: Target) -> None:
    """An initiator that sends reads and never reads the Data-In: once the target's send
    buffer is full it stops reading that initiator's commands (pause_writing), instead of
    queueing every Data-In; other initiators are served."""
    i = tgt.iscsi_initiator()
    i.login(IQN)
    assert i.sock is not None
    i.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    n = 128 * 1024
    cmds = []
    for k in range(1600):  # 200 MiB of reads asked for, in the CmdSN window as it moves on
        cdb = struct.pack(">BBIBHB", 0x28, 0, (k * 256) % 8192, 0, n // 512, 0).ljust(16, b"\0")
        cmds.append(struct.pack(">BBxxI8sIIII16s", 0x01, 0xC1, 0, bytes(8), 0x1000 + k, n,
                                i.cmd_sn + k, i.exp_stat_sn, cdb))
    pdus = b"".join(cmds)
    before = rss_bytes()
    i.sock.setblocking(False)
    sent = 0
    # Batches of half the queue depth, spaced so the target has answered the previous one
    # (its CmdSN window moves on as commands complete; commands past it would be dropped).
    batch = 16 * 48
    for _ in range(len(pdus) // batch):
        end = sent + batch
        for _ in range(20):
            try:
                sent += i.sock.send(pdus[sent:end])
            except BlockingIOError:
                pass
            if sent == end:
                break
            time.sleep(0.02)
        if sent < end:
            break  # the target stopped taking commands
        time.sleep(0.05)
    time.sleep(1.0)  # let the target work through what it took
    grown = rss_bytes() - before
    print(f"sent {sent // 48} of {len(cmds)} reads, RSS grew {grown / MiB:.0f} MiB")
    assert grown < 96 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
    tgt.iscsi_verify()
    i.close()
