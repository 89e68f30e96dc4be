"""DH-HMAC-CHAP (in-band authentication): the DHHC-1 secret format, the message codecs, the
host and controller state machines against each other for every hash and DH group, and the
exchange through a controller over in-memory NVMe/TCP: admin and I/O queues, bidirectional,
and every refusal answered with its Failure1 reason while other hosts keep working."""
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.keyring import keyring
from spydk.keyring.file import file_keyring
from spydk.nvme import spec
from spydk.nvme.auth import dhchap
from spydk.nvme.spec import auth as sa
from spydk.nvme.spec import fabrics as fab
from spydk.nvme.spec.auth import FailureReason
from spydk.nvmf import rpc as nvmf_rpc
from spydk.nvmf.auth import SC_AUTH_REQUIRED, ControllerAuth
from spydk.nvmf.subsystem import NvmfConfigError
from spydk.nvmf.tgt import set_target
from spydk.rpc.errors import RpcError
from tests.nvmf.helpers import HOSTNQN, sgl_incapsule, sgl_transport

from .conftest import NQN, Env, Link

OTHER = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000ff"
HOST_KEY = dhchap.format_secret(bytes(range(32)), 0)
HOST_KEY_T = dhchap.format_secret(bytes(range(48)), 2)  # with a SHA-384 transformation
CTRL_KEY = dhchap.format_secret(bytes(range(100, 164)), 3)
WRONG_KEY = dhchap.format_secret(b"\x55" * 32, 0)


# -- the secret format ------------------------------------------------------------------------

@given(st.sampled_from([32, 48, 64]), st.integers(0, 3), st.data())
def test_secret_round_trip(n: int, hmac_id: int, data: st.DataObject) -> None:
    key = data.draw(st.binary(min_size=n, max_size=n))
    text = dhchap.format_secret(key, hmac_id)
    assert text.startswith(f"DHHC-1:{hmac_id:02x}:") and text.endswith(":")
    s = dhchap.parse_secret(text + "\n")
    assert s.key == key and s.hmac_id == hmac_id
    assert key.hex() not in repr(s)


@pytest.mark.parametrize("text, why", [
    ("DHHC-1:00:AAAA:", "key of"),
    ("DHHC-2:00:" + HOST_KEY.split(":")[2] + ":", "looks like"),
    ("DHHC-1:07:" + HOST_KEY.split(":")[2] + ":", "00..03"),
    ("DHHC-1:00:***:", "base64"),
    (HOST_KEY[:12] + ("B" if HOST_KEY[12] != "B" else "C") + HOST_KEY[13:], "CRC-32"),
])
def test_bad_secrets_are_refused(text: str, why: str) -> None:
    with pytest.raises(dhchap.SecretError, match=why):
        dhchap.parse_secret(text)


def test_key_transformation_uses_the_nqn_and_the_secrets_hash() -> None:
    s = dhchap.parse_secret(HOST_KEY_T)
    t = dhchap.transform_key(s, HOSTNQN)
    assert len(t) == 48 and t != s.key
    assert t != dhchap.transform_key(s, OTHER)
    assert dhchap.transform_key(dhchap.parse_secret(HOST_KEY), HOSTNQN) == bytes(range(32))


@given(st.binary(max_size=600))
def test_message_parsers_take_any_bytes(data: bytes) -> None:
    for parse in (sa.parse_negotiate, sa.parse_challenge, sa.parse_success1, sa.parse_failure,
                  lambda m: sa.parse_reply(m, 32, 0)):
        try:
            parse(data)
        except sa.AuthFormatError:
            pass


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_controller_takes_any_message_sequence(msgs: list[bytes]) -> None:
    ex = ControllerAuth(HOSTNQN, NQN, dhchap.parse_secret(HOST_KEY), None, dhgroups=("null",))
    for m in msgs:
        ex.send(m)
        assert len(ex.receive()) <= 16 + 64 + 1024
    assert ex.state != "success"


# -- both state machines ----------------------------------------------------------------------

def run_exchange(host: dhchap.HostAuth, ctrl: ControllerAuth) -> None:
    ctrl.send(host.negotiate())
    ctrl.send(host.challenge(ctrl.receive()))
    out = host.success1(ctrl.receive())
    if out is not None:
        ctrl.send(out)


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("dhgroup", ["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"])
def test_host_and_controller_agree(digest: str, dhgroup: str) -> None:
    hs, cs = dhchap.parse_secret(HOST_KEY_T), dhchap.parse_secret(CTRL_KEY)
    host = dhchap.HostAuth(HOSTNQN, NQN, hs, cs, t_id=7)
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, cs, digests=(digest,), dhgroups=(dhgroup,))
    run_exchange(host, ctrl)
    assert host.done and ctrl.state == "success", ctrl.reason
    assert ctrl.bidirectional and ctrl.hash_name == digest and ctrl.dhgroup_name == dhgroup


