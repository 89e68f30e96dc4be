"""The nvmf subsystem in a running app: RPCs, real TCP connections to a Malloc namespace,
malformed PDUs, connection churn (no leaks), save_config round trip."""
from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spydk.nvme import spec
from spydk.nvme.spec import IdentifyCns, LogPageId
from spydk.nvme.spec.tcp import PduType
from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness, start_target
from tests.nvmf.helpers import SocketHost

NQN = "nqn.2016-06.io.spdk:cnode1"
DISC = "nqn.2014-08.org.nvmexpress.discovery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(port: int) -> dict[str, Any]:
    addr = {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}
    return {"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 32768,
                                                        "block_size": 512}}]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {
                "nqn": NQN, "allow_any_host": True, "serial_number": "SPDYK42",
                "model_number": "spydk model"}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": addr}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": DISC, "listen_address": addr}},
        ]}]}


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[AppHarness, int]]:
    port = free_port()
    h = AppHarness(config(port), subsystems=("bdev", "nvmf")).start()
    try:
        yield h, port
    finally:
        h.stop()


def _ctrl(port: int, **kw: bool) -> tuple[SocketHost, int]:
    a = SocketHost("127.0.0.1", port, **kw)
    c = a.connect_admin(NQN)
    assert c.status == 0, c
    return a, c.dw0 & 0xFFFF


def test_get_subsystems_shape(app: tuple[AppHarness, int]) -> None:
    h, port = app
    subs = h.client.call("nvmf_get_subsystems")
    disc = next(s for s in subs if s["nqn"] == DISC)
    assert disc["subtype"] == "Discovery"
    s = next(s for s in subs if s["nqn"] == NQN)
    assert s["subtype"] == "NVMe" and s["serial_number"] == "SPDYK42"
    assert s["model_number"] == "spydk model" and s["allow_any_host"] is True
    assert s["listen_addresses"] == [{"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1",
                                      "trsvcid": str(port)}]
    ns = s["namespaces"][0]
    assert ns["nsid"] == 1 and ns["bdev_name"] == "Malloc0" and len(ns["uuid"]) == 36
    tr = h.client.call("nvmf_get_transports")
    assert tr[0]["trtype"] == "TCP" and tr[0]["max_queue_depth"] == 128 and tr[0]["c2h_success"] is True
    lst = h.client.call("nvmf_subsystem_get_listeners", {"nqn": NQN})
    assert lst[0]["ana_state"] == "optimized"


