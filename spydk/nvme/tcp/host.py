"""The host (initiator) role's send side: ICReq, CapsuleCmd, H2CData, and command tracking."""
from __future__ import annotations

from collections.abc import Sequence

from crc32c import crc32c

from spydk.nvme import spec
from spydk.nvme.spec.tcp import (
    CAPSULE_CMD_HLEN,
    DDGSTF,
    DIGEST_LEN,
    HDGSTF,
    IC_HLEN,
    IC_REQ,
    LAST_PDU,
    MAX_PDA,
    PduType,
)
from spydk.nvme.tcp.events import (
    Buffer,
    LocalProtocolError,
)
from spydk.nvme.tcp.pdu import (
    _BUF_TYPES,
    _CH_PACK,
    _H2C_DIR,
    _U16_UNPACK,
    _U32_PACK,
    _ZERO_PAD,
    AWAIT_IC,
    IC_PENDING,
    READY,
    HostCmd,
    QueuePairState,
    _byte_view,
    _digest,
    _split,
)


class HostSide(QueuePairState):
    """Mixin of TcpQueuePair: what a host sends, and its outstanding commands."""

    def send_icreq(self, *, hpda: int = 0, header_digest: bool = False, data_digest: bool = False,
                   maxr2t: int = 0) -> list[Buffer]:
        if self._controller or self._state != IC_PENDING:
            raise LocalProtocolError("send_icreq: host role, once, first")
        if not 0 <= hpda <= MAX_PDA:
            raise LocalProtocolError("hpda out of range")
        self.hpda = hpda
        self.maxr2t = maxr2t
        self._req_hdgst = header_digest
        self._req_ddgst = data_digest
        self._state = AWAIT_IC
        dgst = (1 if header_digest else 0) | (2 if data_digest else 0)
        return [IC_REQ.pack(PduType.IC_REQ, 0, IC_HLEN, 0, IC_HLEN, 0, hpda, dgst, maxr2t)]

    def send_capsule_cmd(self, sqe: Buffer, data: Buffer | Sequence[Buffer] | None = None, *,
                         dest: memoryview | None = None) -> list[Buffer]:
        """CapsuleCmd for a 64-byte SQE, with optional in-capsule data. The command's data length
        and direction come from SGL1 and the opcode; dest receives C2H data for reads."""
        if self._state != READY or self._controller:
            raise LocalProtocolError("send_capsule_cmd: host role, READY")
        if len(sqe) != spec.SQE_SIZE:
            raise LocalProtocolError("SQE must be 64 bytes")
        cid = _U16_UNPACK(sqe, 2)[0]
        if cid in self._cmds:
            raise LocalProtocolError(f"CID {cid} already outstanding")
        direction = spec.sqe_data_transfer(sqe)
        length = spec.sqe_sgl1(sqe)[1] if direction else 0
        bufs: Sequence[Buffer] = ()
        dlen = 0
        if data is not None:
            bufs = [data] if isinstance(data, _BUF_TYPES) else data
            for b in bufs:
                dlen += len(b)
            if dlen > self.max_incapsule_data:
                raise LocalProtocolError("in-capsule data longer than the controller accepts")
            if not direction & _H2C_DIR or dlen != length:
                raise LocalProtocolError("in-capsule data needs a write whose SGL1 length matches")
        if dest is not None:
            dest = _byte_view(dest)
            if len(dest) < length:
                raise LocalProtocolError("dest shorter than the command's data length")
        self._cmds[cid] = HostCmd(direction, length, 0, dlen > 0, dest)
        hd = self._hd
        flags = HDGSTF if hd else 0
        hend = CAPSULE_CMD_HLEN + hd
        if not dlen:
            hdr = _CH_PACK(4, flags, CAPSULE_CMD_HLEN, 0, hend) + bytes(sqe)
            if hd:
                hdr += _U32_PACK(crc32c(hdr))
            return [hdr]
        pdo = hend
        if self.cpda:
            align = (self.cpda + 1) * 4
            pdo = -(-hend // align) * align
        dd = DIGEST_LEN if self.data_digest else 0
        if dd:
            flags |= DDGSTF
        hdr = _CH_PACK(4, flags, CAPSULE_CMD_HLEN, pdo, pdo + dlen + dd) + bytes(sqe)
        if hd:
            hdr += _U32_PACK(crc32c(hdr))
        if pdo != hend:
            hdr += _ZERO_PAD[:pdo - hend]
        out: list[Buffer] = [hdr]
        out += bufs
        if dd:
            out.append(_U32_PACK(_digest(bufs)))
        return out

    def send_h2c_data(self, cccid: int, ttag: int, offset: int, data: Buffer | Sequence[Buffer], *,
                      last: bool = True) -> list[Buffer]:
        """H2CData PDU(s) answering an R2T, split at MAXH2CDATA; last marks the end of the R2T's
        range (LAST_PDU on the final PDU, and the R2T stops counting against MAXR2T)."""
        if self._state != READY or self._controller:
            raise LocalProtocolError("send_h2c_data: host role, READY")
        cmd = self._cmds.get(cccid)
        if cmd is None:
            raise LocalProtocolError(f"no outstanding command {cccid}")
        bufs = [data] if isinstance(data, _BUF_TYPES) else data
        total = 0
        for b in bufs:
            total += len(b)
        if total == 0:
            raise LocalProtocolError("H2C data must not be empty")
        if offset + total > cmd.length:
            raise LocalProtocolError("H2C data beyond the command's length")
        if last and cmd.r2ts:
            cmd.r2ts -= 1
        out: list[Buffer] = []
        for chunk_off, chunk in _split(bufs, self.maxh2cdata):
            n = 0
            for b in chunk:
                n += len(b)
            flags = LAST_PDU if last and chunk_off + n == total else 0
            out += self._data_pdu_out(6, cccid, ttag, offset + chunk_off, chunk, n, flags)
        return out

    def abort_command(self, cid: int) -> None:
        """Host: forget an outstanding command (e.g. timed out); later PDUs for it are errors."""
        self._cmds.pop(cid, None)

    @property
    def outstanding_commands(self) -> int:
        return len(self._cmds)
