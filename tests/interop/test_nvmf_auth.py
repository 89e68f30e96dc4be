"""DH-HMAC-CHAP against the Linux kernel host (Debian 12's 6.12 kernel, nvme-cli 2.3) in a
QEMU guest: one-way and bidirectional logins with data checks, and a wrong key, a missing key,
a wrong controller key and a host that is not allowed each refused while the authenticated
controller keeps serving I/O."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from spydk.nvme.auth import dhchap

from .expect import guest_passed
from .guest_run import HOSTNQN
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop
OPEN_NQN = "nqn.2016-06.io.spdk:open"


def test_dhchap_with_the_linux_host(run_guest_612, spydk_target, free_port, tmp_path: Path) -> None:
    port = free_port()
    host_key = dhchap.generate_secret(32, 1)  # transformed with SHA-256 and the host NQN
    ctrl_key = dhchap.generate_secret(48, 0)
    wrong_key = dhchap.generate_secret(32, 0)
    keydir = tmp_path / "keys"
    keydir.mkdir(mode=0o700)
    for name, text in (("host0", host_key), ("ctrl0", ctrl_key)):
        (keydir / name).write_text(text)
        os.chmod(keydir / name, 0o600)
    cfg = nvmf_tcp_config(port, discovery=False)
    nvmf = cfg["subsystems"][1]["config"]
    nvmf[1]["params"]["allow_any_host"] = False
    nvmf.insert(0, {"method": "nvmf_set_config", "params": {
        # the guest is TCG-emulated: keep its modular exponentiations to 2048 bits
        "dhchap_digests": ["sha256", "sha384", "sha512"], "dhchap_dhgroups": ["null", "ffdhe2048"]}})
    nvmf.append({"method": "nvmf_subsystem_add_host", "params": {
        "nqn": NVMF_NQN, "host": HOSTNQN, "dhchap_key": "host0", "dhchap_ctrlr_key": "ctrl0"}})
    # a second subsystem without authentication, whose controller stays up during the refusals
    nvmf += [
        {"method": "nvmf_create_subsystem", "params": {"nqn": OPEN_NQN, "allow_any_host": True}},
        {"method": "nvmf_subsystem_add_ns", "params": {"nqn": OPEN_NQN, "namespace": {"bdev_name": "Malloc1"}}},
        {"method": "nvmf_subsystem_add_listener", "params": {"nqn": OPEN_NQN, "listen_address": {
            "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}}}]
    cfg["subsystems"][0]["config"].append({"method": "bdev_malloc_create", "params": {
        "name": "Malloc1", "num_blocks": 16384, "block_size": 512}})
    cfg["subsystems"].append({"subsystem": "keyring", "config": [
        {"method": "keyring_file_add_key", "params": {"name": n, "path": str(keydir / n)}}
        for n in ("host0", "ctrl0")]})
    tgt = spydk_target(cfg)
    res = run_guest_612("nvmf-auth.sh", {"NVME_NQN": NVMF_NQN, "NVME_OPEN_NQN": OPEN_NQN,
                                         "NVME_PORT": str(port),
                                         "HOST_KEY": host_key, "CTRL_KEY": ctrl_key,
                                         "WRONG_KEY": wrong_key}, timeout=600)
    guest_passed(res, "NVMF AUTH PASSED")
    # each refusal as the host saw it: the target's AUTH_Failure1 (reason: authentication
    # failed) and the host's Failure2 after a wrong controller key are EKEYREJECTED; a host
    # without a key learns that the controller requires authentication (ENOKEY); a host that is
    # not allowed gets Connect Invalid Host (SCT 1h, SC 84h, with DNR: 16772 = 4184h)
    seen = _refusals(res.console)
    assert sorted(seen) == sorted(["wrong key", "missing key", "wrong controller key", "host not allowed"]), seen
    assert "Key was rejected" in seen["wrong key"] and "Key was rejected" in seen["wrong controller key"]
    assert "Required key not available" in seen["missing key"]
    assert "is not allowed" in seen["host not allowed"] and "ret=16772" in seen["host not allowed"]
    log = tgt.log_path.read_text(errors="replace")
    assert "authenticated on qid 0" in log and "bidirectional" in log
    # (I/O queues authenticate too: the target answers their commands AUTHENTICATION REQUIRED
    # until they do, so the data checks above could not pass otherwise)
    assert "does not match its key" in log  # wrong key: Failure1, reason "failed"
    assert "the host refused the controller (Failure2" in log  # wrong controller key
    assert "intruder is not allowed" in log
    for secret in (host_key, ctrl_key, wrong_key):
        assert secret.split(":")[2] not in log  # secrets never reach the log


def _refusals(console: str) -> dict[str, str]:
    """``REFUSED: what`` lines of nvmf-auth.sh, each with the output printed before it."""
    out: dict[str, str] = {}
    chunk: list[str] = []
    for line in console.splitlines():
        if line.startswith("REFUSED: "):
            out[line[len("REFUSED: "):]] = "\n".join(chunk)
            chunk = []
        elif line.startswith("== "):
            chunk = []
        else:
            chunk.append(line)
    return out
