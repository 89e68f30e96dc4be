"""Random bytes into a live target connection: the controller never raises out of its loop,
and a connection either keeps going or ends with a C2HTermReq / close."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.nvmf.helpers import push_bytes

from .conftest import Env


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=2048), chunk=st.integers(1, 512), connected=st.booleans())
def test_random_bytes_never_raise(junk: bytes, chunk: int, connected: bool) -> None:
    env = Env()
    lk = env.link()
    if connected:
        _, cntlid = env.admin()
        lk = env.io(cntlid)
    push_bytes(lk.conn, junk, chunk)
    lk.pump()
    if lk.conn.closing:
        written = b"".join(lk.ft.written)
        assert lk.ft.closed
        assert not written or written[0] in (0x01, 0x03, 0x05, 0x07, 0x09)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sqe=st.binary(min_size=64, max_size=64), data=st.binary(max_size=600))
def test_random_commands_on_live_queues(sqe: bytes, data: bytes) -> None:
    """Well-framed capsules carrying random SQEs: every command completes or the connection ends."""
    env = Env()
    adm, cntlid = env.admin()
    io = env.io(cntlid)
    for lk in (adm, io):
        cid = int.from_bytes(sqe[2:4], "little")
        lk.host.tq._cmds.pop(cid, None)
        try:
            lk.host.submit(sqe, data or None)
        except Exception:
            continue  # the host codec refused to build it; nothing was sent
        lk.pump()
        fused_first = sqe[1] & 3 == 1 and lk is io  # waits for its second half
        assert cid in lk.host.completions or lk.conn.closing or lk.host.terminated is not None \
            or fused_first or lk.conn.r2t_reqs