def test_wrong_host_key_gets_failure1_failed() -> None:
    host = dhchap.HostAuth(HOSTNQN, NQN, dhchap.parse_secret(WRONG_KEY))
    ctrl = ControllerAuth(HOSTNQN, NQN, dhchap.parse_secret(HOST_KEY), None, dhgroups=("ffdhe2048",))
    ctrl.send(host.negotiate())
    ctrl.send(host.challenge(ctrl.receive()))
    with pytest.raises(dhchap.HostAuthError) as ei:
        host.success1(ctrl.receive())
    assert ei.value.reason == FailureReason.FAILED and ctrl.state == "failure"


def test_host_refuses_a_controller_with_the_wrong_key() -> None:
    hs = dhchap.parse_secret(HOST_KEY)
    host = dhchap.HostAuth(HOSTNQN, NQN, hs, dhchap.parse_secret(CTRL_KEY))
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, dhchap.parse_secret(WRONG_KEY), dhgroups=("null",))
    run_exchange(host, ctrl)
    assert not host.done and ctrl.state == "failure" and "Failure2" in ctrl.reason


@pytest.mark.parametrize("kw, host_kw, reason", [
    ({"digests": ("sha512",)}, {"hash_ids": [1]}, FailureReason.HASH_UNUSABLE),
    ({"dhgroups": ("ffdhe4096",)}, {"dhgroup_ids": [0, 1]}, FailureReason.DHGROUP_UNUSABLE),
])
def test_nothing_in_common_is_refused(kw: dict, host_kw: dict, reason: int) -> None:
    hs = dhchap.parse_secret(HOST_KEY)
    host = dhchap.HostAuth(HOSTNQN, NQN, hs, **host_kw)
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, None, **kw)
    ctrl.send(host.negotiate())
    with pytest.raises(dhchap.HostAuthError) as ei:
        host.challenge(ctrl.receive())
    assert ei.value.reason == reason


def test_secure_channel_and_unknown_protocols_are_refused() -> None:
    hs = dhchap.parse_secret(HOST_KEY)
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, None)
    ctrl.send(sa.build_negotiate(1, [1], [0], sc_c=1))
    assert sa.parse_failure(ctrl.receive())[2] == FailureReason.CONCAT_MISMATCH
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, None)
    neg = bytearray(sa.build_negotiate(1, [1], [0]))
    neg[8] = 0x07  # not DH-HMAC-CHAP
    ctrl.send(bytes(neg))
    assert sa.parse_failure(ctrl.receive())[2] == FailureReason.PROTOCOL_UNUSABLE
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, None)
    ctrl.send(sa.build_success2(0))  # out of order
    assert sa.parse_failure(ctrl.receive())[2] == FailureReason.INCORRECT_MESSAGE


def test_bad_dh_value_is_refused() -> None:
    hs = dhchap.parse_secret(HOST_KEY)
    ctrl = ControllerAuth(HOSTNQN, NQN, hs, None, dhgroups=("ffdhe2048",))
    ctrl.send(sa.build_negotiate(0, [1], [1]))
    ch = sa.parse_challenge(ctrl.receive())
    ctrl.send(sa.build_reply(sa.Reply(0, bytes(32), False, 0, b"", b"\xff" * 256)))  # = p-1 > p-2
    assert ch.dhgroup_id == 1 and sa.parse_failure(ctrl.receive())[2] == FailureReason.INCORRECT_PAYLOAD


# -- through a controller over in-memory NVMe/TCP ---------------------------------------------

@pytest.fixture
def keys(tmp_path: Path) -> Iterator[dict[str, str]]:
    names = {}
    for name, text in (("hk", HOST_KEY), ("hk_t", HOST_KEY_T), ("ck", CTRL_KEY), ("bad", "not a secret")):
        p = tmp_path / name
        p.write_text(text)
        os.chmod(p, 0o600)
        keyring.add_key(name, file_keyring, {"path": str(p)})
        names[name] = name
    yield names
    keyring.clear()


