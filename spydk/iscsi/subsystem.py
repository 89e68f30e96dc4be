"""The "scsi" and "iscsi" subsystems: init/fini hooks and the config dump.

Importing this module registers both subsystems (spydk.iscsi.rpc imports it).
"""
from __future__ import annotations

from typing import Any

from spydk.init.subsystem import Subsystem, get_subsystem, register_subsystem
from spydk.iscsi.iscsi_tgt import target_of
from spydk.rpc.registry import AppContext


async def _init(app: AppContext) -> None:
    from spydk.iscsi.socket_io import attach
    t = target_of(app)
    attach(app, t)
    t.initialized = True


async def _fini(app: AppContext) -> None:
    from spydk.iscsi.socket_io import detach
    await detach(app, target_of(app))


def _config(app: AppContext) -> list[dict[str, Any]]:
    return target_of(app).config()


if get_subsystem("scsi") is None:
    register_subsystem(Subsystem("scsi", depends_on=("bdev",)))
register_subsystem(Subsystem("iscsi", depends_on=("scsi",), init=_init, fini=_fini, config=_config))
