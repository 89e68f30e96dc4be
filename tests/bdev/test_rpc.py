"""bdev RPCs: parameter checks through the schema and handlers, and end to end through
the JSON-RPC server of an in-process app."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import spydk.modules.bdev.null  # noqa: F401  (its RPCs are tested here; alone, nothing else imports it)
from spydk.bdev import registry as core
from spydk.bdev.rpc import bdev_subsystem_config
from spydk.rpc.errors import RpcError
from spydk.rpc.registry import RpcContext, get_method

from .conftest import Env


def call(method: str, params: dict[str, Any] | None = None) -> Any:
    m = get_method(method)
    assert m is not None, method
    return m.handler(RpcContext(app=None, method=method), **m.schema.decode(params or {}))  # type: ignore[arg-type]


@pytest.mark.parametrize("method,params,words", [
    ("bdev_malloc_create", {"block_size": 4096}, ["num_blocks"]),
    ("bdev_malloc_create", {"block_size": 1000, "num_blocks": 8}, ["block_size", "1000", "power of two"]),
    ("bdev_malloc_create", {"block_size": 1536, "num_blocks": 8}, ["block_size", "power of two"]),
    ("bdev_malloc_create", {"block_size": 256, "num_blocks": 8}, ["block_size", "multiple of 512"]),
    ("bdev_malloc_create", {"block_size": 512, "num_blocks": -1}, ["num_blocks"]),
    ("bdev_malloc_create", {"block_size": 512, "num_blocks": 0}, ["num_blocks"]),
    ("bdev_malloc_create", {"block_size": 512, "num_blocks": 8, "md_size": 8}, ["md_size"]),
    ("bdev_malloc_create", {"block_size": 512, "num_blocks": 8, "uuid": "nope"}, ["uuid"]),
    ("bdev_malloc_create", {"block_size": 512, "num_blocks": 8, "bogus": 1}, ["bogus"]),
    ("bdev_null_create", {"name": "N", "block_size": 4095, "num_blocks": 8}, ["block_size", "4095"]),
    ("bdev_null_create", {"block_size": 512, "num_blocks": 8}, ["name"]),
    ("bdev_null_create", {"name": "N", "block_size": 512, "num_blocks": -5}, ["num_blocks"]),
    ("bdev_null_resize", {"name": "nosuch", "new_size": 10}, ["nosuch"]),
    ("bdev_malloc_delete", {"name": "nosuch"}, ["nosuch"]),
    ("bdev_get_bdevs", {"name": "nosuch"}, ["nosuch"]),
    ("bdev_get_iostat", {"names": ["nosuch"]}, ["nosuch"]),
    ("bdev_set_qos_limit", {"name": "nosuch", "rw_ios_per_sec": 1000}, ["nosuch"]),
    ("bdev_enable_histogram", {"name": "nosuch", "enable": True}, ["nosuch"]),
    ("bdev_set_options", {"bdev_io_pool_size": 0}, ["bdev_io_pool_size"]),
    ("bdev_set_options", {"bdev_io_pool_size": 10, "bdev_io_cache_size": 20}, ["bdev_io_pool_size", "bdev_io_cache_size"]),
    ("bdev_examine", {"name": "x"}, ["bdev_auto_examine"]),
])
def test_bad_params_are_named(env: Env, method: str, params: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(RpcError) as ei:
        env.call(call, method, params)
    for w in words:
        assert w in ei.value.message, (w, ei.value.message)


def test_malloc_rpc_create_duplicate_and_qos_checks(env: Env) -> None:
    assert env.call(call, "bdev_malloc_create", {"block_size": 512, "num_blocks": 64}) == "Malloc0"
    assert env.call(call, "bdev_malloc_create", {"block_size": 512, "num_blocks": 64}) == "Malloc1"
    with pytest.raises(RpcError, match="'Malloc0' already exists") as ei:
        env.call(call, "bdev_malloc_create", {"name": "Malloc0", "block_size": 512, "num_blocks": 64})
    assert ei.value.code == -17
    with pytest.raises(RpcError, match="already exists"):
        env.call(call, "bdev_null_create", {"name": "Malloc1", "block_size": 512, "num_blocks": 64})
    with pytest.raises(RpcError, match="rw_ios_per_sec.*multiple of 1000"):
        env.call(call, "bdev_set_qos_limit", {"name": "Malloc0", "rw_ios_per_sec": 1500})
    with pytest.raises(RpcError, match="at least one"):
        env.call(call, "bdev_set_qos_limit", {"name": "Malloc0"})
    with pytest.raises(RpcError, match="opc"):
        env.call(call, "bdev_enable_histogram", {"name": "Malloc0", "enable": True, "opc": "frobnicate"})
    with pytest.raises(RpcError, match="not enabled"):
        env.call(call, "bdev_get_histogram", {"name": "Malloc0"})


def test_null_resize_rpc(env: Env) -> None:
    env.call(call, "bdev_null_create", {"name": "N", "block_size": 4096, "num_blocks": 256})   # 1 MiB
    assert env.call(call, "bdev_null_resize", {"name": "N", "new_size": 4})
    assert core.get_bdev("N").num_blocks == 1024
    with pytest.raises(RpcError, match="new_size 2 MiB is smaller"):
        env.call(call, "bdev_null_resize", {"name": "N", "new_size": 2})


def _module_options(method: str) -> bool:
    return method.endswith("_set_options") and method != "bdev_set_options"


def test_config_dump_order_and_replay(env: Env) -> None:
    env.call(call, "bdev_malloc_create", {"name": "M", "block_size": 512, "num_blocks": 64, "optimal_io_boundary": 8})
    env.call(call, "bdev_null_create", {"name": "N", "block_size": 4096, "num_blocks": 10})
    env.call(call, "bdev_set_qos_limit", {"name": "M", "rw_ios_per_sec": 2000})
    cfg = bdev_subsystem_config()
    # Module options (bdev_nvme_set_options, as in SPDK) follow bdev_set_options when loaded.
    methods = [e["method"] for e in cfg if not _module_options(e["method"])]
    assert methods[0] == "bdev_set_options" and methods[-1] == "bdev_wait_for_examine"
    assert methods[1:4] == ["bdev_malloc_create", "bdev_null_create", "bdev_set_qos_limit"]
    m_uuid = str(core.get_bdev("M").uuid)
    # replay on an empty registry
    core._reset_for_tests()
    for e in cfg:
        if e["method"] == "bdev_set_options" or _module_options(e["method"]):
            continue  # startup-only
        res = env.call(call, e["method"], e.get("params"))
        if hasattr(res, "__await__"):
            env.rh.run(res)
    m = core.get_bdev("M")
    assert str(m.uuid) == m_uuid and m.optimal_io_boundary == 8 and m.qos is not None
    assert core.get_bdev("N").block_size == 4096


# -- end to end ---------------------------------------------------------------------------


@pytest.fixture
def harness() -> Iterator[Any]:
    from spydk.testing import AppHarness
    core._reset_for_tests()
    with AppHarness(subsystems=("bdev",)) as h:
        yield h
    core._reset_for_tests()


def test_end_to_end(harness: Any) -> None:
    c = harness.client
    assert c.call("bdev_malloc_create", {"block_size": 512, "num_blocks": 2048, "name": "Mal"}) == "Mal"
    assert c.call("bdev_null_create", {"name": "Nul", "block_size": 512, "num_blocks": 100}) == "Nul"
    bdevs = c.call("bdev_get_bdevs")
    assert [b["name"] for b in bdevs] == ["Mal", "Nul"]
    mal = c.call("bdev_get_bdevs", {"name": "Mal"})[0]
    for key in ("name", "aliases", "product_name", "block_size", "num_blocks", "uuid", "assigned_rate_limits",
                "claimed", "zoned", "supported_io_types", "driver_specific"):
        assert key in mal
    assert mal["product_name"] == "Malloc disk" and mal["supported_io_types"]["unmap"] is True
    assert c.call("bdev_get_bdevs", {"name": "Nul"})[0]["supported_io_types"]["unmap"] is False
    assert c.call("bdev_enable_histogram", {"name": "Mal", "enable": True})
    assert c.call("bdev_wait_for_examine") is True

    # some I/O through the layer on the app thread
    from spydk.bdev import open_ext

    def do_io() -> Any:
        import asyncio
        desc = open_ext("Mal", True, lambda *a: None)
        ch = desc.get_io_channel()
        fut = asyncio.get_event_loop().create_future()
        left = [10]

        def cb(io: Any, ok: bool, arg: Any) -> None:
            left[0] -= 1
            if left[0] == 0:
                desc.put_io_channel(ch)
                desc.close()
                fut.set_result(True)
        for i in range(10):
            desc.write_blocks(ch, bytes(512), i, 1, cb, None)
        return fut
    harness.call_on_app_thread(do_io)
    st = c.call("bdev_get_iostat", {"names": ["Mal"]})
    assert st["tick_rate"] == 1_000_000_000 and st["bdevs"][0]["num_write_ops"] == 10
    hist = c.call("bdev_get_histogram", {"name": "Mal"})
    assert sum(int.from_bytes(base64.b64decode(hist["histogram"])[i:i + 8], "little")
               for i in range(0, len(base64.b64decode(hist["histogram"])), 8)) == 10
    assert hist["bucket_shift"] == 7 and hist["tsc_rate"] == 1_000_000_000
    assert c.call("bdev_reset_iostat", {"name": "Mal"})
    assert c.call("bdev_get_iostat", {"names": ["Mal"]})["bdevs"][0]["num_write_ops"] == 0
    cfg = c.call("framework_get_config", {"name": "bdev"})
    assert [e["method"] for e in cfg if not _module_options(e["method"])][:3] == \
        ["bdev_set_options", "bdev_malloc_create", "bdev_null_create"]
    assert c.call("bdev_malloc_delete", {"name": "Mal"}) is True
    assert c.call("bdev_null_delete", {"name": "Nul"}) is True
    assert c.call("bdev_get_bdevs") == []
    with pytest.raises(RpcError, match="'Mal' does not exist"):
        c.call("bdev_get_bdevs", {"name": "Mal"})
    notes = c.call("notify_get_notifications", {"id": 0})
    assert {"type": "bdev_unregister", "ctx": "Mal"} in [{k: n[k] for k in ("type", "ctx")} for n in notes]
