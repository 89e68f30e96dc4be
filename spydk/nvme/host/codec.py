"""The one place the host driver touches the NVMe/TCP codec.

The driver's TCP transport (``host/tcp.py``) talks to the sans-IO codec only through the
names below, so a change of the codec's module layout or receive/send API is absorbed here.
"""
from __future__ import annotations

from spydk.nvme.tcp import (
    Buffer,
    C2HData,
    CapsuleResponse,
    ConnectionClosed,
    DataDigestError,
    Event,
    ICRespReceived,
    LocalProtocolError,
    ProtocolError,
    R2TReceived,
    Role,
    TcpQueuePair,
    TermReqReceived,
)
from spydk.nvme.tcp.pdu import _CH_PACK, READY, HostCmd

__all__ = [
    "Buffer", "C2HData", "CapsuleResponse", "ConnectionClosed", "DataDigestError", "Event",
    "HostCodec", "ICRespReceived", "LocalProtocolError", "ProtocolError", "R2TReceived",
    "TermReqReceived", "new_host_codec",
]

_C2H = 2  # DataTransfer.CONTROLLER_TO_HOST


class HostCodec(TcpQueuePair):
    """The host role plus one encoder for the I/O hot path."""

    def send_read_cmd(self, sqe: bytearray, cid: int, length: int,
                      dest: memoryview | None) -> bytes:
        """``send_capsule_cmd(sqe, dest=dest)`` for a read (C2H data, no in-capsule data):
        one header pack, when neither a header digest nor a previous use of the CID is in
        the way; otherwise the general encoder."""
        if self._hd or self._state != READY or cid in self._cmds:
            return bytes(b"".join(bytes(b) for b in self.send_capsule_cmd(sqe, dest=dest)))
        self._cmds[cid] = HostCmd(_C2H, length, 0, False, dest)
        return _CH_PACK(4, 0, 72, 0, 72) + sqe


def new_host_codec(max_incapsule_data: int) -> HostCodec:
    """A host-role codec; the ring is the codec's default size."""
    return HostCodec(Role.HOST, max_incapsule_data=max_incapsule_data)


def is_outstanding(codec: HostCodec, cid: int) -> bool:
    """The codec still expects data or a response for cid."""
    return cid in codec._cmds
