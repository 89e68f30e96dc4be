"""Parsers of the host side: transport IDs and what a controller returns. Round trips through
spydk.nvme.spec's builders, and arbitrary bytes give a parse or a ValueError, nothing else."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spydk.nvme import spec
from spydk.nvme.host.identify import (
    discovery_log_header,
    parse_discovery_log,
    parse_identify_controller,
    parse_identify_namespace,
    parse_ns_list,
)
from spydk.nvme.host.trid import DISCOVERY_NQN, TridError, parse_trid


def test_trid_round_trip_and_defaults() -> None:
    t = parse_trid("trtype:tcp adrfam:ipv6 traddr:::1 trsvcid:4421 subnqn:nqn.x ns:2 hostnqn:nqn.h")
    assert (t.trtype, t.adrfam, t.traddr, t.trsvcid, t.subnqn, t.ns, t.hostnqn) == (
        "TCP", "IPv6", "::1", "4421", "nqn.x", 2, "nqn.h")
    d = parse_trid("trtype=TCP traddr=10.0.0.1")
    assert d.subnqn == DISCOVERY_NQN and d.trsvcid == "4420" and parse_trid(str(d)) == d


@pytest.mark.parametrize("text,match", [
    ("trtype:TCP", "needs traddr"), ("trtype:TCP traddr:x trsvcid:99999", "not a TCP port"),
    ("trtype:RDMA traddr:x", "not supported"), ("trtype:TCP traddr:x color:red", "unknown transport ID key"),
    ("trtype:TCP traddr", "is not key:value"), ("trtype:TCP traddr:x adrfam:IPX", "neither IPv4 nor IPv6"),
])
def test_trid_errors_name_the_problem(text: str, match: str) -> None:
    with pytest.raises(TridError, match=match):
        parse_trid(text)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_trid_fuzz(text: str) -> None:
    try:
        parse_trid(text)
    except (TridError, ValueError):
        pass


def test_identify_round_trips() -> None:
    cd = spec.ControllerData(serial="S123", model="M456", firmware_rev="7.8", subnqn="nqn.2016-06.io.spdk:c",
                             mdts=6, ioccsz=4 + 256, cntlid=9)
    c = parse_identify_controller(spec.build_identify_controller(cd))
    assert (c.sn, c.mn, c.fr, c.subnqn, c.mdts, c.cntlid, c.incapsule_data_size) == (
        "S123", "M456", "7.8", "nqn.2016-06.io.spdk:c", 6, 9, 4096)
    nd = spec.NamespaceData(nsze=1000, lba_formats=[(0, 512), (8, 4096)], flbas=1, anagrpid=3,
                            nguid=bytes(range(16)))
    n = parse_identify_namespace(spec.build_identify_namespace(nd))
    assert (n.nsze, n.block_size, n.md_size, n.anagrpid, n.nguid) == (1000, 4096, 8, 3, bytes(range(16)))
    assert parse_ns_list(spec.build_ns_list([5, 1, 9])) == [1, 5, 9]


def test_discovery_log_round_trip() -> None:
    entries = [spec.DiscoveryEntry(trtype=3, adrfam=1, subtype=2, treq=2, portid=1, cntlid=0xFFFF,
                                   asqsz=128, trsvcid="4420", subnqn="nqn.a", traddr="127.0.0.1")]
    page = spec.build_discovery_log(7, entries)
    gen, numrec, _ = discovery_log_header(page)
    (e,) = parse_discovery_log(page, numrec)
    assert gen == 7 and (e.subnqn, e.traddr, e.trsvcid, e.subtype) == ("nqn.a", "127.0.0.1", "4420", 2)


@given(st.binary(max_size=256), st.binary(max_size=256), st.integers(0, 3840))
@settings(max_examples=200, deadline=None)
def test_identify_parsers_fuzz(head: bytes, part: bytes, at: int) -> None:
    buf = bytearray(4096)
    buf[:len(head)] = head
    buf[at:at + len(part)] = part[:4096 - at]
    data = bytes(buf)
    parse_identify_controller(data)
    try:
        parse_identify_namespace(data)
    except ValueError:
        pass
    parse_ns_list(data)
    numrec = discovery_log_header(data + bytes(1024))[1]
    parse_discovery_log(data, min(numrec, 8))


def test_short_identify_data_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 4096"):
        parse_identify_controller(bytes(100))
