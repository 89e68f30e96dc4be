"""Trace points: masks and -e, the /dev/shm ring, the trace RPCs in SPDK's shape,
spdk_trace-like text and Chrome trace JSON."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk import trace
from spydk.apps.trace_tool import main as trace_main
from spydk.testing import AppHarness
from spydk.trace import ring, tpoints
from spydk.trace.report import Decoded, format_text, to_chrome
from spydk.trace.ring import TraceFormatError, parse

SPDK_ORDER = ["iscsi_conn", "scsi", "bdev", "nvmf_tcp", "thread", "nvmf_ctrlr"]


@pytest.fixture
def ring_file(tmp_path: Path) -> Iterator[str]:
    trace.reset()
    trace.configure("unit", shm_id=os.getpid() % 100000 + 700000, num_entries=8)
    yield trace.shm_path()
    trace.reset()
    trace.close()
    trace.configure()


def test_groups_keep_spdk_ids_and_names() -> None:
    assert tpoints.GROUP_NAMES[0x1] == "iscsi_conn" and tpoints.GROUP_NAMES[0x3] == "bdev"
    assert tpoints.GROUP_NAMES[0x5] == "nvmf_tcp" and tpoints.GROUP_NAMES[0xA] == "thread"
    by = {t.name: t.id for t in tpoints.TPOINTS}
    assert by["BDEV_IO_START"] == 0x3 * 64 and by["BDEV_IO_DONE"] == 0x3 * 64 + 1
    assert by["TCP_REQ_NEW"] == 0x5 * 64 and by["TCP_REQ_COMPLETED"] == 0x5 * 64 + 0x0c
    assert by["TCP_READ_DONE"] == 0x5 * 64 + 0x0f and by["ISCSI_TASK_QUEUE"] == 64 + 5
    assert by["SCSI_TASK_START"] == 2 * 64 + 1 and by["THREAD_IOCH_GET"] == 0xA * 64


def test_masks_and_bound_flags() -> None:
    trace.reset()
    ns: dict[str, object] = {}
    trace.bind_flag(ns, "_T", tpoints.GROUP_BDEV)
    trace.bind_flag(ns, "_ANY", None)
    assert ns == {"_T": False, "_ANY": False}
    trace.enable_group("nvmf_tcp")
    assert ns == {"_T": False, "_ANY": True} and trace.group_mask() == 0x20
    trace.set_tpoint_mask("bdev", 0x1)
    assert ns["_T"] is True and trace.tpoint_mask(tpoints.GROUP_BDEV) == 0x1
    trace.clear_tpoint_mask("bdev", 0x1)
    assert ns["_T"] is False
    trace.enable_group("all")
    assert trace.group_mask() == sum(1 << g for g in tpoints.GROUP_NAMES)
    trace.disable_group("all")
    assert ns == {"_T": False, "_ANY": False}
    with pytest.raises(trace.TraceError, match="unknown trace group 'nvmf_rdma'.*bdev"):
        trace.enable_group("nvmf_rdma")
    trace.apply_arg("0x8")
    assert trace.group_mask() == 0x8
    trace.apply_arg("nvmf_tcp:0x3,thread")
    assert trace.tpoint_mask(tpoints.GROUP_NVMF_TCP) == 0x3 and trace.group_mask() == 0x8 | 0x20 | 0x400
    trace.reset()
    assert trace.apply_arg("0xffff") == 0xffff & ~0x42e   # SPDK scripts' "everything": extra bits ignored
    assert trace.group_mask() == 0x42e
    with pytest.raises(trace.TraceError, match="not a hex number"):
        trace.apply_arg("bdev:zz")
    trace.reset()


def test_ring_records_wrap_and_parse(ring_file: str) -> None:
    trace.record(tpoints.BDEV_IO_START, 1, 77, 4096, 1, 0, 8)  # off: nothing written
    assert not os.path.exists(ring_file)
    trace.enable_group("bdev")
    for i in range(11):
        trace.record(tpoints.BDEV_IO_START, 1, 100 + i, 4096, 1, 0, i, s=b"Malloc0-with-a-long-name")
    with open(ring_file, "rb") as f:
        tf = parse(f.read())
    assert tf.num_entries == 8 and tf.tsc_rate == 1_000_000_000 and tf.pid == os.getpid()
    assert [e.object_id for e in tf.entries] == list(range(103, 111))   # the newest 8, in order
    assert tf.entries[0].string == "Malloc0-with-a-l" and tf.entries[0].size == 4096
    trace.clear()
    with open(ring_file, "rb") as f:
        assert parse(f.read()).entries == []
    trace.close()
    assert not os.path.exists(ring_file)


def test_parse_rejects_bad_files() -> None:
    with pytest.raises(TraceFormatError, match="shorter"):
        parse(b"x" * 100)
    with pytest.raises(TraceFormatError, match="bad magic"):
        parse(b"x" * ring.ENTRIES_OFFSET)
    buf = bytearray(ring.ring_size(4))
    ring.write_header(buf, 4, 10**9, 1, 0, {"groups": {}, "tpoints": []})
    parse(bytes(buf))
    with pytest.raises(TraceFormatError, match="truncated"):
        parse(bytes(buf[:-1]))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=ring.ENTRIES_OFFSET + 400))
def test_parse_never_crashes_on_garbage(data: bytes) -> None:
    buf = bytearray(ring.ring_size(4))
    ring.write_header(buf, 4, 10**9, 1, 0, {"groups": {}, "tpoints": [], "owner_prefix": {},
                                            "object_prefix": {}})
    buf[ring.ENTRIES_OFFSET:ring.ENTRIES_OFFSET + len(data)] = data[:ring.ring_size(4) - ring.ENTRIES_OFFSET]
    for blob in (bytes(buf), data):
        try:
            tf = parse(blob)
        except (TraceFormatError, ValueError):
            continue
        list(format_text(tf))
        to_chrome(tf)


def _io_path(tmp_path: Path) -> str:
    """Records of two I/Os through transport, controller and bdev, as the layers write them."""
    trace.reset()
    trace.configure("unit", shm_id=os.getpid() % 100000 + 800000, num_entries=256)
    trace.enable_group("all")
    for n in range(2):
        req, cmd, bio = 1000 + n, 2000 + n, 3000 + n
        trace.record(tpoints.TCP_REQ_NEW, 5, req, 0, 0x1234)
        trace.record(tpoints.TCP_REQ_RDY_TO_EXECUTE, 5, req, 0, 0x1234)
        trace.record(tpoints.TCP_REQ_EXECUTING, 5, req, 0, 0x1234)
        trace.record(tpoints.NVMF_CTRLR_IO_START, 1, cmd, 4096, 2, req, 1, s=b"cnode1")
        trace.record(tpoints.BDEV_IO_START, 3, bio, 4096, 1, cmd, 8 * n, s=b"Malloc0")
        trace.record(tpoints.BDEV_IO_DONE, 3, bio, 0, cmd)
        trace.record(tpoints.NVMF_CTRLR_IO_DONE, 1, cmd, 0, 0)
        trace.record(tpoints.TCP_REQ_EXECUTED, 5, req, 0, 0x1234)
        trace.record(tpoints.TCP_REQ_COMPLETED, 5, req, 0, 0x1234)
    trace.record(tpoints.POLLER_REGISTER, 1, 0, 0, 9, 0, s=b"poller")
    out = str(tmp_path / "copy.trace")
    with open(trace.shm_path(), "rb") as src, open(out, "wb") as dst:
        dst.write(src.read())
    trace.reset()
    trace.close()
    trace.configure()
    return out


def test_text_and_chrome_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _io_path(tmp_path)
    assert trace_main(["-f", path]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "TSC Rate: 1000000000" and text[1] == "Trace Size of lcore (0): 19"
    new = next(line for line in text if "TCP_REQ_NEW" in line)
    assert new.startswith(" 0:      0.000 ") and "id:    r0" in new and "qpair: 0x1234" in new
    bstart = next(line for line in text if "BDEV_IO_START" in line)
    assert "size:   4096" in bstart and "id:    i0 (c0)" in bstart and "name:  Malloc0" in bstart
    done = next(line for line in text if "TCP_REQ_COMPLETED" in line)
    assert "time: " in done
    out = tmp_path / "trace.json"
    assert trace_main(["-f", path, "--chrome", str(out)]) == 0
    doc = json.loads(out.read_text())
    evs = doc["traceEvents"]
    assert all({"ph", "name", "pid"} <= e.keys() for e in evs)
    begins = [e for e in evs if e["ph"] == "b" and "object" in e.get("args", {})]
    layers = {(e["args"]["io"], e["args"]["layer"]) for e in begins}
    assert layers == {(io, layer) for io in ("r0", "r1") for layer in ("nvmf_tcp", "nvmf_ctrlr", "bdev")}
    bdev = [e for e in begins if e["args"]["layer"] == "bdev"]
    assert {e["args"]["parent"] for e in bdev} == {"c0", "c1"}
    # every async begin has its end with the same id and name
    opened = {}
    for e in evs:
        if e["ph"] == "b":
            opened[(e["id"], e["name"])] = opened.get((e["id"], e["name"]), 0) + 1
        elif e["ph"] == "e":
            opened[(e["id"], e["name"])] -= 1
    assert set(opened.values()) == {0}
    assert trace_main(["-f", path, "-j"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 19


def test_decoded_links_parents(tmp_path: Path) -> None:
    with open(_io_path(tmp_path), "rb") as f:
        dec = Decoded(parse(f.read()))
    bios = [s for s in dec.spans if s.group == "bdev"]
    assert [dec.root(s).label for s in bios] == ["r0", "r1"]


def test_trace_tool_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        trace_main(["-f", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="-p PID or -i SHM_ID"):
        trace_main(["-s", "spydk_tgt"])
    (tmp_path / "bad").write_bytes(b"\0" * 20000)
    with pytest.raises(SystemExit, match="not a spydk trace file"):
        trace_main(["-f", str(tmp_path / "bad")])


def test_trace_rpcs_shape() -> None:
    h = AppHarness(subsystems=("bdev",)).start()
    try:
        c = h.client
        info = c.call("trace_get_info")
        assert list(info)[:2] == ["tpoint_shm_path", "tpoint_group_mask"]
        assert list(info)[2:] == SPDK_ORDER
        assert info["tpoint_shm_path"] == f"/dev/shm/harness_trace.pid{os.getpid()}"
        assert info["bdev"] == {"mask": "0x8", "tpoint_mask": "0x0"}
        assert c.call("trace_enable_tpoint_group", {"name": "bdev"}) is True
        gm = c.call("trace_get_tpoint_group_mask")
        assert gm["tpoint_group_mask"] == "0x8" and gm["bdev"] == {"enabled": True, "mask": "0x8"}
        assert c.call("trace_set_tpoint_mask", {"name": "nvmf_tcp", "tpoint_mask": 0x41}) is True
        assert c.call("trace_get_info")["nvmf_tcp"]["tpoint_mask"] == "0x41"
        assert c.call("trace_clear_tpoint_mask", {"name": "nvmf_tcp", "tpoint_mask": 0x1}) is True
        assert c.call("trace_get_info")["nvmf_tcp"]["tpoint_mask"] == "0x40"
        with pytest.raises(Exception, match="unknown trace group 'nope'"):
            c.call("trace_enable_tpoint_group", {"name": "nope"})
        assert c.call("trace_disable_tpoint_group", {"name": "all"}) is True
        assert c.call("trace_get_tpoint_group_mask")["tpoint_group_mask"] == "0x0"
        assert c.call("trace_clear") is True
    finally:
        h.stop()
        trace.reset()


def test_thread_group_records_pollers_and_channels(rh, ring_file: str) -> None:  # type: ignore[no-untyped-def]
    from spydk.thread.io_channel import get_io_channel, io_device_register, put_io_channel
    trace.configure("unit", shm_id=os.getpid() % 100000 + 900000, num_entries=64)
    trace.enable_group("thread")
    dev = object()

    def work() -> None:
        p = rh.thread.poller_register(lambda _a: 0, None, 1000, name="tick")
        p.pause()
        p.resume()
        p.unregister()
        io_device_register(dev, lambda d, ch: None, lambda d, ch: None, name="devx")
        ch = get_io_channel(dev)
        put_io_channel(ch)
    rh.thread.send_msg(work)
    rh.drain()
    with open(trace.shm_path(), "rb") as f:
        tf = parse(f.read())
    names = [tpoints.TPOINTS_BY_ID[e.tpoint_id].name for e in tf.entries]
    assert names[:4] == ["POLLER_REGISTER", "POLLER_PAUSE", "POLLER_RESUME", "POLLER_UNREGISTER"]
    assert names[4:] == ["THREAD_IOCH_GET", "THREAD_IOCH_PUT"]
    assert tf.entries[0].string == "tick" and tf.entries[0].thread_id == rh.thread.id
    assert tf.entries[4].string == "devx" and tf.entries[4].args[0] == 1


def test_nvme_tcp_run_traces_each_io_through_the_layers(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from spydk.testing import start_target
    from tests.nvmf.helpers import SocketHost

    from .conftest import NQN, free_port, nvmf_config
    port = free_port()
    t = start_target(tmp_path, nvmf_config(port), app="nvmf_tgt", extra_args=["-e", "nvmf_tcp,nvmf_ctrlr,bdev"])
    try:
        info = t.client.call("trace_get_info")
        assert info["tpoint_group_mask"] == "0x100000028"
        a = SocketHost("127.0.0.1", port)
        c = a.connect_admin(NQN)
        io = SocketHost("127.0.0.1", port)
        assert io.connect_io(NQN, c.dw0 & 0xFFFF).status == 0
        data = os.urandom(4096)
        for i in range(4):
            assert io.wait(io.h.write(1, 8 * i, data, 512)).status == 0
            r = io.wait(io.h.read(1, 8 * i, 8, 512))
            assert r.status == 0 and r.data == data
        io.close()
        a.close()
        copy = tmp_path / "run.trace"
        shutil.copy(info["tpoint_shm_path"], copy)
    finally:
        t.stop()
    assert not os.path.exists(info["tpoint_shm_path"])  # removed at exit, as SPDK does
    out = tmp_path / "run.json"
    res = subprocess.run([sys.executable, "-m", "spydk.apps.main", "trace", "-f", str(copy), "--chrome", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    evs = json.loads(out.read_text())["traceEvents"]
    spans = [e for e in evs if e["ph"] == "b" and "object" in e.get("args", {})]
    ctrl_io = {e["args"]["io"] for e in spans if e["args"]["layer"] == "nvmf_ctrlr" and e["args"]["opc"] in (1, 2)}
    # bdev I/Os without a parent are examine reads at start-up (lvol, raid look for their
    # super blocks); the ones an NVMe command started carry it as parent.
    started = [e for e in spans if e["args"]["layer"] == "bdev" and e["args"].get("parent", "").startswith("c")]
    bdev_io = {e["args"]["io"] for e in started}
    assert len(ctrl_io) == 8 and bdev_io == ctrl_io
    for e in started:
        if e["args"]["layer"] == "bdev":
            assert e["args"]["parent"].startswith("c") and e["args"]["name"] == "Malloc0"
            assert e["args"]["size"] == 4096
    states = {e["name"] for e in evs if e["ph"] == "b" and e.get("cat") == "nvmf_tcp"}
    assert {"TCP_REQ_NEW", "TCP_REQ_EXECUTING", "TCP_REQ_EXECUTED", "TCP_REQ_TRANSFER_C2H"} <= states
    text = subprocess.run([sys.executable, "-m", "spydk.apps.main", "trace", "-f", str(copy)],
                          capture_output=True, text=True, timeout=60).stdout
    assert "BDEV_IO_START" in text and "NVMF_CTRLR_IO_START" in text and "TCP_REQ_COMPLETED" in text


def test_iscsi_run_traces_tasks_through_scsi_and_bdev() -> None:
    from tests.iscsi_tgt.conftest import IQN, iscsi_config
    from tests.iscsi_tgt.initiator import Initiator

    from .conftest import free_port
    port = free_port()
    h = AppHarness(iscsi_config(port)).start()
    try:
        for g in ("iscsi_conn", "scsi", "bdev"):
            h.client.call("trace_enable_tpoint_group", {"name": g})
        i = Initiator("127.0.0.1", port)
        i.login(IQN)
        data = os.urandom(4096)
        for n in range(3):
            assert i.write10(0, 8 * n, data).status == 0
            assert i.read10(0, 8 * n, 8).data == data
        i.logout()
        with open(h.client.call("trace_get_info")["tpoint_shm_path"], "rb") as f:
            dec = Decoded(parse(f.read()))
    finally:
        h.stop()
        trace.reset()
    tasks = [s for s in dec.spans if s.group == "iscsi_conn"]
    names = {dec.tps[r.tpoint_id].name for s in tasks for r in s.records}
    assert {"ISCSI_TASK_QUEUE", "SCSI_TASK_START", "SCSI_TASK_DONE", "ISCSI_TASK_DONE"} <= names
    bios = [s for s in dec.spans if s.group == "bdev"]
    assert len(bios) >= 6
    assert all(s.parent is not None and s.parent.group == "iscsi_conn" for s in bios)
