"""The commands a logical unit supports, with their CDB usage data (REPORT SUPPORTED OPERATION
CODES). Usage data has the opcode in byte 0, the service action (if any) in byte 1, and a mask of
the bits the device server looks at in every other byte."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .spec import MaintenanceIn, Op, PrIn, PrOut, SaIn16


@dataclass(frozen=True, slots=True)
class CommandInfo:
    opcode: int
    service_action: int | None
    usage: bytes

    @property
    def cdb_length(self) -> int:
        return len(self.usage)


_LBA4 = "ff ff ff ff"
_LBA8 = "ff ff ff ff ff ff ff ff"


def _c(opcode: int, usage: str, sa: int | None = None) -> CommandInfo:
    data = bytes.fromhex(usage)
    assert data[0] == opcode, hex(opcode)
    if sa is not None:
        assert data[1] & 0x1F == sa
    return CommandInfo(opcode, sa, data)


COMMANDS: tuple[CommandInfo, ...] = (
    _c(Op.TEST_UNIT_READY, "00 00 00 00 00 00"),
    _c(Op.REQUEST_SENSE, "03 01 00 00 ff 00"),
    _c(Op.READ_6, "08 1f ff ff ff 00"),
    _c(Op.WRITE_6, "0a 1f ff ff ff 00"),
    _c(Op.INQUIRY, "12 01 ff ff ff 00"),
    _c(Op.MODE_SELECT_6, "15 11 00 00 ff 00"),
    _c(Op.RESERVE_6, "16 00 00 00 00 00"),
    _c(Op.RELEASE_6, "17 00 00 00 00 00"),
    _c(Op.MODE_SENSE_6, "1a 08 ff ff ff 00"),
    _c(Op.START_STOP_UNIT, "1b 01 00 0f f7 00"),
    _c(Op.PREVENT_ALLOW_MEDIUM_REMOVAL, "1e 00 00 00 03 00"),
    _c(Op.READ_CAPACITY_10, f"25 00 {_LBA4} 00 00 01 00"),
    _c(Op.READ_10, f"28 1e {_LBA4} 1f ff ff 00"),
    _c(Op.WRITE_10, f"2a 1a {_LBA4} 1f ff ff 00"),
    _c(Op.WRITE_AND_VERIFY_10, f"2e 12 {_LBA4} 1f ff ff 00"),
    _c(Op.VERIFY_10, f"2f 16 {_LBA4} 1f ff ff 00"),
    _c(Op.PRE_FETCH_10, f"34 02 {_LBA4} 1f ff ff 00"),
    _c(Op.SYNCHRONIZE_CACHE_10, f"35 02 {_LBA4} 1f ff ff 00"),
    _c(Op.WRITE_SAME_10, f"41 08 {_LBA4} 1f ff ff 00"),
    _c(Op.UNMAP, "42 00 00 00 00 00 1f ff ff 00"),
    _c(Op.MODE_SELECT_10, "55 11 00 00 00 00 00 ff ff 00"),
    _c(Op.RESERVE_10, "56 00 00 00 00 00 00 00 00 00"),
    _c(Op.RELEASE_10, "57 00 00 00 00 00 00 00 00 00"),
    _c(Op.MODE_SENSE_10, "5a 18 ff ff 00 00 00 ff ff 00"),
    *(_c(Op.PERSISTENT_RESERVE_IN, f"5e {sa:02x} 00 00 00 00 00 ff ff 00", sa) for sa in PrIn),
    *(_c(Op.PERSISTENT_RESERVE_OUT, f"5f {sa:02x} ff 00 00 ff ff ff ff 00", sa)
      for sa in PrOut if sa <= PrOut.REGISTER_AND_IGNORE_EXISTING_KEY),
    _c(Op.READ_16, f"88 1e {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.COMPARE_AND_WRITE, f"89 18 {_LBA8} 00 00 00 ff 1f 00"),
    _c(Op.WRITE_16, f"8a 1a {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.WRITE_AND_VERIFY_16, f"8e 12 {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.VERIFY_16, f"8f 16 {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.PRE_FETCH_16, f"90 02 {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.SYNCHRONIZE_CACHE_16, f"91 02 {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.WRITE_SAME_16, f"93 09 {_LBA8} ff ff ff ff 1f 00"),
    _c(Op.SERVICE_ACTION_IN_16, f"9e 10 {_LBA8} ff ff ff ff 00 00", SaIn16.READ_CAPACITY_16),
    _c(Op.SERVICE_ACTION_IN_16, f"9e 12 {_LBA8} ff ff ff ff 00 00", SaIn16.GET_LBA_STATUS),
    _c(Op.REPORT_LUNS, "a0 00 ff 00 00 00 ff ff ff ff 00 00"),
    _c(Op.MAINTENANCE_IN, "a3 0c 87 ff ff ff ff ff ff ff 00 00",
       MaintenanceIn.REPORT_SUPPORTED_OPCODES),
    _c(Op.MAINTENANCE_IN, "a3 0d 80 00 00 00 ff ff ff ff 00 00",
       MaintenanceIn.REPORT_SUPPORTED_TMFS),
    _c(Op.READ_12, f"a8 1e {_LBA4} ff ff ff ff 1f 00"),
    _c(Op.WRITE_12, f"aa 1a {_LBA4} ff ff ff ff 1f 00"),
    _c(Op.WRITE_AND_VERIFY_12, f"ae 12 {_LBA4} ff ff ff ff 1f 00"),
    _c(Op.VERIFY_12, f"af 16 {_LBA4} ff ff ff ff 1f 00"),
)

# Opcodes that carry a service action, and lookup by (opcode, service action or None).
SA_OPCODES = frozenset(c.opcode for c in COMMANDS if c.service_action is not None)
BY_KEY: dict[tuple[int, int | None], CommandInfo] = {
    (c.opcode, c.service_action): c for c in COMMANDS}

# Command timeouts descriptor: length 0x0A, reserved, command specific, nominal, recommended.
TIMEOUTS_DESCRIPTOR = struct.Struct(">H x B I I")
assert TIMEOUTS_DESCRIPTOR.size == 12
ALL_COMMANDS_DESCRIPTOR = struct.Struct(">B x H x B H")  # opcode, SA, flags, CDB length
assert ALL_COMMANDS_DESCRIPTOR.size == 8
RECOMMENDED_TIMEOUT_S = 30


def report_all(rctd: bool) -> bytes:
    timeouts = TIMEOUTS_DESCRIPTOR.pack(0x0A, 0, 0, RECOMMENDED_TIMEOUT_S) if rctd else b""
    parts = []
    for c in COMMANDS:
        flags = (0x02 if rctd else 0) | (0x01 if c.service_action is not None else 0)
        parts.append(ALL_COMMANDS_DESCRIPTOR.pack(c.opcode, c.service_action or 0, flags,
                                                  c.cdb_length))
        parts.append(timeouts)
    body = b"".join(parts)
    return len(body).to_bytes(4, "big") + body


def report_one(info: CommandInfo | None, rctd: bool) -> bytes:
    """One-command format; ``None`` reports SUPPORT = 001b (not supported)."""
    if info is None:
        return bytes((0, 0x01, 0, 0))
    head = bytes((0, (0x80 if rctd else 0) | 0x03)) + info.cdb_length.to_bytes(2, "big")
    timeouts = TIMEOUTS_DESCRIPTOR.pack(0x0A, 0, 0, RECOMMENDED_TIMEOUT_S) if rctd else b""
    return head + info.usage + timeouts