@pytest.fixture
def aenv(keys: dict[str, str]) -> Iterator[Env]:
    e = Env()
    e.subsys.allow_any_host = False
    e.subsys.add_host(HOSTNQN)
    e.subsys.set_host_keys(HOSTNQN, "hk", "ck")
    e.subsys.add_host(OTHER)
    set_target(e.tgt)
    yield e
    set_target(None)


def auth_send(lk: Link, msg: bytes, **kw: int):  # type: ignore[no-untyped-def]
    h = lk.host
    return lk.wait(h.submit(sa.build_auth_command(h.next_cid(), True, len(msg), sgl_incapsule(len(msg)), **kw),
                            msg))


def auth_recv(lk: Link, al: int = 4096):  # type: ignore[no-untyped-def]
    h = lk.host
    c = lk.wait(h.submit(sa.build_auth_command(h.next_cid(), False, al, sgl_transport(al)), read_len=al))
    assert c.status == 0, c
    return c.data


def authenticate(lk: Link, host: dhchap.HostAuth) -> None:
    assert auth_send(lk, host.negotiate()).status == 0
    assert auth_send(lk, host.challenge(auth_recv(lk))).status == 0
    out = host.success1(auth_recv(lk))
    if out is not None:
        assert auth_send(lk, out).status == 0


def host_auth(key: str = HOST_KEY, ctrl: str | None = CTRL_KEY, **kw: object) -> dhchap.HostAuth:
    return dhchap.HostAuth(HOSTNQN, NQN, dhchap.parse_secret(key),
                           dhchap.parse_secret(ctrl) if ctrl else None, **kw)  # type: ignore[arg-type]


def test_connect_asks_for_authentication_and_nothing_else_runs_before(aenv: Env) -> None:
    lk = aenv.link()
    c = lk.establish()
    assert c.status == 0 and (c.dw0 >> 16) & sa.AUTHREQ_ATR
    cntlid = c.dw0 & 0xFFFF
    for cid in (lk.host.property_get(fab.Property.CAP, 8), lk.host.identify(1)):
        r = lk.wait(cid)
        assert (r.sct, r.sc) == (1, SC_AUTH_REQUIRED)
    q = nvmf_rpc.nvmf_subsystem_get_qpairs(None, NQN)  # type: ignore[arg-type]
    assert q[0]["state"] == "authenticating" and q[0]["auth"]["state"] == "in progress"
    authenticate(lk, host_auth())
    lk.enable()
    assert lk.wait(lk.host.identify(1)).status == 0
    q = nvmf_rpc.nvmf_subsystem_get_qpairs(None, NQN)  # type: ignore[arg-type]
    assert q[0]["auth"] == {"state": "completed", "digest": "sha512", "dhgroup": "ffdhe8192"}
    # The I/O queue authenticates on its own, then reads and writes.
    io = aenv.link()
    c = io.establish(qid=1, cntlid=cntlid)
    assert c.status == 0 and (c.dw0 >> 16) & sa.AUTHREQ_ATR
    r = io.wait(io.host.read(1, 0, 1, 512))
    assert (r.sct, r.sc) == (1, SC_AUTH_REQUIRED)
    aenv.tgt.dhchap_dhgroups = ("null",)  # cheaper; each queue negotiates again
    authenticate(io, host_auth(ctrl=None, t_id=1))
    io.host.icd = aenv.tr.opts.in_capsule_data_size
    assert io.wait(io.host.write(1, 0, b"\xa5" * 512, 512)).status == 0
    assert io.wait(io.host.read(1, 0, 1, 512)).data == b"\xa5" * 512


@pytest.mark.parametrize("case", ["wrong_key", "no_ctrlr_key", "bad_command", "digest", "failure2"])
def test_refusals_leave_other_hosts_working(aenv: Env, case: str) -> None:
    other = aenv.link()
    assert other.establish(hostnqn=OTHER).status == 0  # no keys: no authentication
    other.enable()
    if case == "no_ctrlr_key":
        aenv.subsys.set_host_keys(HOSTNQN, "hk", None)
    if case == "digest":
        aenv.tgt.dhchap_digests = ("sha256",)  # taken at Connect
    lk = aenv.link()
    assert lk.establish().status == 0
    if case == "bad_command":
        c = auth_send(lk, host_auth().negotiate(), secp=0xEA)
        assert c.sc == spec.GenericStatus.INVALID_FIELD
        return
    if case == "digest":
        h = host_auth(hash_ids=[3])
        auth_send(lk, h.negotiate())
        with pytest.raises(dhchap.HostAuthError) as ei:
            h.challenge(auth_recv(lk))
        assert ei.value.reason == FailureReason.HASH_UNUSABLE
    else:
        h = host_auth(key=WRONG_KEY if case == "wrong_key" else HOST_KEY,
                      ctrl=WRONG_KEY if case == "failure2" else CTRL_KEY, dhgroup_ids=[0])
        auth_send(lk, h.negotiate())
        auth_send(lk, h.challenge(auth_recv(lk)))
        if case == "failure2":
            out = h.success1(auth_recv(lk))
            assert out is not None and sa.message_head(out)[1] == sa.AuthId.FAILURE2
            auth_send(lk, out)
        else:
            with pytest.raises(dhchap.HostAuthError) as ei:
                h.success1(auth_recv(lk))
            assert ei.value.reason == FailureReason.FAILED
    r = lk.wait(lk.host.identify(1))
    assert (r.sct, r.sc) == (1, SC_AUTH_REQUIRED)
    assert other.wait(other.host.identify(1)).status == 0


