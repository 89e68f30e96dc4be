"""SBC-3 block commands of a LUN: READ/WRITE (6/10/12/16), WRITE AND VERIFY, VERIFY, PRE-FETCH,
SYNCHRONIZE CACHE, WRITE SAME, UNMAP, COMPARE AND WRITE, READ CAPACITY, GET LBA STATUS."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from spydk import trace as _trace
from spydk.scsi.errors import CheckCondition, illegal, invalid_field_in_cdb
from spydk.scsi.spec import (
    CDB6_RW,
    CDB10,
    CDB12,
    CDB16,
    CDB_CAW,
    CDB_READ_CAPACITY10,
    CDB_SAI16,
    CDB_UNMAP,
    LBA_STATUS_DESCRIPTOR,
    READ_CAPACITY10_DATA,
    READ_CAPACITY16_DATA,
    UNMAP_DESCRIPTOR,
    UNMAP_HEADER,
    Asc,
    Op,
    SaIn16,
    SenseKey,
)
from spydk.scsi.task import ScsiTask

if TYPE_CHECKING:  # avoids an import cycle
    pass

from spydk.scsi.lun_core import (
    _ILLEGAL,
    MAX_COMPARE_AND_WRITE_BLOCKS,
    MAX_LBA_STATUS_DESCRIPTORS,
    WRITE_SAME_CHUNK_BYTES,
    Cdb,
    LunCore,
    _data_out_len,
    _first_difference,
    _gather,
    _lba_out_of_range,
    _LockWaiter,
    _Loop,
    _param_len_error,
    _short_data,
    _trim_iovs,
)
from spydk.trace import tpoints as _tp

_TRACE_SCSI = False
_trace.bind_flag(globals(), "_TRACE_SCSI", _tp.GROUP_SCSI)


class BlockCommands(LunCore):
    """Mixin of ScsiLun: the SBC-3 commands."""

    def _read(self, task: ScsiTask, lba: int, num: int) -> None:
        if lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        buf = memoryview(bytearray(num * self._bs))
        if _TRACE_SCSI:
            _trace.set_ctx(id(task))  # the bdev I/O started next belongs to this task
        self.backend.read(lba, num, [buf], lambda ok: self._read_done(task, buf, ok))

    def _read_done(self, task: ScsiTask, buf: memoryview, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            return
        n = len(buf)
        task.data_in = [buf]
        task.data_in_length = n
        stats = self.stats
        stats.read_ops += 1
        stats.read_bytes += n
        self._done(task)

    def _cmd_read6(self, task: ScsiTask, cdb: Cdb) -> None:
        v, num = CDB6_RW.unpack_from(cdb)
        self._read(task, v & 0x1FFFFF, num or 256)

    def _cmd_read10(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB10.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    def _cmd_read12(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB12.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    def _cmd_read16(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB16.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._read(task, lba, num)

    def _write(self, task: ScsiTask, lba: int, num: int, fua: int) -> None:
        if self._write_protected or self.mode.swp:
            self._check_writable()
        if lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        nbytes = num * self._bs
        task.write_length = nbytes
        iovs = task.data_out
        have = _data_out_len(iovs)
        if have < nbytes:
            # The initiator's expected length was short (iSCSI residual overflow): write the
            # whole blocks that came and let the transport report the rest as a residual;
            # a partial block is refused.
            if have % self._bs:
                raise _short_data()
            num = have // self._bs
            nbytes = have
            if num == 0:
                self._done(task)
                return
        iovs = _trim_iovs(iovs, nbytes)
        if self._locks and self._locked(lba, num):
            self._lock_waiters.append(_LockWaiter(
                task, lba, num, lambda: self._write_issue(task, lba, num, iovs, fua)))
            return
        self._write_issue(task, lba, num, iovs, fua)

    def _write_issue(self, task: ScsiTask, lba: int, num: int, iovs: list[memoryview],
                     fua: int) -> None:
        if not fua and not self.mode.wce and self.backend.write_cache:
            fua = 1  # write cache disabled through MODE SELECT: make every write durable
        if _TRACE_SCSI:
            _trace.set_ctx(id(task))
        self.backend.write(lba, num, iovs, lambda ok: self._write_done(task, lba, num, fua, ok))

    def _write_done(self, task: ScsiTask, lba: int, num: int, fua: int, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
            return
        stats = self.stats
        stats.write_ops += 1
        stats.write_bytes += num * self._bs
        if fua and self.backend.write_cache:
            self.backend.flush(lba, num, lambda ok: self._flush_done(task, ok))
            return
        self._done(task)

    def _flush_done(self, task: ScsiTask, ok: bool) -> None:
        if not ok:
            self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
            return
        self._done(task)

    def _cmd_write6(self, task: ScsiTask, cdb: Cdb) -> None:
        v, num = CDB6_RW.unpack_from(cdb)
        self._write(task, v & 0x1FFFFF, num or 256, 0)

    def _cmd_write10(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB10.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write12(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB12.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write16(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB16.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._write(task, lba, num, flags & 0x08)

    def _cmd_write_verify(self, task: ScsiTask, cdb: Cdb) -> None:
        op = cdb[0]
        layout = CDB10 if op == Op.WRITE_AND_VERIFY_10 else (
            CDB12 if op == Op.WRITE_AND_VERIFY_12 else CDB16)
        flags, lba, num = layout.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        # The data must be on the medium before it can be verified: write through.
        self._write(task, lba, num, 1)

    def _cmd_verify(self, task: ScsiTask, cdb: Cdb) -> None:
        op = cdb[0]
        layout = CDB10 if op == Op.VERIFY_10 else (CDB12 if op == Op.VERIFY_12 else CDB16)
        flags, lba, num = layout.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        bytchk = (flags >> 1) & 0x03
        if bytchk == 2:
            raise invalid_field_in_cdb(1, 2)
        self._check_range(lba, num)
        if num == 0 or bytchk == 0:
            self._done(task)
            return
        if num > self.max_transfer_blocks:
            raise invalid_field_in_cdb()
        bs = self._bs
        expect_len = num * bs if bytchk == 1 else bs
        expected = _gather(task.data_out, expect_len)
        if expected is None:
            raise _short_data()
        if bytchk == 3:
            expected = bytes(expected) * num
        buf = memoryview(bytearray(num * bs))

        def read_done(ok: bool) -> None:
            if not ok:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            elif buf != expected:
                self._fail_now(task, SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY,
                               _first_difference(buf, expected))  # type: ignore[arg-type]
            else:
                self._done(task)
        self.backend.read(lba, num, [buf], read_done)

    def _cmd_prefetch(self, task: ScsiTask, cdb: Cdb) -> None:
        layout = CDB10 if cdb[0] == Op.PRE_FETCH_10 else CDB16
        _, lba, num = layout.unpack_from(cdb)
        self._check_range(lba, num)
        self._done(task)

    def _cmd_sync_cache(self, task: ScsiTask, cdb: Cdb) -> None:
        layout = CDB10 if cdb[0] == Op.SYNCHRONIZE_CACHE_10 else CDB16
        _, lba, num = layout.unpack_from(cdb)
        if lba > self._num_blocks or lba + num > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            num = self._num_blocks - lba
        self.backend.flush(lba, num, lambda ok: self._flush_done(task, ok))

    def _cmd_write_same(self, task: ScsiTask, cdb: Cdb) -> None:
        sixteen = cdb[0] == Op.WRITE_SAME_16
        flags, lba, num = (CDB16 if sixteen else CDB10).unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        if flags & 0x10:  # ANCHOR: anchored state not supported
            raise invalid_field_in_cdb(1, 4)
        if flags & (0x06 if sixteen else 0x07):  # obsolete PBDATA/LBDATA, reserved
            raise invalid_field_in_cdb(1, 1)
        unmap = flags & 0x08
        ndob = sixteen and flags & 0x01
        self._check_writable()
        if lba > self._num_blocks:
            raise _lba_out_of_range()
        if num == 0:
            num = self._num_blocks - lba
        self._check_range(lba, num)
        backend = self.backend
        if unmap and not backend.supports_unmap:
            raise invalid_field_in_cdb(1, 3)
        bs = self._bs
        pattern: bytes | memoryview | None = None
        if not ndob:
            if _data_out_len(task.data_out) != bs:
                raise _short_data()
            pattern = _gather(task.data_out, bs)
            assert pattern is not None
        zero = pattern is None or not any(pattern)
        if num == 0:
            self._done(task)
            return

        def finish(ok: bool) -> None:
            if ok:
                self._done(task)
            else:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)

        if unmap and zero:
            self._unmap_ranges(task, [(lba, num)], finish)
            return
        if zero and backend.supports_write_zeroes:
            backend.write_zeroes(lba, num, finish)
            return
        per_chunk = max(1, min(num, WRITE_SAME_CHUNK_BYTES // bs))
        block = bytes(bs) if pattern is None else bytes(pattern)
        buf = memoryview(block * per_chunk)
        pos = [lba, num]

        def step(cb: Callable[[bool], None]) -> bool:
            start, left = pos
            if left == 0:
                return False
            n = min(left, per_chunk)
            pos[0] = start + n
            pos[1] = left - n
            backend.write(start, n, [buf[:n * bs]], cb)
            return True
        _Loop(task, step, finish).run()

    def _unmap_ranges(self, task: ScsiTask, ranges: list[tuple[int, int]],
                      finish: Callable[[bool], None]) -> None:
        """Split ranges to the backend's per-range block limit and per-call range count."""
        backend = self.backend
        max_blocks = backend.max_unmap_blocks
        if max_blocks > 0:
            split: list[tuple[int, int]] = []
            for lba, num in ranges:
                while num > max_blocks:
                    split.append((lba, max_blocks))
                    lba += max_blocks
                    num -= max_blocks
                split.append((lba, num))
            ranges = split
        per_call = backend.max_unmap_descriptors or len(ranges)
        if len(ranges) <= per_call:
            backend.unmap(ranges, finish)
            return
        idx = [0]

        def step(cb: Callable[[bool], None]) -> bool:
            i = idx[0]
            if i >= len(ranges):
                return False
            idx[0] = i + per_call
            backend.unmap(ranges[i:i + per_call], cb)
            return True
        _Loop(task, step, finish).run()

    def _cmd_unmap(self, task: ScsiTask, cdb: Cdb) -> None:
        if not self.backend.supports_unmap:
            raise illegal(Asc.INVALID_COMMAND_OPERATION_CODE)
        anchor, plen = CDB_UNMAP.unpack_from(cdb)
        if anchor & 0x01:
            raise invalid_field_in_cdb(1, 0)
        self._check_writable()
        if plen == 0:
            self._done(task)
            return
        if plen < UNMAP_HEADER.size:
            raise _param_len_error()
        data = _gather(task.data_out, plen)
        if data is None:
            raise _param_len_error()
        _, bddl = UNMAP_HEADER.unpack_from(data)
        count = min(bddl, plen - UNMAP_HEADER.size) // UNMAP_DESCRIPTOR.size
        if count > self.max_unmap_descriptors:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        ranges: list[tuple[int, int]] = []
        total = 0
        nb = self._num_blocks
        for i in range(count):
            lba, num = UNMAP_DESCRIPTOR.unpack_from(data, UNMAP_HEADER.size + 16 * i)
            if lba + num > nb:
                raise _lba_out_of_range()
            if num:
                ranges.append((lba, num))
                total += num
        if total > self.max_unmap_lbas:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        if not ranges:
            self._done(task)
            return

        def finish(ok: bool) -> None:
            if ok:
                self._done(task)
            else:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
        self._unmap_ranges(task, ranges, finish)

    def _cmd_compare_and_write(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, lba, num = CDB_CAW.unpack_from(cdb)
        if flags & 0xE0:
            raise invalid_field_in_cdb(1, 7)
        self._check_writable()
        self._check_range(lba, num)
        if num == 0:
            if _data_out_len(task.data_out):
                # Data for a 0-block command: the initiator meant a length the one-byte
                # field cannot hold (e.g. 256 wrapped to 0), which is above our maximum.
                raise invalid_field_in_cdb(13)
            self._done(task)
            return
        if num > MAX_COMPARE_AND_WRITE_BLOCKS:
            raise invalid_field_in_cdb(13)
        half = num * self._bs
        if _data_out_len(task.data_out) != 2 * half:
            raise _short_data()
        data = _gather(task.data_out, 2 * half)
        assert data is not None
        if self._locked(lba, num):
            self._lock_waiters.append(_LockWaiter(
                task, lba, num, lambda: self._caw_locked(task, lba, num, data, flags & 0x08)))
            return
        self._caw_locked(task, lba, num, data, flags & 0x08)

    def _caw_locked(self, task: ScsiTask, lba: int, num: int, data: bytes | memoryview,
                    fua: int) -> None:
        self._locks.append((lba, num))
        half = num * self._bs
        buf = memoryview(bytearray(half))
        verify = memoryview(data)[:half]

        def finish(fail: tuple[int, int, int | None] | None) -> None:
            self._unlock(lba, num)
            if fail is None:
                self._done(task)
            else:
                self._fail_now(task, *fail)

        def write_done(ok: bool) -> None:
            if not ok:
                finish((SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, None))
            elif fua and self.backend.write_cache:
                self.backend.flush(lba, num, lambda ok: finish(
                    None if ok else (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, None)))
            else:
                finish(None)

        def read_done(ok: bool) -> None:
            if not ok:
                finish((SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, None))
            elif task.aborted:
                finish(None)
            elif buf != verify:
                finish((SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY,
                        _first_difference(buf, verify)))
            else:
                self.backend.write(lba, num, [memoryview(data)[half:]], write_done)
        self.backend.read(lba, num, [buf], read_done)

    def _cmd_read_capacity10(self, task: ScsiTask, cdb: Cdb) -> None:
        lba, pmi = CDB_READ_CAPACITY10.unpack_from(cdb)
        if not pmi & 0x01 and lba:
            raise invalid_field_in_cdb(2)
        last = self._num_blocks - 1
        self._respond(task, READ_CAPACITY10_DATA.pack(min(last, 0xFFFFFFFF), self._bs), 8)

    def _cmd_service_action_in16(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, lba, alloc, _ = CDB_SAI16.unpack_from(cdb)
        sa &= 0x1F
        if sa == SaIn16.READ_CAPACITY_16:
            b = self.backend
            lbp = (0x8000 if b.supports_unmap else 0) | \
                (0x4000 if b.supports_unmap and b.unmap_reads_zeroes else 0)
            data = READ_CAPACITY16_DATA.pack(self._num_blocks - 1, self._bs, 0,
                                             b.physical_block_exp & 0x0F, lbp)
            self._respond(task, data, alloc)
        elif sa == SaIn16.GET_LBA_STATUS:
            self._get_lba_status(task, lba, alloc)
        else:
            raise invalid_field_in_cdb(1, 4)

    def _get_lba_status(self, task: ScsiTask, lba: int, alloc: int) -> None:
        nb = self._num_blocks
        if lba >= nb:
            raise _lba_out_of_range()
        backend = self.backend
        if not backend.supports_seek:
            self._lba_status_reply(task, [(lba, nb - lba, 0)], alloc)
            return
        limit = max(1, min(MAX_LBA_STATUS_DESCRIPTORS, (alloc - 8) // 16))
        descs: list[tuple[int, int, int]] = []
        state = {"pos": lba, "hole": -1}

        def add(start: int, end: int, status: int) -> None:
            while end > start:
                n = min(end - start, 0xFFFFFFFF)
                descs.append((start, n, status))
                start += n

        def step(cb: Callable[[bool], None]) -> bool:
            pos = state["pos"]
            if pos >= nb or len(descs) >= limit:
                return False

            def got_hole(hole: int) -> None:
                if hole < 0:
                    cb(False)
                    return
                hole = min(hole, nb)
                if hole > pos:
                    add(pos, hole, 0)
                    state["pos"] = hole
                    cb(True)
                    return
                backend.seek_data(pos, got_data)

            def got_data(data: int) -> None:
                if data < 0:
                    cb(False)
                    return
                data = min(max(data, pos + 1), nb)
                add(pos, data, 1)
                state["pos"] = data
                cb(True)
            backend.seek_hole(pos, got_hole)
            return True

        def finish(ok: bool) -> None:
            if not ok:
                self._fail_now(task, SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
            else:
                self._lba_status_reply(task, descs[:limit], alloc)
        _Loop(task, step, finish).run()

    def _lba_status_reply(self, task: ScsiTask, descs: list[tuple[int, int, int]],
                          alloc: int) -> None:
        body = b"".join(LBA_STATUS_DESCRIPTOR.pack(lba, n, st) for lba, n, st in descs)
        data = (len(body) + 4).to_bytes(4, "big") + bytes(4) + body
        self._respond(task, data, alloc)
