"""NVMe over Fabrics target (SPDK's lib/nvmf): subsystems, controllers, the TCP transport.

Importing the package registers the nvmf_* RPCs and the "nvmf" subsystem.

    tgt.py            Target: transports, subsystems, referrals, discovery generation
    subsystem.py      Subsystem, Namespace, Listener, ListenAddress, NQN validation
    ctrlr.py          Connect, properties, admin commands, AERs, keep-alive (sans-IO)
    io.py             NVMe I/O commands -> NamespaceBackend
    bdev_ns.py        NamespaceBackend over a bdev
    discovery.py      the discovery log page
    transport_tcp.py  NVMe/TCP listeners and connections (asyncio)
    rpc.py            nvmf_* RPCs and the config dump
"""
from spydk.nvmf import rpc as _rpc  # noqa: F401  (registers RPCs and the subsystem)
