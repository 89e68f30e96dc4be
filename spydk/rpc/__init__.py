"""JSON-RPC control plane: registry, server, client, CLI."""
from spydk.rpc.errors import RpcError
from spydk.rpc.registry import RUNTIME, STARTUP, RpcContext, State, rpc_method
from spydk.rpc.schema import Param

__all__ = ["RUNTIME", "STARTUP", "Param", "RpcContext", "RpcError", "State", "rpc_method"]
