"""The "scsi" and "iscsi" subsystems: init/fini hooks and the config dump.

Importing this module registers both subsystems and the iSCSI RPC methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import spydk.iscsi.rpc  # noqa: F401  (registers the RPC methods)
from spydk.init.subsystem import Subsystem, get_subsystem, register_subsystem
from spydk.iscsi.iscsi_tgt import target_of

if TYPE_CHECKING:
    from spydk.apps.app import App


async def _init(app: App) -> None:
    from spydk.iscsi.portal import attach
    t = target_of(app)
    attach(app, t)
    t.initialized = True


async def _fini(app: App) -> None:
    from spydk.iscsi.portal import detach
    await detach(app, target_of(app))


def _config(app: App) -> list[dict[str, Any]]:
    return target_of(app).config()


if get_subsystem("scsi") is None:
    register_subsystem(Subsystem("scsi", depends_on=("bdev",)))
register_subsystem(Subsystem("iscsi", depends_on=("scsi",), init=_init, fini=_fini, config=_config))
