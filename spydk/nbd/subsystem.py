"""The "nbd" subsystem: the NBD server's listeners and exports (and kernel disks) in
save_config, torn down at exit. Registered on import (spydk.nbd.rpc imports it)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spydk.init.subsystem import Subsystem, get_subsystem, register_subsystem
from spydk.nbd.server import server

if TYPE_CHECKING:
    from spydk.rpc.registry import AppContext as App


def _config(app: App) -> list[dict[str, Any]]:
    out = server.config_json()
    try:
        from spydk.nbd.kernel import config_json
        out += config_json()
    except ImportError:
        pass
    return out


async def _fini(app: App) -> None:
    try:
        from spydk.nbd.kernel import stop_all
        stop_all()
    except ImportError:
        pass
    await server.stop()


if get_subsystem("nbd") is None:
    register_subsystem(Subsystem("nbd", depends_on=("bdev",), fini=_fini, config=_config))
