"""write_unit_size / split_on_write_unit (SPDK's, used by raid5f): writes reach the module
as whole aligned units; other writes fail before any of it is written."""
from __future__ import annotations

from spydk.bdev import register_bdev
from spydk.bdev.io import READ, RESET, WRITE, WRITE_ZEROES

from . import conftest as c
from .conftest import Env


def test_writes_are_cut_into_units_and_partial_ones_refused(env: Env) -> None:
    d = c.TestDisk("WU", num_blocks=64, types=(READ, WRITE, RESET), optimal_io_boundary=2,
                 split_on_optimal_io_boundary=True)
    d.write_unit_size = 4
    d.split_on_write_unit = True
    env.call(register_bdev, d)
    desc = env.open("WU")
    ch = env.call(desc.get_io_channel)
    ok, *_ = env.io(desc.write_blocks, ch, b"a" * 512 * 12, 4, 12)
    assert ok and d.log == [(WRITE, 4, 4), (WRITE, 8, 4), (WRITE, 12, 4)]   # units, not boundary 2
    assert d.data[4 * 512:16 * 512] == b"a" * 512 * 12
    d.log.clear()
    for off, n in [(0, 2), (2, 4), (4, 6), (1, 8)]:
        ok, *_ = env.io(desc.write_blocks, ch, b"b" * 512 * n, off, n)
        assert not ok, (off, n)
    assert d.log == [] and d.data[4 * 512:16 * 512] == b"a" * 512 * 12
    # reads still split at the optimal boundary
    ok, _st, data, _rc = env.io(desc.read_blocks, ch, bytearray(512 * 4), 4, 4)
    assert ok and data == b"a" * 512 * 4 and d.log == [(READ, 4, 2), (READ, 6, 2)]
    d.log.clear()
    # WRITE_ZEROES emulated with whole units; refused when not whole
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 8, 8)
    assert ok and d.log == [(WRITE, 8, 4), (WRITE, 12, 4)] and d.data[8 * 512:16 * 512] == bytes(8 * 512)
    ok, *_ = env.io(desc.write_zeroes_blocks, ch, 4, 2)
    assert not ok and WRITE_ZEROES not in d.types
    env.call(lambda: (desc.put_io_channel(ch), desc.close()))
