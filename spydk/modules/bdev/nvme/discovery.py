"""bdev_nvme_start_discovery: keep a discovery controller connected, attach every NVM
subsystem its log lists (controllers named <name>0, <name>1, ...; paths to the same
subsystem join the same controller name as failover addresses), and follow the log when
the discovery controller signals a change (Discovery Log Change AEN)."""
from __future__ import annotations

import asyncio
from typing import Any

from spydk.bdev import BdevError
from spydk.log import get_logger
from spydk.modules.bdev.nvme import bdev_nvme as bn
from spydk.nvme.host import Controller, ControllerOpts, NvmeError, TransportId
from spydk.nvme.host.identify import DiscoveryLogEntry, discovery_log_header, parse_discovery_log
from spydk.nvme.spec import LogPageId

log = get_logger("bdev_nvme")
_TRTYPE = {3: "TCP", 1: "RDMA", 2: "FC"}
_ADRFAM = {1: "IPv4", 2: "IPv6"}


class Discovery:
    def __init__(self, name: str, trid: TransportId, hostnqn: str | None,
                 reconnect: bn.ReconnectOpts, params: dict[str, Any]) -> None:
        self.name = name
        self.trid = trid
        self.hostnqn = hostnqn
        self.reconnect = reconnect
        self.params = params
        opts = ControllerOpts(keep_alive_timeout_ms=bn.module.opts.keep_alive_timeout_ms)
        if hostnqn:
            opts.hostnqn = hostnqn
        self.ctrlr = Controller(trid, opts)
        self.attached: dict[str, str] = {}  # subnqn -> controller name
        self.referrals: list[dict[str, str]] = []
        self.index = 0
        self._task: asyncio.Task[None] | None = None
        self.stopped = False

    async def start(self) -> None:
        await self.ctrlr.connect()
        self.ctrlr.aer_callbacks.append(self._aer)
        await self.refresh()

    def _aer(self, dw0: int) -> None:
        if (dw0 >> 16) & 0xFF == LogPageId.DISCOVERY and not self.stopped:
            self._task = asyncio.ensure_future(self.refresh())

    async def read_log(self) -> list[DiscoveryLogEntry]:
        head = await self.ctrlr.get_log_page(LogPageId.DISCOVERY, 1024, nsid=0)
        _gen, numrec, _fmt = discovery_log_header(head)
        page = await self.ctrlr.get_log_page(LogPageId.DISCOVERY, 1024 * (numrec + 1), nsid=0)
        return parse_discovery_log(page, numrec)

    async def refresh(self) -> None:
        try:
            entries = await self.read_log()
        except NvmeError as err:
            log.warning("discovery %s: reading the log failed: %s", self.name, err)
            return
        self.referrals = []
        for e in entries:
            if e.subtype != 2:  # NVMe subsystems only; referrals and ourselves are listed
                if e.subtype == 1:
                    self.referrals.append({"trtype": _TRTYPE.get(e.trtype, str(e.trtype)),
                                           "traddr": e.traddr, "trsvcid": e.trsvcid})
                continue
            if e.trtype != 3:
                continue
            trid = TransportId(trtype="TCP", adrfam=_ADRFAM.get(e.adrfam, "IPv4"), traddr=e.traddr,
                               trsvcid=e.trsvcid, subnqn=e.subnqn)
            name = self.attached.get(e.subnqn)
            if name is None:
                name = f"{self.name}{self.index}"
                self.index += 1
            try:
                await bn.attach_controller(name, trid, hostnqn=self.hostnqn, multipath="failover",
                                           reconnect=self.reconnect)
                self.attached[e.subnqn] = name
                bn.module.ctrlrs[name].discovery = self
            except BdevError as berr:
                if "already has path" not in berr.message:
                    log.warning("discovery %s: attaching %s failed: %s", self.name, trid, berr.message)

    async def stop(self) -> None:
        self.stopped = True
        bn.module.discoveries.pop(self.name, None)
        await self.ctrlr.detach()
        for name in list(self.attached.values()):
            if name in bn.module.ctrlrs:
                await bn.detach_controller(name)

    def info(self) -> dict[str, Any]:
        t = self.trid
        return {"name": self.name,
                "trid": {"trtype": t.trtype, "adrfam": t.adrfam, "traddr": t.traddr,
                         "trsvcid": t.trsvcid, "subnqn": t.subnqn},
                "referrals": self.referrals}


__all__ = ["Controller", "Discovery"]
