"""Config-changing RPCs reach every reactor before they answer; malloc memory is shared;
non-replicated bdevs live on main only; save_config of a multi-core target replays the same."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from spydk.apps.app import App, AppOptions
from spydk.apps.worker import new_loop, worker_main
from spydk.rpc.errors import RpcError
from spydk.testing import start_target
from spydk.thread import cores

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")


def bdev_facts(name: str) -> tuple[str, bytes] | None:
    from spydk.bdev import get_bdev
    b = get_bdev(name)
    if b is None:
        return None
    return str(b.uuid), bytes(b.mem[:16]) if hasattr(b, "mem") else b""


def read_twice(name: str) -> bool:
    from spydk.bdev import open_ext
    desc = open_ext(name, False, lambda *a: None)
    ch = desc.get_io_channel()
    left = [2]

    def done(io, ok, arg):
        left[0] -= 1
        if not left[0]:
            desc.put_io_channel(ch)
            desc.close()
    for _ in range(2):
        assert desc.read_blocks(ch, memoryview(bytearray(512)), 0, 1, done, None) == 0
    return True


def _with_app(body):
    allowed = sorted(os.sched_getaffinity(0))
    main_core, other = allowed[0], allowed[1]
    saved = os.sched_getaffinity(0)
    ws = cores.spawn_workers([other], lambda core, sock: worker_main(core, sock, False, ("bdev",)))
    loop = new_loop()
    app = App(AppOptions(rpc_socket=None, subsystems=("bdev",), lcore=main_core, cpumask=1 << main_core,
                         workers=ws))
    try:
        async def go():
            await app.start()
            try:
                await body(app, other)
            finally:
                app.shutdown()
                await app.wait_shutdown()
        loop.run_until_complete(asyncio.wait_for(go(), 60))
    finally:
        if not ws.stopping:
            ws.kill()
        loop.close()
        os.sched_setaffinity(0, saved)
    assert all(w.exit_status is not None for w in ws)


def test_malloc_is_created_on_every_reactor_over_the_same_memory():
    async def body(app, core):
        name = await app.dispatcher.call("bdev_malloc_create", {"block_size": 512, "num_blocks": 64})
        (t,) = [t for t in await cores.remote_threads(core) if t.name == f"reactor_{core}"]
        from spydk.bdev import get_bdev
        b = get_bdev(name)
        b.mem[:16] = b"written on main!"
        assert await t.call(bdev_facts, name) == (str(b.uuid), b"written on main!")
        await app.dispatcher.call("bdev_malloc_delete", {"name": name})
        assert await t.call(bdev_facts, name) is None
    _with_app(body)


def test_non_replicated_bdev_lives_on_main_only():
    async def body(app, core):
        (t,) = [t for t in await cores.remote_threads(core) if t.name == f"reactor_{core}"]
        await app.dispatcher.call("bdev_malloc_create", {"name": "M0", "block_size": 512, "num_blocks": 64})
        await app.dispatcher.call("bdev_error_create", {"base_name": "M0"})
        assert await t.call(bdev_facts, "EE_M0") is None
        assert (await t.call(bdev_facts, "M0"))[1] == bytes(16)
        # A passthru over a bdev only main has: on the worker it waits for a base that never comes.
        await app.dispatcher.call("bdev_passthru_create", {"base_bdev_name": "EE_M0", "name": "P0"})
        assert await t.call(bdev_facts, "P0") is None
        # Bad input fails on main and is never forwarded.
        with pytest.raises(RpcError, match="already exists"):
            await app.dispatcher.call("bdev_malloc_create", {"name": "M0", "block_size": 512, "num_blocks": 64})
    _with_app(body)


def test_save_config_of_a_multicore_target_replays_to_the_same(tmp_path):
    cfg = {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "M0", "num_blocks": 2048, "block_size": 512}},
        {"method": "bdev_null_create", "params": {"name": "N0", "num_blocks": 2048, "block_size": 512}}]}]}
    with start_target(tmp_path / "a", cfg, extra_args=["-m", "0x3"]) as t:
        first = json.loads(t.rpc("save_config").stdout)
    with start_target(tmp_path / "b", first, extra_args=["-m", "0x3"]) as t:
        second = json.loads(t.rpc("save_config").stdout)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    bdevs = [e for s in second["subsystems"] if s["subsystem"] == "bdev" for e in s["config"]]
    assert {e["params"].get("name") for e in bdevs if e["method"].endswith("_create")} == {"M0", "N0"}


def test_iostat_sums_every_reactor():
    async def body(app, core):
        (t,) = [t for t in await cores.remote_threads(core) if t.name == f"reactor_{core}"]
        await app.dispatcher.call("bdev_malloc_create", {"name": "M0", "block_size": 512, "num_blocks": 64})
        await app.dispatcher.call("bdev_wait_for_examine", {})
        await asyncio.sleep(0.2)   # the worker's examine reads (counted too) finish
        before = (await app.dispatcher.call("bdev_get_iostat", {"name": "M0"}))["bdevs"][0]
        assert await t.call(read_twice, "M0")
        for _ in range(100):
            st = (await app.dispatcher.call("bdev_get_iostat", {"name": "M0"}))["bdevs"][0]
            if st["num_read_ops"] - before["num_read_ops"] == 2:
                break
            await asyncio.sleep(0.01)
        assert st["num_read_ops"] - before["num_read_ops"] == 2
        assert st["bytes_read"] - before["bytes_read"] == 1024
        per = (await app.dispatcher.call("bdev_get_iostat", {"name": "M0", "per_channel": True}))["bdevs"][0]
        assert isinstance(per["channels"], list)   # open channels of every reactor (none open here)
    _with_app(body)
