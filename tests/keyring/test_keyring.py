"""The keyring: file keys checked as SPDK checks them, references, removal, config, no leaks
of key material into RPC answers, saved configs or logs."""
from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from spydk.keyring import keyring
from spydk.keyring.file import file_keyring
from spydk.keyring.keyring import KeyringError
from spydk.testing import TargetProcess, start_target

SECRET = b"NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:"


@pytest.fixture(autouse=True)
def empty_keyring() -> Iterator[None]:
    keyring.clear()
    yield
    keyring.clear()


def key_file(tmp_path: Path, name: str = "key0", mode: int = 0o600, data: bytes = SECRET) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(mode)
    return p


def test_add_read_remove(tmp_path: Path) -> None:
    p = key_file(tmp_path)
    k = keyring.add_key("key0", file_keyring, {"path": str(p)})
    assert keyring.key_material(k) == SECRET
    assert k.info() == {"name": "key0", "module": "keyring_file", "removed": False, "probed": False,
                        "refcnt": 1, "path": str(p)}
    p.write_bytes(b"rotated")  # read at each use: a rotated file takes effect at once
    assert keyring.key_material(k) == b"rotated"
    keyring.remove_key("key0")
    assert keyring.find_key("key0") is None and list(keyring.keys()) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o601, 0o610])
def test_a_file_others_can_touch_is_refused(tmp_path: Path, mode: int) -> None:
    p = key_file(tmp_path, mode=mode)
    with pytest.raises(KeyringError) as e:
        keyring.add_key("key0", file_keyring, {"path": str(p)})
    assert e.value.errno == errno.EPERM and f"mode 0{mode:o}" in str(e.value) and "chmod 0600" in str(e.value)
    assert SECRET.decode() not in str(e.value)


def test_mode_change_after_adding_is_refused_at_use(tmp_path: Path) -> None:
    p = key_file(tmp_path)
    k = keyring.add_key("key0", file_keyring, {"path": str(p)})
    p.chmod(0o644)
    with pytest.raises(KeyringError) as e:
        keyring.key_material(k)
    assert e.value.errno == errno.EPERM


def test_owner_must_be_this_user(tmp_path: Path) -> None:
    p = key_file(tmp_path)
    if os.getuid() != 0:
        pytest.fail("giving a file to another owner needs root (CI runs as root)")
    os.chown(p, 12345, -1)
    with pytest.raises(KeyringError) as e:
        keyring.add_key("key0", file_keyring, {"path": str(p)})
    assert e.value.errno == errno.EPERM and "owner uid 12345" in str(e.value)


def test_bad_paths_and_names(tmp_path: Path) -> None:
    with pytest.raises(KeyringError) as e:
        keyring.add_key("k", file_keyring, {"path": "relative/key"})
    assert e.value.errno == errno.EPERM and "not absolute" in str(e.value)
    with pytest.raises(KeyringError) as e:
        keyring.add_key("k", file_keyring, {"path": str(tmp_path / "missing")})
    assert e.value.errno == errno.ENOENT
    with pytest.raises(KeyringError) as e:
        keyring.add_key("k", file_keyring, {"path": str(tmp_path)})
    assert "not a regular file" in str(e.value)
    with pytest.raises(KeyringError) as e:
        keyring.add_key("other:k", file_keyring, {"path": str(key_file(tmp_path))})
    assert e.value.errno == errno.EINVAL
    keyring.add_key(":k", file_keyring, {"path": str(key_file(tmp_path))})  # the global keyring
    assert keyring.find_key("k") is keyring.find_key(":k") is not None
    with pytest.raises(KeyringError) as e:
        keyring.add_key("k", file_keyring, {"path": str(key_file(tmp_path))})
    assert e.value.errno == errno.EEXIST
    with pytest.raises(KeyringError) as e:
        keyring.remove_key("nope")
    assert e.value.errno == errno.ENOENT


def test_oversized_key_file_is_not_read(tmp_path: Path) -> None:
    k = keyring.add_key("big", file_keyring, {"path": str(key_file(tmp_path, data=b"x" * 5000))})
    with pytest.raises(KeyringError) as e:
        keyring.key_material(k)
    assert e.value.errno == errno.ENOBUFS


def test_users_keep_a_removed_key_until_they_let_go(tmp_path: Path) -> None:
    keyring.add_key("key0", file_keyring, {"path": str(key_file(tmp_path))})
    user = keyring.get_key("key0")
    assert user.refcnt == 2
    keyring.remove_key("key0")
    assert [k.info() for k in keyring.keys()] == [
        {"name": "key0", "module": "keyring_file", "removed": True, "probed": False, "refcnt": 1}]
    with pytest.raises(KeyringError) as e:
        keyring.key_material(user)
    assert e.value.errno == errno.ENOKEY
    keyring.put_key(user)
    assert list(keyring.keys()) == []
    with pytest.raises(KeyringError) as e:
        keyring.get_key("key0")
    assert e.value.errno == errno.ENOKEY and "keyring_file_add_key" in str(e.value)


@pytest.fixture
def tgt(tmp_path: Path) -> Iterator[TargetProcess]:
    t = start_target(tmp_path, extra_args=["-L", "keyring"])
    try:
        yield t
    finally:
        t.stop()


def test_rpcs_config_and_logs_never_show_the_material(tgt: TargetProcess, tmp_path: Path) -> None:
    p = key_file(tmp_path)
    c = tgt.client
    assert c.call("keyring_file_add_key", {"name": "key0", "path": str(p)}) is True
    bad = key_file(tmp_path, "loose", mode=0o644)
    with pytest.raises(Exception) as e:
        c.call("keyring_file_add_key", {"name": "key1", "path": str(bad)})
    assert "chmod 0600" in str(e.value)
    assert c.call("keyring_get_keys") == [{"name": "key0", "module": "keyring_file", "removed": False,
                                           "probed": False, "refcnt": 1, "path": str(p)}]
    saved = json.loads(tgt.rpc("save_config").stdout)
    ring = next(s for s in saved["subsystems"] if s["subsystem"] == "keyring")
    assert ring["config"] == [{"method": "keyring_file_add_key", "params": {"name": "key0", "path": str(p)}}]
    assert SECRET.decode() not in json.dumps(saved)
    # replayed: the key comes back from the saved config
    t2 = start_target(tmp_path / "again", saved)
    try:
        assert [k["name"] for k in t2.client.call("keyring_get_keys")] == ["key0"]
    finally:
        t2.stop()
    assert c.call("keyring_file_remove_key", {"name": "key0"}) is True
    with pytest.raises(Exception) as e:
        c.call("keyring_file_remove_key", {"name": "key0"})
    assert "does not exist" in str(e.value)
    assert c.call("keyring_get_keys") == []
    assert SECRET.decode() not in tgt.log_text()
