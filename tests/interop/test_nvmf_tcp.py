"""spydk's NVMe/TCP target against the Linux kernel initiator and nvme-cli in a QEMU guest."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from .expect import guest_passed
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop

ACL_NQN = "nqn.2016-06.io.spdk:acl"
BAD_HOST = "nqn.2014-08.org.example:not-allowed"
SERIAL = "SPYDK000000000000001"
MODEL = "spydk NVMe-oF TCP Controller for interop"


@pytest.mark.parametrize("cpumask", ["0x1", "0x3"])
def test_nvme_tcp_linux_initiator(run_guest, spydk_target, free_port, cpumask: str) -> None:
    """discover, connect with and without digests, list, id-ctrl/id-ns, ext4 + fsck +
    checksums across a reconnect, fio verify, disconnect. With -m 0x3 the guest has 2 vCPUs,
    so Linux opens 2 I/O queues: one runs on each reactor."""
    port = free_port()
    # Linux shows SN/MN in sysfs with the spec's space padding, and the guest script compares
    # them verbatim: use values that fill the 20/40-byte fields exactly.
    two = cpumask == "0x3"
    tgt = spydk_target(nvmf_tcp_config(port, serial=SERIAL, model=MODEL), extra_args=("-m", cpumask))
    res = run_guest("nvme-tcp.sh", {"NVME_NQN": NVMF_NQN, "NVME_PORT": str(port),
                                    "NVME_SERIAL": SERIAL, "NVME_MODEL": MODEL,
                                    "NVME_DIGEST": "both", "FIO_SECONDS": "3"}, timeout=600,
                    **({"smp": 2} if two else {}))
    guest_passed(res, "NVME-TCP CHECK PASSED")
    groups = tgt.rpc("nvmf_get_stats")["result"]["poll_groups"]
    st = groups[0]
    assert st["admin_qpairs"] >= 3 and sum(g["io_qpairs"] for g in groups) >= 1
    assert all(g["current_io_qpairs"] == 0 for g in groups)  # every connection was torn down
    if two:
        assert len(groups) == 2 and all(g["completed_nvme_io"] > 0 for g in groups), groups


def _rpc_ok(tgt: Any, method: str, params: dict[str, Any]) -> Any:
    resp = tgt.rpc(method, params)
    assert "result" in resp, resp
    return resp["result"]


def test_nvme_tcp_aen_and_refused_host(run_guest, spydk_target, free_port) -> None:
    port = free_port()
    cfg = nvmf_tcp_config(port)
    cfg["subsystems"][0]["config"].append(
        {"method": "bdev_malloc_create", "params": {"name": "Malloc1", "num_blocks": 8192, "block_size": 512}})
    cfg["subsystems"][1]["config"] += [
        {"method": "nvmf_create_subsystem", "params": {"nqn": ACL_NQN, "allow_any_host": False}},
        {"method": "nvmf_subsystem_add_host", "params": {"nqn": ACL_NQN,
                                                         "host": "nqn.2014-08.org.example:someone-else"}},
        {"method": "nvmf_subsystem_add_listener", "params": {"nqn": ACL_NQN, "listen_address": {
            "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}}},
    ]
    tgt = spydk_target(cfg)
    errors: list[str] = []
    stop = threading.Event()

    def host_side() -> None:
        # add a namespace once the guest's controller is up, remove it a while later
        try:
            deadline = time.monotonic() + 400
            while not stop.is_set() and time.monotonic() < deadline:
                # the RPC socket answers before the config is replayed: retry until it is
                resp = tgt.rpc("nvmf_subsystem_get_controllers", {"nqn": NVMF_NQN})
                if resp.get("result"):
                    break
                time.sleep(0.5)
            else:
                return
            time.sleep(3)
            nsid = _rpc_ok(tgt, "nvmf_subsystem_add_ns", {"nqn": NVMF_NQN, "namespace": {"bdev_name": "Malloc1"}})
            time.sleep(20)
            _rpc_ok(tgt, "nvmf_subsystem_remove_ns", {"nqn": NVMF_NQN, "nsid": nsid})
        except Exception as e:  # reported by the test body
            errors.append(repr(e))

    th = threading.Thread(target=host_side, daemon=True)
    th.start()
    try:
        res = run_guest("nvmf-aen-acl.sh", {"NVME_NQN": NVMF_NQN, "NVME_ACL_NQN": ACL_NQN,
                                            "NVME_PORT": str(port)}, timeout=600)
    finally:
        stop.set()
        th.join(timeout=60)
    assert not errors, errors
    guest_passed(res, "NVMF AEN ACL PASSED")
    log = tgt.log_path.read_text(errors="replace")
    refused = [ln for ln in log.splitlines() if BAD_HOST in ln and ACL_NQN in ln]
    assert refused, "no target log line names the refused host and the subsystem"
    assert "someone-else" in refused[0]  # the allowed list is in the line
