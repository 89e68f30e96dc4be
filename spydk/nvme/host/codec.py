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

__all__ = [
    "Buffer", "C2HData", "CapsuleResponse", "ConnectionClosed", "DataDigestError", "Event",
    "HostCodec", "ICRespReceived", "LocalProtocolError", "ProtocolError", "R2TReceived",
    "TermReqReceived", "new_host_codec",
]

HostCodec = TcpQueuePair


def new_host_codec(max_incapsule_data: int) -> HostCodec:
    """A host-role codec; the ring is the codec's default size."""
    return TcpQueuePair(Role.HOST, max_incapsule_data=max_incapsule_data)


def is_outstanding(codec: HostCodec, cid: int) -> bool:
    """The codec still expects data or a response for cid."""
    return cid in codec._cmds
