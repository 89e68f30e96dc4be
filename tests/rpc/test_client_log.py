"""AsyncClient pipelining, Client sugar, and the log module's flags and levels."""
from __future__ import annotations

import asyncio
import io
import logging

import pytest

from spydk import log as spydk_log
from spydk.rpc import AsyncClient, RpcError
from spydk.testing import AppHarness


def test_async_client_pipelines_concurrent_calls(harness: AppHarness) -> None:
    async def go() -> list:
        async with AsyncClient(harness.sock) as c:
            return await asyncio.gather(c.spdk_get_version(), c.log_get_level(), c.rpc_get_methods(current=True),
                                        c.call("thread_get_stats"))
    version, level, methods, stats = asyncio.run(go())
    assert version["fields"]["major"] >= 24 and level == "NOTICE" and "thread_get_stats" in methods
    assert stats["threads"][0]["name"] == "app_thread"


def test_async_client_error(harness: AppHarness) -> None:
    async def go() -> None:
        async with AsyncClient(harness.sock) as c:
            await c.call("nope")
    with pytest.raises(RpcError) as e:
        asyncio.run(go())
    assert e.value.code == -32601


def test_client_sugar_drops_none_and_batch(harness: AppHarness) -> None:
    c = harness.client
    # None-valued keywords are dropped: the call equals one with no parameters at all (the
    # notify ring is per process, so earlier tests may have filled it).
    assert c.notify_get_notifications(id=None, max=None) == c.call("notify_get_notifications")
    resp = c.call_batch([("spdk_get_version", None), ("nope", None)])
    assert "result" in resp[0] and resp[1]["error"]["code"] == -32601


def test_stats_rpcs_shapes(harness: AppHarness) -> None:
    c = harness.client
    r = c.framework_get_reactors()
    assert r["tick_rate"] > 0 and r["reactors"][0]["lw_threads"][0]["name"] == "app_thread"
    p = c.thread_get_pollers()
    assert set(p["threads"][0]) >= {"name", "id", "active_pollers", "timed_pollers", "paused_pollers"}
    assert c.thread_get_io_channels()["threads"][0]["io_channels"] == []
    assert c.spydk_set_poll_mode(enabled=True) is True
    assert c.framework_get_reactors()["reactors"][0]["in_interrupt"] is False
    assert c.spydk_set_poll_mode(enabled=False) is True


@pytest.fixture
def captured() -> io.StringIO:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(spydk_log._Filter())
    handler.setFormatter(spydk_log._Formatter())
    root = logging.getLogger("spydk")
    root.addHandler(handler)
    spydk_log._reset_for_tests()
    yield buf
    root.removeHandler(handler)
    spydk_log._reset_for_tests()


def test_flags_and_levels(captured: io.StringIO) -> None:
    lg = spydk_log.get_logger("testcomp")
    lg.debug("hidden")
    lg.info("hidden too")
    spydk_log.notice(lg, "shown")
    spydk_log.set_flag("testcomp")
    lg.debug("debug shown")
    spydk_log.get_logger("othercomp").debug("other hidden")
    assert spydk_log.flags()["testcomp"] is True and spydk_log.flags()["othercomp"] is False
    spydk_log.set_flag("all", False)
    lg.debug("hidden again")
    spydk_log.set_print_level("ERROR")
    lg.warning("warning hidden")
    lg.error("error shown")
    spydk_log.set_print_level("DEBUG")
    spydk_log.set_level("WARNING")
    lg.info("info dropped by level")
    spydk_log.enable_timestamps(True)
    lg.warning("stamped")
    out = captured.getvalue().splitlines()
    assert out[:3] == ["testcomp: *NOTICE*: shown", "testcomp: *DEBUG*: debug shown", "testcomp: *ERROR*: error shown"]
    assert out[3].startswith("[") and out[3].endswith("testcomp: *WARNING*: stamped") and len(out) == 4
    with pytest.raises(ValueError):
        spydk_log.set_flag("no_such_flag_x")
    with pytest.raises(ValueError):
        spydk_log.set_level("LOUD")
