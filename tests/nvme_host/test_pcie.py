"""The PCIe transport against a register-level fake controller (tests/nvme_host/fake_pcie.py):
bring-up (also from a controller found enabled), identify, I/O through PRPs (one page, two,
PRP list), splitting, queueing beyond the depth, phase-bit wrap, shutdown, bad completions."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme.host import Controller, ControllerOpts, NvmeError, parse_trid
from spydk.nvme.host.pcie import PcieController, PcieQpair
from spydk.nvme.host.pcie_dev import PcieDeviceError, normalize_bdf
from spydk.nvme.host.qpair import ST_ABORTED_SQ_DELETION
from spydk.nvme.spec import AdminOpcode

from .conftest import run
from .fake_pcie import FakeDma, FakeNvme

TRID = parse_trid("trtype:PCIe traddr:0000:00:04.0")


def _io(fn: Any, *args: Any) -> Any:
    fut = asyncio.get_running_loop().create_future()
    fn(*args, lambda _a, st, _d: fut.set_result(st), None)
    return fut


def _ctrlr(dev: FakeNvme, dma: FakeDma, **kw: Any) -> PcieController:
    opts = ControllerOpts(**kw)
    c = Controller(TRID, opts, bar=dev, dma=dma)  # type: ignore[call-arg]
    assert isinstance(c, PcieController)
    return c


@pytest.mark.parametrize("start_enabled", [False, True])
def test_bring_up_identify_io_and_shutdown(start_enabled: bool) -> None:
    dma = FakeDma()
    dev = FakeNvme(dma, start_enabled=start_enabled)

    async def main() -> None:
        c = _ctrlr(dev, dma, num_io_queues=2)
        await c.connect()
        assert c.state == "ready" and c.cdata is not None
        assert dev.disable_seen == start_enabled
        assert c.cdata.sn == "FAKE0001" and c.cdata.mn == "spydk fake PCIe"
        assert list(c.namespaces) == [1] and c.namespaces[1].num_blocks == 2048
        assert len(c.io_qpairs) == 2 and c.max_xfer == 128 * 1024
        rng = random.Random(3)
        for q in c.io_qpairs:
            # one page, two pages, a PRP list, and more than MDTS (split by Qpair)
            for size in (512, 4096, 8192, 12288, 64 * 1024, 256 * 1024 + 512):
                data = rng.randbytes(size)
                assert await _io(q.write, 1, memoryview(data), 16, size // 512) == 0
                assert bytes(dev.data[16 * 512:16 * 512 + size]) == data
                back = bytearray(size)
                assert await _io(q.read, 1, memoryview(back), 16, size // 512) == 0
                assert back == data
        assert await _io(c.io_qpairs[0].flush, 1) == 0
        assert await _io(c.io_qpairs[0].write_zeroes, 1, 16, 8) == 0
        assert bytes(dev.data[16 * 512:24 * 512]) == bytes(8 * 512)
        await c.detach()
        assert c.state == "detached"
        assert dev.csts & 0xC == 0x8  # shutdown complete
        assert (0, AdminOpcode.DELETE_IO_SQ) in dev.commands
    run(main())


def test_many_commands_wrap_the_rings_and_queue_beyond_the_depth() -> None:
    dma = FakeDma()
    dev = FakeNvme(dma, mqes=7)  # rings of 8 entries: 7 trackers

    async def main() -> None:
        c = _ctrlr(dev, dma, io_queue_size=64)
        await c.connect()
        q = c.io_qpairs[0]
        assert q.depth == 7 and q.entries == 8
        bufs = [bytes([i]) * 512 for i in range(100)]
        sts = await asyncio.gather(*[_io(q.write, 1, memoryview(b), i, 1) for i, b in enumerate(bufs)])
        assert sts == [0] * 100
        assert q.completed == 100 + 0 and q.outstanding == 0
        for i in range(100):
            assert dev.data[i * 512:(i + 1) * 512] == bufs[i]
        # an error status comes back as the CQE status (LBA out of range), phase bit removed
        st = await _io(q.read, 1, memoryview(bytearray(512)), 5000, 1)
        assert st == 0x80 << 1
        await c.detach()
    run(main())


def test_never_ready_fails_with_cap_to() -> None:
    dma = FakeDma()
    dev = FakeNvme(dma, never_ready=True, to=1)

    async def main() -> None:
        c = _ctrlr(dev, dma)
        with pytest.raises(NvmeError, match="never reached CSTS.RDY=1 after CC.EN=1"):
            await c.connect()
        assert c.state == "failed"
    run(main())


def test_completion_for_an_unknown_cid_fails_the_controller() -> None:
    dma = FakeDma()
    dev = FakeNvme(dma)

    async def main() -> None:
        c = _ctrlr(dev, dma)
        await c.connect()
        q = c.io_qpairs[0]
        assert isinstance(q, PcieQpair)
        # the device posts a completion nobody asked for
        dev._post(1, 42, 1, 0, 0, 0)
        fut = _io(q.read, 1, memoryview(bytearray(512)), 0, 1)
        st = await fut
        assert st != 0
        assert c.state == "failed" and "CID 42" in (c.failure or "")
        await c.detach()
    run(main())


def test_registers_are_accessed_32_bits_at_a_time() -> None:
    dma = FakeDma()
    dev = FakeNvme(dma)  # its read32/write32 assert alignment and 32-bit values

    async def main() -> None:
        c = _ctrlr(dev, dma)
        await c.connect()
        asq = [v for op, off, v in dev.reg_log if off in (0x28, 0x2C)]
        assert len(asq) == 2 and (asq[1] << 32 | asq[0]) == c.admin_q.sq.iova  # type: ignore[union-attr]
        await c.detach()
    run(main())


def test_bdf_forms_and_errors() -> None:
    assert normalize_bdf("00:04.0") == "0000:00:04.0"
    assert normalize_bdf("0000:00:1f.3") == "0000:00:1f.3"
    with pytest.raises(PcieDeviceError, match="domain:bus:device.function"):
        normalize_bdf("04.0")


def test_pcie_without_a_bound_device_is_a_clear_error(tmp_path: Any) -> None:
    async def main() -> None:
        c = Controller(parse_trid("trtype:PCIe traddr:0000:63:00.0"))
        with pytest.raises(NvmeError, match="no PCI device 0000:63:00.0|not uio_pci_generic"):
            await c.connect()
    run(main())


def test_reset_disables_and_brings_the_same_queues_up_again() -> None:
    dma = FakeDma()
    dev = FakeNvme(dma)

    async def main() -> None:
        c = _ctrlr(dev, dma)
        await c.connect()
        q = c.io_qpairs[0]
        assert await _io(q.write, 1, memoryview(b"a" * 512), 0, 1) == 0
        used = dma.used
        await c.reset()
        assert c.state == "ready" and dev.disable_seen and c.io_qpairs[0] is q
        assert dma.used == used  # no new rings or buffers
        assert await _io(q.write, 1, memoryview(b"b" * 512), 1, 1) == 0
        back = bytearray(1024)
        assert await _io(q.read, 1, memoryview(back), 0, 2) == 0
        assert back == b"a" * 512 + b"b" * 512
        await c.detach()
    run(main())


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=16 * 8, max_size=16 * 8), st.integers(0, 7))
def test_garbage_in_the_completion_queue_completes_or_fails_cleanly(cq: bytes, pending: int) -> None:
    """Whatever the device leaves in the completion queue: a CQE with the expected phase and
    an outstanding CID completes it; anything else fails the controller with a message."""
    dma = FakeDma(4 << 20)
    dev = FakeNvme(dma, mqes=7)

    async def main() -> None:
        c = _ctrlr(dev, dma, arm_aer=False)
        await c.connect()
        q = c.io_qpairs[0]
        dev._sq_doorbell = lambda qid, tail: None  # type: ignore[method-assign]  # executes nothing
        results: list[int] = []
        for i in range(pending):
            q.read(1, memoryview(bytearray(512)), i, 1, lambda _a, s, _d: results.append(s))
        q._stop_polling()
        q.cq.mem[:len(cq)] = cq
        q.process_completions()
        assert len(results) <= pending
        if c.state == "failed":
            assert "CID" in (c.failure or "")
        del dev._sq_doorbell  # the device executes commands again (detach's admin commands)
        await c.detach()
    run(main())


def test_resubmitting_callbacks_keep_one_poll_per_queue() -> None:
    """A completion callback that submits again (every perf/bdevperf job does) must not add a
    second poll of the queue each time: the polls would pile up and starve the event loop
    (the fake completes at the doorbell, as a very fast device)."""
    dma = FakeDma()
    dev = FakeNvme(dma, mqes=7)

    async def main() -> None:
        c = _ctrlr(dev, dma, arm_aer=False)
        await c.connect()
        q = c.io_qpairs[0]
        polls = 0
        inner = q._poll

        def counting_poll() -> None:
            nonlocal polls
            polls += 1
            inner()
        q._poll = counting_poll  # type: ignore[method-assign]
        done = asyncio.get_running_loop().create_future()
        left = [2000]
        buf = memoryview(bytearray(512))

        def again(_a: Any, st: int, _d: int) -> None:
            assert st == 0
            left[0] -= 1
            if left[0]:
                q.read(1, buf, left[0] % 64, 1, again, None)
            else:
                done.set_result(True)
        q.read(1, buf, 0, 1, again, None)
        await done
        await asyncio.sleep(0)
        # one ring's worth per poll: 2000 / entries polls (two polls per turn made it twice as many)
        assert polls <= 2000 // q.entries + 10, polls
        # one call completes at most one ring's worth, however many the device has posted
        for i in range(q.depth):
            q.read(1, memoryview(bytearray(512)), i, 1, lambda _a, _s, _d: None, None)
        q._stop_polling()
        assert q.process_completions() <= q.entries
        await c.detach()
    run(main())


class _GoneDevice:
    """Stands for the PciFunction of a device that has left the bus (its sysfs directory gone)."""

    def present(self) -> bool:
        return False

    def close(self) -> None:
        pass


@pytest.mark.parametrize("fault,message", [
    ("cfs", "controller fatal status (CSTS.CFS)"),
    ("all_ones", "registers read all ones"),
    ("removed", "was removed from the PCI bus"),
])
def test_fatal_status_and_hot_removal_fail_the_controller(fault: str, message: str) -> None:
    dma = FakeDma()
    dev = FakeNvme(dma)

    async def main() -> None:
        c = _ctrlr(dev, dma, arm_aer=False)
        await c.connect()
        q = c.io_qpairs[0]
        dev._sq_doorbell = lambda qid, tail: None  # type: ignore[method-assign]  # the device stalls
        pending = _io(q.read, 1, memoryview(bytearray(512)), 0, 1)
        if fault == "cfs":
            dev.csts |= 2
        elif fault == "all_ones":
            dev.csts = 0xFFFFFFFF
        else:
            c._device = _GoneDevice()
        for _ in range(200):  # the health check runs every 0.1 s
            if c.state == "failed":
                break
            await asyncio.sleep(0.05)
        assert c.state == "failed" and message in (c.failure or ""), c.failure
        assert await pending == ST_ABORTED_SQ_DELETION
        if fault == "removed":
            with pytest.raises(NvmeError, match="removed from the PCI bus"):
                await c.reset()
        await c.detach()
    run(main())
