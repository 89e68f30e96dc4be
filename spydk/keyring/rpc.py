"""keyring_* RPCs and the "keyring" subsystem (its config names keys and paths, never contents)."""
from __future__ import annotations

from typing import Any

from spydk.init.subsystem import Subsystem, register_subsystem
from spydk.keyring import keyring
from spydk.keyring.file import NAME as FILE_MODULE
from spydk.keyring.file import file_keyring
from spydk.keyring.keyring import KeyringError
from spydk.log import get_logger
from spydk.rpc import STARTUP, Param, RpcContext, rpc_method
from spydk.rpc.errors import errno_error
from spydk.rpc.registry import RUNTIME

log = get_logger("keyring")


@rpc_method("keyring_file_add_key", [Param("name", "string", required=True),
                                     Param("path", "string", required=True)], states=STARTUP | RUNTIME)
def keyring_file_add_key(ctx: RpcContext, name: str, path: str) -> bool:
    """Add a key kept in a file (owned by this user, mode 0600 or stricter)."""
    try:
        keyring.add_key(name, file_keyring, {"path": path})
    except KeyringError as e:
        raise errno_error(e.errno, str(e)) from None
    log.info("key %s added from %s", name, path)  # the path, never the contents
    return True


@rpc_method("keyring_file_remove_key", [Param("name", "string", required=True)], states=STARTUP | RUNTIME)
def keyring_file_remove_key(ctx: RpcContext, name: str) -> bool:
    """Remove a file key; users that hold it keep a removed key they can no longer read."""
    try:
        keyring.remove_key(name, FILE_MODULE)
    except KeyringError as e:
        raise errno_error(e.errno, str(e)) from None
    return True


@rpc_method("keyring_get_keys", states=STARTUP | RUNTIME)
def keyring_get_keys(ctx: RpcContext) -> list[dict[str, Any]]:
    """Every key with its module, reference count and where it lives (never its contents)."""
    return [k.info() for k in keyring.keys(include_removed=True)]


def _config(app: Any) -> list[dict[str, Any]]:
    return [k.module.config(k) for k in keyring.keys(include_removed=False)]


def _fini(app: Any) -> None:
    keyring.clear()


register_subsystem(Subsystem("keyring", fini=_fini, config=_config))
