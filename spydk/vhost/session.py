"""The vhost-user back end's protocol state machine (one per front-end connection).

Sans-IO: ``receive(data, fds)`` takes what the socket delivered; replies leave through the
``send(buf, fds)`` callable given at construction; the device (blk, scsi) is told when a
ring starts or must stop. No sockets, clocks or threads here.

    s = BackendSession(device, send, name="vhost.0")
    s.receive(data, fds)        # raises ProtocolError: close the connection, then s.close()

A ring starts once the memory table, its size, addresses and kick are known. A stop
(GET_VRING_BASE) waits for the device to finish the ring's in-flight requests before
answering, so the index given back covers only completed work; messages that arrive
meanwhile wait.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from spydk.vhost.codec import Message, MessageDecoder, ProtocolError, close_quietly, encode
from spydk.vhost.memory import GuestMemory, MemoryFault, parse_mem_table
from spydk.vhost.spec import (
    CONFIG_HDR,
    F_ANY_LAYOUT,
    F_NOTIFY_ON_EMPTY,
    F_PROTOCOL_FEATURES,
    F_RING_EVENT_IDX,
    F_RING_INDIRECT_DESC,
    F_VERSION_1,
    HAS_REPLY,
    INFLIGHT,
    INFLIGHT_WIRE_SIZE,
    MAX_CONFIG_SIZE,
    U64,
    VRING_ADDR,
    VRING_IDX_MASK,
    VRING_NOFD,
    VRING_STATE,
    ProtoFeature,
    Req,
    bit,
)
from spydk.vhost.virtqueue import DeviceQueue, VirtqError

log = logging.getLogger("spydk.vhost")

Send = Callable[[bytes, list[int]], None]

COMMON_FEATURES = (bit(F_VERSION_1) | bit(F_RING_INDIRECT_DESC) | bit(F_RING_EVENT_IDX)
                   | bit(F_PROTOCOL_FEATURES) | bit(F_NOTIFY_ON_EMPTY) | bit(F_ANY_LAYOUT))
PROTOCOL_FEATURES = (bit(ProtoFeature.MQ) | bit(ProtoFeature.REPLY_ACK) | bit(ProtoFeature.CONFIG)
                     | bit(ProtoFeature.RESET_DEVICE))
DEFAULT_RING_SIZE = 256


class Device(Protocol):
    """What a session needs from the device it serves (vhost-blk, vhost-scsi)."""

    name: str

    def device_features(self) -> int: ...
    def max_queues(self) -> int: ...
    def config_space(self) -> bytes: ...
    def start_queue(self, session: BackendSession, vring: Vring) -> None: ...
    def stop_queue(self, session: BackendSession, vring: Vring, done: Callable[[], None]) -> None: ...


@dataclass
class Vring:
    index: int
    num: int = DEFAULT_RING_SIZE
    desc_uva: int = 0
    avail_uva: int = 0
    used_uva: int = 0
    addr_set: bool = False
    base: int = 0
    kick_fd: int | None = None
    kick_set: bool = False
    call_fd: int | None = None
    err_fd: int | None = None
    enabled: bool = False
    queue: DeviceQueue | None = None
    stopping: bool = False

    def close_fds(self) -> None:
        for attr in ("kick_fd", "call_fd", "err_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                close_quietly(fd)
                setattr(self, attr, None)


class BackendSession:
    def __init__(self, device: Device, send: Send, *, name: str = ""):
        self.device = device
        self.send = send
        self.name = name or device.name
        self.decoder = MessageDecoder()
        self.features = 0
        self.protocol_features = 0
        self.owner = False
        self.mem: GuestMemory | None = None
        self.vrings = [Vring(i) for i in range(device.max_queues())]
        self._waiting: list[Message] = []
        self._blocked = False
        self.closed = False
        self.failed: str | None = None

    @property
    def offered_features(self) -> int:
        return COMMON_FEATURES | self.device.device_features()

    def has_feature(self, n: int) -> bool:
        return bool(self.features >> n & 1)

    def started(self) -> list[Vring]:
        return [v for v in self.vrings if v.queue is not None]

    # -- input ----------------------------------------------------------------------------

    def receive(self, data: bytes | memoryview, fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.closed:
            for fd in fds:
                close_quietly(fd)
            return
        for msg in self.decoder.feed(data, fds):
            if self._blocked:
                self._waiting.append(msg)
                continue
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        try:
            ok = self._handle(msg)
        except (MemoryFault, VirtqError) as e:
            msg.close_fds()
            raise ProtocolError(f"{_req_name(msg.request)}: {e}") from None
        except ProtocolError:
            msg.close_fds()
            raise
        msg.close_fds()   # fds a request did not take
        if ok is None:
            return        # answered later (a stop waiting for in-flight I/O)
        if (msg.need_reply and msg.request not in HAS_REPLY
                and self.protocol_features & bit(ProtoFeature.REPLY_ACK)):
            self.send(encode(msg.request, U64.pack(0 if ok else 1), reply=True), [])

    def _reply(self, msg: Message, payload: bytes, fds: list[int] | None = None) -> None:
        self.send(encode(msg.request, payload, reply=True), fds or [])

    def _vring(self, msg: Message, index: int) -> Vring:
        if index >= len(self.vrings):
            raise ProtocolError(f"{_req_name(msg.request)}: ring {index} does not exist "
                                f"(the device has {len(self.vrings)})")
        return self.vrings[index]

    def _payload(self, msg: Message, size: int) -> bytes:
        if len(msg.payload) < size:
            raise ProtocolError(f"{_req_name(msg.request)}: payload of {len(msg.payload)} bytes, "
                                f"expected {size}")
        return msg.payload

    # -- requests -------------------------------------------------------------------------

    def _handle(self, msg: Message) -> bool | None:
        r = msg.request
        if r == Req.GET_FEATURES:
            self._reply(msg, U64.pack(self.offered_features))
        elif r == Req.SET_FEATURES:
            (f,) = U64.unpack_from(self._payload(msg, 8))
            if f & ~self.offered_features:
                raise ProtocolError(f"SET_FEATURES: bits {f & ~self.offered_features:#x} were not offered")
            self.features = f
            for v in self.started():
                assert v.queue is not None
                v.queue.event_idx = self.has_feature(F_RING_EVENT_IDX)
        elif r == Req.GET_PROTOCOL_FEATURES:
            self._reply(msg, U64.pack(PROTOCOL_FEATURES))
        elif r == Req.SET_PROTOCOL_FEATURES:
            (f,) = U64.unpack_from(self._payload(msg, 8))
            if f & ~PROTOCOL_FEATURES:
                raise ProtocolError(f"SET_PROTOCOL_FEATURES: bits {f & ~PROTOCOL_FEATURES:#x} were not offered")
            self.protocol_features = f
        elif r == Req.SET_OWNER:
            self.owner = True
        elif r in (Req.RESET_OWNER, Req.RESET_DEVICE):
            return self._stop_all(msg)
        elif r == Req.GET_QUEUE_NUM:
            self._reply(msg, U64.pack(len(self.vrings)))
        elif r == Req.SET_MEM_TABLE:
            self._set_mem_table(msg)
        elif r == Req.SET_VRING_NUM:
            index, num = VRING_STATE.unpack_from(self._payload(msg, 8))
            v = self._vring(msg, index)
            if not 1 <= num <= 32768 or num & (num - 1):
                raise ProtocolError(f"SET_VRING_NUM: ring {index} size {num} is not a power of two up to 32768")
            v.num = num
        elif r == Req.SET_VRING_ADDR:
            index, _flags, desc, used, avail, _log = VRING_ADDR.unpack_from(self._payload(msg, 40))
            v = self._vring(msg, index)
            v.desc_uva, v.used_uva, v.avail_uva, v.addr_set = desc, used, avail, True
        elif r == Req.SET_VRING_BASE:
            index, num = VRING_STATE.unpack_from(self._payload(msg, 8))
            self._vring(msg, index).base = num & 0xFFFF
        elif r == Req.GET_VRING_BASE:
            index, _ = VRING_STATE.unpack_from(self._payload(msg, 8))
            self._get_vring_base(msg, self._vring(msg, index))
            return None
        elif r in (Req.SET_VRING_KICK, Req.SET_VRING_CALL, Req.SET_VRING_ERR):
            self._set_vring_fd(msg)
        elif r == Req.SET_VRING_ENABLE:
            index, num = VRING_STATE.unpack_from(self._payload(msg, 8))
            v = self._vring(msg, index)
            v.enabled = bool(num)
            self._try_start(v)
        elif r == Req.GET_CONFIG:
            return self._get_config(msg)
        elif r == Req.SET_CONFIG:
            return False  # the config space is read-only (writeback toggling is not offered)
        else:
            log.warning("%s: vhost-user request %s is not supported", self.name, _req_name(r))
            return False
        return True

    def _set_mem_table(self, msg: Message) -> None:
        descs = parse_mem_table(msg.payload, len(msg.fds))
        mem = GuestMemory.map_fds(descs, msg.fds)
        old, self.mem = self.mem, mem
        for v in self.started():   # rebind running rings to the new mapping
            q = v.queue
            assert q is not None
            nq = self._new_queue(v, mem)
            nq.last_avail_idx, nq.used_idx, nq.signalled_used = q.last_avail_idx, q.used_idx, q.signalled_used
            q.desc, q.avail, q.used, q.mem = nq.desc, nq.avail, nq.used, mem
        if old is not None:
            old.close()

    def _new_queue(self, v: Vring, mem: GuestMemory) -> DeviceQueue:
        try:
            desc = mem.uva_to_gpa(v.desc_uva)
            avail = mem.uva_to_gpa(v.avail_uva)
            used = mem.uva_to_gpa(v.used_uva)
        except MemoryFault as e:
            raise VirtqError(f"ring {v.index}: {e}") from None
        return DeviceQueue(mem, v.num, desc, avail, used, last_avail_idx=v.base,
                           event_idx=self.has_feature(F_RING_EVENT_IDX),
                           indirect=self.has_feature(F_RING_INDIRECT_DESC))

    def _set_vring_fd(self, msg: Message) -> None:
        (u,) = U64.unpack_from(self._payload(msg, 8))
        index = u & VRING_IDX_MASK
        v = self._vring(msg, index)
        fd = None
        if not u & VRING_NOFD:
            fd = msg.take_fd()
            if fd is None:
                raise ProtocolError(f"{_req_name(msg.request)}: ring {index} without a file descriptor")
        attr = {Req.SET_VRING_KICK: "kick_fd", Req.SET_VRING_CALL: "call_fd",
                Req.SET_VRING_ERR: "err_fd"}[Req(msg.request)]
        old = getattr(v, attr)
        setattr(v, attr, fd)
        if msg.request == Req.SET_VRING_KICK:
            was = v.queue is not None
            v.kick_set = True
            if not self.protocol_features or not self.has_feature(F_PROTOCOL_FEATURES):
                v.enabled = True
            if was:
                self.device.start_queue(self, v)   # re-register the new kick fd
            else:
                self._try_start(v)
        if old is not None:
            close_quietly(old)

    def _try_start(self, v: Vring) -> None:
        if v.queue is not None or v.stopping or not (v.kick_set and v.addr_set) or self.mem is None:
            return
        v.queue = self._new_queue(v, self.mem)
        self.device.start_queue(self, v)

    def _get_vring_base(self, msg: Message, v: Vring) -> None:
        def done() -> None:
            base = v.queue.last_avail_idx if v.queue is not None else v.base
            v.queue = None
            v.stopping = False
            v.kick_set = False
            v.base = base
            if v.kick_fd is not None:
                close_quietly(v.kick_fd)
                v.kick_fd = None
            if not self.closed:
                self._reply(msg, VRING_STATE.pack(v.index, base))
                self._unblock()
        if v.queue is None:
            done()
            return
        v.stopping = True
        self._blocked = True
        self.device.stop_queue(self, v, done)

    def _stop_all(self, msg: Message) -> bool | None:
        running = self.started()
        self.features = 0
        if not running:
            return True
        self._blocked = True
        left = [len(running)]

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                for v in running:
                    v.queue = None
                    v.stopping = False
                    v.kick_set = False
                if not self.closed:
                    if msg.need_reply and self.protocol_features & bit(ProtoFeature.REPLY_ACK):
                        self.send(encode(msg.request, U64.pack(0), reply=True), [])
                    self._unblock()
        for v in running:
            v.stopping = True
            self.device.stop_queue(self, v, one_done)
        return None

    def _unblock(self) -> None:
        self._blocked = False
        while self._waiting and not self._blocked:
            self._dispatch(self._waiting.pop(0))

    def _get_config(self, msg: Message) -> bool:
        offset, size, flags = CONFIG_HDR.unpack_from(self._payload(msg, CONFIG_HDR.size))
        if size > MAX_CONFIG_SIZE:
            raise ProtocolError(f"GET_CONFIG: {size} bytes asked, at most {MAX_CONFIG_SIZE}")
        cfg = self.device.config_space()
        data = cfg[offset:offset + size] if offset <= len(cfg) else b""
        data = data + bytes(size - len(data))
        self._reply(msg, CONFIG_HDR.pack(offset, size, flags) + data)
        return True

    # -- teardown -------------------------------------------------------------------------

    def fail(self, why: str) -> None:
        """The device hit invalid guest data: it stops serving (the glue disconnects)."""
        if self.failed is None:
            self.failed = why
            log.error("%s: device failed: %s", self.name, why)

    def close(self, done: Callable[[], None] | None = None) -> None:
        """Stop every ring (waiting for in-flight I/O), then unmap memory and close fds."""
        if self.closed:
            return
        self.closed = True
        self.decoder.close()
        for m in self._waiting:
            m.close_fds()
        self._waiting.clear()
        running = [v for v in self.vrings if v.queue is not None]
        left = [len(running)]

        def finish() -> None:
            for v in self.vrings:
                v.queue = None
                v.close_fds()
            if self.mem is not None:
                self.mem.close()
                self.mem = None
            if done is not None:
                done()

        def one_done() -> None:
            left[0] -= 1
            if left[0] == 0:
                finish()
        if not running:
            finish()
            return
        for v in running:
            if v.stopping:
                # its own stop is under way; count it when that finishes
                self.device.stop_queue(self, v, one_done)
            else:
                v.stopping = True
                self.device.stop_queue(self, v, one_done)


def _req_name(r: int) -> str:
    try:
        return Req(r).name
    except ValueError:
        return f"request {r}"


def parse_inflight(payload: bytes) -> tuple[int, int, int, int]:
    if len(payload) < INFLIGHT.size:
        raise ProtocolError(f"inflight payload of {len(payload)} bytes, expected {INFLIGHT_WIRE_SIZE}")
    return INFLIGHT.unpack_from(payload)   # type: ignore[return-value]
