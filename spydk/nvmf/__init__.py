"""NVMe over Fabrics target (SPDK's lib/nvmf): subsystems, controllers, transports.

    tgt.py            Target: transports, subsystems, referrals, discovery generation
    subsystem.py      Subsystem, Namespace, Listener, ListenAddress, NQN validation
    ctrlr.py          Connect, properties, admin commands, AERs, keep-alive (sans-IO)
    io.py             NVMe I/O commands -> NamespaceBackend
    bdev_ns.py        NamespaceBackend over a bdev
    discovery.py      the discovery log page
    transport.py      transport options, the Transport interface and the transport registry
    transports/       one module per transport: tcp.py (NVMe/TCP listeners and connections)
    rpc.py            nvmf_* RPCs, the "nvmf" subsystem and the config dump
    rpc_cli.py        their `spydk rpc` commands
"""
