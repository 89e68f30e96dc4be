"""TLS 1.3 with PSK on NVMe/TCP (TP 8011 secure channel): the PSK interchange format, the
retained-PSK / TLS-PSK derivation (vectors from OpenSSL's own HKDF), the sans-IO TLS session
for both cipher suites, and spydk's target and host driver over real sockets: data through a
secure-channel listener, a wrong PSK, an unknown host and a plain-text host each refused while
the target keeps serving; and `openssl s_client` as an independent TLS peer."""
from __future__ import annotations

import asyncio
import functools
import os
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spydk.keyring import keyring
from spydk.keyring.file import file_keyring
from spydk.nvme import tls_psk as P
from spydk.nvme.host import Controller, ControllerOpts, NvmeError, TransportId
from spydk.nvme.tls import TlsError, TlsSession
from spydk.nvme.tls_io import TlsProtocol
from spydk.nvmf import rpc as nvmf_rpc
from spydk.nvmf.subsystem import ListenAddress, NvmfConfigError, Subsystem, load_psk
from spydk.nvmf.tgt import Target, set_target
from spydk.nvmf.transport import TransportOptions
from spydk.nvmf.transports.tcp import TcpTransport
from spydk.rpc.errors import RpcError
from tests.nvmf.helpers import MemoryBackend

NQN = "nqn.2016-06.io.spdk:cnode1"
HOST = "nqn.2016-06.io.spdk:host1"
OTHER = "nqn.2016-06.io.spdk:host2"
KEY32 = P.format_interchange(bytes(range(32)), 1)
KEY48 = P.format_interchange(bytes(range(100, 148)), 2)
KEY_NOHASH = P.format_interchange(bytes(range(50, 82)), 0)
WRONG = P.format_interchange(b"\x5a" * 32, 1)


# -- the interchange format and the derivations ------------------------------------------------

@given(st.sampled_from([32, 48]), st.integers(0, 2), st.data())
def test_interchange_round_trip(n: int, hash_id: int, data: st.DataObject) -> None:
    if hash_id:
        n = 32 if hash_id == 1 else 48
    key = data.draw(st.binary(min_size=n, max_size=n))
    text = P.format_interchange(key, hash_id)
    assert text.startswith(f"NVMeTLSkey-1:0{hash_id}:") and text.endswith(":")
    psk = P.parse_interchange(text + "\n")
    assert psk.key == key and psk.hash_id == hash_id
    assert key.hex() not in repr(psk)


@pytest.mark.parametrize("text, why", [
    ("NVMeTLSkey-1:01:AAAA:", "32 or 48 bytes"),
    ("NVMeTLSkey-2:01:" + KEY32.split(":")[2] + ":", "interchange format"),
    ("NVMeTLSkey-1:03:" + KEY32.split(":")[2] + ":", "00 \\(none\\)"),
    ("NVMeTLSkey-1:02:" + KEY32.split(":")[2] + ":", "must be 48 bytes"),
    ("NVMeTLSkey-1:01:***:", "base64"),
    (KEY32[:20] + ("B" if KEY32[20] != "B" else "C") + KEY32[21:], "CRC-32"),
    (KEY32[:-1], "interchange format"),
])
def test_bad_interchange_is_refused(text: str, why: str) -> None:
    with pytest.raises(P.PskError, match=why):
        P.parse_interchange(text)


@given(st.binary(max_size=200))
def test_interchange_parser_takes_any_bytes(data: bytes) -> None:
    try:
        P.parse_interchange(data)
    except P.PskError:
        pass


