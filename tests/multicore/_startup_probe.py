"""Plugin loaded into a target by test_startup.py (SPYDK_PLUGINS): an RPC that says which
optional heavy packages the running target has imported."""
from __future__ import annotations

import sys

from spydk.rpc import RpcContext, rpc_method

HEAVY = ("numpy", "prometheus_client", "cryptography", "textual", "rich", "hypothesis", "atheris",
         "spydk.nvme.tls", "spydk.metrics.collector")


@rpc_method("test_heavy_modules_loaded")
def test_heavy_modules_loaded(ctx: RpcContext) -> list[str]:
    return [m for m in HEAVY if m in sys.modules]
