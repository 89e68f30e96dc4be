"""The one place the host driver touches the NVMe/TCP codec.

The driver's TCP transport (``host/tcp.py``) talks to the sans-IO codec only through the
names below, so a change of the codec's module layout or receive/send API is absorbed here.
"""
from __future__ import annotations

import struct

from spydk.nvme.tcp import (
    Buffer,
    C2HData,
    CapsuleResponse,
    ConnectionClosed,
    DataDigestError,
    Event,
    ICRespReceived,
    LocalProtocolError,
    ProtocolError,
    R2TReceived,
    Role,
    TcpQueuePair,
    TermReqReceived,
)
from spydk.nvme.tcp.pdu import _CH_PACK, CLOSED, READY, HostCmd, _new_object

__all__ = [
    "Buffer", "C2HData", "CapsuleResponse", "ConnectionClosed", "DataDigestError", "Event",
    "HostCodec", "ICRespReceived", "LocalProtocolError", "ProtocolError", "R2TReceived",
    "TermReqReceived", "new_host_codec",
]

_C2H = 2  # DataTransfer.CONTROLLER_TO_HOST
# Common header + C2HData PSH (CCCID, rsvd, DATAO, DATAL) in one unpack.
_C2H_HEAD = struct.Struct("<BBBBIHHII")
_C2H_HEAD_UNPACK = _C2H_HEAD.unpack_from
_RESP_CID = struct.Struct("<H").unpack_from
_LAST_SUCCESS = 0x0C


class HostCodec(TcpQueuePair):
    """The host role plus one encoder for the I/O hot path."""

    def send_read_cmd(self, sqe: bytearray, cid: int, length: int,
                      dest: memoryview | None) -> bytes:
        """``send_capsule_cmd(sqe, dest=dest)`` for a read (C2H data, no in-capsule data):
        one header pack, when neither a header digest nor a previous use of the CID is in
        the way; otherwise the general encoder."""
        if self._hd or self._state != READY or cid in self._cmds:
            return bytes(b"".join(bytes(b) for b in self.send_capsule_cmd(sqe, dest=dest)))
        self._cmds[cid] = HostCmd(_C2H, length, 0, False, dest)
        return _CH_PACK(4, 0, 72, 0, 72) + sqe

    def _parse(self) -> None:
        """The host's receive fast path, then the general parser for everything else.

        Taken only for PDUs whose every field has the one value a well-behaved controller sends
        on an undigested connection: a CapsuleResp for an outstanding CID, or a whole read's data
        in one C2HData with LAST_PDU|SUCCESS, fully in the ring, for a command not steered to a
        buffer of its own. Anything else (digests, padding, split data, errors) goes through the
        codec's full checks, which produce the same events."""
        if self._controller or self._hd or self.data_digest or self.hpda:
            super()._parse()
            return
        append = self._events.append
        cmds = self._cmds
        new_event = _new_object
        while self._state != CLOSED and self._pending is None:
            rpos = self._rpos
            avail = self._rend - rpos
            if avail < 24:
                break
            ring = self._rview
            ptype, flags, hlen, pdo, plen, cccid, _r, datao, datal = _C2H_HEAD_UNPACK(ring, rpos)
            if ptype == 7:
                if (flags != _LAST_SUCCESS or hlen != 24 or pdo != 24 or datao or plen != 24 + datal
                        or avail < plen):
                    break
                cmd = cmds.get(cccid)
                if cmd is None or cmd.dest is not None or cmd.next or datal != cmd.length or not datal \
                        or not cmd.direction & _C2H:
                    break
                del cmds[cccid]
                self._rpos = rpos + plen
                self._need = 0
                ev = new_event(C2HData)
                ev.cccid = cccid
                ev.offset = 0
                ev.data = ring[rpos + 24:rpos + plen]
                ev.last = True
                ev.success = True
                append(ev)
            elif ptype == 5:
                if flags or hlen != 24 or plen != 24:
                    break
                cid = _RESP_CID(ring, rpos + 20)[0]
                if cmds.pop(cid, None) is None:
                    break
                self._rpos = rpos + 24
                self._need = 0
                resp = new_event(CapsuleResponse)
                resp.cid = cid
                resp.cqe = ring[rpos + 8:rpos + 24]
                append(resp)
            else:
                break
        super()._parse()


def new_host_codec(max_incapsule_data: int) -> HostCodec:
    """A host-role codec; the ring is the codec's default size."""
    return HostCodec(Role.HOST, max_incapsule_data=max_incapsule_data)


def is_outstanding(codec: HostCodec, cid: int) -> bool:
    """The codec still expects data or a response for cid."""
    return cid in codec._cmds
