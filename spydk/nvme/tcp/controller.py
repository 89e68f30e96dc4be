"""The controller (target) role's send side: ICResp, CapsuleResp, C2HData, R2T."""
from __future__ import annotations

from collections.abc import Sequence

from crc32c import crc32c

from spydk.nvme.spec.tcp import (
    CAPSULE_RESP_HLEN,
    HDGSTF,
    IC_HLEN,
    IC_RESP,
    LAST_PDU,
    MAX_PDA,
    MIN_MAXH2CDATA,
    SUCCESS,
    PduType,
)
from spydk.nvme.tcp.events import (
    Buffer,
    LocalProtocolError,
)
from spydk.nvme.tcp.pdu import (
    _BUF_TYPES,
    _C2H_PACK,
    _CH_PACK,
    _LAST_SUCCESS,
    _R2T_PACK,
    _RESP_PACK,
    _U32_PACK,
    DEFAULT_MAXH2CDATA,
    IC_PENDING,
    READY,
    QueuePairState,
    R2TState,
    _byte_view,
    _split,
)


class ControllerSide(QueuePairState):
    """Mixin of TcpQueuePair: what a controller sends, and its R2T bookkeeping."""

    def send_icresp(self, *, cpda: int = 0, maxh2cdata: int = DEFAULT_MAXH2CDATA,
                    header_digest: bool = True, data_digest: bool = True) -> list[Buffer]:
        """Answer the ICReq. Digests are enabled where the host asked and these allow it."""
        if not self._controller or self._state != IC_PENDING:
            raise LocalProtocolError("send_icresp: controller role, after ICReqReceived")
        if not 0 <= cpda <= MAX_PDA or maxh2cdata < MIN_MAXH2CDATA or maxh2cdata % 4:
            raise LocalProtocolError("cpda or maxh2cdata out of range")
        self.cpda = cpda
        self.maxh2cdata = maxh2cdata
        self.header_digest = header_digest and self._req_hdgst
        self.data_digest = data_digest and self._req_ddgst
        self._negotiated()
        dgst = (1 if self.header_digest else 0) | (2 if self.data_digest else 0)
        return [IC_RESP.pack(PduType.IC_RESP, 0, IC_HLEN, 0, IC_HLEN, 0, cpda, dgst, maxh2cdata)]

    def send_capsule_resp(self, cqe: Buffer) -> list[Buffer]:
        """CapsuleResp carrying a 16-byte CQE built by the caller."""
        self._require_ready()
        hd = self._hd
        hdr = _CH_PACK(PduType.CAPSULE_RESP, HDGSTF if hd else 0, CAPSULE_RESP_HLEN, 0,
                       CAPSULE_RESP_HLEN + hd) + bytes(cqe)
        if hd:
            hdr += _U32_PACK(crc32c(hdr))
        return [hdr]

    def send_response(self, cid: int, status: int = 0, dw0: int = 0, dw1: int = 0, sqhd: int = 0,
                      sqid: int = 0) -> list[Buffer]:
        """CapsuleResp from CQE fields in one pack (see append_response)."""
        out: list[Buffer] = []
        self.append_response(out, cid, status, dw0, dw1, sqhd, sqid)
        return out

    def send_c2h_data(self, cccid: int, offset: int, data: Buffer | Sequence[Buffer], *,
                      last: bool = True, success: bool = False,
                      max_pdu_data: int = 0) -> list[Buffer]:
        """C2HData PDU(s) for data (one buffer or several). With max_pdu_data the data is split
        into PDUs of at most that many bytes; LAST_PDU/SUCCESS go on the final one only."""
        if self._state != READY or not self._controller:
            raise LocalProtocolError("send_c2h_data: controller role, READY")
        if success and not last:
            raise LocalProtocolError("SUCCESS requires LAST_PDU")
        if self._c2h_fast and not max_pdu_data and isinstance(data, _BUF_TYPES):
            # Fast path: one PDU, no digests, no padding.
            dlen = len(data)
            if not dlen:
                raise LocalProtocolError("C2H data must not be empty")
            flags = (LAST_PDU if last else 0) | (SUCCESS if success else 0)
            return [_C2H_PACK(7, flags, 24, 24, 24 + dlen, cccid, offset, dlen), data]
        bufs = [data] if isinstance(data, _BUF_TYPES) else data
        total = 0
        for b in bufs:
            total += len(b)
        if total == 0:
            raise LocalProtocolError("C2H data must not be empty")
        final_flags = (LAST_PDU if last else 0) | (SUCCESS if success else 0)
        if not max_pdu_data or total <= max_pdu_data:
            return self._data_pdu_out(7, cccid, 0, offset, bufs, total, final_flags)
        out: list[Buffer] = []
        for chunk_off, chunk in _split(bufs, max_pdu_data):
            n = 0
            for b in chunk:
                n += len(b)
            flags = final_flags if chunk_off + n == total else 0
            out += self._data_pdu_out(7, cccid, 0, offset + chunk_off, chunk, n, flags)
        return out

    def append_c2h_data(self, out: list[Buffer], cccid: int, data: Buffer,
                        success: bool = True) -> None:
        """Append the PDU(s) of ``send_c2h_data(cccid, 0, data, last=True, success=success)``
        to out: the read-completion fast path (one header pack, no list per PDU)."""
        if self._c2h_fast and self._state == READY:
            dlen = len(data)
            if dlen:
                out.append(_C2H_PACK(7, _LAST_SUCCESS if success else LAST_PDU, 24, 24, 24 + dlen,
                                      cccid, 0, dlen))
                out.append(data)
                return
        out += self.send_c2h_data(cccid, 0, data, last=True, success=success)

    def append_response(self, out: list[Buffer], cid: int, status: int = 0, dw0: int = 0,
                        dw1: int = 0, sqhd: int = 0, sqid: int = 0) -> None:
        """Append the CapsuleResp of ``send_response(...)`` to out."""
        if self._state != READY:
            raise LocalProtocolError("queue pair not READY")
        if self._hd:
            hdr = _RESP_PACK(5, HDGSTF, 24, 0, 28, dw0, dw1, sqhd, sqid, cid, status)
            out.append(hdr + _U32_PACK(crc32c(hdr)))
        else:
            out.append(_RESP_PACK(5, 0, 24, 0, 24, dw0, dw1, sqhd, sqid, cid, status))

    def send_r2t(self, cccid: int, ttag: int, offset: int, length: int, *,
                 dest: memoryview | None = None) -> list[Buffer]:
        """Ask the host for [offset, offset + length) of command cccid's data.

        With dest (a writable view of length bytes) the H2CData payloads land in it directly."""
        if self._state != READY or not self._controller:
            raise LocalProtocolError("send_r2t: controller role, READY")
        if ttag in self._r2ts:
            raise LocalProtocolError(f"TTAG {ttag} already in use")
        if length <= 0:
            raise LocalProtocolError("R2T length must be positive")
        if dest is not None:
            dest = _byte_view(dest)
            if len(dest) < length:
                raise LocalProtocolError("dest shorter than the R2T length")
        count = self._r2t_count.get(cccid, 0)
        if count > self.maxr2t:
            raise LocalProtocolError("more outstanding R2Ts than the host's MAXR2T allows")
        self._r2t_count[cccid] = count + 1
        self._r2ts[ttag] = R2TState(cccid, offset + length, offset, offset, dest)
        hd = self._hd
        if hd:
            hdr = _R2T_PACK(9, HDGSTF, 24, 0, 28, cccid, ttag, offset, length)
            return [hdr + _U32_PACK(crc32c(hdr))]
        return [_R2T_PACK(9, 0, 24, 0, 24, cccid, ttag, offset, length)]

    def abort_r2t(self, ttag: int) -> None:
        """Forget an outstanding R2T (command aborted); later H2CData for it is a peer error."""
        r2t = self._r2ts.pop(ttag, None)
        if r2t is not None:
            n = self._r2t_count.get(r2t.cccid, 1) - 1
            if n > 0:
                self._r2t_count[r2t.cccid] = n
            else:
                self._r2t_count.pop(r2t.cccid, None)

    @property
    def outstanding_r2ts(self) -> int:
        return len(self._r2ts)
