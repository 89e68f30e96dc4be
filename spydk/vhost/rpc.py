"""JSON-RPC methods of the vhost target, with SPDK's names and parameters."""
from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

import spydk.vhost.subsystem  # noqa: F401  (registers the vhost_blk and vhost_scsi subsystems)
from spydk.rpc.errors import errno_error, invalid_params
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.schema import Param
from spydk.vhost.controller import VhostError
from spydk.vhost.target import VhostTarget, target_of


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except VhostError as e:
        if e.err == errno.EINVAL:
            raise invalid_params(str(e)) from None
        raise errno_error(e.err, str(e)) from None


def _tgt(ctx: RpcContext) -> VhostTarget:
    return target_of(ctx.app)


def parse_cpumask(mask: str | None) -> int:
    if not mask:
        return 1
    try:
        v = int(mask, 16) if not mask.startswith("[") else sum(1 << int(c) for c in mask.strip("[]").split(","))
    except ValueError:
        raise invalid_params(f"cpumask {mask!r} is neither a hex mask nor a core list like [0,1]") from None
    if v <= 0:
        raise invalid_params(f"cpumask {mask!r} selects no core")
    return v


@rpc_method("vhost_create_blk_controller", [
    Param("ctrlr", "string", required=True), Param("dev_name", "string", required=True),
    Param("readonly", "boolean"), Param("packed_ring", "boolean"), Param("cpumask", "string"),
    Param("transport", "string")])
def vhost_create_blk_controller(ctx: RpcContext, *, ctrlr: str, dev_name: str, readonly: bool = False,
                                packed_ring: bool = False, cpumask: str | None = None,
                                transport: str | None = None) -> bool:
    """Serve a bdev as a vhost-user-blk device on socket <socket dir>/<ctrlr>."""
    from spydk.vhost.blk import VhostBlkController
    if transport not in (None, "vhost_user_blk"):
        raise invalid_params(f"transport {transport!r} is not available; spydk has 'vhost_user_blk'")
    if packed_ring:
        raise invalid_params("packed_ring: spydk's vhost-blk uses split rings only; leave it false")
    t = _tgt(ctx)
    mask = parse_cpumask(cpumask)

    def make() -> None:
        t.check_new(ctrlr)
        t.add(VhostBlkController(ctrlr, t.socket_dir, dev_name, readonly=readonly, cpumask=mask))
    _call(make)
    return True


@rpc_method("vhost_create_scsi_controller", [
    Param("ctrlr", "string", required=True), Param("cpumask", "string"), Param("delay", "boolean")])
def vhost_create_scsi_controller(ctx: RpcContext, *, ctrlr: str, cpumask: str | None = None,
                                 delay: bool = False) -> bool:
    """Create a vhost-user-scsi controller on socket <socket dir>/<ctrlr> (targets are added
    with vhost_scsi_controller_add_target). With delay, the socket appears only at
    vhost_start_scsi_controller."""
    from spydk.vhost.scsi import VhostScsiController
    t = _tgt(ctx)
    mask = parse_cpumask(cpumask)

    def make() -> None:
        t.check_new(ctrlr)
        c = VhostScsiController(ctrlr, t.socket_dir, cpumask=mask)
        if delay:
            t.controllers[ctrlr] = c
        else:
            t.add(c)
    _call(make)
    return True


@rpc_method("vhost_start_scsi_controller", [Param("ctrlr", "string", required=True)])
def vhost_start_scsi_controller(ctx: RpcContext, *, ctrlr: str) -> bool:
    """Start listening on a scsi controller created with delay=true."""
    t = _tgt(ctx)
    c = _call(lambda: t.get(ctrlr))
    if c.listening:
        raise errno_error(errno.EALREADY, f"controller {ctrlr!r} is already started")
    _call(c.listen)
    return True


def _scsi(ctx: RpcContext, ctrlr: str) -> Any:
    from spydk.vhost.scsi import VhostScsiController
    c = _call(lambda: _tgt(ctx).get(ctrlr))
    if not isinstance(c, VhostScsiController):
        raise invalid_params(f"controller {ctrlr!r} is not a vhost-scsi controller")
    return c


@rpc_method("vhost_scsi_controller_add_target", [
    Param("ctrlr", "string", required=True), Param("scsi_target_num", "int32", required=True),
    Param("bdev_name", "string", required=True)])
def vhost_scsi_controller_add_target(ctx: RpcContext, *, ctrlr: str, scsi_target_num: int,
                                     bdev_name: str) -> int:
    """Add a SCSI target whose LUN 0 is a bdev; -1 picks the first free number. Returns it."""
    c = _scsi(ctx, ctrlr)
    return int(_call(lambda: c.add_target(scsi_target_num, bdev_name)))


@rpc_method("vhost_scsi_controller_remove_target", [
    Param("ctrlr", "string", required=True), Param("scsi_target_num", "uint32", required=True)])
def vhost_scsi_controller_remove_target(ctx: RpcContext, *, ctrlr: str, scsi_target_num: int) -> bool:
    """Remove a SCSI target from a vhost-scsi controller."""
    c = _scsi(ctx, ctrlr)
    _call(lambda: c.remove_target(scsi_target_num))
    return True


@rpc_method("vhost_delete_controller", [Param("ctrlr", "string", required=True)])
async def vhost_delete_controller(ctx: RpcContext, *, ctrlr: str) -> bool:
    """Remove a vhost controller (its front end must not have running rings)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    def done() -> None:
        if not fut.done():
            fut.set_result(None)
    _call(lambda: _tgt(ctx).remove(ctrlr, done))
    await fut
    return True


@rpc_method("vhost_get_controllers", [Param("name", "string")])
def vhost_get_controllers(ctx: RpcContext, *, name: str | None = None) -> list[dict[str, Any]]:
    """List vhost controllers (or one, by name)."""
    t = _tgt(ctx)
    if name is not None:
        return [_call(lambda: t.get(name)).info()]
    return [c.info() for c in t.controllers.values()]


@rpc_method("vhost_controller_set_coalescing", [
    Param("ctrlr", "string", required=True), Param("delay_base_us", "uint32", required=True),
    Param("iops_threshold", "uint32", required=True)])
def vhost_controller_set_coalescing(ctx: RpcContext, *, ctrlr: str, delay_base_us: int,
                                    iops_threshold: int) -> bool:
    """Interrupt coalescing: above iops_threshold, interrupts go out every delay_base_us."""
    c = _call(lambda: _tgt(ctx).get(ctrlr))
    _call(lambda: c.set_coalescing(delay_base_us, iops_threshold))
    return True
