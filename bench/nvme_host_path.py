"""Host-side cost per I/O of spydk's NVMe/TCP driver, without sockets or a target: a TcpQpair
whose "target" answers every 4 KiB read with a C2HData PDU (SUCCESS flag) built in advance,
fed back in batches like a socket would. Prints I/Os per second of CPU on one core.

    .venv/bin/python bench/nvme_host_path.py [--ios 200000] [--depth 128]
"""
from __future__ import annotations

import argparse
import asyncio
import struct
import time
from typing import Any

from spydk.nvme.host.tcp import TcpQpair

_C2H = struct.Struct("<BBBBIHHII4x")  # CH, CCCID, rsvd, DATAO, DATAL, rsvd


class _Echo:
    """The qpair's transport: collects the commands, answers them with canned C2H PDUs."""

    def __init__(self, qp: TcpQpair, size: int) -> None:
        self.qp = qp
        self.size = size
        self.payload = bytes(size)
        self.pending: list[int] = []

    def writelines(self, bufs: Any) -> None:
        for b in bufs:
            self._cmds(bytes(b))

    def write(self, data: bytes) -> None:
        self._cmds(data)

    def _cmds(self, data: bytes) -> None:
        if data[0] == 0:  # the ICReq: answer with an ICResp on the next loop turn
            asyncio.get_running_loop().call_soon(self._feed, self.icresp)
            return
        for pos in range(0, len(data), 72):
            self.pending.append(struct.unpack_from("<H", data, pos + 10)[0])

    icresp = struct.pack("<BBBBIHBBI", 1, 0, 128, 0, 128, 0, 0, 0, 131072).ljust(128, b"\0")

    def answer(self) -> None:
        cids, self.pending = self.pending, []
        n = self.size
        self._feed(b"".join(_C2H.pack(7, 0x0C, 24, 24, 24 + n, cid, 0, 0, n) + self.payload
                            for cid in cids))

    def _feed(self, raw: bytes) -> None:
        link = self.qp._link
        assert link is not None
        pos = 0
        while pos < len(raw):
            buf = link.get_buffer(-1)
            k = min(len(buf), len(raw) - pos)
            buf[:k] = raw[pos:pos + k]
            link.buffer_updated(k)
            pos += k

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        pass


async def run(ios: int, depth: int, size: int) -> tuple[float, int]:
    qp = TcpQpair(1, depth + 1, incapsule_data=8192)
    echo = _Echo(qp, size)

    async def connector(link: Any) -> None:
        link.connection_made(echo)

    await qp.connect("x", "1", connector=connector)
    done = 0
    bufs = [memoryview(bytearray(size)) for _ in range(depth)]

    def cb(i: int, status: int, dw0: int) -> None:
        nonlocal done
        done += 1
        if done + depth <= ios:
            qp.read(1, bufs[i], i * 8, size // 512, cb, i)

    t0 = time.process_time()
    for i in range(depth):
        qp.read(1, bufs[i], i * 8, size // 512, cb, i)
    qp._flush()
    while done < ios - depth + 1 and echo.pending:
        echo.answer()
    return time.process_time() - t0, done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ios", type=int, default=200000)
    ap.add_argument("--depth", type=int, default=128)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()
    cpu, done = asyncio.run(run(a.ios, a.depth, a.size))
    print(f"{done} reads of {a.size} B at QD{a.depth}: {cpu:.2f} s CPU, {cpu / done * 1e6:.2f} us/IO, "
          f"{done / cpu:,.0f} IO per CPU second")


if __name__ == "__main__":
    main()
