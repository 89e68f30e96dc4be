"""`spydk tgt` raises its open-file soft limit to the hard limit: with the usual soft limit of
1024 it could not hold the connections its own limits allow (1024 per NVMe/TCP listener plus
1024 per iSCSI portal group), and a target out of descriptors can only refuse connections."""
from __future__ import annotations

import resource
from pathlib import Path

from spydk.testing import start_target


def limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), (resource.RLIM_INFINITY if hard == "unlimited" else int(hard))
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def test_target_raises_its_open_file_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard > 600, f"hard open-file limit {hard}: the test needs more"
    resource.setrlimit(resource.RLIMIT_NOFILE, (600, hard))  # the child inherits a low soft limit
    try:
        t = start_target(tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with t:
        got_soft, got_hard = limits(t.pid)
        assert got_hard == hard
        assert got_soft == (1 << 20 if hard == resource.RLIM_INFINITY else hard), (got_soft, hard)
