"""The guest itself: initiator modules, tools, network confinement, lib.sh helpers."""
from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path

import pytest

from .expect import guest_passed

pytestmark = pytest.mark.interop


def _echo_once(srv: socket.socket, token: str, got: list[bytes]) -> None:
    srv.settimeout(120)
    try:
        conn, _ = srv.accept()
    except OSError:
        return
    with conn:
        conn.settimeout(10)
        got.append(conn.recv(256))
        conn.sendall(token.encode() + b"\n")


def test_guest_boots_with_initiators_and_tools(run_guest, free_port, tmp_path: Path) -> None:
    token = "spydk-" + secrets.token_hex(4)
    got: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as srv:
        echo_port = srv.getsockname()[1]
        th = threading.Thread(target=_echo_once, args=(srv, token, got), daemon=True)
        th.start()
        disk = tmp_path / "scratch.img"
        with open(disk, "wb") as f:
            f.truncate(32 << 20)
        res = run_guest("smoke.sh", {"SMOKE_ECHO_PORT": str(echo_port), "SMOKE_TOKEN": token,
                                     "SMOKE_CLOSED_PORT": str(free_port())},
                        disks=[disk], timeout=120)
        srv.close()
        th.join(5)
    guest_passed(res, "SMOKE CHECK PASSED")
    # the guest's connection arrived on the host loopback, from QEMU
    assert got and got[0].startswith(b"hello from 10.0.2.15")
    assert res.boot_s is not None
