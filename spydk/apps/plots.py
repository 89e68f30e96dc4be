"""Pictures of benchmark results: latency histograms, IOPS over time, bar charts of tables.

matplotlib is an optional extra (``pip install 'spydk[plot]'``); it is imported only when a
plot is asked for, with the non-interactive Agg backend (no display needed). The format
follows the file name: .png or .svg (anything matplotlib knows).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


class PlotError(RuntimeError):
    pass


def _plt() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise PlotError("plots need matplotlib: pip install 'spydk[plot]' (or matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if not ext:
        raise PlotError(f"{path}: name the file .png or .svg so the format is known")
    fig.savefig(path, format=ext, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def percentile(buckets: Sequence[tuple[int, int, int]], q: float) -> float:
    """The value below which a fraction q of the counts lie (bucket upper bound), in the
    buckets' unit."""
    total = sum(c for _, _, c in buckets)
    if not total:
        return 0.0
    want = q * total
    run = 0
    for _s, e, c in buckets:
        run += c
        if run >= want:
            return float(e)
    return float(buckets[-1][1])


def latency_histogram(buckets: Sequence[tuple[int, int, int]], path: str, title: str,
                      unit_ns: float = 1.0) -> str:
    """Bar chart of (start, end, count) latency buckets (values in ns * unit_ns), log x axis in
    microseconds, with p50/p99/p99.9 marked."""
    plt = _plt()
    if not buckets:
        raise PlotError("no latencies were recorded, nothing to plot")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    starts = [s * unit_ns / 1e3 for s, _, _ in buckets]
    widths = [max((e - s) * unit_ns / 1e3, 1e-3) for s, e, _ in buckets]
    counts = [c for _, _, c in buckets]
    ax.bar(starts, counts, width=widths, align="edge", color="#3b7dd8", edgecolor="#1d4f91", linewidth=0.3)
    ax.set_xscale("log")
    ax.set_xlabel("latency (us)")
    ax.set_ylabel("I/O count")
    ax.set_title(title)
    for q, style in ((0.5, "-"), (0.99, "--"), (0.999, ":")):
        v = percentile(buckets, q) * unit_ns / 1e3
        ax.axvline(v, color="#c0392b", linestyle=style, linewidth=1)
        ax.text(v, ax.get_ylim()[1] * 0.95, f" p{q * 100:g} {v:.1f} us", color="#c0392b", fontsize=8,
                va="top")
    ax.grid(True, which="both", axis="x", alpha=0.3)
    return _save(fig, path)


def iops_series(samples: Sequence[tuple[float, float]], path: str, title: str,
                series: dict[str, Sequence[tuple[float, float]]] | None = None) -> str:
    """Line chart of (seconds, IOPS) samples (or several named series)."""
    plt = _plt()
    all_series = dict(series or {})
    if samples:
        all_series.setdefault("IOPS", samples)
    if not any(all_series.values()):
        raise PlotError("no IOPS samples, nothing to plot")
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, pts in all_series.items():
        ax.plot([t for t, _ in pts], [v for _, v in pts], marker=".", linewidth=1.2, label=name)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("IOPS")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(all_series) > 1:
        ax.legend()
    return _save(fig, path)


def bar_table(labels: Sequence[str], groups: Mapping[str, Sequence[float]], path: str, title: str,
              ylabel: str) -> str:
    """Grouped bars: one group per label, one bar per series (e.g. spydk vs SPDK)."""
    plt = _plt()
    if not labels or not groups:
        raise PlotError("an empty table, nothing to plot")
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 2), 4.5))
    n = len(groups)
    width = 0.8 / n
    xs = range(len(labels))
    for i, (name, vals) in enumerate(groups.items()):
        ax.bar([x + (i - (n - 1) / 2) * width for x in xs], vals, width=width, label=name)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if n > 1:
        ax.legend()
    return _save(fig, path)
