"""Codec cost per 4 KiB read on the controller side of an NVMe/TCP queue pair.

Per I/O: one CapsuleCmd arrives (written into get_buffer() as recv_into would, then parsed),
then a C2HData PDU carrying 4 KiB and a CapsuleResp are encoded. Prints ns per I/O for a few
configurations, plus the batched case where 32 capsules arrive in one receive.

    .venv/bin/python bench/nvme_tcp_codec.py [iterations]
"""
from __future__ import annotations

import sys
import time

from spydk.nvme import spec
from spydk.nvme.tcp import CapsuleCommand, Role, TcpQueuePair


def _pair(hdgst: bool, ddgst: bool) -> tuple[TcpQueuePair, TcpQueuePair]:
    host, ctrl = TcpQueuePair(Role.HOST), TcpQueuePair(Role.CONTROLLER)
    for b in host.send_icreq(header_digest=hdgst, data_digest=ddgst):
        ctrl.receive_data(bytes(b))
    ctrl.events()
    for b in ctrl.send_icresp():
        host.receive_data(bytes(b))
    host.events()
    return host, ctrl


def _capsule(host: TcpQueuePair, cid: int) -> bytes:
    sgl = spec.build_sgl(0, 4096, spec.SglType.TRANSPORT_DATA_BLOCK, spec.SglSubtype.TRANSPORT)
    sqe = spec.build_sqe(spec.NvmOpcode.READ, cid, 1, psdt=1, dptr=sgl, cdw10=0, cdw12=7)
    raw = b"".join(bytes(b) for b in host.send_capsule_cmd(sqe))
    host.abort_command(cid)
    return raw


def run(n: int, hdgst: bool, ddgst: bool, batch: int) -> float:
    host, ctrl = _pair(hdgst, ddgst)
    cap = _capsule(host, 1) * batch
    clen = len(cap)
    data = memoryview(bytes(4096))
    get_buffer, buffer_updated, next_event = ctrl.get_buffer, ctrl.buffer_updated, ctrl.next_event
    send_c2h, send_resp = ctrl.send_c2h_data, ctrl.send_response
    cid_of = spec.sqe_cid
    rounds = n // batch
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        buf = get_buffer(65536)
        buf[:clen] = cap  # what recv_into would have done
        buffer_updated(clen)
        ev = next_event()
        while ev is not None:
            assert type(ev) is CapsuleCommand
            cid = cid_of(ev.sqe)
            send_c2h(cid, 0, data, last=True)
            send_resp(cid)
            ev = next_event()
    return (time.perf_counter_ns() - t0) / (rounds * batch)


def _call_ns() -> float:
    """Cost of an empty 2-argument Python call here, to compare machines."""
    def f(a: int, b: int) -> None:
        pass
    n = 1_000_000
    t0 = time.perf_counter_ns()
    for _ in range(n):
        f(1, 2)
    return (time.perf_counter_ns() - t0) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"machine reference: empty Python call + loop = {_call_ns():.0f} ns")
    for hdgst, ddgst, batch in ((False, False, 1), (False, False, 32), (True, False, 1),
                                (True, True, 1), (True, True, 32)):
        run(n // 10, hdgst, ddgst, batch)  # warm-up
        ns = run(n, hdgst, ddgst, batch)
        print(f"4KiB read: hdgst={hdgst!s:5} ddgst={ddgst!s:5} capsules/recv={batch:<3} "
              f"{ns:7.0f} ns/IO  ({1e9 / ns / 1000:.0f}K IOPS/core codec-only)")


if __name__ == "__main__":
    main()
