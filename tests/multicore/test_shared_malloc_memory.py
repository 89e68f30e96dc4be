"""The memory a multi-core app's malloc disk is shared through: hugetlb pages when the reserved
pool has room to spare, else ordinary shared memory; either is mapped whole and holds the same
bytes in every mapping."""
from __future__ import annotations

import os

import pytest

from spydk.modules.bdev.malloc import malloc as m


def _roundtrip(fd: int, size: int) -> None:
    a, b = m._map_shared(fd, size), m._map_shared(fd, size)
    try:
        assert len(a) == os.fstat(fd).st_size >= size
        a[size - 5:size] = b"tail!"
        assert b[size - 5:size] == b"tail!"
        assert memoryview(a)[:size].nbytes == size
    finally:
        a.close()
        b.close()


def test_no_free_huge_pages_means_ordinary_shared_memory(monkeypatch):
    monkeypatch.setattr(m, "_meminfo", lambda key: 0)
    size = 512 * 1001   # not a multiple of the page size
    fd = m._shared_memfd("t0", size)
    try:
        assert os.fstat(fd).st_size == size
        _roundtrip(fd, size)
    finally:
        os.close(fd)


def test_a_pool_too_small_to_spare_is_left_alone(monkeypatch):
    info = {"Hugepagesize": 2 << 20, "HugePages_Free": 3}   # 6 MiB free: half is 3 MiB
    monkeypatch.setattr(m, "_meminfo", lambda key: info.get(key, 0))
    made = []
    real = os.memfd_create
    monkeypatch.setattr(os, "memfd_create", lambda name, flags=0: made.append(flags) or real(name, flags))
    fd = m._shared_memfd("t1", 4 << 20)
    os.close(fd)
    assert made and not made[0] & os.MFD_HUGETLB


def test_hugetlb_refused_by_the_kernel_falls_back(monkeypatch):
    info = {"Hugepagesize": 2 << 20, "HugePages_Free": 1024}
    monkeypatch.setattr(m, "_meminfo", lambda key: info.get(key, 0))
    real = os.memfd_create

    def memfd(name, flags=0):
        if flags & os.MFD_HUGETLB:
            raise OSError(22, "no hugetlbfs")
        return real(name, flags)
    monkeypatch.setattr(os, "memfd_create", memfd)
    size = 3 << 20
    fd = m._shared_memfd("t2", size)
    try:
        assert os.fstat(fd).st_size == size
        _roundtrip(fd, size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [512 * 7, 3 << 20])
def test_whatever_the_machine_gives_maps_and_shares(size):
    # With the real pool: hugetlb here when huge pages are reserved and free, else shmem.
    fd = m._shared_memfd("t3", size)
    try:
        _roundtrip(fd, size)
    finally:
        os.close(fd)
