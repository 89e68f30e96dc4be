"""SPC-4 device commands of a LUN: TEST UNIT READY, REQUEST SENSE, INQUIRY and VPD pages,
MODE SENSE/SELECT, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, MAINTENANCE IN (REPORT
SUPPORTED OPERATION CODES)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from spydk.scsi.errors import CheckCondition, invalid_field_in_cdb
from spydk.scsi.inquiry import (
    BlockLimits,
    block_device_characteristics,
    block_limits,
    device_identification,
    extended_inquiry,
    logical_block_provisioning,
    standard_inquiry,
    supported_pages,
    unit_serial,
)
from spydk.scsi.opcodes import BY_KEY, SA_OPCODES, report_all, report_one
from spydk.scsi.spec import (
    BLOCK_DESCRIPTOR_LONG,
    BLOCK_DESCRIPTOR_SHORT,
    CDB_INQUIRY,
    CDB_MAINT_IN,
    CDB_MODE_SELECT6,
    CDB_MODE_SELECT10,
    CDB_MODE_SENSE6,
    CDB_MODE_SENSE10,
    MODE_HEADER6,
    MODE_HEADER10,
    Asc,
    MaintenanceIn,
    ModePc,
    Op,
    SenseKey,
    Vpd,
    sense,
)
from spydk.scsi.task import ScsiTask

if TYPE_CHECKING:  # avoids an import cycle
    pass

from spydk.scsi.lun_core import (
    _ILLEGAL,
    MAX_COMPARE_AND_WRITE_BLOCKS,
    Cdb,
    LunCore,
    _gather,
    _param_len_error,
)


class DeviceCommands(LunCore):
    """Mixin of ScsiLun: the SPC-4 device commands."""

    def _cmd_test_unit_ready(self, task: ScsiTask, cdb: Cdb) -> None:
        self._done(task)

    def _cmd_request_sense(self, task: ScsiTask, cdb: Cdb) -> None:
        desc = bool(cdb[1] & 0x01)
        alloc = cdb[4]
        port = task.initiator_port
        if port in self._ua:
            data = sense(SenseKey.UNIT_ATTENTION, self._pop_ua(port), descriptor=desc)
        else:
            data = sense(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE, descriptor=desc)
        self._respond(task, data, alloc)

    def _cmd_inquiry(self, task: ScsiTask, cdb: Cdb) -> None:
        flags, page, alloc = CDB_INQUIRY.unpack_from(cdb)
        if flags & 0xFE:
            raise invalid_field_in_cdb(1, 1)
        if not flags & 0x01:
            if page:
                raise invalid_field_in_cdb(2)
            self._respond(task, standard_inquiry(self.identity), alloc)
            return
        self._respond(task, self._vpd(page, task.target_port), alloc)

    def _vpd(self, page: int, target_port: str) -> bytes:
        b = self.backend
        if page == Vpd.SUPPORTED_PAGES:
            return supported_pages()
        if page == Vpd.UNIT_SERIAL_NUMBER:
            return unit_serial(self.identity)
        if page == Vpd.DEVICE_IDENTIFICATION:
            dev = self.device
            return device_identification(self.identity, dev.name, target_port,
                                         dev.relative_port_id(target_port) if target_port else 0)
        if page == Vpd.EXTENDED_INQUIRY:
            return extended_inquiry()
        if page == Vpd.BLOCK_LIMITS:
            unmap = b.supports_unmap
            return block_limits(BlockLimits(
                max_compare_write=MAX_COMPARE_AND_WRITE_BLOCKS,
                optimal_granularity=min(1 << b.physical_block_exp, 0xFFFF),
                max_transfer=self.max_transfer_blocks,
                optimal_transfer=b.optimal_io_boundary,
                max_unmap_lbas=self.max_unmap_lbas if unmap else 0,
                max_unmap_descriptors=self.max_unmap_descriptors if unmap else 0,
                unmap_granularity=(1 << b.physical_block_exp) if unmap else 0,
                max_write_same=0,
            ))
        if page == Vpd.BLOCK_DEVICE_CHARACTERISTICS:
            return block_device_characteristics()
        if page == Vpd.LOGICAL_BLOCK_PROVISIONING:
            return logical_block_provisioning(b.supports_unmap, b.unmap_reads_zeroes)
        raise invalid_field_in_cdb(2)

    def _device_specific(self) -> int:
        wp = self._write_protected or self.mode.swp
        return (0x80 if wp else 0) | 0x10  # WP, DPOFUA

    def _cmd_mode_sense(self, task: ScsiTask, cdb: Cdb) -> None:
        ten = cdb[0] == Op.MODE_SENSE_10
        if ten:
            flags, pcpage, subpage, alloc = CDB_MODE_SENSE10.unpack_from(cdb)
        else:
            flags, pcpage, subpage, alloc = CDB_MODE_SENSE6.unpack_from(cdb)
        pc, page = pcpage >> 6, pcpage & 0x3F
        if pc == ModePc.SAVED:
            raise CheckCondition(_ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
        pages = self.mode.sense(page, subpage, pc)
        bd = b""
        long_lba = ten and bool(flags & 0x10)
        if not flags & 0x08:
            if long_lba:
                bd = BLOCK_DESCRIPTOR_LONG.pack(self._num_blocks, self._bs)
            else:
                bd = BLOCK_DESCRIPTOR_SHORT.pack(min(self._num_blocks, 0xFFFFFFFF),
                                                 self._bs.to_bytes(3, "big"))
        dsp = self._device_specific()
        if ten:
            total = MODE_HEADER10.size + len(bd) + len(pages)
            header = MODE_HEADER10.pack(total - 2, 0, dsp, 1 if long_lba else 0, len(bd))
        else:
            total = MODE_HEADER6.size + len(bd) + len(pages)
            header = MODE_HEADER6.pack(min(total - 1, 0xFF), 0, dsp, len(bd))
        self._respond(task, header + bd + pages, alloc)

    def _cmd_mode_select(self, task: ScsiTask, cdb: Cdb) -> None:
        ten = cdb[0] == Op.MODE_SELECT_10
        if ten:
            flags, plen = CDB_MODE_SELECT10.unpack_from(cdb)
            hdr = MODE_HEADER10.size
        else:
            flags, plen = CDB_MODE_SELECT6.unpack_from(cdb)
            hdr = MODE_HEADER6.size
        if flags & 0x01:
            raise CheckCondition(_ILLEGAL, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
        if flags & 0xEE:
            raise invalid_field_in_cdb(1)
        if plen == 0:
            self._done(task)
            return
        if plen < hdr:
            raise _param_len_error()
        data = _gather(task.data_out, plen)
        if data is None:
            raise _param_len_error()
        if ten:
            bdlen = int.from_bytes(data[6:8], "big")
            long_lba = bool(data[4] & 0x01)
        else:
            bdlen = data[3]
            long_lba = False
        if hdr + bdlen > plen:
            raise _param_len_error()
        bd_size = BLOCK_DESCRIPTOR_LONG.size if long_lba else BLOCK_DESCRIPTOR_SHORT.size
        if bdlen % bd_size:
            raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        for off in range(hdr, hdr + bdlen, bd_size):
            if long_lba:
                _, blen = BLOCK_DESCRIPTOR_LONG.unpack_from(data, off)
            else:
                blen = int.from_bytes(data[off + 5:off + 8], "big")
            if blen != self._bs:
                raise CheckCondition(_ILLEGAL, Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        if self.mode.select(data[hdr + bdlen:plen]):
            self._ua_others(task.initiator_port, Asc.MODE_PARAMETERS_CHANGED)
        self._done(task)

    def _cmd_start_stop_unit(self, task: ScsiTask, cdb: Cdb) -> None:
        power = cdb[4] >> 4
        if power not in (0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB):
            raise invalid_field_in_cdb(4, 7)
        start, loej, no_flush = cdb[4] & 0x01, cdb[4] & 0x02, cdb[4] & 0x04
        if power == 0 and loej and self.identity.removable:
            if self._prevent:
                raise CheckCondition(_ILLEGAL, Asc.MEDIUM_REMOVAL_PREVENTED)
            self._ejected = not start
        if power == 0 and not start and not no_flush and self.backend.write_cache \
                and not self._ejected:
            self.backend.flush(0, self._num_blocks, lambda ok: self._flush_done(task, ok))
            return
        self._done(task)

    def _cmd_prevent_allow(self, task: ScsiTask, cdb: Cdb) -> None:
        prevent = cdb[4] & 0x03
        if prevent > 1:
            raise invalid_field_in_cdb(4, 1)
        if prevent:
            self._prevent.add(task.initiator_port)
        else:
            self._prevent.discard(task.initiator_port)
        self._done(task)

    def _cmd_maintenance_in(self, task: ScsiTask, cdb: Cdb) -> None:
        sa, options, req_op, req_sa, alloc = CDB_MAINT_IN.unpack_from(cdb)
        sa &= 0x1F
        if sa == MaintenanceIn.REPORT_SUPPORTED_OPCODES:
            rctd = bool(options & 0x80)
            ro = options & 0x07
            if ro == 0:
                data = report_all(rctd)
            elif ro in (1, 2, 3):
                has_sa = req_op in SA_OPCODES
                if ro == 1 and has_sa:
                    raise invalid_field_in_cdb(2)
                if ro == 2 and not has_sa and BY_KEY.get((req_op, None)) is not None:
                    raise invalid_field_in_cdb(2)
                info = BY_KEY.get((req_op, req_sa if has_sa else None))
                data = report_one(info, rctd)
            else:
                raise invalid_field_in_cdb(2, 2)
            self._respond(task, data, alloc)
        elif sa == MaintenanceIn.REPORT_SUPPORTED_TMFS:
            # ATS, ATSS, CTSS, LURS, TRS; with REPD the 16-byte extended format.
            data = bytes((0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0))
            if options & 0x80:
                data = data[:3] + b"\x0c" + bytes(12)
            self._respond(task, data, alloc)
        else:
            raise invalid_field_in_cdb(1, 4)
