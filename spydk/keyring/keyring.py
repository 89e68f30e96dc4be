"""The key registry: one global keyring, as in SPDK.

A key has a name, a module that stores it, and a reference count: the registry holds one
reference, and every user (a host entry, a listener) takes its own with get_key() and drops
it with put_key(). Removing a key drops the registry's reference; users keep a removed key
object, but its material can no longer be read, and it disappears once the last user lets go.
"""
from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# Key material is small (PSKs and DH-HMAC-CHAP secrets are a few hundred bytes); a larger
# file is refused rather than read.
MAX_KEY_SIZE = 4096


class KeyringError(Exception):
    """A key could not be added, found or read; ``errno`` is SPDK's error for the case."""

    def __init__(self, err: int, message: str):
        super().__init__(message)
        self.errno = err


class KeyringModule(Protocol):
    name: str

    def add_key(self, key: Key, opts: dict[str, Any]) -> None: ...
    def remove_key(self, key: Key) -> None: ...
    def read_key(self, key: Key, max_len: int) -> bytes: ...
    def dump_info(self, key: Key) -> dict[str, Any]: ...
    def config(self, key: Key) -> dict[str, Any]: ...


@dataclass(eq=False)
class Key:
    name: str
    module: KeyringModule
    refcnt: int = 1
    removed: bool = False
    probed: bool = False
    ctx: dict[str, Any] = field(default_factory=dict)  # the module's own state (a path, ...)

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "module": self.module.name, "removed": self.removed,
                             "probed": self.probed, "refcnt": self.refcnt}
        if not self.removed:
            d.update(self.module.dump_info(self))
        return d

    def __repr__(self) -> str:  # never the material: keys end up in logs and tracebacks
        return f"Key({self.name!r}, module={self.module.name!r}, refcnt={self.refcnt}, removed={self.removed})"


_keys: dict[str, Key] = {}
_removed: list[Key] = []  # removed but still referenced by a user


def _key_name(name: str) -> str:
    """"key0" and ":key0" both name key0 of the global keyring (SPDK's notation)."""
    return name.split(":", 1)[1] if ":" in name else name


def add_key(name: str, module: KeyringModule, opts: dict[str, Any]) -> Key:
    if ":" in name and not name.startswith(":"):
        raise KeyringError(errno.EINVAL, f"cannot add key {name!r}: only the global keyring exists "
                                         "(name the key without a 'keyring:' prefix)")
    short = _key_name(name)
    if not short:
        raise KeyringError(errno.EINVAL, "a key needs a name")
    if short in _keys:
        raise KeyringError(errno.EEXIST, f"key {short!r} already exists; remove it first or pick another name")
    key = Key(short, module)
    module.add_key(key, opts)
    _keys[short] = key
    return key


def find_key(name: str) -> Key | None:
    return _keys.get(_key_name(name))


def remove_key(name: str, module_name: str | None = None) -> None:
    key = find_key(name)
    if key is None or (module_name is not None and key.module.name != module_name):
        raise KeyringError(errno.ENOENT, f"key {_key_name(name)!r} does not exist")
    _remove(key)


def _remove(key: Key) -> None:
    key.removed = True
    key.module.remove_key(key)
    del _keys[key.name]
    _removed.append(key)
    put_key(key)


def get_key(name: str) -> Key:
    """A reference to key ``name`` for a user (a host entry, a listener); put_key() drops it."""
    key = find_key(name)
    if key is None:
        raise KeyringError(errno.ENOKEY, f"key {_key_name(name)!r} does not exist; add it with "
                                         "keyring_file_add_key first")
    key.refcnt += 1
    return key


def put_key(key: Key | None) -> None:
    if key is None:
        return
    key.refcnt -= 1
    if key.refcnt == 0 and key in _removed:
        _removed.remove(key)


def key_material(key: Key, max_len: int = MAX_KEY_SIZE) -> bytes:
    """The key's bytes, read from its module at each use (a rotated file takes effect at once)."""
    if key.removed:
        raise KeyringError(errno.ENOKEY, f"key {key.name!r} has been removed")
    return key.module.read_key(key, max_len)


def keys(include_removed: bool = True) -> Iterator[Key]:
    yield from list(_keys.values())
    if include_removed:
        yield from list(_removed)


def clear() -> None:
    """Drop every key (subsystem fini); users that still hold one keep a removed key."""
    for key in list(_keys.values()):
        _remove(key)
    _removed.clear()