def test_host_not_allowed_and_unreadable_keys_are_refused_at_connect(aenv: Env, keys: dict) -> None:
    lk = aenv.link()
    c = lk.establish(hostnqn="nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000aa")
    assert c.sc == spec.FabricsStatus.CONNECT_INVALID_HOST
    keyring.remove_key("hk")  # the subsystem keeps a reference, but the material is gone
    lk = aenv.link()
    assert lk.establish().sc == spec.FabricsStatus.CONNECT_INVALID_HOST


def test_rpcs_set_and_rotate_keys(aenv: Env, keys: dict) -> None:
    rpc = nvmf_rpc
    with pytest.raises(RpcError, match="dhchap_key.*does not exist"):
        rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2024-01.io.x:h1", dhchap_key="nokey")  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="dhchap_key.*DHHC-1"):
        rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2024-01.io.x:h1", dhchap_key="bad")  # type: ignore[arg-type]
    with pytest.raises(RpcError, match="'dhchap_ctrlr_key' needs 'dhchap_key'"):
        rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2024-01.io.x:h1", dhchap_ctrlr_key="ck")  # type: ignore[arg-type]
    assert "nqn.2024-01.io.x:h1" not in aenv.subsys.hosts  # a failed call adds nothing
    assert rpc.nvmf_subsystem_add_host(None, NQN, "nqn.2024-01.io.x:h1", dhchap_key="hk_t")  # type: ignore[arg-type]
    hosts = {h["nqn"]: h for h in aenv.subsys.to_json()["hosts"]}
    assert hosts["nqn.2024-01.io.x:h1"] == {"nqn": "nqn.2024-01.io.x:h1", "dhchap_key": "hk_t"}
    assert hosts[HOSTNQN] == {"nqn": HOSTNQN, "dhchap_key": "hk", "dhchap_ctrlr_key": "ck"}
    # rotation: the next Connect must use the new key
    assert rpc.nvmf_subsystem_set_keys(None, NQN, HOSTNQN, dhchap_key="hk_t")  # type: ignore[arg-type]
    lk = aenv.link()
    lk.establish()
    aenv.tgt.dhchap_dhgroups = ("null",)
    with pytest.raises(dhchap.HostAuthError):
        authenticate(lk, host_auth(ctrl=None))
    lk = aenv.link()
    lk.establish()
    authenticate(lk, host_auth(key=HOST_KEY_T, ctrl=None))
    lk.enable()
    # no keys at all: the host connects without authentication
    assert rpc.nvmf_subsystem_set_keys(None, NQN, HOSTNQN)  # type: ignore[arg-type]
    c = aenv.link().establish()
    assert c.status == 0 and not (c.dw0 >> 16)
    with pytest.raises(RpcError, match="not in the allowed hosts"):
        rpc.nvmf_subsystem_set_keys(None, NQN, "nqn.2024-01.io.x:nobody", dhchap_key="hk")  # type: ignore[arg-type]
    # nvmf_set_config and save_config
    assert rpc.nvmf_set_config(None, dhchap_digests=["sha384"], dhchap_dhgroups=["null", "ffdhe3072"])  # type: ignore[arg-type]
    assert aenv.tgt.dhchap_digests == ("sha384",)
    with pytest.raises(RpcError, match="dhchap_digests"):
        rpc.nvmf_set_config(None, dhchap_digests=[])  # type: ignore[arg-type]
    cfg = rpc.config_json(aenv.tgt)
    assert cfg[0]["params"]["dhchap_dhgroups"] == ["null", "ffdhe3072"]
    adds = [c["params"] for c in cfg if c["method"] == "nvmf_subsystem_add_host"]
    assert {"nqn": NQN, "host": "nqn.2024-01.io.x:h1", "dhchap_key": "hk_t"} in adds
    assert HOST_KEY.split(":")[2] not in repr(cfg)


