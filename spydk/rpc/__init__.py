"""JSON-RPC control plane: registry, server, client, CLI."""
from spydk.rpc.client import AsyncClient, Client, ClientError, NoServerError, RpcTimeout
from spydk.rpc.errors import RpcError
from spydk.rpc.registry import RUNTIME, STARTUP, AppContext, RpcContext, State, rpc_method
from spydk.rpc.schema import Param

__all__ = ["RUNTIME", "STARTUP", "AppContext", "AsyncClient", "Client", "ClientError", "NoServerError", "Param",
           "RpcContext", "RpcError", "RpcTimeout", "State", "rpc_method"]
