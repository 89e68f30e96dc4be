"""The kernel NBD export: its netlink messages byte for byte, and the refusals on a host
without the nbd module (this one: the guest test covers the NBD server instead)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from spydk.nbd import netlink as nl
from spydk.testing import start_target


def test_connect_message_bytes() -> None:
    m = nl.connect(family=0x22, seq=5, index=3, size=1 << 20, block_size=512, server_flags=0x165, sock_fd=9)
    length, typ, flags, seq, pid = nl.NLMSGHDR.unpack_from(m)
    assert (length, typ, flags, seq, pid) == (len(m), 0x22, nl.NLM_F_REQUEST | nl.NLM_F_ACK, 5, 0)
    assert m[16:20] == bytes([nl.NBD_CMD_CONNECT, 1, 0, 0])
    attrs = nl.parse_attrs(m[20:])
    assert struct.unpack("=I", attrs[nl.NBD_ATTR_INDEX])[0] == 3
    assert struct.unpack("=Q", attrs[nl.NBD_ATTR_SIZE_BYTES])[0] == 1 << 20
    assert struct.unpack("=Q", attrs[nl.NBD_ATTR_BLOCK_SIZE_BYTES])[0] == 512
    assert struct.unpack("=Q", attrs[nl.NBD_ATTR_SERVER_FLAGS])[0] == 0x165
    sockets = nl.parse_attrs(attrs[nl.NBD_ATTR_SOCKETS])
    assert nl.parse_attrs(sockets[nl.NBD_SOCK_ITEM]) == {nl.NBD_SOCK_FD: struct.pack("=I", 9)}
    # the nested flag is set on the wire
    pos = m.index(struct.pack("=H", nl.NBD_ATTR_SOCKETS | nl.NLA_F_NESTED))
    assert pos > 20


def test_get_family_and_parse_error() -> None:
    m = nl.get_family(1)
    assert m[16] == nl.CTRL_CMD_GETFAMILY and b"nbd\0" in m
    err = nl.NLMSGHDR.pack(36, nl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -19) + m[:16]
    assert nl.parse(err) == [(nl.NLMSG_ERROR, 1, -19, {})]


def test_start_disk_refusals(tmp_path: Path) -> None:
    with start_target(tmp_path, config={"subsystems": []}) as t:
        t.client.call("bdev_malloc_create", {"name": "M0", "num_blocks": 64, "block_size": 512})
        if not os.path.exists("/sys/module/nbd"):   # hosts without the module (this one)
            r = t.rpc("nbd_start_disk", "M0", "/dev/nbd0", check=False)
            assert r.returncode != 0 and "modprobe nbd" in r.stderr + r.stdout
        r = t.rpc("nbd_start_disk", "M0", "/dev/sda", check=False)
        assert "/dev/nbdN" in r.stderr + r.stdout
        r = t.rpc("nbd_start_disk", "Nope", check=False)
        assert "Nope" in r.stderr + r.stdout
        assert t.client.call("nbd_get_disks") == []
        r = t.rpc("nbd_stop_disk", "/dev/nbd3", check=False)
        assert "not started" in r.stderr + r.stdout