def test_removing_a_host_drops_its_key_references(aenv: Env, keys: dict) -> None:
    k = keyring.find_key("hk")
    assert k is not None and k.refcnt == 2
    aenv.subsys.remove_host(HOSTNQN)
    assert k.refcnt == 1
    with pytest.raises(NvmfConfigError):
        aenv.subsys.set_host_keys(HOSTNQN, "hk", None)


def test_auth_commands_without_a_transaction(aenv: Env) -> None:
    lk = aenv.link()
    assert lk.establish(hostnqn=OTHER).status == 0
    assert auth_send(lk, host_auth().negotiate()).sc == spec.GenericStatus.COMMAND_SEQUENCE_ERROR
    lk = aenv.link()
    lk.establish()
    h = host_auth()
    auth_send(lk, h.negotiate())
    c = lk.wait(lk.host.submit(sa.build_auth_command(lk.host.next_cid(), False, 8, sgl_transport(8)),
                               read_len=8))  # too small for the challenge
    assert c.sc == spec.GenericStatus.INVALID_FIELD
    assert struct.calcsize("<I") == 4


# -- spydk's host driver over sockets ----------------------------------------------------------

def test_host_driver_authenticates_every_queue(keys: dict[str, str]) -> None:
    """spydk's NVMe host (Controller, ControllerOpts.dhchap_key / dhchap_ctrlr_key) answers the
    target's AUTHREQ on the admin and the I/O queues, one-way and bidirectionally; a wrong key,
    no key and a wrong controller key each fail the attach with the reason."""
    import asyncio
    import random
    import socket

    from spydk.nvme.host import Controller, ControllerOpts, NvmeError, TransportId
    from spydk.nvmf.subsystem import ListenAddress, Subsystem
    from spydk.nvmf.tgt import Target
    from spydk.nvmf.transport import TransportOptions
    from spydk.nvmf.transports.tcp import TcpTransport
    from tests.nvmf.helpers import MemoryBackend

    tgt = Target()
    tr = TcpTransport(tgt, TransportOptions())
    tgt.add_transport(tr)
    sub = Subsystem(NQN, allow_any_host=False)
    tgt.add_subsystem(sub)
    sub.add_namespace("Mem0", MemoryBackend(num_blocks=2048), nsid=1)
    sub.add_host(HOSTNQN)
    sub.set_host_keys(HOSTNQN, "hk", "ck")
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = str(so.getsockname()[1])

    def ctrlr(key: str | None, ckey: str | None) -> Controller:
        return Controller(TransportId(traddr="127.0.0.1", trsvcid=port, subnqn=NQN),
                          ControllerOpts(hostnqn=HOSTNQN, dhchap_key=key, dhchap_ctrlr_key=ckey,
                                         connect_timeout=5.0, arm_aer=False))

    async def rw(c: Controller) -> None:
        q = c.io_qpairs[0]
        data = random.Random(4).randbytes(4096)
        loop = asyncio.get_running_loop()
        for op, buf in ((q.write, memoryview(data)), (q.read, memoryview(bytearray(4096)))):
            fut = loop.create_future()
            op(1, buf, 8, 8, lambda _a, st, _d, f=fut: f.set_result(st))
            assert await fut == 0
        assert bytes(buf) == data

    async def main() -> None:
        await tgt.add_listener(sub, ListenAddress("TCP", "127.0.0.1", port))
        try:
            for ckey in (None, CTRL_KEY):
                c = ctrlr(HOST_KEY, ckey)
                await c.connect()
                await rw(c)
                qps = nvmf_rpc.nvmf_subsystem_get_qpairs(None, NQN)  # type: ignore[arg-type]
                assert len(qps) == 2 and all(q["auth"]["state"] == "completed" for q in qps)
                await c.detach()
            for key, ckey, why in ((WRONG_KEY, None, r"DH-HMAC-CHAP on queue 0 failed.*refused"),
                                   (None, None, "requires DH-HMAC-CHAP"),
                                   (HOST_KEY, WRONG_KEY, "did not prove")):
                bad = ctrlr(key, ckey)
                with pytest.raises(NvmeError, match=why):
                    await bad.connect()
                await bad.detach()
        finally:
            await tr.close()

    set_target(tgt)
    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        set_target(None)
