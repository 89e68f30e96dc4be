"""Keyring (SPDK's lib/keyring and module/keyring/file): named keys that other layers
(NVMe-oF DH-HMAC-CHAP and TLS PSKs) look up by name, so secrets stay in files that only
their owner can read and never appear in RPCs, logs or saved configs.

    keyring.py   Key, KeyringModule, the registry: add/remove/get/put, key material
    file.py      the "keyring_file" module: keys kept in files, read at each use
    rpc.py       keyring_file_add_key, keyring_file_remove_key, keyring_get_keys, the subsystem
    rpc_cli.py   `spydk rpc` arguments for those methods

Importing the package registers the RPCs and the "keyring" subsystem.
"""
from spydk.keyring import rpc as _rpc  # noqa: F401  (registers RPCs and the subsystem)
from spydk.keyring.keyring import Key, KeyringError, get_key, key_material, keys, put_key

__all__ = ["Key", "KeyringError", "get_key", "key_material", "keys", "put_key"]
