"""Shared helpers for the NVMe/TCP tests: a reference CRC32C and an in-memory queue pair link."""
from __future__ import annotations

from collections.abc import Iterable

from spydk.nvme import spec
from spydk.nvme.tcp import Event, Role, TcpQueuePair


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def ref_crc32c(data: bytes) -> int:
    """Table-driven CRC32C (Castagnoli), independent of the crc32c package."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def le32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def join(bufs: Iterable[bytes | bytearray | memoryview]) -> bytes:
    return b"".join(bytes(b) for b in bufs)


def deliver(dst: TcpQueuePair, bufs: Iterable[bytes | bytearray | memoryview]) -> list[Event]:
    dst.receive_data(join(bufs))
    return dst.events()


def connected_pair(*, hdgst: bool = False, ddgst: bool = False, hpda: int = 0, cpda: int = 0,
                   maxr2t: int = 0, maxh2cdata: int = 128 * 1024,
                   ring_size: int = 256 * 1024) -> tuple[TcpQueuePair, TcpQueuePair]:
    host = TcpQueuePair(Role.HOST, ring_size=ring_size)
    ctrl = TcpQueuePair(Role.CONTROLLER, ring_size=ring_size)
    evs = deliver(ctrl, host.send_icreq(hpda=hpda, header_digest=hdgst, data_digest=ddgst,
                                        maxr2t=maxr2t))
    assert len(evs) == 1
    evs = deliver(host, ctrl.send_icresp(cpda=cpda, maxh2cdata=maxh2cdata))
    assert len(evs) == 1
    return host, ctrl


def tcp_sgl(length: int) -> bytes:
    return spec.build_sgl(0, length, spec.SglType.TRANSPORT_DATA_BLOCK, spec.SglSubtype.TRANSPORT)


def incapsule_sgl(length: int) -> bytes:
    return spec.build_sgl(0, length, spec.SglType.DATA_BLOCK, spec.SglSubtype.OFFSET)


def read_sqe(cid: int, length: int, nsid: int = 1) -> bytes:
    return spec.build_sqe(spec.NvmOpcode.READ, cid, nsid, psdt=1, dptr=tcp_sgl(length),
                          cdw12=max(length // 512 - 1, 0))


def write_sqe(cid: int, length: int, nsid: int = 1, incapsule: bool = False) -> bytes:
    sgl = incapsule_sgl(length) if incapsule else tcp_sgl(length)
    return spec.build_sqe(spec.NvmOpcode.WRITE, cid, nsid, psdt=1, dptr=sgl,
                          cdw12=max(length // 512 - 1, 0))
