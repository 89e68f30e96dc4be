"""A verify workload over any bdev: random offsets and sizes, unaligned scatter lists."""
from __future__ import annotations

import random
from typing import Any

from spydk.bdev import BdevDesc


def scatter(data: bytes, rng: random.Random) -> list[Any]:
    """Split ``data`` into 1..4 writable pieces of odd lengths, each at an odd address."""
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
    out = []
    prev = 0
    for c in [*cuts[:rng.randint(0, len(cuts))], len(data)]:
        back = bytearray(c - prev + 1)
        back[1:] = data[prev:c]
        out.append(memoryview(back)[1:])  # offset by one byte: never aligned
        prev = c
    return out


def verify(env: Any, desc: BdevDesc, ch: Any, rounds: int = 30, seed: int = 1,
           model: bytearray | None = None) -> bytearray:
    """Write random data at random places (vectored, unaligned), read each back and
    compare; returns the model of the disk content written so far."""
    rng = random.Random(seed)
    b = desc.bdev
    bs = b.block_size
    if model is None:
        model = bytearray(b.num_blocks * bs)
    for _ in range(rounds):
        n = rng.randint(1, min(16, b.num_blocks))
        off = rng.randrange(0, b.num_blocks - n + 1)
        data = rng.randbytes(n * bs)
        ok, *_ = env.io(desc.writev_blocks, ch, scatter(data, rng), off, n)
        assert ok
        model[off * bs:(off + n) * bs] = data
        bufs = scatter(bytes(n * bs), rng)
        ok, _, got, _ = env.io(desc.readv_blocks, ch, bufs, off, n)
        assert ok and got == data
    return model


def read_all(env: Any, desc: BdevDesc, ch: Any) -> bytes:
    b = desc.bdev
    out = bytearray()
    step = 64
    for off in range(0, b.num_blocks, step):
        n = min(step, b.num_blocks - off)
        ok, _, got, _ = env.io(desc.read_blocks, ch, bytearray(n * b.block_size), off, n)
        assert ok
        out += got
    return bytes(out)