def test_identity_and_derivation_match_openssl_hkdf() -> None:
    # Expected values from OpenSSL's HKDF, e.g. for the retained PSK:
    #   openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:000102..1f \
    #     -kdfopt hexinfo:<00 20 | 0d "tls13 HostNQN" | len(hostnqn) hostnqn> HKDF
    psk = P.parse_interchange(KEY32)
    assert P.psk_identity(HOST, NQN, psk.suite) == f"NVMe0R01 {HOST} {NQN}"
    assert P.retained_psk(psk, "nqn.2014-08.org.nvmexpress:uuid:host1").hex() == (
        "7b1165504899fe51b54743731acbbc2d3cd3e5fdb0addb4a6564dabc70b50e90")
    assert P.retained_psk(P.parse_interchange(KEY_NOHASH), HOST) == bytes(range(50, 82))
    for text in (KEY32, KEY48):
        k = P.parse_interchange(text)
        retained = P.retained_psk(k, HOST)
        ident = P.psk_identity(HOST, NQN, k.suite)
        digest = "SHA256" if k.suite is P.CipherSuite.TLS_AES_128_GCM_SHA256 else "SHA384"
        for derived, label, ctx, ikm in ((retained, b"HostNQN", HOST.encode(), k.key),
                                         (P.tls_psk(retained, ident, k.suite), b"nvme-tls-psk",
                                          ident.encode(), retained)):
            full = b"tls13 " + label
            info = len(k.key).to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(ctx)]) + ctx
            out = subprocess.run(["openssl", "kdf", "-keylen", str(len(k.key)), "-kdfopt", f"digest:{digest}",
                                  "-kdfopt", f"hexkey:{ikm.hex()}", "-kdfopt", f"hexinfo:{info.hex()}", "HKDF"],
                                 check=True, capture_output=True, text=True, timeout=30).stdout
            assert derived.hex() == out.strip().replace(":", "").lower()
    assert P.derive(P.parse_interchange(KEY48), HOST, NQN).identity == f"NVMe0R02 {HOST} {NQN}"
    assert P.parse_identity(f"NVMe0R02 {HOST} {NQN}".encode()) == (P.CipherSuite.TLS_AES_256_GCM_SHA384, HOST, NQN)
    for bad in (b"NVMe0R03 a b", b"NVMe1R01 a b", b"NVMe0R01 a", b"\xff"):
        assert P.parse_identity(bad) is None


# -- the sans-IO session -----------------------------------------------------------------------

def _pump(a: TlsSession, b: TlsSession) -> None:
    for _ in range(6):
        b.receive(a.take_output())
        a.receive(b.take_output())


@pytest.mark.parametrize("text, suite", [(KEY32, "TLS_AES_128_GCM_SHA256"), (KEY48, "TLS_AES_256_GCM_SHA384")])
def test_session_pair_both_suites(text: str, suite: str) -> None:
    key = P.derive(P.parse_interchange(text), HOST, NQN)
    srv = TlsSession(server=True, lookup=lambda ident: key if ident == key.identity.encode() else None)
    cli = TlsSession(server=False, key=key)
    cli.start()
    _pump(cli, srv)
    assert srv.handshake_done and cli.handshake_done
    assert srv.cipher == cli.cipher == suite and srv.identity == key.identity
    payload = random.Random(1).randbytes(100_000)
    cli.send(payload)
    srv.receive(cli.take_output())
    got = bytearray()
    buf = bytearray(16384)
    while n := srv.read_into(memoryview(buf)):
        got += buf[:n]
    assert got == payload
    srv.send(b"back")
    cli.receive(srv.take_output())
    assert cli.read_into(memoryview(buf)) == 4 and buf[:4] == b"back"


def test_session_refuses_wrong_key_and_unknown_identity() -> None:
    key = P.derive(P.parse_interchange(KEY32), HOST, NQN)
    wrong = P.derive(P.parse_interchange(WRONG), HOST, NQN)
    srv = TlsSession(server=True, lookup=lambda ident: key)
    cli = TlsSession(server=False, key=wrong)
    cli.start()
    with pytest.raises(TlsError, match="binder"):
        _pump(cli, srv)
    srv = TlsSession(server=True, lookup=lambda ident: None)
    cli = TlsSession(server=False, key=key)
    cli.start()
    with pytest.raises(TlsError, match="no PSK for identity"):
        _pump(cli, srv)
    srv = TlsSession(server=True, lookup=lambda ident: key)
    with pytest.raises(TlsError):  # plain NVMe/TCP (an ICReq) is not a TLS record
        srv.receive(bytes([0, 0, 128, 0]) + (128).to_bytes(4, "little") + bytes(120))


# -- target and host driver over sockets -------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[dict[str, str]]:
    paths = {}
    for name, text in (("k32", KEY32), ("k48", KEY48), ("bad", "not a key")):
        p = tmp_path / name
        p.write_text(text)  # no newline, as SPDK v24.01 needs
        os.chmod(p, 0o600)
        keyring.add_key(name, file_keyring, {"path": str(p)})
        paths[name] = str(p)
    yield paths
    keyring.clear()


