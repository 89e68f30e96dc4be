"""NVMe specification structures, one module per specification:

    base.py     NVM Express Base Specification: SQE/CQE, opcodes, status codes, Identify, log pages
    fabrics.py  NVMe over Fabrics: Connect, Property Get/Set, discovery log entries
    tcp.py      NVMe/TCP transport binding: PDU headers and their fields

The base structures are re-exported here (``from spydk.nvme import spec; spec.build_sqe(...)``);
the other two are imported by name (``from spydk.nvme.spec import fabrics``).
"""
from spydk.nvme.spec.base import *  # noqa: F403
