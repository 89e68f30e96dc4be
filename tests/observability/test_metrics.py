"""The Prometheus endpoint: scraped during NVMe/TCP I/O its bdev counters move and, once
the I/O stops, equal bdev_get_iostat; it refuses non-loopback addresses unless allowed."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spydk.metrics import MetricsError, is_loopback, parse_address
from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness, TargetProcess, start_target
from tests.nvmf.helpers import SocketHost

from .conftest import NQN, free_port, nvmf_config


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return m[(name, tuple(sorted(labels.items())))]


class IoLoop(threading.Thread):
    """Writes and reads 4 KiB blocks over NVMe/TCP until stopped."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.stop_ev = threading.Event()
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            a = SocketHost("127.0.0.1", self.port)
            c = a.connect_admin(NQN)
            assert c.status == 0
            io = SocketHost("127.0.0.1", self.port)
            assert io.connect_io(NQN, c.dw0 & 0xFFFF).status == 0
            data = os.urandom(4096)
            i = 0
            while not self.stop_ev.is_set():
                lba = (i * 8) % 4096
                assert io.wait(io.h.write(1, lba, data, 512)).status == 0
                assert io.wait(io.h.read(1, lba, 8, 512)).status == 0
                self.done += 2
                i += 1
            io.close()
            a.close()
        except BaseException as e:  # reported by the test
            self.error = e


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[TargetProcess, int, int]]:
    port, mport = free_port(), free_port()
    t = start_target(tmp_path, nvmf_config(port), extra_args=["--metrics", f"127.0.0.1:{mport}"])
    try:
        yield t, port, mport
    finally:
        t.stop()


def test_scrape_during_io_moves_and_matches_iostat(target: tuple[TargetProcess, int, int]) -> None:
    t, port, mport = target
    t.client.call("bdev_enable_histogram", {"name": "Malloc0", "enable": True})
    at_enable = t.client.call("bdev_get_iostat", {"names": ["Malloc0"]})["bdevs"][0]
    ops_at_enable = at_enable["num_read_ops"] + at_enable["num_write_ops"]
    before = scrape(mport)
    # Examine modules (lvol, raid) may have read the bdev already: what matters is that the
    # counter moves with the I/O and equals bdev_get_iostat.
    assert value(before, "spydk_bdev_ops_total", bdev="Malloc0", type="read") == \
        t.client.call("bdev_get_iostat", {"names": ["Malloc0"]})["bdevs"][0]["num_read_ops"]
    assert value(before, "process_resident_memory_bytes") > 0
    loop = IoLoop(port)
    loop.start()
    try:
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            m = scrape(mport)  # scraped while the I/O runs
            r = value(m, "spydk_bdev_ops_total", bdev="Malloc0", type="read")
            if not seen or r > seen[-1]:
                seen.append(r)
            assert loop.error is None, loop.error
        assert len(seen) == 3 and seen[0] < seen[1] < seen[2], seen
        assert value(m, "spydk_nvmf_qpairs", poll_group="nvmf_tgt_poll_group_000", type="io") == 1
        # per controller and per connection, while they exist
        ctrl = [v for k, v in m.items() if k[0] == "spydk_nvmf_controller_commands_total"
                and dict(k[1])["type"] == "read" and dict(k[1])["nqn"] == NQN]
        assert len(ctrl) == 1 and ctrl[0] > 0
        conns = {dict(k[1])["qid"]: v for k, v in m.items() if k[0] == "spydk_nvmf_connection_commands_total"}
        assert conns["1"] > 0
    finally:
        loop.stop_ev.set()
        loop.join(30)
    assert loop.error is None, loop.error
    m = scrape(mport)
    st = t.client.call("bdev_get_iostat", {"names": ["Malloc0"]})
    b = st["bdevs"][0]
    rate = st["tick_rate"]
    assert value(m, "spydk_bdev_ops_total", bdev="Malloc0", type="read") == b["num_read_ops"] > 0
    assert value(m, "spydk_bdev_ops_total", bdev="Malloc0", type="write") == b["num_write_ops"] > 0
    assert value(m, "spydk_bdev_bytes_total", bdev="Malloc0", type="read") == b["bytes_read"]
    assert value(m, "spydk_bdev_bytes_total", bdev="Malloc0", type="write") == b["bytes_written"]
    assert value(m, "spydk_bdev_latency_seconds_total", bdev="Malloc0", type="read") == \
        pytest.approx(b["read_latency_ticks"] / rate)
    # The histogram counts every I/O the bdev completed since it was enabled.
    assert value(m, "spydk_bdev_io_latency_seconds_count", bdev="Malloc0") == \
        b["num_read_ops"] + b["num_write_ops"] - ops_at_enable
    assert value(m, "spydk_nvmf_commands_completed_total", poll_group="nvmf_tgt_poll_group_000") >= loop.done
    assert value(m, "spydk_bdev_queue_depth", bdev="Malloc0") == 0
    th = t.client.call("thread_get_stats")["threads"][0]
    assert value(m, "spydk_thread_busy_seconds_total", thread=th["name"], id=str(th["id"])) > 0
    assert value(m, "spydk_nvmf_subsystem_namespaces", nqn=NQN) == 1


