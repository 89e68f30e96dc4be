"""RPCs of the NBD network server (spydk's own; SPDK has only the kernel export):

    nbd_server_listen          host, port (0: any free port)    -> the port
    nbd_server_stop_listen     host, port
    nbd_server_start_export    bdev_name, name (default: bdev_name), read_only, description
    nbd_server_stop_export     name  (its clients are disconnected)
    nbd_server_get_exports     -> [{name, bdev_name, read_only, description, connections}]
    nbd_server_get_listeners   -> [{host, port}]
"""
from __future__ import annotations

from typing import Any

from spydk.bdev import BdevError
from spydk.bdev.modutil import call, rpc_error
from spydk.nbd import subsystem as _subsystem  # noqa: F401  (registers the "nbd" subsystem)
from spydk.nbd.server import server
from spydk.rpc import Param, RpcContext, rpc_method


@rpc_method("nbd_server_listen", [Param("host", "string"), Param("port", "uint16")])
async def nbd_server_listen(ctx: RpcContext, *, host: str = "127.0.0.1", port: int = 10809) -> int:
    """Start an NBD listener (spydk extension)."""
    try:
        return await server.listen(host, port)
    except BdevError as e:
        raise rpc_error(e) from None


@rpc_method("nbd_server_stop_listen", [Param("host", "string", required=True),
                                        Param("port", "uint16", required=True)])
async def nbd_server_stop_listen(ctx: RpcContext, *, host: str, port: int) -> bool:
    """Stop an NBD listener (spydk extension); connected clients stay."""
    try:
        await server.stop_listen(host, port)
    except BdevError as e:
        raise rpc_error(e) from None
    return True


@rpc_method("nbd_server_start_export", [
    Param("bdev_name", "string", required=True), Param("name", "string"),
    Param("read_only", "boolean"), Param("description", "string"),
])
def nbd_server_start_export(ctx: RpcContext, *, bdev_name: str, name: str | None = None,
                            read_only: bool = False, description: str = "") -> str:
    """Export a bdev over the NBD server under ``name`` (spydk extension)."""
    n = name or bdev_name
    call(server.add_export, n, bdev_name, read_only, description)
    return n


@rpc_method("nbd_server_stop_export", [Param("name", "string", required=True)])
def nbd_server_stop_export(ctx: RpcContext, *, name: str) -> bool:
    """Remove an NBD export and disconnect its clients (spydk extension)."""
    call(server.remove_export, name)
    return True


@rpc_method("nbd_server_get_exports", [Param("name", "string")])
def nbd_server_get_exports(ctx: RpcContext, *, name: str | None = None) -> list[dict[str, Any]]:
    """List NBD exports (spydk extension)."""
    if name is not None and name not in server.exports:
        raise rpc_error(BdevError(19, f"NBD export {name!r} does not exist"))
    out = []
    for c in server.exports.values():
        if name is not None and c.name != name:
            continue
        out.append({"name": c.name, "bdev_name": c.bdev_name, "read_only": c.read_only,
                    "description": c.description,
                    "connections": sum(1 for x in server.connections if x.export and x.export.name == c.name)})
    return out


@rpc_method("nbd_server_get_listeners")
def nbd_server_get_listeners(ctx: RpcContext) -> list[dict[str, Any]]:
    """List NBD listeners (spydk extension)."""
    return [{"host": h, "port": p} for (h, p) in server.listeners]


# -- SPDK's kernel NBD export -------------------------------------------------------------


@rpc_method("nbd_start_disk", [Param("bdev_name", "string", required=True), Param("nbd_device", "string")])
async def nbd_start_disk(ctx: RpcContext, *, bdev_name: str, nbd_device: str | None = None) -> str:
    """Attach a bdev as a kernel /dev/nbdX device."""
    from spydk.nbd import kernel
    try:
        return await kernel.start_disk(bdev_name, nbd_device)
    except BdevError as e:
        raise rpc_error(e) from None


@rpc_method("nbd_stop_disk", [Param("nbd_device", "string", required=True)])
async def nbd_stop_disk(ctx: RpcContext, *, nbd_device: str) -> bool:
    """Detach a kernel /dev/nbdX device."""
    from spydk.nbd import kernel
    try:
        await kernel.stop_disk(nbd_device)
    except BdevError as e:
        raise rpc_error(e) from None
    return True


@rpc_method("nbd_get_disks", [Param("nbd_device", "string")])
def nbd_get_disks(ctx: RpcContext, *, nbd_device: str | None = None) -> list[dict[str, Any]]:
    """List the kernel NBD devices of this application."""
    from spydk.nbd import kernel
    return call(kernel.get_disks, nbd_device)  # type: ignore[no-any-return]
