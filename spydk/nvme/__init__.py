"""NVMe: specification structures, the NVMe/TCP codec, and (next) the host driver.

    spec/   structures of the NVMe base, Fabrics and NVMe/TCP specifications (precompiled
            struct.Struct, size-checked, pure builders and parsers)
    tcp/    the sans-IO NVMe/TCP codec: PDU parsing/encoding and the queue-pair state machine
            of either role (controller for the target, host for an initiator)
    host/   the NVMe host driver (controllers, queue pairs, namespaces) over the codec

Nothing here owns a socket, a clock or a thread; spydk.nvmf (the target) and the host driver
put the codec on sockets.
"""
