"""Start-up stays light: a plain target imports none of the optional heavy packages (numpy for
raid5f's XOR, prometheus_client for the exporter, cryptography for DH-HMAC-CHAP and TLS, the
TUI and fuzzing libraries) until a feature that needs one is used. Speed itself is measured by
bench/startup.py, not asserted here."""
from __future__ import annotations

import os

import pytest

from spydk.testing import start_target

PROBE_DIR = os.path.dirname(__file__)
ENV = {"SPYDK_PLUGINS": "_startup_probe",
       "PYTHONPATH": os.pathsep.join(filter(None, [PROBE_DIR, os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("mask", ["0x1", "0x3"])
def test_a_plain_target_imports_no_heavy_package(tmp_path, mask):
    if mask == "0x3" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable cores")  # CI runners have at least two
    with start_target(tmp_path, extra_args=["-m", mask], env=ENV) as t:
        assert t.client.call("test_heavy_modules_loaded") == []
        t.client.call("bdev_malloc_create", {"num_blocks": 2048, "block_size": 512, "name": "M0"})
        t.client.call("nvmf_create_transport", {"trtype": "TCP"})
        assert t.client.call("test_heavy_modules_loaded") == []


def test_the_probe_sees_what_a_feature_imports(tmp_path):
    # The probe itself can fail: starting the metrics exporter brings prometheus_client in.
    with start_target(tmp_path, env=ENV) as t:
        t.client.call("metrics_start_exporter", {"address": "127.0.0.1", "port": 0})
        assert "prometheus_client" in t.client.call("test_heavy_modules_loaded")
