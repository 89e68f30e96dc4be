"""RPCs of the delay bdev module: bdev_delay_create, bdev_delay_delete, bdev_delay_update_latency."""
from __future__ import annotations

from spydk.bdev.modutil import call, wait_rc
from spydk.modules.bdev.delay.delay import LATENCY_TYPES, create_delay, delete_delay, update_latency
from spydk.rpc.registry import RpcContext, rpc_method
from spydk.rpc.replica import replicated
from spydk.rpc.schema import Param


@rpc_method("bdev_delay_create", [
    Param("name", "string", required=True), Param("base_bdev_name", "string", required=True),
    Param("avg_read_latency", "uint64", required=True), Param("p99_read_latency", "uint64", required=True),
    Param("avg_write_latency", "uint64", required=True), Param("p99_write_latency", "uint64", required=True),
    Param("uuid", "uuid"),
])
def bdev_delay_create(ctx: RpcContext, *, name: str, base_bdev_name: str, avg_read_latency: int,
                      p99_read_latency: int, avg_write_latency: int, p99_write_latency: int,
                      uuid: str | None = None) -> str:
    return call(create_delay, base_bdev_name, name, avg_read_latency,  # type: ignore[no-any-return]
                p99_read_latency, avg_write_latency, p99_write_latency, uuid)


@rpc_method("bdev_delay_delete", [Param("name", "string", required=True)])
async def bdev_delay_delete(ctx: RpcContext, *, name: str) -> bool:
    return await wait_rc(lambda cb: delete_delay(name, cb), f"deleting delay bdev {name!r}")


@rpc_method("bdev_delay_update_latency", [
    Param("delay_bdev_name", "string", required=True),
    Param("latency_type", "enum", required=True, choices=LATENCY_TYPES),
    Param("latency_us", "uint64", required=True),
])
def bdev_delay_update_latency(ctx: RpcContext, *, delay_bdev_name: str, latency_type: str,
                              latency_us: int) -> bool:
    call(update_latency, delay_bdev_name, latency_type, latency_us)
    return True


# Every reactor builds its own copy (over its own copy of the base bdev).
from spydk.bdev.rpc import same_bdev_on_every_reactor  # noqa: E402

replicated("bdev_delay_create", share=same_bdev_on_every_reactor)
replicated("bdev_delay_delete")
replicated("bdev_delay_update_latency")
