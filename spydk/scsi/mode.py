"""Mode pages of a direct-access logical unit (MODE SENSE / MODE SELECT).

Current values live here; saving is not supported (PC=saved and SP=1 are refused).
Changeable: WCE in the caching page (only when the backend has a volatile cache, emulated by
flushing after every write when cleared), D_SENSE and SWP in the control page.
"""
from __future__ import annotations

from .errors import invalid_field_in_cdb, invalid_field_in_param
from .spec import ModePage, ModePc

_LENGTHS: dict[int, int] = {
    ModePage.READ_WRITE_ERROR_RECOVERY: 0x0A,
    ModePage.CACHING: 0x12,
    ModePage.CONTROL: 0x0A,
    ModePage.INFORMATIONAL_EXCEPTIONS: 0x0A,
}
PAGE_ORDER = tuple(sorted(_LENGTHS))

# Control page byte 2..
_D_SENSE = 0x04
_SWP = 0x08
_WCE = 0x04
_QAM_UNRESTRICTED = 0x10
_DEXCPT = 0x08


class ModePages:
    def __init__(self, write_cache: bool) -> None:
        self.write_cache_present = write_cache
        self.wce = write_cache
        self.d_sense = False
        self.swp = False

    def reset(self) -> None:
        self.wce = self.write_cache_present
        self.d_sense = False
        self.swp = False

    def _page(self, code: int, pc: int) -> bytes:
        buf = bytearray(2 + _LENGTHS[code])
        buf[0] = code
        buf[1] = len(buf) - 2
        if pc == ModePc.CHANGEABLE:
            if code == ModePage.CACHING and self.write_cache_present:
                buf[2] = _WCE
            elif code == ModePage.CONTROL:
                buf[2] = _D_SENSE
                buf[4] = _SWP
            return bytes(buf)
        default = pc == ModePc.DEFAULT
        if code == ModePage.CACHING:
            wce = self.write_cache_present if default else self.wce
            buf[2] = _WCE if wce else 0
        elif code == ModePage.CONTROL:
            if not default and self.d_sense:
                buf[2] |= _D_SENSE
            buf[3] = _QAM_UNRESTRICTED
            if not default and self.swp:
                buf[4] |= _SWP
            buf[8:10] = b"\xff\xff"  # busy timeout period: unlimited
        elif code == ModePage.INFORMATIONAL_EXCEPTIONS:
            buf[2] = _DEXCPT
        return bytes(buf)

    def sense(self, page: int, subpage: int, pc: int) -> bytes:
        """The mode pages for MODE SENSE (without header/block descriptors)."""
        if pc == ModePc.SAVED:
            raise AssertionError("caller handles saved values")
        if page == ModePage.ALL:
            if subpage not in (0x00, 0xFF):
                raise invalid_field_in_cdb(3)
            return b"".join(self._page(code, pc) for code in PAGE_ORDER)
        if page not in _LENGTHS:
            raise invalid_field_in_cdb(2, 5)
        if subpage != 0:
            raise invalid_field_in_cdb(3)
        return self._page(page, pc)

    def select(self, data: bytes | memoryview) -> bool:
        """Apply MODE SELECT pages; all are validated before any is applied.
        Returns whether a current value changed."""
        pos, end = 0, len(data)
        updates: list[tuple[int, bytes]] = []
        while pos < end:
            if end - pos < 2:
                raise invalid_field_in_param(pos)
            code = data[pos] & 0x3F
            if data[pos] & 0xC0:  # PS is reserved in MODE SELECT; no subpages here
                raise invalid_field_in_param(pos, 6)
            length = _LENGTHS.get(code)
            if length is None:
                raise invalid_field_in_param(pos, 5)
            if data[pos + 1] != length:
                raise invalid_field_in_param(pos + 1)
            if pos + 2 + length > end:
                raise invalid_field_in_param(pos + 1)
            new = bytes(data[pos:pos + 2 + length])
            cur = self._page(code, ModePc.CURRENT)
            mask = self._page(code, ModePc.CHANGEABLE)
            for i in range(2, len(new)):
                if (new[i] ^ cur[i]) & ~mask[i] & 0xFF:
                    raise invalid_field_in_param(pos + i)
            updates.append((code, new))
            pos += 2 + length
        changed = False
        for code, new in updates:
            if code == ModePage.CACHING and self.write_cache_present:
                wce = bool(new[2] & _WCE)
                changed |= wce != self.wce
                self.wce = wce
            elif code == ModePage.CONTROL:
                d_sense, swp = bool(new[2] & _D_SENSE), bool(new[4] & _SWP)
                changed |= d_sense != self.d_sense or swp != self.swp
                self.d_sense, self.swp = d_sense, swp
        return changed
