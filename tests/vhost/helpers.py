"""Shared helpers: guest memory over a bytearray, a device that records what a session asks."""
from __future__ import annotations

from collections.abc import Callable

from spydk.vhost.memory import GuestMemory, Region
from spydk.vhost.session import BackendSession, Vring
from spydk.vhost.spec import BLK_CONFIG


def ram(size: int, gpa: int = 0x10000, uva: int = 0x7000_0000) -> tuple[bytearray, GuestMemory]:
    buf = bytearray(size)
    return buf, GuestMemory([Region(gpa, size, uva, memoryview(buf))])


class FakeDevice:
    name = "fake.0"

    def __init__(self, queues: int = 2):
        self.queues = queues
        self.started: list[int] = []
        self.stopped: list[int] = []
        self.hold_stop = False
        self.pending_stop: list[Callable[[], None]] = []

    def device_features(self) -> int:
        return 1 << 6

    def max_queues(self) -> int:
        return self.queues

    def config_space(self) -> bytes:
        return BLK_CONFIG.pack(2048, 0, 126, 0, 0, 0, 512, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0)

    def start_queue(self, session: BackendSession, vring: Vring) -> None:
        self.started.append(vring.index)

    def stop_queue(self, session: BackendSession, vring: Vring, done: Callable[[], None]) -> None:
        self.stopped.append(vring.index)
        if self.hold_stop:
            self.pending_stop.append(done)
        else:
            done()
