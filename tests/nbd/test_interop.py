"""Real NBD clients against `spydk tgt`: qemu-img convert both ways, nbdinfo, nbdcopy with
several connections; a raw socket sending garbage and oversized requests is refused while
the server keeps serving the others."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from pathlib import Path

from spydk.nbd import spec
from spydk.testing import start_target

from .client import Parser, go, hello, option, request

MiB = 1 << 20


def _run(*argv: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout


def _recv(s: socket.socket, p: Parser, n: int) -> None:
    while len(p.buf) < n:
        d = s.recv(65536)
        assert d, "server closed the connection"
        p.feed(d)


def test_qemu_img_nbdinfo_nbdcopy_and_bad_clients(tmp_path: Path) -> None:
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(16 * MiB))
    with start_target(tmp_path / "t", config={"subsystems": []}) as t:
        c = t.client
        c.call("bdev_malloc_create", {"name": "M0", "num_blocks": 32 * MiB // 512, "block_size": 512})
        port = c.call("nbd_server_listen", {"host": "127.0.0.1", "port": 0})
        assert c.call("nbd_server_start_export", {"bdev_name": "M0", "name": "disk"}) == "disk"
        url = f"nbd://127.0.0.1:{port}/disk"
        info = json.loads(_run("nbdinfo", "--json", url))
        exp = info["exports"][0]
        assert exp["export-size"] == 32 * MiB and exp["can_trim"] and exp["can_zero"] and exp["can_flush"]
        assert exp["block_size_minimum"] == 512 and exp["can_multi_conn"]
        # qemu-img convert into the export and back out
        _run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), url)
        out = tmp_path / "out.raw"
        _run("qemu-img", "convert", "-f", "raw", "-O", "raw", url, str(out))
        got = out.read_bytes()
        assert len(got) == 32 * MiB and got[:16 * MiB] == src.read_bytes() and got[16 * MiB:] == bytes(16 * MiB)
        # nbdcopy with 4 connections: zeroes the export's tail, copies back
        src2 = tmp_path / "src2.raw"
        src2.write_bytes(os.urandom(8 * MiB) + bytes(24 * MiB))
        _run("nbdcopy", "--connections=4", str(src2), url)
        out2 = tmp_path / "out2.raw"
        _run("nbdcopy", "--connections=4", url, str(out2))
        assert out2.read_bytes() == src2.read_bytes()
        assert c.call("nbd_server_get_exports")[0]["connections"] == 0
        # a client sending garbage: refused, disconnected; the server goes on
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            p = Parser()
            s.sendall(hello() + go("disk"))
            _recv(s, p, 18)
            p.greeting()
            while True:
                _recv(s, p, 20)
                r = p.option_reply()
                if r is not None and r[1] == spec.REP_ACK:
                    break
            # an oversized read and an oversized write (payload sent): errors, connection stays
            s.sendall(request(spec.CMD_READ, 1, 0, 1 << 30))
            s.sendall(request(spec.CMD_WRITE, 2, 0, 64 * MiB, bytes(64 * MiB)))
            s.sendall(request(spec.CMD_READ, 3, 512, 512))
            _recv(s, p, 16 * 3 + 512)
            assert p.simple_reply() == (spec.EINVAL, 1, b"")
            assert p.simple_reply() == (spec.EINVAL, 2, b"")
            assert p.simple_reply(512) == (0, 3, src2.read_bytes()[512:1024])
            s.sendall(b"\xde\xad\xbe\xef" * 7)                      # not a request
            s.settimeout(10)
            assert s.recv(100) == b""                              # closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(struct.pack(">I", 0) + option(spec.OPT_EXPORT_NAME, b"missing"))
            data = b""
            while True:
                d = s.recv(100)
                if not d:
                    break
                data += d
            assert len(data) == 18      # the greeting, then closed: no such export
        assert json.loads(_run("nbdinfo", "--json", url))["exports"][0]["export-size"] == 32 * MiB
        assert "nbd_server" in t.rpc("save_config").stdout
        c.call("nbd_server_stop_export", {"name": "disk"})
        r = subprocess.run(["nbdinfo", url], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
