"""libiscsi's command-line tools against spydk's iSCSI target: header digests (CRC32C)
required by the target node and negotiated by libiscsi, I/O with iscsi-perf over that
session; CHAP through the URL (good, wrong secret, none)."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .targets import iscsi_config
from .test_iscsi_test_cu import wait_for_iscsi

pytestmark = pytest.mark.interop

IQN = "iqn.2016-06.io.spdk:disk1"


def tool(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert shutil.which(argv[0]), f"{argv[0]} missing: install libiscsi-bin"
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def _with_node(config: dict, **node_params: object) -> dict:
    for sub in config["subsystems"]:
        for entry in sub["config"]:
            if entry["method"] == "iscsi_create_target_node":
                entry["params"].update(node_params)
    return config


@pytest.mark.parametrize("cpumask", ["0x1", "0x3"])
def test_header_digest_required(spydk_target, free_port, cpumask: str) -> None:
    port = free_port()
    wait_for_iscsi(spydk_target(_with_node(iscsi_config(port), header_digest=True), extra_args=("-m", cpumask)))
    url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
    ok = tool("iscsi-inq", url + "?header_digest=crc32c")
    assert ok.returncode == 0 and "DIRECT_ACCESS" in ok.stdout, ok.stderr
    # (libiscsi 1.19 always offers "None,CRC32C"; the refusal of an initiator that offers
    # only None is tested with the test initiator in tests/iscsi_tgt.)
    perf = tool("iscsi-perf", "-m", "8", "-b", "8", "-r", "-t", "2", url + "?header_digest=crc32c")
    rates = [int(x) for x in re.findall(r"iops average (\d+)", perf.stdout)]
    assert rates and rates[-1] > 0, perf.stdout[-2000:] + perf.stderr


def test_chap_through_url(spydk_target, free_port) -> None:
    port = free_port()
    wait_for_iscsi(spydk_target(iscsi_config(port, chap=("libuser", "libiscsi-secret"))))
    good = tool("iscsi-inq", f"iscsi://libuser%libiscsi-secret@127.0.0.1:{port}/{IQN}/0")
    assert good.returncode == 0 and "DIRECT_ACCESS" in good.stdout, good.stderr
    bad = tool("iscsi-inq", f"iscsi://libuser%wrong-secret@127.0.0.1:{port}/{IQN}/0")
    assert bad.returncode != 0
    none = tool("iscsi-inq", f"iscsi://127.0.0.1:{port}/{IQN}/0")
    assert none.returncode != 0
