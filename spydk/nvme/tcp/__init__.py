"""The sans-IO NVMe/TCP codec (NVMe/TCP transport binding, both roles).

``TcpQueuePair`` is the whole public surface: bytes in, events out, buffers to send. See
queue_pair.py's docstring for the one way in, the one way out, buffer ownership and the map
of the files it is made of.
"""
from spydk.nvme.tcp.queue_pair import (
    Buffer,
    C2HData,
    CapsuleCommand,
    CapsuleResponse,
    ConnectionClosed,
    DataDigestError,
    Event,
    H2CData,
    ICReqReceived,
    ICRespReceived,
    LocalProtocolError,
    MovedState,
    ProtocolError,
    R2TReceived,
    Role,
    TcpQueuePair,
    TermReqReceived,
)

__all__ = [
    "Buffer", "C2HData", "CapsuleCommand", "CapsuleResponse", "ConnectionClosed", "DataDigestError",
    "Event", "H2CData", "ICReqReceived", "ICRespReceived", "LocalProtocolError", "MovedState", "ProtocolError",
    "R2TReceived", "Role", "TcpQueuePair", "TermReqReceived",
]
