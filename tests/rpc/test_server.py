"""The socket server: pipelining, split writes, hostile clients, many clients, the socket path."""
from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any

import pytest

from spydk.apps.app import App, AppOptions, StartupError
from spydk.rpc import errors
from spydk.rpc.client import Client, NoServerError
from spydk.rpc.errors import RpcError
from spydk.testing import AppHarness


def req(method: str, id_: Any, **params: Any) -> bytes:
    r: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params:
        r["params"] = params
    return json.dumps(r).encode()


def raw_conn(h: AppHarness) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(h.sock)
    return s


def read_values(s: socket.socket, n: int) -> list[Any]:
    from spydk.rpc.framing import JsonStreamDecoder
    d = JsonStreamDecoder()
    out: list[Any] = []
    while len(out) < n:
        data = s.recv(65536)
        if not data:
            break
        out += d.feed(data)
    return out


def test_pipelined_requests_answered_in_order(harness: AppHarness) -> None:
    s = raw_conn(harness)
    s.sendall(b"".join(req("rpc_get_methods", i) if i % 2 else req("spdk_get_version", i) for i in range(20)))
    out = read_values(s, 20)
    assert [r["id"] for r in out] == list(range(20))
    s.close()


def test_request_split_byte_by_byte(harness: AppHarness) -> None:
    s = raw_conn(harness)
    data = req("spdk_get_version", 5) + b"\n" + req("log_get_level", 6)
    for b in data:
        s.send(bytes([b]))
    out = read_values(s, 2)
    assert [r["id"] for r in out] == [5, 6] and out[1]["result"] == "NOTICE"
    s.close()


def test_batch_over_socket(harness: AppHarness) -> None:
    s = raw_conn(harness)
    s.sendall(b"[" + req("spdk_get_version", 1) + b"," + req("nope", 2) + b"]")
    (out,) = read_values(s, 1)
    assert [r["id"] for r in out] == [1, 2] and out[1]["error"]["code"] == errors.METHOD_NOT_FOUND


def test_invalid_json_gets_parse_error_then_close(harness: AppHarness) -> None:
    s = raw_conn(harness)
    s.sendall(req("spdk_get_version", 1) + b'{"method": oops}')
    out = read_values(s, 3)
    assert out[0]["id"] == 1
    assert out[1]["error"]["code"] == errors.PARSE_ERROR
    assert len(out) == 2  # then the server closed the connection
    assert harness.client.spdk_get_version()["fields"]["major"] >= 24


def test_ten_megabyte_request_refused_and_server_keeps_serving(harness: AppHarness) -> None:
    s = raw_conn(harness)
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "log_set_flag", "params": {"flag": "' + b"x" * (10 << 20) + b'"}}'
    try:
        s.sendall(big)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed on us mid-send: also fine
    out = read_values(s, 1)
    if out:
        assert out[0]["error"]["code"] == errors.PARSE_ERROR and "limit" in out[0]["error"]["message"]
    s.close()
    assert harness.client.log_get_level() == "NOTICE"


def test_wrong_types_unknown_method_unknown_param(harness: AppHarness) -> None:
    c = harness.client
    with pytest.raises(RpcError) as e:
        c.call("log_enable_timestamps", {"enabled": "yes"})
    assert e.value.code == errors.INVALID_PARAMS and "enabled" in e.value.message
    with pytest.raises(RpcError) as e:
        c.call("no_such_method")
    assert e.value.code == errors.METHOD_NOT_FOUND
    with pytest.raises(RpcError) as e:
        c.call("spdk_get_version", {"verbose": True})
    assert e.value.code == errors.INVALID_PARAMS and "verbose" in e.value.message
    with pytest.raises(RpcError) as e:
        c.call("log_set_flag", {"flag": "no_such_flag"})
    assert e.value.code == errors.INVALID_PARAMS and "no_such_flag" in e.value.message


def test_client_disconnecting_mid_request(harness: AppHarness) -> None:
    for cut in (1, 10, 30):
        s = raw_conn(harness)
        s.sendall(req("spdk_get_version", 1)[:cut])
        s.close()
    s = raw_conn(harness)
    s.sendall(req("framework_wait_init", 1))
    s.shutdown(socket.SHUT_WR)  # half-close: the answer still comes
    assert read_values(s, 1)[0]["result"] is True
    s.close()
    assert harness.client.spdk_get_version()


def test_two_hundred_clients_at_once(harness: AppHarness) -> None:
    socks = [raw_conn(harness) for _ in range(200)]
    for i, s in enumerate(socks):
        s.sendall(req("spdk_get_version", i))
    results: dict[int, Any] = {}

    def reader(i: int, s: socket.socket) -> None:
        out = read_values(s, 1)
        results[i] = out[0]["id"] if out else None

    threads = [threading.Thread(target=reader, args=(i, s)) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for s in socks:
        s.close()
    assert results == {i: i for i in range(200)}
    assert harness.client.spdk_get_version()


def test_second_app_on_a_live_socket_is_refused(harness: AppHarness) -> None:
    import asyncio
    app = App(AppOptions(rpc_socket=harness.sock, subsystems=()))
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(StartupError) as e:
            loop.run_until_complete(app.start())
        assert harness.sock in str(e.value) and "in use" in str(e.value)
    finally:
        loop.close()
    assert harness.client.spdk_get_version()  # the first one is untouched


def test_stale_socket_file_is_replaced(tmp_path: Any) -> None:
    from spydk.testing import short_socket_path
    path = short_socket_path()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # a socket file nobody listens on
    s.close()
    h = AppHarness(subsystems=())
    h.sock = h.opts.rpc_socket = path
    with h:
        assert h.client.spdk_get_version()
    assert not os.path.exists(path)


def test_no_server_error_message() -> None:
    with pytest.raises(NoServerError) as e:
        Client("/tmp/definitely-not-here.sock")
    assert "no SPDK application is listening at /tmp/definitely-not-here.sock" in str(e.value)
