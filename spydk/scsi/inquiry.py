"""Standard INQUIRY data and the vital product data pages of a direct-access logical unit."""
from __future__ import annotations

import uuid as uuid_mod
from dataclasses import dataclass

from .spec import (
    ASSOC_LU,
    ASSOC_TARGET_DEVICE,
    ASSOC_TARGET_PORT,
    CODE_SET_ASCII,
    CODE_SET_BINARY,
    CODE_SET_UTF8,
    DESIG_NAA,
    DESIG_RELATIVE_TARGET_PORT,
    DESIG_SCSI_NAME,
    DESIG_T10_VENDOR,
    DESIGNATOR_HEADER,
    INQUIRY_STD,
    PERIPHERAL_DIRECT_ACCESS,
    PERIPHERAL_QUALIFIER_NO_LUN,
    PROTOCOL_ISCSI,
    VERSION_ISCSI,
    VERSION_SAM5,
    VERSION_SBC3,
    VERSION_SPC4,
    VPD_BLOCK_LIMITS,
    VPD_HEADER,
    Vpd,
)

SUPPORTED_VPD = (Vpd.SUPPORTED_PAGES, Vpd.UNIT_SERIAL_NUMBER, Vpd.DEVICE_IDENTIFICATION,
                 Vpd.EXTENDED_INQUIRY, Vpd.BLOCK_LIMITS, Vpd.BLOCK_DEVICE_CHARACTERISTICS,
                 Vpd.LOGICAL_BLOCK_PROVISIONING)
SPC4_VERSION = 0x06


def ascii_field(text: str, width: int) -> bytes:
    """Left-aligned, space-padded printable ASCII (SPC-4 4.4.1)."""
    raw = "".join(c if " " <= c <= "~" else "_" for c in text)
    return raw.encode("ascii")[:width].ljust(width, b" ")


@dataclass(slots=True)
class Identity:
    vendor: str
    product: str
    revision: str
    serial: str
    uuid: uuid_mod.UUID
    removable: bool = False


def standard_inquiry(ident: Identity) -> bytes:
    versions = b"".join(v.to_bytes(2, "big") for v in (VERSION_SAM5, VERSION_ISCSI,
                                                         VERSION_SPC4, VERSION_SBC3))
    return INQUIRY_STD.pack(
        PERIPHERAL_DIRECT_ACCESS,
        0x80 if ident.removable else 0,
        SPC4_VERSION,
        0x12,  # HISUP, response data format 2
        INQUIRY_STD.size - 5,
        0,  # SCCS, ACC, TPGS, 3PC, PROTECT all clear
        0,
        0x02,  # CMDQUE
        ascii_field(ident.vendor, 8),
        ascii_field(ident.product, 16),
        ascii_field(ident.revision, 4),
        ascii_field(ident.serial, 20),
        versions.ljust(16, b"\x00"),
    )


def missing_lun_inquiry() -> bytes:
    """Standard INQUIRY data for a LUN that does not exist: qualifier 011b, type 1Fh."""
    data = bytearray(36)
    data[0] = PERIPHERAL_QUALIFIER_NO_LUN
    data[2] = SPC4_VERSION
    data[3] = 0x12
    data[4] = len(data) - 5
    return bytes(data)


def _vpd(page: int, body: bytes) -> bytes:
    return VPD_HEADER.pack(PERIPHERAL_DIRECT_ACCESS, page, len(body)) + body


def supported_pages() -> bytes:
    return _vpd(Vpd.SUPPORTED_PAGES, bytes(SUPPORTED_VPD))


def unit_serial(ident: Identity) -> bytes:
    return _vpd(Vpd.UNIT_SERIAL_NUMBER, ident.serial.encode("ascii", "replace"))


def _designator(code_set: int, assoc: int, dtype: int, value: bytes, protocol: int = -1) -> bytes:
    b0 = code_set
    b1 = (assoc << 4) | dtype
    if protocol >= 0:
        b0 |= protocol << 4
        b1 |= 0x80  # PIV
    return DESIGNATOR_HEADER.pack(b0, b1, len(value)) + value


