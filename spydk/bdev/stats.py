"""Per-channel I/O statistics (what bdev_get_iostat reports).

Counters are lists indexed by IoType so the completion path updates them with a few
list stores; successful I/O count into ops/bytes/latency, failed ones into ``errors``
keyed by IoStatus. Latencies are in ticks (nanoseconds).
"""
from __future__ import annotations

from typing import Any

from spydk.bdev.io import NUM_IO_TYPES, IoStatus, IoType

NO_MIN = (1 << 64) - 1
PENDING_MAX = 2 * 256  # fold after this many pending entries (256 I/Os): bounded memory

# (bytes key, ops key, latency prefix, IoType) as bdev_get_iostat names them.
_REPORTED = (
    ("read", IoType.READ, "bytes_read", "num_read_ops"),
    ("write", IoType.WRITE, "bytes_written", "num_write_ops"),
    ("unmap", IoType.UNMAP, "bytes_unmapped", "num_unmap_ops"),
    ("copy", IoType.COPY, "bytes_copied", "num_copy_ops"),
)


class IoStat:
    __slots__ = ("ops", "bytes", "lat", "lat_max", "lat_min", "errors", "pending")

    def __init__(self) -> None:
        self.ops = [0] * NUM_IO_TYPES
        self.bytes = [0] * NUM_IO_TYPES
        self.lat = [0] * NUM_IO_TYPES
        self.lat_max = [0] * NUM_IO_TYPES
        self.lat_min = [NO_MIN] * NUM_IO_TYPES
        self.errors: dict[int, int] = {}
        # Successful I/Os not yet counted above, per IoType: latency, bytes, latency, bytes...
        # A path that finishes an I/O inside its submit (BdevDesc.stacked_rw) appends two
        # small ints here instead of five read-modify-writes of big ints; fold() counts them
        # (in C: sum/max/min), before every read or reset and every PENDING_MAX I/Os.
        self.pending: list[list[int]] = [[] for _ in range(NUM_IO_TYPES)]

    def fold(self) -> None:
        for t, p in enumerate(self.pending):
            if p:
                lats = p[0::2]
                self.ops[t] += len(lats)
                self.bytes[t] += sum(p[1::2])
                self.lat[t] += sum(lats)
                mx = max(lats)
                if mx > self.lat_max[t]:
                    self.lat_max[t] = mx
                mn = min(lats)
                if mn < self.lat_min[t]:
                    self.lat_min[t] = mn
                p.clear()

    def add(self, other: IoStat) -> None:
        self.fold()
        other.fold()
        for i in range(NUM_IO_TYPES):
            self.ops[i] += other.ops[i]
            self.bytes[i] += other.bytes[i]
            self.lat[i] += other.lat[i]
            if other.lat_max[i] > self.lat_max[i]:
                self.lat_max[i] = other.lat_max[i]
            if other.lat_min[i] < self.lat_min[i]:
                self.lat_min[i] = other.lat_min[i]
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v

    def reset(self, mode: str = "all") -> None:
        """SPDK's reset modes: all, maxmin (only the max/min latencies), error, none."""
        if mode == "none":
            return
        self.fold()
        if mode in ("all", "maxmin"):
            self.lat_max[:] = [0] * NUM_IO_TYPES
            self.lat_min[:] = [NO_MIN] * NUM_IO_TYPES
        if mode in ("all", "error"):
            self.errors.clear()
        if mode == "all":
            self.ops[:] = [0] * NUM_IO_TYPES
            self.bytes[:] = [0] * NUM_IO_TYPES
            self.lat[:] = [0] * NUM_IO_TYPES

    def to_json(self) -> dict[str, Any]:
        self.fold()
        out: dict[str, Any] = {}
        for _word, t, bkey, okey in _REPORTED:
            out[bkey] = self.bytes[t]
            out[okey] = self.ops[t]
        for word, t, _, _ in _REPORTED:
            mn = self.lat_min[t]
            out[f"{word}_latency_ticks"] = self.lat[t]
            out[f"max_{word}_latency_ticks"] = self.lat_max[t]
            out[f"min_{word}_latency_ticks"] = 0 if mn == NO_MIN else mn
        errs: dict[str, int] = {}
        for k, v in sorted(self.errors.items()):
            try:
                key = IoStatus(k).name.lower()
            except ValueError:
                key = str(k)
            errs[key] = v
        out["io_error"] = errs
        return out
