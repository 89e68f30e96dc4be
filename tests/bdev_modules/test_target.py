"""Out of process: RPC parameter checks, save_config replay of every module, aio/uring data
across a restart, SPDK's own rpc client (spdk-rpc from PyPI) against spydk."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spydk.rpc.errors import RpcError
from spydk.testing import start_target

SPDK_RPC = Path(sys.executable).parent / "spdk-rpc"  # installed beside this interpreter


def _img(tmp_path: Path, name: str, size: int = 4 << 20) -> str:
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)
    return str(p)


def _err(c: Any, method: str, **params: Any) -> str:
    with pytest.raises(RpcError) as ei:
        c.call(method, params)
    return str(ei.value)


def _bdevs(c: Any) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in c.call("bdev_get_bdevs")}


def _one_of_each(c: Any, tmp_path: Path) -> None:
    c.call("bdev_malloc_create", {"name": "Mal0", "block_size": 512, "num_blocks": 4096})
    c.call("bdev_malloc_create", {"name": "Mal1", "block_size": 512, "num_blocks": 4096})
    c.call("bdev_malloc_create", {"name": "Mal2", "block_size": 512, "num_blocks": 4096})
    c.call("bdev_null_create", {"name": "Null0", "block_size": 512, "num_blocks": 4096})
    c.call("bdev_aio_create", {"name": "Aio0", "filename": _img(tmp_path, "aio.img")})
    c.call("bdev_uring_create", {"name": "Ur0", "filename": _img(tmp_path, "ur.img"), "block_size": 512})
    c.call("bdev_passthru_create", {"name": "PT0", "base_bdev_name": "Mal0"})
    c.call("bdev_delay_create", {"name": "Dly0", "base_bdev_name": "Mal1", "avg_read_latency": 10,
                                 "p99_read_latency": 20, "avg_write_latency": 30, "p99_write_latency": 40})
    assert c.call("bdev_error_create", {"base_name": "Null0"}) == "EE_Null0"
    assert c.call("bdev_split_create", {"base_bdev": "Mal2", "split_count": 2}) == ["Mal2p0", "Mal2p1"]


def _shape(bdevs: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {n: (b["block_size"], b["num_blocks"], b["uuid"], b["product_name"], b["claimed"])
            for n, b in bdevs.items()}


def test_save_config_replays_every_module(tmp_path: Path) -> None:
    with start_target(tmp_path / "a", config={"subsystems": []}) as t:
        _one_of_each(t.client, tmp_path)
        t.client.call("bdev_wait_for_examine")
        before = _bdevs(t.client)
        cfg = json.loads(t.rpc("save_config").stdout)
    assert {"Aio0", "Ur0", "PT0", "Dly0", "EE_Null0", "Mal2p0", "Mal2p1"} <= set(before)
    assert before["Aio0"]["driver_specific"]["aio"]["filename"].endswith("aio.img")
    with start_target(tmp_path / "b", config=cfg) as t2:
        t2.client.call("bdev_wait_for_examine")
        after = _bdevs(t2.client)
        cfg2 = json.loads(t2.rpc("save_config").stdout)
    assert _shape(after) == _shape(before)
    bdev_cfg = [s for s in cfg["subsystems"] if s["subsystem"] == "bdev"]
    bdev_cfg2 = [s for s in cfg2["subsystems"] if s["subsystem"] == "bdev"]
    assert bdev_cfg == bdev_cfg2


def test_rpc_refuses_bad_parameters(tmp_path: Path) -> None:
    img = _img(tmp_path, "x.img")
    with start_target(tmp_path / "t", config={"subsystems": []}) as t:
        c = t.client
        assert "nope.img" in _err(c, "bdev_aio_create", name="A", filename=str(tmp_path / "nope.img"))
        assert "nope.img" in _err(c, "bdev_uring_create", name="U", filename=str(tmp_path / "nope.img"))
        assert "block_size" in _err(c, "bdev_aio_create", name="A", filename=img, block_size=1000)
        assert "block_size" in _err(c, "bdev_uring_create", name="U", filename=img, block_size=3000)
        assert "block_size" in _err(c, "bdev_aio_create", name="A", filename=img, block_size=-512)
        c.call("bdev_aio_create", {"name": "A", "filename": img})
        assert "already exists" in _err(c, "bdev_uring_create", name="A", filename=img)
        c.call("bdev_malloc_create", {"name": "M", "block_size": 512, "num_blocks": 2048})
        assert "split_count" in _err(c, "bdev_split_create", base_bdev="M", split_count=-1)
        assert "split_size_mb" in _err(c, "bdev_split_create", base_bdev="M", split_count=4, split_size_mb=2)
        assert "p99_read_latency" in _err(c, "bdev_delay_create", name="D", base_bdev_name="M",
                                          avg_read_latency=5, p99_read_latency=1,
                                          avg_write_latency=1, p99_write_latency=1)
        assert "avg_write_latency" in _err(c, "bdev_delay_create", name="D", base_bdev_name="M",
                                           avg_read_latency=5, p99_read_latency=6,
                                           avg_write_latency=-1, p99_write_latency=1)
        assert "base_name" in _err(c, "bdev_error_create", base_name="ghost")
        assert "latency_type" in _err(c, "bdev_delay_update_latency", delay_bdev_name="x",
                                      latency_type="bogus", latency_us=1)
        assert "error_type" in _err(c, "bdev_error_inject_error", name="x", io_type="read", error_type="oops")
        c.call("bdev_passthru_create", {"name": "P", "base_bdev_name": "M"})
        assert "already exists" in _err(c, "bdev_passthru_create", name="P", base_bdev_name="M")
        assert "claimed" in _err(c, "bdev_passthru_create", name="P2", base_bdev_name="M")
        for m, n in (("bdev_aio_delete", "zz"), ("bdev_uring_delete", "zz"), ("bdev_passthru_delete", "zz"),
                     ("bdev_delay_delete", "zz"), ("bdev_error_delete", "zz")):
            assert "zz" in _err(c, m, name=n)
        assert "zz" in _err(c, "bdev_split_delete", base_bdev="zz")


def test_file_data_survives_restart(tmp_path: Path) -> None:
    """Write through one process, let it exit, read back through a new process."""
    imgs = {"Aio0": _img(tmp_path, "a.img", 1 << 20), "Ur0": _img(tmp_path, "u.img", 1 << 20)}
    cfg = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_aio_create", "params": {"name": "Aio0", "filename": imgs["Aio0"], "block_size": 512}},
        {"method": "bdev_uring_create", "params": {"name": "Ur0", "filename": imgs["Ur0"], "block_size": 512}},
    ]}]}
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    pattern = tmp_path / "pattern.bin"
    pattern.write_bytes(os.urandom(64 * 1024))

    def phase(mode: str) -> None:
        # This file run as a script (see __main__ below) is one target process doing I/O.
        r = subprocess.run([sys.executable, __file__, mode, str(cfg_path), str(pattern)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    phase("write")
    for name, path in imgs.items():
        with open(path, "rb") as f:
            f.seek(8 * 512)
            assert f.read(64 * 1024) == pattern.read_bytes(), name
    phase("read")  # exits non-zero when what it reads differs from the pattern


def _rw_in_app(h: Any, names: tuple[str, ...], data: bytes, write: bool) -> dict[str, bytes]:
    """Write or read ``data`` at block 8 of each bdev, on the app thread of ``h``."""
    import time

    from spydk.bdev import open_ext

    out: dict[str, bytes] = {}
    for n in names:
        st: dict[str, Any] = {}
        buf = bytearray(data) if write else bytearray(len(data))

        def submit(n: str = n, st: dict[str, Any] = st, buf: bytearray = buf) -> int:
            desc = open_ext(n, True, lambda *a: None)
            ch = desc.get_io_channel()
            st["desc"], st["ch"] = desc, ch
            fn = desc.write_blocks if write else desc.read_blocks
            return fn(ch, buf, 8, len(data) // 512, lambda io, ok, a: st.setdefault("ok", ok))  # type: ignore[no-any-return]
        assert h.call_on_app_thread(submit) == 0
        deadline = time.monotonic() + 10
        while "ok" not in st and time.monotonic() < deadline:
            time.sleep(0.01)
        assert st.get("ok") is True

        def close(st: dict[str, Any] = st) -> None:
            st["desc"].put_io_channel(st["ch"])
            st["desc"].close()
        h.call_on_app_thread(close)
        out[n] = bytes(buf)
    return out


def test_spdk_rpc_client(tmp_path: Path) -> None:
    img = _img(tmp_path, "s.img", 1 << 20)
    with start_target(tmp_path / "t", config={"subsystems": []}) as t:
        def rpc(*args: str) -> str:
            r = subprocess.run([str(SPDK_RPC), "-s", t.sock, *args], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout
        rpc("bdev_malloc_create", "-b", "Mal0", "8", "512")
        rpc("bdev_null_create", "Null0", "8", "512")
        assert rpc("bdev_aio_create", img, "Aio0", "512").strip().strip('"') == "Aio0"
        names = {b["name"] for b in json.loads(rpc("bdev_get_bdevs"))}
        assert {"Mal0", "Null0", "Aio0"} <= names
        aio = json.loads(rpc("bdev_get_bdevs", "-b", "Aio0"))[0]
        assert aio["num_blocks"] == 2048 and aio["driver_specific"]["aio"]["filename"] == img
        rpc("bdev_aio_delete", "Aio0")
        rpc("bdev_null_delete", "Null0")
        rpc("bdev_malloc_delete", "Mal0")
        assert json.loads(rpc("bdev_get_bdevs")) == []


if __name__ == "__main__":
    # One phase of test_file_data_survives_restart, in a process of its own.
    from spydk.testing import AppHarness

    mode, cfg_file, pattern_file = sys.argv[1:4]
    data = Path(pattern_file).read_bytes()
    with AppHarness(json.loads(Path(cfg_file).read_text()), subsystems=("bdev",)) as h:
        got = _rw_in_app(h, ("Aio0", "Ur0"), data, write=(mode == "write"))
    if mode == "read" and got != {"Aio0": data, "Ur0": data}:
        sys.exit("data read back after restart differs from what was written")