def _scsi_name(name: str) -> bytes:
    # UTF-8, null-terminated, padded to a multiple of 4 bytes.
    raw = name.encode("utf-8") + b"\x00"
    return raw.ljust((len(raw) + 3) & ~3, b"\x00")


def naa_from_uuid(u: uuid_mod.UUID) -> bytes:
    """NAA IEEE Registered Extended (6h) designator made of the UUID's top 124 bits."""
    return ((6 << 124) | (u.int >> 4)).to_bytes(16, "big")


def device_identification(ident: Identity, target_name: str, target_port: str,
                          relative_port_id: int) -> bytes:
    parts = [
        _designator(CODE_SET_BINARY, ASSOC_LU, DESIG_NAA, naa_from_uuid(ident.uuid)),
        _designator(CODE_SET_ASCII, ASSOC_LU, DESIG_T10_VENDOR,
                    ascii_field(ident.vendor, 8) + str(ident.uuid).encode("ascii")),
    ]
    if relative_port_id:
        parts.append(_designator(CODE_SET_BINARY, ASSOC_TARGET_PORT, DESIG_RELATIVE_TARGET_PORT,
                                 relative_port_id.to_bytes(4, "big"), PROTOCOL_ISCSI))
    if target_port:
        parts.append(_designator(CODE_SET_UTF8, ASSOC_TARGET_PORT, DESIG_SCSI_NAME,
                                 _scsi_name(target_port), PROTOCOL_ISCSI))
    if target_name:
        parts.append(_designator(CODE_SET_UTF8, ASSOC_TARGET_DEVICE, DESIG_SCSI_NAME,
                                 _scsi_name(target_name), PROTOCOL_ISCSI))
    return _vpd(Vpd.DEVICE_IDENTIFICATION, b"".join(parts))


def extended_inquiry() -> bytes:
    body = bytearray(60)
    body[1] = 0x07  # HEADSUP, ORDSUP, SIMPSUP
    body[2] = 0x01  # V_SUP: volatile cache (WCE) support
    return _vpd(Vpd.EXTENDED_INQUIRY, bytes(body))


@dataclass(slots=True)
class BlockLimits:
    max_compare_write: int
    optimal_granularity: int
    max_transfer: int
    optimal_transfer: int
    max_unmap_lbas: int
    max_unmap_descriptors: int
    unmap_granularity: int
    max_write_same: int


def block_limits(bl: BlockLimits) -> bytes:
    return VPD_BLOCK_LIMITS.pack(
        PERIPHERAL_DIRECT_ACCESS, Vpd.BLOCK_LIMITS, VPD_BLOCK_LIMITS.size - 4,
        0,  # WSNZ clear: WRITE SAME with 0 blocks means "to the end"
        bl.max_compare_write,
        bl.optimal_granularity,
        bl.max_transfer,
        bl.optimal_transfer,
        bl.max_transfer,  # maximum prefetch length
        bl.max_unmap_lbas,
        bl.max_unmap_descriptors,
        bl.unmap_granularity,
        0,  # unmap granularity alignment not valid
        bl.max_write_same,
    )


def block_device_characteristics() -> bytes:
    body = bytearray(60)
    body[1] = 0x01  # medium rotation rate: non-rotating
    return _vpd(Vpd.BLOCK_DEVICE_CHARACTERISTICS, bytes(body))


def logical_block_provisioning(unmap: bool, zeroes: bool) -> bytes:
    flags = 0
    if unmap:
        flags |= 0x80 | 0x40 | 0x20  # LBPU, LBPWS, LBPWS10
        if zeroes:
            flags |= 0x04  # LBPRZ
    provisioning_type = 0x02 if unmap else 0x00  # thin / full
    return _vpd(Vpd.LOGICAL_BLOCK_PROVISIONING, bytes((0, flags, provisioning_type, 0)))