def test_end_to_end_over_tcp(app: tuple[AppHarness, int]) -> None:
    h, port = app
    a, cntlid = _ctrl(port)
    idc = a.wait(a.h.identify(IdentifyCns.CONTROLLER)).data
    assert idc is not None and idc[4:24].decode().rstrip() == "SPDYK42"
    ns = a.wait(a.h.identify(IdentifyCns.NAMESPACE, nsid=1)).data
    assert ns is not None and struct.unpack_from("<Q", ns)[0] == 32768
    io = SocketHost("127.0.0.1", port, header_digest=True, data_digest=True)
    assert io.connect_io(NQN, cntlid).status == 0
    for size in (512, 4096, 131072):
        data = os.urandom(size)
        assert io.wait(io.h.write(1, 64, data, 512)).status == 0
        r = io.wait(io.h.read(1, 64, size // 512, 512))
        assert r.status == 0 and r.data == data
    ctrls = h.client.call("nvmf_subsystem_get_controllers", {"nqn": NQN})
    assert any(c["cntlid"] == cntlid and c["num_io_qpairs"] == 1 for c in ctrls)
    qps = h.client.call("nvmf_subsystem_get_qpairs", {"nqn": NQN})
    assert {q["qid"] for q in qps if q["cntlid"] == cntlid} == {0, 1}
    assert qps[0]["listen_address"]["trsvcid"] == str(port)
    io.close()
    a.close()


def test_discovery_over_tcp(app: tuple[AppHarness, int]) -> None:
    _, port = app
    d = SocketHost("127.0.0.1", port)
    assert d.connect_admin(DISC).status == 0
    page = d.wait(d.h.get_log_page(LogPageId.DISCOVERY, 4096)).data
    assert page is not None
    numrec = struct.unpack_from("<Q", page, 8)[0]
    nqns = {page[1024 * (i + 1) + 256:1024 * (i + 1) + 512].split(b"\0")[0].decode() for i in range(numrec)}
    assert NQN in nqns and DISC in nqns
    d.close()


def test_namespace_hot_add_sends_aen(app: tuple[AppHarness, int]) -> None:
    h, port = app
    a, _ = _ctrl(port)
    a.wait(a.h.admin(spec.AdminOpcode.SET_FEATURES, cdw10=spec.FeatureId.ASYNC_EVENT_CONFIG,
                     cdw11=1 << 8))
    aer = a.h.admin(spec.AdminOpcode.ASYNC_EVENT_REQUEST)
    a.flush()
    h.client.call("bdev_malloc_create", {"name": "Malloc9", "num_blocks": 1024, "block_size": 512})
    nsid = h.client.call("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "Malloc9"}})
    c = a.wait(aer)
    assert (c.dw0 >> 16) & 0xFF == LogPageId.CHANGED_NS_LIST
    assert h.client.call("nvmf_subsystem_remove_ns", {"nqn": NQN, "nsid": nsid}) is True
    h.client.call("bdev_malloc_delete", {"name": "Malloc9"})
    a.close()


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    icreq = struct.pack("<BBBBIHBBI112x", PduType.IC_REQ, 0, 128, 0, 128, 0, 0, 0, 0)
    s.sendall(icreq)
    assert len(s.recv(128)) == 128
    return s


def _expect_termreq(s: socket.socket) -> None:
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    assert got and got[0] == PduType.C2H_TERM_REQ, got[:8]


@pytest.mark.parametrize("pdu", [
    struct.pack("<BBBBI", 0x04, 0, 72, 0, 40) + bytes(64),           # PLEN shorter than header
    struct.pack("<BBBBI", 0x0B, 0, 24, 0, 24) + bytes(16),           # unknown type
    struct.pack("<BBBBI", 0x04, 0, 72, 72, 72 + (1 << 30)) + bytes(64),  # 1 GB in-capsule claim
    struct.pack("<BBBBIHHII4x", 0x06, 0, 24, 24, 48, 1, 77, 0, 24) + bytes(24),  # H2C for no R2T
    struct.pack("<BBBBI", 0x04, 0, 70, 0, 70) + bytes(62),           # wrong HLEN
])
def test_malformed_pdu_terminates_only_that_connection(app: tuple[AppHarness, int], pdu: bytes) -> None:
    _, port = app
    good, cntlid = _ctrl(port)
    bad = _raw(port)
    bad.sendall(pdu)
    _expect_termreq(bad)
    bad.close()
    assert good.wait(good.h.identify(IdentifyCns.CONTROLLER)).status == 0
    good.close()


def test_bad_header_digest_terminates(app: tuple[AppHarness, int]) -> None:
    _, port = app
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(struct.pack("<BBBBIHBBI112x", PduType.IC_REQ, 0, 128, 0, 128, 0, 0, 1, 0))
    assert len(s.recv(128)) == 128
    sqe = spec.build_sqe(spec.AdminOpcode.KEEP_ALIVE, 1)
    s.sendall(struct.pack("<BBBBI", 0x04, 0x01, 72, 0, 76) + sqe + b"\xde\xad\xbe\xef")
    _expect_termreq(s)
    s.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _stats(h: AppHarness) -> dict[str, Any]:
    return h.client.call("nvmf_get_stats")["poll_groups"][0]  # type: ignore[no-any-return]


def test_500_connections_leave_nothing_behind(app: tuple[AppHarness, int]) -> None:
    h, port = app
    from spydk.bdev.iobuf import pool
    before_fds = _fds()
    before = _stats(h)
    created = pool.created
    for i in range(500):
        a = SocketHost("127.0.0.1", port)
        c = a.connect_admin(NQN)
        assert c.status == 0
        if i % 50 == 0:
            io = SocketHost("127.0.0.1", port)
            io.connect_io(NQN, c.dw0 & 0xFFFF)
            assert io.wait(io.h.write(1, 0, os.urandom(8192), 512)).status == 0
            io.close()
        a.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = _stats(h)
        if st["current_admin_qpairs"] == before["current_admin_qpairs"] and \
                st["current_io_qpairs"] == before["current_io_qpairs"] and _fds() <= before_fds:
            break
        time.sleep(0.05)
    st = _stats(h)
    assert st["current_admin_qpairs"] == before["current_admin_qpairs"]
    assert st["current_io_qpairs"] == before["current_io_qpairs"]
    assert st["admin_qpairs"] - before["admin_qpairs"] == 500
    assert _fds() <= before_fds
    assert not h.client.call("nvmf_subsystem_get_controllers", {"nqn": NQN})
    assert st["transports"][0]["connections"] == before["transports"][0]["connections"]
    assert pool.created - created <= 64  # buffers come back to the pool


def test_save_config_round_trip(app: tuple[AppHarness, int], tmp_path: Any) -> None:
    h, port = app
    h.client.call("nvmf_subsystem_add_host", {"nqn": NQN, "host": "nqn.2014-08.org.example:h1"})
    h.client.call("nvmf_discovery_add_referral", {"address": {"trtype": "TCP", "traddr": "10.0.0.9",
                                                               "trsvcid": "4420"}})
    def save(hh: AppHarness) -> dict[str, Any]:
        return {"subsystems": [{"subsystem": n, "config": hh.client.call("framework_get_config", {"name": n})}
                               for n in ("bdev", "nvmf")]}

    cfg = save(h)
    nvmf = cfg["subsystems"][1]["config"]
    methods = [e["method"] for e in nvmf]
    assert methods[:3] == ["nvmf_set_config", "nvmf_set_max_subsystems", "nvmf_create_transport"]
    assert "nvmf_subsystem_add_host" in methods and "nvmf_discovery_add_referral" in methods
    # replay in a fresh `spydk nvmf_tgt` process on another port: the same dump comes back
    port2 = free_port()
    cfg2 = json.loads(json.dumps(cfg).replace(f'"{port}"', f'"{port2}"'))
    with start_target(tmp_path, cfg2, app="nvmf_tgt") as t:
        again = t.client.call("framework_get_config", {"name": "nvmf"})
    assert again == cfg2["subsystems"][1]["config"]
    h.client.call("nvmf_subsystem_remove_host", {"nqn": NQN, "host": "nqn.2014-08.org.example:h1"})
    h.client.call("nvmf_discovery_remove_referral", {"address": {"trtype": "TCP", "traddr": "10.0.0.9",
                                                                  "trsvcid": "4420"}})


@pytest.mark.parametrize("method,params,needle", [
    ("nvmf_create_subsystem", {"nqn": "iqn.bad"}, "nqn."),
    ("nvmf_create_subsystem", {"nqn": NQN}, "already exists"),
    ("nvmf_create_subsystem", {"nqn": "nqn.2016-06.io.spdk:x", "serial_number": "x" * 21}, "serial_number"),
    ("nvmf_create_subsystem", {"nqn": "nqn.2016-06.io.spdk:x", "max_cntlid": 70000}, "max_cntlid"),
    ("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "NoSuchBdev"}}, "namespace.bdev_name"),
    ("nvmf_subsystem_add_ns", {"nqn": NQN, "namespace": {"bdev_name": "Malloc0", "nguid": "zz"}}, "nguid"),
    ("nvmf_subsystem_add_ns", {"nqn": NQN}, "namespace"),
    ("nvmf_subsystem_add_ns", {"nqn": "nqn.2016-06.io.spdk:none", "namespace": {"bdev_name": "Malloc0"}}, "nqn"),
    ("nvmf_subsystem_remove_ns", {"nqn": NQN, "nsid": 77}, "nsid"),
    ("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": {"trtype": "RDMA", "traddr": "1.2.3.4"}},
     "trtype"),
    ("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": {"trtype": "TCP"}}, "traddr"),
    ("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1",
                                                                    "trsvcid": "abc"}}, "trsvcid"),
    ("nvmf_create_transport", {"trtype": "TCP", "max_queue_depth": "x"}, "max_queue_depth"),
    ("nvmf_create_transport", {"trtype": "TCP", "bogus": 1}, "bogus"),
    ("nvmf_subsystem_add_host", {"nqn": NQN, "host": "not-an-nqn"}, "host"),
    ("nvmf_subsystem_listener_set_ana_state", {"nqn": NQN, "listen_address": {
        "trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "1"}, "ana_state": "weird"}, "ana_state"),
])
def test_rpc_bad_parameters(app: tuple[AppHarness, int], method: str, params: dict[str, Any],
                            needle: str) -> None:
    h, _ = app
    with pytest.raises(RpcError) as ei:
        h.client.call(method, params)
    assert needle in ei.value.message, ei.value.message


def test_ipv6_listener_and_removal(app: tuple[AppHarness, int]) -> None:
    h, _ = app
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    p = free_port()
    addr = {"trtype": "TCP", "adrfam": "IPv6", "traddr": "::1", "trsvcid": str(p)}
    try:
        h.client.call("nvmf_subsystem_add_listener", {"nqn": NQN, "listen_address": addr})
    except RpcError as e:
        pytest.skip(f"IPv6 loopback unavailable: {e.message}")
    a = SocketHost("::1", p)
    assert a.connect_admin(NQN).status == 0
    a.close()
    assert h.client.call("nvmf_subsystem_remove_listener", {"nqn": NQN, "listen_address": addr}) is True
    with pytest.raises(OSError):
        socket.create_connection(("::1", p), timeout=2).close()


def test_refused_host_over_tcp(app: tuple[AppHarness, int]) -> None:
    h, port = app
    h.client.call("nvmf_subsystem_allow_any_host", {"nqn": NQN, "allow_any_host": False})
    try:
        a = SocketHost("127.0.0.1", port)
        c = a.connect_admin(NQN, hostnqn="nqn.2014-08.org.example:stranger")
        assert c.sct == 1 and c.sc == spec.FabricsStatus.CONNECT_INVALID_HOST
        a.close()
    finally:
        h.client.call("nvmf_subsystem_allow_any_host", {"nqn": NQN, "allow_any_host": True})
