"""The NVMe host driver (SPDK's lib/nvme): controllers, namespaces, queue pairs.

    ctrlr = Controller(parse_trid("trtype:TCP traddr:127.0.0.1 trsvcid:4420 subnqn:nqn..."))
    await ctrlr.connect()
    qp = ctrlr.io_qpairs[0]
    qp.read(nsid, buf, slba, nlb, cb, arg)     # cb(arg, status, dw0); status 0 = success

Transports: NVMe/TCP (tcp.py). The codec is reached only through codec.py.
"""
from spydk.nvme.host.ctrlr import Controller, ControllerOpts, Namespace, NvmeError, status_str
from spydk.nvme.host.qpair import Qpair
from spydk.nvme.host.tcp import TcpQpair
from spydk.nvme.host.trid import DISCOVERY_NQN, TransportId, TridError, parse_trid

__all__ = ["DISCOVERY_NQN", "Controller", "ControllerOpts", "Namespace", "NvmeError", "Qpair",
           "TcpQpair", "TransportId", "TridError", "parse_trid", "status_str"]
