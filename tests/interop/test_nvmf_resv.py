"""NVMe reservations with the Linux host in a QEMU guest (nvme-cli resv-register / acquire /
release / report) as two hosts with their own host NQN and host ID: the conflict cases are
answered RESERVATION CONFLICT, and the reservation survives a restart of the target through
its ptpl_file (the second target listens on other ports, so the guest cannot reach the first
one by mistake)."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .expect import guest_passed
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop
HOSTNQN_A = "nqn.2014-08.org.example:resv-a"
HOSTNQN_B = "nqn.2014-08.org.example:resv-b"
BDEV_UUID = "5e8f1c2a-7d3b-4c55-9a61-0b7c2d4e6f10"  # the ptpl_file names the bdev by UUID


def _config(port_a: int, port_b: int, ptpl: Path) -> dict[str, Any]:
    """One namespace with a ptpl_file; a listener per host (see nvmf-resv.sh)."""
    cfg = nvmf_tcp_config(port_a, discovery=False)
    cfg["subsystems"][0]["config"][0]["params"]["uuid"] = BDEV_UUID
    nvmf = cfg["subsystems"][1]["config"]
    nvmf[2]["params"]["namespace"]["ptpl_file"] = str(ptpl)
    nvmf.append({"method": "nvmf_subsystem_add_listener", "params": {"nqn": NVMF_NQN, "listen_address": {
        "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port_b)}}})
    return cfg


def _ptpl_state(ptpl: Path) -> dict[str, Any] | None:
    try:
        d: dict[str, Any] = json.loads(ptpl.read_text())
        return d
    except (OSError, ValueError):
        return None


def test_reservations_two_hosts_and_restart(run_guest, spydk_target, free_port, tmp_path: Path) -> None:
    p1a, p1b, p2a, p2b = free_port(), free_port(), free_port(), free_port()
    ptpl = tmp_path / "resv.ptpl"
    first = spydk_target(_config(p1a, p1b, ptpl))
    errors: list[str] = []
    saved: list[dict[str, Any]] = []
    second: list[Any] = []
    stop = threading.Event()

    def host_side() -> None:
        # Once the guest holds the reservation and has disconnected both hosts, restart the
        # target with the same ptpl_file and listeners on other ports.
        try:
            deadline = time.monotonic() + 500
            while not stop.is_set() and time.monotonic() < deadline:
                st = _ptpl_state(ptpl)
                if st and st.get("rtype") == 1 and len(st.get("registrants", [])) == 2:
                    ctrls = first.rpc("nvmf_subsystem_get_controllers", {"nqn": NVMF_NQN}).get("result")
                    if ctrls == []:
                        break
                time.sleep(0.5)
            else:
                return
            saved.append(_ptpl_state(ptpl) or {})
            first.stop()
            second.append(spydk_target(_config(p2a, p2b, ptpl)))
        except Exception as e:  # reported by the test body
            errors.append(repr(e))

    th = threading.Thread(target=host_side, daemon=True)
    th.start()
    try:
        res = run_guest("nvmf-resv.sh", {
            "NVME_NQN": NVMF_NQN, "NVME_PORT_A": str(p1a), "NVME_PORT_B": str(p1b),
            "NVME_PORT2_A": str(p2a), "NVME_PORT2_B": str(p2b),
            "HOSTNQN_A": HOSTNQN_A, "HOSTID_A": str(uuid.uuid4()),
            "HOSTNQN_B": HOSTNQN_B, "HOSTID_B": str(uuid.uuid4())}, timeout=600)
    finally:
        stop.set()
        th.join(timeout=60)
    assert not errors, errors
    assert second, "the target was not restarted (the guest never held the reservation with PTPL)"
    guest_passed(res, "NVMF RESV PASSED")
    # the reservation as written before the restart: A holds Write Exclusive, both registered
    st = saved[0]
    assert st["ptpl"] is True and st["rtype"] == 1 and st["crkey"] == 0xAAAA and st["bdev_uuid"] == BDEV_UUID
    assert sorted(r["rkey"] for r in st["registrants"]) == [0xAAAA, 0xBBBB]
    conflicts = [ln for ln in res.console.splitlines() if ln.startswith("CONFLICT:")]
    assert len(conflicts) == 6, conflicts
