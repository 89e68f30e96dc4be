"""bdevperf -m 0x3 -C: a job per core, each in its own reactor process, on disjoint slices."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")


def _bdevperf(tmp_path, *args):
    cfg = tmp_path / "malloc.json"
    cfg.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 8192, "block_size": 512}},
        {"method": "bdev_malloc_create", "params": {"name": "Malloc1", "num_blocks": 8192, "block_size": 512}}]}]}))
    return subprocess.run([sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", str(cfg), "-o", "4096",
                           "-t", "1", *args], capture_output=True, text=True, timeout=120)


def test_every_core_runs_a_job_on_every_bdev_and_verify_never_miscompares(tmp_path):
    r = _bdevperf(tmp_path, "-q", "16", "-w", "verify", "-m", "0x3", "-C")
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = re.findall(r"Job: (Malloc\d) \(Core Mask (0x\d)", r.stdout)
    assert jobs == [("Malloc0", "0x1"), ("Malloc0", "0x2"), ("Malloc1", "0x1"), ("Malloc1", "0x2")]
    assert "miscompare" not in r.stdout.lower()
    rows = re.findall(r"^\t (Malloc\d)\s+:\s+[\d.]+\s+([\d.]+)", r.stdout, re.M)
    assert len(rows) == 4 and all(float(iops) > 0 for _, iops in rows)


def test_without_C_bdevs_are_spread_over_the_cores(tmp_path):
    r = _bdevperf(tmp_path, "-q", "8", "-w", "randread", "-m", "0x3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.findall(r"Job: (Malloc\d) \(Core Mask (0x\d)", r.stdout) == [("Malloc0", "0x1"), ("Malloc1", "0x2")]


def test_a_bdev_too_small_for_its_slices_is_named(tmp_path):
    r = _bdevperf(tmp_path, "-q", "8", "-w", "randread", "-m", "0x3", "-C", "-o", str(4 << 20))
    assert r.returncode == 1
    assert "smaller than one I/O" in r.stderr


def test_a_bdev_that_lives_on_main_only_is_refused_on_a_worker_by_name(tmp_path):
    cfg = tmp_path / "ee.json"
    cfg.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create", "params": {"name": "M0", "num_blocks": 8192, "block_size": 512}},
        {"method": "bdev_error_create", "params": {"base_name": "M0"}}]}]}))
    r = subprocess.run([sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", str(cfg), "-o", "4096", "-t", "1",
                        "-q", "8", "-w", "randread", "-m", "0x3", "-C", "-T", "EE_M0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "bdev 'EE_M0' does not exist on the reactor of core 1" in r.stderr
    assert "main reactor only" in r.stderr