def test_metrics_refuses_non_loopback_flag(tmp_path: Path) -> None:
    port = free_port()
    res = subprocess.run([sys.executable, "-m", "spydk.apps.main", "tgt", "-r", str(tmp_path / "s.sock"),
                          "--metrics", f"0.0.0.0:{port}"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "refusing to serve metrics on non-loopback address '0.0.0.0'" in res.stderr
    assert "--metrics-allow-remote" in res.stderr
    assert "Traceback" not in res.stderr


def test_metrics_rpcs_start_stop_and_refusal() -> None:
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        c = h.client
        assert c.call("metrics_get_exporter") == {"enabled": False}
        with pytest.raises(RpcError) as e:
            c.call("metrics_start_exporter", {"address": "0.0.0.0", "port": free_port()})
        assert e.value.code == -32602 and "allow_remote" in e.value.message
        info = c.call("metrics_start_exporter", {"address": "127.0.0.1", "port": 0})
        assert info["enabled"] and info["port"] > 0
        m = scrape(info["port"])
        assert value(m, "spydk_reactor_busy_seconds_total", lcore="0") >= 0
        with pytest.raises(RpcError) as e:
            c.call("metrics_start_exporter", {"port": 0})
        assert "metrics_stop_exporter" in e.value.message
        assert c.call("metrics_get_exporter")["scrapes"] == 1
        assert c.call("metrics_stop_exporter") is True
        assert c.call("metrics_stop_exporter") is False
        with pytest.raises(OSError):
            scrape(info["port"])
    finally:
        h.stop()


def test_address_helpers() -> None:
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":9") == ("127.0.0.1", 9)
    for bad in ("127.0.0.1", "1.2.3.4:x", "h:70000", "[::1]80"):
        with pytest.raises(MetricsError):
            parse_address(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.0.2.2")


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    import json
    import re
    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    wanted = {m for e in exprs for m in re.findall(r"\b((?:spydk|process)_[a-z_]+)\{", e)}
    assert len(wanted) > 15
    h = AppHarness(nvmf_config(free_port())).start()
    try:
        h.client.call("bdev_enable_histogram", {"name": "Malloc0", "enable": True})
        info = h.client.call("metrics_start_exporter", {"port": 0})
        with urllib.request.urlopen(f"http://127.0.0.1:{info['port']}/metrics", timeout=10) as r:
            text = r.read().decode()
        suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
        seen = {f.name + sfx for f in text_string_to_metric_families(text) for sfx in suffixes.get(f.type, ("",))}
    finally:
        h.stop()
    assert wanted <= seen, f"the dashboard asks for metrics nobody exports: {sorted(wanted - seen)}"


def test_digest_failures_counted_per_connection(target: tuple[TargetProcess, int, int]) -> None:
    t, port, mport = target
    a = SocketHost("127.0.0.1", port)
    c = a.connect_admin(NQN)
    io = SocketHost("127.0.0.1", port, data_digest=True)
    assert io.connect_io(NQN, c.dw0 & 0xFFFF).status == 0
    cid = io.h.write(1, 0, os.urandom(4096), 512)
    raw = bytearray(io.h.take_output())
    raw[-1] ^= 0xFF                          # the data digest closes the PDU
    io.sock.sendall(raw)
    while cid not in io.h.completions:
        io.h.feed(io.sock.recv(65536))
    assert io.h.completions.pop(cid).status != 0   # refused, the connection goes on
    assert io.wait(io.h.write(1, 0, os.urandom(4096), 512)).status == 0
    m = scrape(mport)
    dig = {dict(k[1])["qid"]: v for k, v in m.items() if k[0] == "spydk_nvmf_connection_digest_errors_total"}
    assert dig == {"0": 0, "1": 1}
    cmds = {dict(k[1])["qid"]: v for k, v in m.items() if k[0] == "spydk_nvmf_connection_commands_total"}
    assert cmds["1"] >= 2                    # Connect and the good write
    io.close()
    a.close()


def test_iscsi_metrics(tmp_path: Path) -> None:
    from tests.iscsi_tgt.conftest import IQN, iscsi_config
    from tests.iscsi_tgt.initiator import Initiator
    port = free_port()
    h = AppHarness(iscsi_config(port)).start()
    try:
        info = h.client.call("metrics_start_exporter", {"port": 0})
        i = Initiator("127.0.0.1", port)
        i.login(IQN)
        data = os.urandom(4096)
        assert i.write10(0, 0, data).status == 0
        assert i.read10(0, 0, 8).data == data
        m = scrape(info["port"])
        assert value(m, "spydk_iscsi_connections", state="running") == 1
        assert value(m, "spydk_scsi_lun_ops_total", target=IQN, lun="0", type="read") == 1
        assert value(m, "spydk_scsi_lun_bytes_total", target=IQN, lun="0", type="write") == 4096
        conns = [k for k in m if k[0] == "spydk_iscsi_connection_queue_depth"]
        assert len(conns) == 1 and m[conns[0]] == 0
        assert [v for k, v in m.items() if k[0] == "spydk_iscsi_connection_digest_errors_total"] == [0]
        i.logout()
    finally:
        h.stop()
