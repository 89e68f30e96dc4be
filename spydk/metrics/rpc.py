"""metrics_* RPCs (spydk only; SPDK has no built-in exporter): start, stop and show the
Prometheus endpoint. Named like SPDK's start/stop pairs (nbd_start_disk, nbd_stop_disk)."""
from __future__ import annotations

from typing import Any

from spydk import metrics
from spydk.rpc import Param, RpcContext, rpc_method
from spydk.rpc.errors import RpcError, invalid_params

EALREADY = 114


@rpc_method("metrics_start_exporter", [Param("address", "string"), Param("port", "uint16"),
                                       Param("allow_remote", "boolean")])
async def metrics_start_exporter(ctx: RpcContext, address: str = "127.0.0.1", port: int = 9464,
                                 allow_remote: bool = False) -> dict[str, Any]:
    """spydk only: serve Prometheus metrics at http://address:port/metrics (loopback unless allow_remote)."""
    if metrics.exporter() is not None:
        raise RpcError(-EALREADY, f"metrics_start_exporter: already serving at {metrics.exporter().url}; "  # type: ignore[union-attr]
                                  f"call metrics_stop_exporter first")
    try:
        exp = await metrics.start(ctx.app, address, port, allow_remote=allow_remote)
    except metrics.MetricsError as e:
        raise invalid_params(f"metrics_start_exporter: {e}") from None
    return exp.info()


@rpc_method("metrics_stop_exporter")
def metrics_stop_exporter(ctx: RpcContext) -> bool:
    """spydk only: stop serving Prometheus metrics (false when it was not running)."""
    return metrics.stop_exporter()


@rpc_method("metrics_get_exporter")
def metrics_get_exporter(ctx: RpcContext) -> dict[str, Any]:
    """spydk only: whether the Prometheus endpoint runs, and its URL."""
    exp = metrics.exporter()
    return exp.info() if exp is not None else {"enabled": False}