class Tgt:
    def __init__(self) -> None:
        self.tgt = Target()
        self.tr = TcpTransport(self.tgt, TransportOptions())
        self.tgt.add_transport(self.tr)
        self.subsys = Subsystem(NQN, serial_number="SPDYKTLS", model_number="spydk tls", allow_any_host=False)
        self.tgt.add_subsystem(self.subsys)
        self.backend = MemoryBackend(num_blocks=2048)
        self.subsys.add_namespace("Mem0", self.backend, nsid=1)
        self.port = str(_free_port())
        self.addr = ListenAddress("TCP", "127.0.0.1", self.port)

    def controller(self, hostnqn: str = HOST, psk: str | None = KEY32, port: str | None = None) -> Controller:
        return Controller(TransportId(traddr="127.0.0.1", trsvcid=port or self.port, subnqn=NQN),
                          ControllerOpts(hostnqn=hostnqn, psk=psk, connect_timeout=5.0, arm_aer=False))


def _run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)
    return asyncio.run(bounded())


async def _rw(c: Controller) -> None:
    q = c.io_qpairs[0]
    data = random.Random(3).randbytes(8192)
    loop = asyncio.get_running_loop()
    for op, buf in ((q.write, memoryview(data)), (q.read, memoryview(bytearray(8192)))):
        fut = loop.create_future()
        op(1, buf, 16, 16, lambda _a, st, _d, f=fut: f.set_result(st))
        assert await fut == 0
    assert bytes(buf) == data


