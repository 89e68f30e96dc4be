"""NVMe structures and the sans-IO NVMe/TCP queue pair.

``spec`` (base spec structures), ``fabrics_spec`` (Fabrics commands and properties),
``tcp_spec`` (NVMe/TCP PDU layouts) and ``tcp`` (``TcpQueuePair`` codec/state machine).
"""
from spydk.nvme.tcp import (
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
    ProtocolError,
    R2TReceived,
    Role,
    TcpQueuePair,
    TermReqReceived,
)

__all__ = [
    "C2HData",
    "CapsuleCommand",
    "CapsuleResponse",
    "ConnectionClosed",
    "DataDigestError",
    "Event",
    "H2CData",
    "ICReqReceived",
    "ICRespReceived",
    "LocalProtocolError",
    "ProtocolError",
    "R2TReceived",
    "Role",
    "TcpQueuePair",
    "TermReqReceived",
]
