"""The vhost-user front end (what QEMU is to a vhost target), sans-IO.

Used by the virtio initiator bdev (spydk/modules/bdev/virtio) to drive a vhost-user
back end: qemu-storage-daemon, SPDK's vhost, or spydk's own. The driver's memory is a
memfd (``SharedMemory``) shared with the back end through SET_MEM_TABLE; rings and bounce
buffers live in it.

    fe = FrontendSession(send, mem, queues, kick_fds, call_fds, device_features)
    fe.start()                  # sends the first request through send(buf, fds)
    fe.feed(data, fds)          # replies from the back end; fe.ready / fe.error when done

The setup sequence is a generator: each step yields a request and gets its reply.
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from spydk.vhost.codec import Message, MessageDecoder, ProtocolError, encode
from spydk.vhost.spec import (
    CONFIG_HDR,
    F_PROTOCOL_FEATURES,
    F_RING_EVENT_IDX,
    F_VERSION_1,
    MEM_HDR,
    MEM_REGION,
    U64,
    VRING_ADDR,
    VRING_STATE,
    ProtoFeature,
    Req,
    bit,
)
from spydk.vhost.virtqueue import DriverQueue

Send = Callable[[bytes, list[int]], None]

# The address the front end claims for its mapping in SET_MEM_TABLE / SET_VRING_ADDR.
# The back end only uses it to translate ring addresses, so any consistent value works;
# a distinct one (not the GPA) keeps both translations honest in tests.
UVA_BASE = 0x7F00_0000_0000

WANTED_PROTOCOL = (bit(ProtoFeature.MQ) | bit(ProtoFeature.REPLY_ACK) | bit(ProtoFeature.CONFIG))


class SharedMemory:
    """A memfd the driver allocates its rings and buffers from (GPA = offset)."""

    def __init__(self, size: int, name: str = "spydk-virtio"):
        self.size = (size + 0xFFF) & ~0xFFF
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, self.size)
        self.mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mm)
        self._next = 0

    def alloc(self, size: int, align: int = 64) -> tuple[int, memoryview]:
        start = (self._next + align - 1) & ~(align - 1)
        if start + size > self.size:
            raise MemoryError(f"shared memory of {self.size} bytes is full")
        self._next = start + size
        return start, self.view[start:start + size]

    def close(self) -> None:
        self.view.release()
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


@dataclass
class Step:
    request: int
    payload: bytes = b""
    fds: list[int] = field(default_factory=list)
    reply: bool = False     # the request has a reply of its own
    ack: bool = False       # ask for a REPLY_ACK


@dataclass
class BackendInfo:
    features: int = 0
    protocol_features: int = 0
    queue_num: int = 1
    config: bytes = b""


class FrontendSession:
    def __init__(self, send: Send, mem: SharedMemory, queues: list[DriverQueue],
                 kick_fds: list[int], call_fds: list[int], device_features: int,
                 config_size: int, *, config_optional: bool = False, on_ready: Callable[[BackendInfo], None] | None = None,
                 on_error: Callable[[str], None] | None = None):
        self.send = send
        self.mem = mem
        self.queues = queues
        self.kick_fds = kick_fds
        self.call_fds = call_fds
        self.device_features = device_features
        self.config_size = config_size
        # virtio-scsi back ends (SPDK's vhost-scsi) may keep their config space to
        # themselves: the driver then scans with its own limits (info.config stays empty)
        self.config_optional = config_optional
        self.on_ready = on_ready
        self.on_error = on_error
        self.decoder = MessageDecoder(expect_reply=True)
        self.info = BackendInfo()
        self.ready = False
        self.error: str | None = None
        self._gen: Generator[Step, Message | None, None] | None = None
        self._waiting: Step | None = None

    def start(self) -> None:
        self._gen = self._script()
        self._advance(None)

    def feed(self, data: bytes | memoryview, fds: list[int] | tuple[int, ...] = ()) -> None:
        for msg in self.decoder.feed(data, fds):
            msg.close_fds()
            w = self._waiting
            if w is None or msg.request != w.request:
                self._fail(f"unexpected reply to request {msg.request}")
                return
            self._advance(msg)

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
            if self.on_error is not None:
                self.on_error(why)

    def _advance(self, reply: Message | None) -> None:
        assert self._gen is not None
        while True:
            try:
                step = self._gen.send(reply)
            except StopIteration:
                self._waiting = None
                self.ready = True
                if self.on_ready is not None:
                    self.on_ready(self.info)
                return
            except ProtocolError as e:
                self._waiting = None
                self._fail(str(e))
                return
            reply = None
            self._waiting = step
            self.send(encode(step.request, step.payload, need_reply=step.ack), step.fds)
            if step.reply or step.ack:
                return

    def _script(self) -> Generator[Step, Message | None, None]:
        info = self.info
        yield Step(Req.SET_OWNER)
        r = yield Step(Req.GET_FEATURES, reply=True)
        info.features = _u64(r)
        need = bit(F_VERSION_1) | bit(F_PROTOCOL_FEATURES)
        if info.features & need != need:
            raise ProtocolError(f"the back end lacks VERSION_1 or PROTOCOL_FEATURES (offers {info.features:#x})")
        r = yield Step(Req.GET_PROTOCOL_FEATURES, reply=True)
        info.protocol_features = _u64(r) & WANTED_PROTOCOL
        has_config = bool(info.protocol_features & bit(ProtoFeature.CONFIG))
        if not has_config and not self.config_optional:
            raise ProtocolError("the back end does not offer its config space (CONFIG protocol feature)")
        yield Step(Req.SET_PROTOCOL_FEATURES, U64.pack(info.protocol_features))
        ack = bool(info.protocol_features & bit(ProtoFeature.REPLY_ACK))
        if info.protocol_features & bit(ProtoFeature.MQ):
            r = yield Step(Req.GET_QUEUE_NUM, reply=True)
            info.queue_num = _u64(r)
            if info.queue_num < len(self.queues):
                raise ProtocolError(f"the back end has {info.queue_num} queues, {len(self.queues)} asked")
        if has_config:
            r = yield Step(Req.GET_CONFIG, CONFIG_HDR.pack(0, self.config_size, 0) + bytes(self.config_size),
                           reply=True)
            assert r is not None
            if len(r.payload) < CONFIG_HDR.size + self.config_size:
                raise ProtocolError(f"GET_CONFIG reply of {len(r.payload)} bytes")
            info.config = r.payload[CONFIG_HDR.size:CONFIG_HDR.size + self.config_size]
        features = info.features & (self.device_features | bit(F_VERSION_1) | bit(F_PROTOCOL_FEATURES)
                                    | bit(F_RING_EVENT_IDX))
        info.features = features
        for q in self.queues:
            q.event_idx = bool(features & bit(F_RING_EVENT_IDX))
        yield Step(Req.SET_FEATURES, U64.pack(features), ack=ack)
        table = MEM_HDR.pack(1, 0) + MEM_REGION.pack(0, self.mem.size, UVA_BASE, 0)
        r = yield Step(Req.SET_MEM_TABLE, table, [self.mem.fd], ack=ack)
        _check_ack(r, "SET_MEM_TABLE")
        for i, q in enumerate(self.queues):
            yield Step(Req.SET_VRING_NUM, VRING_STATE.pack(i, q.num))
            yield Step(Req.SET_VRING_BASE, VRING_STATE.pack(i, 0))
            yield Step(Req.SET_VRING_ADDR, VRING_ADDR.pack(i, 0, UVA_BASE + q.desc_addr,
                                                          UVA_BASE + q.used_addr,
                                                          UVA_BASE + q.avail_addr, 0))
            yield Step(Req.SET_VRING_CALL, U64.pack(i), [self.call_fds[i]])
            r = yield Step(Req.SET_VRING_KICK, U64.pack(i), [self.kick_fds[i]], ack=ack)
            _check_ack(r, "SET_VRING_KICK")
            r = yield Step(Req.SET_VRING_ENABLE, VRING_STATE.pack(i, 1), ack=ack)
            _check_ack(r, "SET_VRING_ENABLE")


def _u64(r: Message | None) -> int:
    if r is None or len(r.payload) < 8:
        raise ProtocolError("reply without its 64-bit value")
    return int(U64.unpack_from(r.payload)[0])


def _check_ack(r: Message | None, what: str) -> None:
    if r is not None and _u64(r) != 0:
        raise ProtocolError(f"the back end refused {what} (status {_u64(r)})")
