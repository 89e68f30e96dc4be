"""Acceptance for issue 6: libiscsi's conformance suite ``iscsi-test-cu`` (all suites, -d)
against a spydk LUN, counted three ways.

CUnit counts a test that only prints ``[SKIPPED]`` (the target refused the command as
unsupported, or a precondition is missing) as passed, so each test is classified from its
output block: failed (CUnit's FAILED), skipped ([SKIPPED] printed), really passed. Suites
appear under several families (ALL, SCSI, iSCSI...): tests are counted once by name.

The three lists go to build/interop/iscsi-test-cu-<target>.json. Goal: more real passes
than Debian's tgt on this machine kind (160 of 230) and no more failures (8); every
failure and skip we accept is named in docs/iscsi.md with the reason.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .targets import REPO, iscsi_config

pytestmark = pytest.mark.interop

TGT_PASSED = 160
TGT_FAILED = 8
RESULTS = REPO / "build" / "interop"
DOCS = REPO / "docs" / "iscsi.md"


def classify(output: str) -> dict[str, list[str]]:
    """{"passed": [...], "skipped": [...], "failed": [...]} of unique SUITE.TEST names, plus
    "skip_reasons": {reason: [tests]}."""
    blocks: dict[str, list[str]] = {}
    suite = ""
    current: list[str] | None = None
    for line in output.splitlines():
        m = re.match(r"^Suite: (.*)$", line)
        if m:
            suite, current = m.group(1).strip(), None
            continue
        m = re.match(r"^  Test: (.*?) \.\.\.(.*)$", line)
        if m:
            current = blocks.setdefault(f"{suite}.{m.group(1)}", [])
            current.append("..." + m.group(2))
            continue
        if line.startswith("Run Summary"):
            current = None
        elif current is not None:
            current.append(line)
    out: dict[str, list[str]] = {"passed": [], "skipped": [], "failed": []}
    reasons: dict[str, list[str]] = {}
    for name, lines in blocks.items():
        body = "\n".join(lines)
        if re.search(r"(^|\.\.\.)FAILED\s*$", body, re.M):
            out["failed"].append(name)
        elif "[SKIPPED]" in body:
            out["skipped"].append(name)
            for r in dict.fromkeys(re.findall(r"\[SKIPPED\] (.*)", body)):
                reasons.setdefault(r.strip(), []).append(name)
        else:
            out["passed"].append(name)
    result: dict[str, list[str]] = {k: sorted(v) for k, v in out.items()}
    result["skip_reasons"] = reasons  # type: ignore[assignment]
    return result


def run_suite(url: str, name: str, tmp_path: Path) -> dict[str, list[str]]:
    tool = shutil.which("iscsi-test-cu")
    assert tool, "iscsi-test-cu missing: install libiscsi-bin (scripts/debian-packages.txt)"
    t0 = time.monotonic()
    proc = subprocess.run([tool, "-d", url], capture_output=True, text=True, timeout=1800)
    log = tmp_path / f"iscsi-test-cu-{name}.log"
    log.write_text(proc.stdout + proc.stderr)
    res = classify(proc.stdout)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"target": name, "url": url, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "seconds": round(time.monotonic() - t0, 1),
              "counts": {k: len(res[k]) for k in ("passed", "skipped", "failed")}, **res}
    (RESULTS / f"iscsi-test-cu-{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    assert sum(record["counts"].values()) > 200, f"too few tests ran; see {log}"
    return res


def wait_for_iscsi(target, iqn: str = "iqn.2016-06.io.spdk:disk1", timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """The harness calls the target ready when RPCs answer, which is before the config's
    runtime part (portals, target nodes) is applied: wait for the node too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = target.rpc("iscsi_get_target_nodes").get("result") or []
        if any(n["name"] == iqn for n in nodes):
            return
        time.sleep(0.1)
    raise AssertionError(f"target node {iqn} did not appear within {timeout:g} s")


def test_iscsi_test_cu_spydk(spydk_target, free_port, tmp_path: Path) -> None:
    port = free_port()
    wait_for_iscsi(spydk_target(iscsi_config(port)))
    res = run_suite(f"iscsi://127.0.0.1:{port}/iqn.2016-06.io.spdk:disk1/0", "spydk", tmp_path)
    passed, failed = res["passed"], res["failed"]
    docs = DOCS.read_text()
    undocumented = [t for t in failed + res["skipped"] if f"`{t}`" not in docs]
    assert len(passed) > TGT_PASSED and len(failed) <= TGT_FAILED, (
        f"{len(passed)} really passed (tgt: {TGT_PASSED}), {len(failed)} failed "
        f"(tgt: {TGT_FAILED}): {failed}")
    assert not undocumented, f"not named in docs/iscsi.md: {undocumented}"


@pytest.mark.slow
def test_iscsi_test_cu_tgt_baseline(tgt_target, tmp_path: Path) -> None:
    """The same count against Debian's tgt (LUN 1: tgt's LUN 0 is its controller)."""
    tgt = tgt_target(lun_mb=64)
    res = run_suite(f"iscsi://127.0.0.1:{tgt.port}/{tgt.iqn}/1", "tgt", tmp_path)
    assert res["passed"], "tgt passed nothing: the harness is broken"
