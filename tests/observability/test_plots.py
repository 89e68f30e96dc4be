"""Plots: bdevperf writes a latency histogram and an IOPS time series; the plot helpers
refuse empty data and unknown formats with a clear message."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spydk.apps import plots


def test_bdevperf_writes_plots(tmp_path: Path) -> None:
    cfg = tmp_path / "null.json"
    cfg.write_text(json.dumps({"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_null_create", "params": {"name": "Null0", "num_blocks": 65536, "block_size": 512}}]}]}))
    png, svg = tmp_path / "lat.png", tmp_path / "iops.svg"
    res = subprocess.run([sys.executable, "-m", "spydk.apps.main", "bdevperf", "-c", str(cfg), "-q", "8",
                          "-o", "4096", "-w", "randread", "-t", "0.5", "--plot-latency", str(png),
                          "--plot-iops", str(svg)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"wrote {png}" in res.stdout and f"wrote {svg}" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "IOPS" in text


def test_plot_helpers(tmp_path: Path) -> None:
    buckets = [(1000, 2000, 5), (2000, 4000, 90), (4000, 8000, 4), (64000, 128000, 1)]
    assert plots.percentile(buckets, 0.5) == 4000 and plots.percentile(buckets, 0.999) == 128000
    out = plots.latency_histogram(buckets, str(tmp_path / "h.svg"), "t")
    assert "p99.9" in Path(out).read_text()
    plots.bar_table(["a", "b"], {"x": [1.0, 2.0], "y": [2.0, 1.0]}, str(tmp_path / "b.png"), "t", "IOPS")
    with pytest.raises(plots.PlotError, match="nothing to plot"):
        plots.latency_histogram([], str(tmp_path / "e.png"), "t")
    with pytest.raises(plots.PlotError, match="nothing to plot"):
        plots.iops_series([], str(tmp_path / "e.png"), "t")
    with pytest.raises(plots.PlotError, match=".png or .svg"):
        plots.iops_series([(0.1, 5.0)], str(tmp_path / "noext"), "t")
