"""The "nbd" subsystem: the NBD server's listeners and exports (and kernel disks) in
save_config, torn down at exit."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spydk.init.subsystem import Subsystem, get_subsystem, register_subsystem
from spydk.nbd import rpc as _rpc  # noqa: F401  (registers the RPCs)
from spydk.nbd.server import server

if TYPE_CHECKING:
    from spydk.apps.app import App


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