def test_secure_channel_end_to_end_and_refusals(keys: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    t = Tgt()
    set_target(t.tgt)
    try:
        nvmf_rpc.nvmf_subsystem_add_host(None, NQN, HOST, psk="k32")  # type: ignore[arg-type]
        nvmf_rpc.nvmf_subsystem_add_host(None, NQN, OTHER, psk=keys["k48"])  # a file path, as SPDK v24.01
        with pytest.raises(RpcError, match="parameter 'psk'.*not a key|parameter 'psk'.*interchange"):
            nvmf_rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2016-06.io.spdk:h3", psk="bad")  # type: ignore[arg-type]
        with pytest.raises(RpcError, match="neither a keyring key"):
            nvmf_rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2016-06.io.spdk:h3", psk="nokey")  # type: ignore[arg-type]
        cfg = nvmf_rpc.config_json(t.tgt)
        hosts = [e["params"] for e in cfg if e["method"] == "nvmf_subsystem_add_host"]
        assert {"nqn": NQN, "host": HOST, "psk": "k32"} in hosts
        assert not any(KEY32.split(":")[2] in str(e) for e in cfg)

        async def main() -> None:
            await t.tgt.add_listener(t.subsys, t.addr, secure_channel=True)
            plain = Subsystem("nqn.2016-06.io.spdk:plain", allow_any_host=True)
            t.tgt.add_subsystem(plain)
            with pytest.raises(NvmfConfigError, match="one address is either TLS or plain text"):
                await t.tgt.add_listener(plain, t.addr)
            for hostnqn, psk in ((HOST, KEY32), (OTHER, KEY48)):
                c = t.controller(hostnqn, psk)
                await c.connect()
                await _rw(c)
                await c.detach()
            good = t.controller()
            await good.connect()
            # a wrong PSK, a host without one, a plain-text host: each refused
            for hostnqn, psk, why in ((HOST, WRONG, "TLS"), ("nqn.2016-06.io.spdk:h9", KEY32, "TLS"),
                                      (HOST, None, "closed by the target")):
                bad = t.controller(hostnqn, psk)
                with pytest.raises((ConnectionError, NvmeError), match=why):
                    await bad.connect()
                await bad.detach()
            await _rw(good)  # the target kept serving
            await good.detach()
            await t.tr.close()
        _run(main())
    finally:
        set_target(None)
    text = caplog.text
    assert "binder" in text and "has no PSK" in text and "does not speak TLS" in text


def test_openssl_s_client_is_an_independent_peer(keys: dict[str, str]) -> None:
    """OpenSSL's own client (not our binding) completes the handshake with the target, with the
    identity and TLS PSK derived as the spec says, and gets an ICResp to its ICReq."""
    t = Tgt()
    t.subsys.add_host(HOST)
    t.subsys.set_host_psk(HOST, load_psk("k32"))
    k = P.derive(P.parse_interchange(KEY32), HOST, NQN)  # s_client offers SHA-256 PSKs only
    icreq = bytes([0x00, 0, 128, 0]) + (128).to_bytes(4, "little") + bytes([0, 0, 0, 0]) + (8).to_bytes(4, "little")
    icreq += bytes(128 - len(icreq))

    async def main() -> tuple[int, bytes, bytes]:
        await t.tgt.add_listener(t.subsys, t.addr, secure_channel=True)
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-connect", f"127.0.0.1:{t.port}", "-tls1_3", "-quiet", "-ign_eof",
            "-ciphersuites", k.suite.name, "-psk_identity", k.identity, "-psk", k.key.hex(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(icreq)
        await proc.stdin.drain()
        resp = await asyncio.wait_for(proc.stdout.readexactly(128), 20)
        proc.terminate()
        _, err = await proc.communicate()
        await t.tr.close()
        return proc.returncode or 0, resp, err
    _, resp, err = _run(main())
    assert resp[0] == 0x01 and resp[2] == 128, (resp[:8], err[-500:])  # ICResp


class _RecordingSocket:
    """Stands for the TCP socket under a TLS connection: records setsockopt calls."""
    family = socket.AF_INET

    def __init__(self) -> None:
        self.opts: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        self.opts.append((level, opt, value))


class _RawTransport(asyncio.Transport):
    def __init__(self, sock: _RecordingSocket) -> None:
        super().__init__()
        self.sock = sock
        self.sent = bytearray()

    def write(self, data: Any) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self.sock, "peername": ("127.0.0.1", 1)}.get(name, default)


class _Sink(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(65536)
        self.got = bytearray()
        self.calls = 0

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.got += self.buf[:nbytes]
        self.calls += 1


def _tls_pair() -> tuple[TlsProtocol, TlsSession, _RecordingSocket, _Sink]:
    """A server TlsProtocol (over a recording socket, into a sink) and a client session, after
    the handshake."""
    key = P.derive(P.parse_interchange(KEY32), HOST, NQN)
    sock = _RecordingSocket()
    raw = _RawTransport(sock)
    sink = _Sink()
    proto = TlsProtocol(sink, TlsSession(server=True, lookup=lambda ident: key), handshake_timeout=5)
    proto.connection_made(raw)
    cli = TlsSession(server=False, key=key)
    cli.start()
    for _ in range(4):
        _deliver(proto, cli.take_output())
        cli.receive(bytes(raw.sent))
        raw.sent.clear()
    assert proto.started and cli.handshake_done
    sock.opts.clear()
    return proto, cli, sock, sink


def _deliver(proto: TlsProtocol, data: bytes) -> None:
    while data:
        mv = proto.get_buffer(len(data))
        n = min(len(mv), len(data))
        mv[:n] = data[:n]
        proto.buffer_updated(n)
        data = data[n:]


def test_tls_reader_acknowledges_at_once() -> None:
    """After each read of application data the TLS layer asks for an immediate ACK: SPDK's TLS
    sockets send through a 4 KiB buffer, so a 128 KiB write from spdk_nvme_perf waited for a
    40 ms delayed ACK after every few KiB (about 20 writes per second) until it did."""
    proto, cli, sock, sink = _tls_pair()
    deliver = functools.partial(_deliver, proto)
    payload = random.Random(5).randbytes(40_000)
    cli.send(payload)
    deliver(cli.take_output())
    assert bytes(sink.got) == payload
    assert (socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1) in sock.opts


def test_tls_records_reach_the_protocol_in_one_batch() -> None:
    """Records that arrive together (SPDK's host puts each 72-byte command capsule in a record
    of its own) reach the NVMe/TCP protocol in one buffer_updated, so it keeps its batching
    (4 KiB reads at QD128 from spdk_nvme_perf: 2,691 -> 13,270 IOPS, docs/performance.md)."""
    proto, cli, _, sink = _tls_pair()
    capsules = [bytes([4, 0, 72, 0]) + bytes(68) for _ in range(40)]
    wire = b""
    for c in capsules:
        cli.send(c)
        wire += cli.take_output()  # one record per capsule
    assert len(wire) >= 40 * (72 + 22)
    _deliver(proto, wire)
    assert bytes(sink.got) == b"".join(capsules)
    assert sink.calls == 1
