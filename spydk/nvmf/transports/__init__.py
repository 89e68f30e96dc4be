"""NVMe-oF transports, one module each (SPDK's lib/nvmf/tcp.c, rdma.c, ...).

    tcp.py   NVMe/TCP: asyncio listeners and one BufferedProtocol per connection driving the
             sans-IO codec (spydk.nvme.tcp); the I/O fast path for reads and in-capsule writes

A module here registers its class with ``spydk.nvmf.transport.register_transport`` and is
imported by ``transport_class`` on first use.
"""
