"""Generic netlink messages of the Linux nbd driver (include/uapi/linux/nbd-netlink.h), sans-IO:
builders return bytes, parsers take bytes. The kernel export uses them so that attaching
a device never blocks (the ioctl way parks a thread in NBD_DO_IT)."""
from __future__ import annotations

import struct

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3
NLA_F_NESTED = 1 << 15

NBD_GENL_FAMILY_NAME = "nbd"
NBD_GENL_VERSION = 1
NBD_CMD_CONNECT = 1
NBD_CMD_DISCONNECT = 2
NBD_CMD_STATUS = 5
NBD_ATTR_INDEX = 1
NBD_ATTR_SIZE_BYTES = 2
NBD_ATTR_BLOCK_SIZE_BYTES = 3
NBD_ATTR_TIMEOUT = 4
NBD_ATTR_SERVER_FLAGS = 5
NBD_ATTR_CLIENT_FLAGS = 6
NBD_ATTR_SOCKETS = 7
NBD_SOCK_ITEM = 1
NBD_SOCK_FD = 1
NBD_CFLAG_DESTROY_ON_DISCONNECT = 1 << 0

NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
GENLMSGHDR = struct.Struct("=BBH")      # cmd, version, reserved
NLATTR = struct.Struct("=HH")           # len, type
assert NLMSGHDR.size == 16 and GENLMSGHDR.size == 4 and NLATTR.size == 4


def attr(typ: int, payload: bytes) -> bytes:
    n = NLATTR.size + len(payload)
    return NLATTR.pack(n, typ) + payload + bytes(-n % 4)


def u32(typ: int, v: int) -> bytes:
    return attr(typ, struct.pack("=I", v))


def u64(typ: int, v: int) -> bytes:
    return attr(typ, struct.pack("=Q", v))


def message(family: int, cmd: int, version: int, attrs: bytes, seq: int,
            flags: int = NLM_F_REQUEST | NLM_F_ACK) -> bytes:
    body = GENLMSGHDR.pack(cmd, version, 0) + attrs
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), family, flags, seq, 0) + body


def get_family(seq: int) -> bytes:
    return message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1,
                   attr(CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME.encode() + b"\0"), seq)


def connect(family: int, seq: int, index: int | None, size: int, block_size: int, server_flags: int,
            sock_fd: int, timeout_s: int = 0) -> bytes:
    a = b""
    if index is not None:
        a += u32(NBD_ATTR_INDEX, index)
    a += u64(NBD_ATTR_SIZE_BYTES, size) + u64(NBD_ATTR_BLOCK_SIZE_BYTES, block_size)
    a += u64(NBD_ATTR_SERVER_FLAGS, server_flags)
    a += u64(NBD_ATTR_CLIENT_FLAGS, NBD_CFLAG_DESTROY_ON_DISCONNECT)
    if timeout_s:
        a += u64(NBD_ATTR_TIMEOUT, timeout_s)
    item = attr(NBD_SOCK_ITEM | NLA_F_NESTED, u32(NBD_SOCK_FD, sock_fd))
    a += attr(NBD_ATTR_SOCKETS | NLA_F_NESTED, item)
    return message(family, NBD_CMD_CONNECT, NBD_GENL_VERSION, a, seq)


def disconnect(family: int, seq: int, index: int) -> bytes:
    return message(family, NBD_CMD_DISCONNECT, NBD_GENL_VERSION, u32(NBD_ATTR_INDEX, index), seq)


def parse_attrs(data: bytes | memoryview) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + NLATTR.size <= len(data):
        n, typ = NLATTR.unpack_from(data, pos)
        if n < NLATTR.size or pos + n > len(data):
            break
        out[typ & ~NLA_F_NESTED] = bytes(data[pos + NLATTR.size:pos + n])
        pos += (n + 3) & ~3
    return out


def parse(data: bytes) -> list[tuple[int, int, int, dict[int, bytes]]]:
    """Messages in a netlink datagram: (type, seq, error (0 or -errno, NLMSG_ERROR only), attrs)."""
    out: list[tuple[int, int, int, dict[int, bytes]]] = []
    pos = 0
    while pos + NLMSGHDR.size <= len(data):
        length, typ, _flags, seq, _pid = NLMSGHDR.unpack_from(data, pos)
        if length < NLMSGHDR.size or pos + length > len(data):
            break
        body = data[pos + NLMSGHDR.size:pos + length]
        if typ == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", body, 0)
            out.append((typ, seq, err, {}))
        elif typ != NLMSG_DONE and len(body) >= GENLMSGHDR.size:
            out.append((typ, seq, 0, parse_attrs(body[GENLMSGHDR.size:])))
        pos += (length + 3) & ~3
    return out
