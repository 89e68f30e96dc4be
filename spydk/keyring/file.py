"""The "keyring_file" module: a key is a file that only its owner may read.

The path is checked when the key is added and again at every read, so a file whose mode or
owner changed later is refused at use, with the mode in the message and the fix named.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Any

from spydk.keyring.keyring import Key, KeyringError

NAME = "keyring_file"


def check_path(path: str) -> os.stat_result:
    if not path.startswith("/"):
        raise KeyringError(errno.EPERM, f"key file path {path!r} is not absolute; give the full path")
    try:
        st = os.stat(path)
    except OSError as e:
        raise KeyringError(e.errno or errno.EIO, f"cannot stat key file {path!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyringError(errno.EINVAL, f"key file {path!r} is not a regular file")
    if st.st_mode & 0o077 or st.st_uid != os.getuid():
        raise KeyringError(errno.EPERM,
                           f"invalid permissions for key file {path!r}: mode 0{st.st_mode & 0o7777:o}, "
                           f"owner uid {st.st_uid}; it must be owned by uid {os.getuid()} and "
                           f"readable by its owner only (chmod 0600 {path})")
    return st


class FileKeyring:
    name = NAME

    def add_key(self, key: Key, opts: dict[str, Any]) -> None:
        path = opts["path"]
        check_path(path)
        key.ctx["path"] = path

    def remove_key(self, key: Key) -> None:
        key.ctx.clear()

    def read_key(self, key: Key, max_len: int) -> bytes:
        path = key.ctx["path"]
        st = check_path(path)
        if st.st_size > max_len:
            raise KeyringError(errno.ENOBUFS, f"key {key.name!r} is {st.st_size} bytes, more than {max_len}")
        try:
            with open(path, "rb") as f:
                data = f.read(max_len + 1)
        except OSError as e:
            raise KeyringError(e.errno or errno.EIO, f"cannot read key {key.name!r}: {e.strerror}") from None
        if len(data) > max_len:
            raise KeyringError(errno.ENOBUFS, f"key {key.name!r} grew past {max_len} bytes while read")
        return data

    def dump_info(self, key: Key) -> dict[str, Any]:
        return {"path": key.ctx["path"]}

    def config(self, key: Key) -> dict[str, Any]:
        return {"method": "keyring_file_add_key", "params": {"name": key.name, "path": key.ctx["path"]}}


file_keyring = FileKeyring()
