"""Latency histograms in SPDK's bucket layout (what bdev_get_histogram returns).

Buckets come in ranges of 2**granularity buckets. Range 0 counts values 0 .. 2**g - 1 one
value per bucket, range 1 the next 2**g values one per bucket, and every later range r
covers twice the span of range r-1 with buckets 2**(r-1) values wide. There are
64 - g + 1 ranges, so any 64-bit value lands somewhere. The RPC sends the counts as
little-endian uint64s, base64-encoded, with the granularity ("bucket_shift") and the tick
rate so a reader can turn bucket bounds into time.
"""
from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

DEFAULT_GRANULARITY = 7


class Histogram:
    __slots__ = ("granularity", "buckets", "_mask", "min_value", "max_value")

    def __init__(self, granularity: int = DEFAULT_GRANULARITY, min_value: int = 0,
                 max_value: int = 0):
        if not 1 <= granularity <= 32:
            raise ValueError(f"histogram granularity must be 1..32, got {granularity}")
        self.granularity = granularity
        self.buckets = [0] * (self.num_ranges << granularity)
        self._mask = (1 << granularity) - 1
        # Values are clamped into [min_value, max_value] (0 = no bound).
        self.min_value = min_value
        self.max_value = max_value

    @property
    def num_ranges(self) -> int:
        return 64 - self.granularity + 1

    @staticmethod
    def index_of(value: int, granularity: int) -> int:
        bits = value.bit_length()
        if bits <= granularity:
            return value
        r = bits - granularity
        return (r << granularity) + ((value >> (r - 1)) & ((1 << granularity) - 1))

    def tally(self, value: int) -> None:
        if value < self.min_value:
            value = self.min_value
        elif self.max_value and value > self.max_value:
            value = self.max_value
        g = self.granularity
        bits = value.bit_length()
        if bits <= g:
            self.buckets[value] += 1
        else:
            r = bits - g
            self.buckets[(r << g) + ((value >> (r - 1)) & self._mask)] += 1

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """[start, end) of the values counted in bucket ``index``."""
        g = self.granularity
        r, i = index >> g, index & self._mask
        if r == 0:
            return i, i + 1
        width = 1 << (r - 1)
        start = (1 << (r + g - 1)) + i * width
        return start, start + width

    def merge(self, other: Histogram) -> None:
        if other.granularity != self.granularity:
            raise ValueError("cannot merge histograms of different granularity")
        b = self.buckets
        for i, c in enumerate(other.buckets):
            if c:
                b[i] += c

    def reset(self) -> None:
        self.buckets = [0] * len(self.buckets)

    def total(self) -> int:
        return sum(self.buckets)

    def iter_nonzero(self) -> Iterator[tuple[int, int, int]]:
        """(start, end, count) for every bucket holding something."""
        for i, c in enumerate(self.buckets):
            if c:
                s, e = self.bucket_bounds(i)
                yield s, e, c

    def encode(self) -> str:
        """The bucket counts as base64 of little-endian uint64s."""
        return base64.b64encode(struct.pack(f"<{len(self.buckets)}Q", *self.buckets)).decode()

    @classmethod
    def decode(cls, data: str, granularity: int) -> Histogram:
        h = cls(granularity)
        raw = base64.b64decode(data)
        n = len(raw) // 8
        if n != len(h.buckets):
            raise ValueError(f"histogram has {n} buckets, expected {len(h.buckets)} for granularity {granularity}")
        h.buckets = list(struct.unpack(f"<{n}Q", raw))
        return h
