"""The "vhost_blk" and "vhost_scsi" subsystems (SPDK's names): config dump and fini.

Importing this module registers both subsystems (spydk.vhost.rpc imports it).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from spydk.init.subsystem import Subsystem, get_subsystem, register_subsystem
from spydk.rpc.registry import AppContext
from spydk.vhost.target import target_of


def _fini_kind(kind: str) -> Any:
    async def fini(app: AppContext) -> None:
        t = target_of(app)
        waits = []
        for name, c in list(t.controllers.items()):
            if c.kind != kind:
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            del t.controllers[name]
            c.close(_resolver(fut))
            waits.append(fut)
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=20)
    return fini


def _resolver(fut: asyncio.Future[None]) -> Callable[[], None]:
    def done() -> None:
        if not fut.done():
            fut.set_result(None)
    return done


def _config(kind: str) -> Any:
    def config(app: AppContext) -> list[dict[str, Any]]:
        return target_of(app).config(kind)
    return config


if get_subsystem("scsi") is None:
    register_subsystem(Subsystem("scsi", depends_on=("bdev",)))
register_subsystem(Subsystem("vhost_blk", depends_on=("bdev",), fini=_fini_kind("blk"),
                             config=_config("blk")))
register_subsystem(Subsystem("vhost_scsi", depends_on=("scsi",), fini=_fini_kind("scsi"),
                             config=_config("scsi")))
