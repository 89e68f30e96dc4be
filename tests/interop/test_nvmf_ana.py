"""ANA multipath with the Linux host's native NVMe multipath: two listeners of one subsystem,
one disk with two paths in the guest; making the path in use inaccessible mid-fio moves I/O
to the other one, twice, with fio's verify clean."""
from __future__ import annotations

import threading
import time

import pytest

from .expect import guest_passed
from .targets import NVMF_NQN, nvmf_tcp_config

pytestmark = pytest.mark.interop


def _addr(port: int) -> dict[str, str]:
    return {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": str(port)}


def test_ana_multipath_moves_io(run_guest, spydk_target, free_port) -> None:
    p1, p2 = free_port(), free_port()
    cfg = nvmf_tcp_config(p1, discovery=False)
    nvmf = cfg["subsystems"][1]["config"]
    nvmf[1]["params"]["ana_reporting"] = True
    nvmf.append({"method": "nvmf_subsystem_add_listener",
                 "params": {"nqn": NVMF_NQN, "listen_address": _addr(p2)}})
    tgt = spydk_target(cfg)
    errors: list[str] = []
    flips: list[str] = []
    stop = threading.Event()

    def set_state(port: int, state: str) -> None:
        resp = tgt.rpc("nvmf_subsystem_listener_set_ana_state", {
            "nqn": NVMF_NQN, "listen_address": _addr(port), "ana_state": state})
        assert "result" in resp, resp
        flips.append(f"{port}:{state}")

    def host_side() -> None:
        try:
            deadline = time.monotonic() + 400
            while not stop.is_set() and time.monotonic() < deadline:
                qps = tgt.rpc("nvmf_subsystem_get_qpairs", {"nqn": NVMF_NQN}).get("result") or []
                if len({q["cntlid"] for q in qps if q["qid"] > 0}) >= 2:
                    break
                time.sleep(0.5)
            else:
                return
            time.sleep(12)  # fio is running by now (TCG guest: a few seconds after the connects)
            set_state(p1, "inaccessible")
            time.sleep(10)
            set_state(p1, "optimized")
            set_state(p2, "inaccessible")
        except Exception as e:  # reported by the test body
            errors.append(repr(e))

    th = threading.Thread(target=host_side, daemon=True)
    th.start()
    try:
        res = run_guest("nvmf-ana.sh", {"NVME_NQN": NVMF_NQN, "NVME_PORT": str(p1), "NVME_PORT2": str(p2),
                                        "FIO_SECONDS": "35"}, timeout=600)
    finally:
        stop.set()
        th.join(timeout=60)
    assert not errors, errors
    assert len(flips) == 3, f"the paths were not flipped while fio ran: {flips}"
    guest_passed(res, "NVMF ANA PASSED")
    after = next(ln for ln in res.console.splitlines() if ln.startswith("PATHS-AFTER"))
    assert after.count("=inaccessible") == 1 and after.count("=optimized") == 1, after
