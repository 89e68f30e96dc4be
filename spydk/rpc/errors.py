"""JSON-RPC error codes (SPDK's values) and the exception handlers raise."""
from __future__ import annotations

import errno
import os

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# SPDK: method exists but is not allowed in the current state (startup vs runtime).
INVALID_STATE = -1


class RpcError(Exception):
    """Raised by a handler: becomes {"error": {"code": code, "message": message}}."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def errno_error(err: int, message: str) -> RpcError:
    """An error carrying -errno as its code, as SPDK's handlers reply (e.g. -ENODEV, -EEXIST)."""
    return RpcError(-abs(err), message)


def not_found(what: str, name: str, hint: str = "") -> RpcError:
    msg = f"{what} {name!r} does not exist"
    return RpcError(-errno.ENODEV, msg + (f"; {hint}" if hint else ""))


def already_exists(what: str, name: str) -> RpcError:
    return RpcError(-errno.EEXIST, f"{what} {name!r} already exists")


def strerror(err: int) -> str:
    return os.strerror(abs(err))
