"""Fuzz targets: one function per parser, taking the fuzzer's bytes.

A crash is any exception other than the parser's defined error for bad input, and any
exception that spydk contained and logged with a traceback (a reactor message, a connection's
"internal error"): ``LoggedTraceback`` turns those log records into failures.

The targets drive the real code through the in-memory pairs the tests use (tests/), so the
repository root must be on sys.path (run from it: ``python -m fuzz.run``).
"""
from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable
from typing import Any

from spydk.nvme import spec, tcp

_CH = struct.Struct("<BBBBI")


class LoggedTraceback(Exception):
    """spydk logged an exception it contained: a bug, for the fuzzer."""


class _Trap(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            raise LoggedTraceback(record.getMessage()) from record.exc_info[1]


def install_trap() -> Callable[[], None]:
    """Make contained exceptions fatal (logging.raiseExceptions must stay on); returns the
    function that puts the "spydk" logger back as it was (tests share one process)."""
    root = logging.getLogger("spydk")
    saved = (logging.raiseExceptions, root.level, root.propagate)
    logging.raiseExceptions = True
    trap = None
    if not any(isinstance(h, _Trap) for h in root.handlers):
        trap = _Trap(logging.ERROR)
        root.addHandler(trap)
    root.setLevel(logging.ERROR)
    root.propagate = False

    def remove() -> None:
        if trap is not None:
            root.removeHandler(trap)
        logging.raiseExceptions, level, root.propagate = saved
        root.setLevel(level)
    return remove


def _chunks(data: bytes, size: int) -> list[bytes]:
    # At most 64 pieces: a byte at a time over a long input costs more than it finds.
    size = max(1, size, len(data) // 64)
    return [data[i:i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------------------------------------
# NVMe/TCP codec, both roles


def nvme_tcp_controller(data: bytes) -> None:
    if not data:
        return
    head, data = data[0], data[1:]
    q = tcp.TcpQueuePair(tcp.Role.CONTROLLER)
    if head & 1:  # start from a connected queue pair most of the time
        h = tcp.TcpQueuePair(tcp.Role.HOST)
        q.receive_data(b"".join(bytes(b) for b in h.send_icreq(header_digest=bool(head & 2),
                                                                data_digest=bool(head & 4))))
    ttag = 0
    for chunk in _chunks(data, (head >> 3) * 37 + 1):
        q.receive_data(chunk)
        while (ev := q.next_event()) is not None:
            if isinstance(ev, tcp.ICReqReceived):
                if not q.closed:  # what followed the ICReq may already have ended it
                    q.send_icresp()
            elif isinstance(ev, tcp.CapsuleCommand):
                sqe = ev.sqe
                _addr, length, ts = spec.SGL_DESC.unpack_from(sqe, 24)
                if ev.data is None and 0 < length <= 65536 and (sqe[0] == 1 or head & 0x80):
                    ttag = (ttag + 1) & 0xFFFF
                    cid = spec.sqe_cid(sqe)
                    try:
                        q.send_r2t(cid, ttag, 0, length, dest=memoryview(bytearray(length)))
                    except tcp.LocalProtocolError:
                        pass  # our own misuse (one R2T per command); not the parser's fault
            elif isinstance(ev, tcp.ProtocolError | tcp.ConnectionClosed | tcp.TermReqReceived):
                return


def nvme_tcp_host(data: bytes) -> None:
    if not data:
        return
    head, data = data[0], data[1:]
    q = tcp.TcpQueuePair(tcp.Role.HOST)
    icreq = b"".join(bytes(b) for b in q.send_icreq(header_digest=bool(head & 2), data_digest=bool(head & 4)))
    if head & 1:  # start from a connected queue pair with a read and a write outstanding
        c = tcp.TcpQueuePair(tcp.Role.CONTROLLER)
        c.receive_data(icreq)
        c.next_event()
        q.receive_data(b"".join(bytes(b) for b in c.send_icresp()))
        q.next_event()
        q.send_capsule_cmd(spec.build_sqe(2, 1, 1, psdt=1, dptr=spec.build_sgl(0, 8192, 5, 0xA), cdw12=15),
                           dest=memoryview(bytearray(8192)))
        q.send_capsule_cmd(spec.build_sqe(1, 2, 1, psdt=1, dptr=spec.build_sgl(0, 8192, 5, 0xA), cdw12=15))
    for chunk in _chunks(data, (head >> 3) * 37 + 1):
        q.receive_data(chunk)
        while (ev := q.next_event()) is not None:
            if isinstance(ev, tcp.ProtocolError | tcp.ConnectionClosed | tcp.TermReqReceived):
                return


# ---------------------------------------------------------------------------------------------
# NVMe commands through the controller (in-memory target)


def nvmf_controller(data: bytes) -> None:
    """Records of [queue byte][64-byte SQE][2-byte data length][data] as CapsuleCmd PDUs into
    an admin queue and an I/O queue of a live in-memory target."""
    from tests.nvmf.conftest import Env
    from tests.nvmf.helpers import push_bytes
    env = Env()
    try:
        adm, cntlid = env.admin()
        io = env.io(cntlid)
        links = (adm, io)
        pos = 0
        while pos + 67 <= len(data):
            which = data[pos]
            sqe = bytearray(data[pos + 1:pos + 65])
            dlen = min(int.from_bytes(data[pos + 65:pos + 67], "little"), 8192)
            payload = data[pos + 67:pos + 67 + dlen]
            pos += 67 + dlen
            if which & 2:  # keep the SQE's opcode but make its SGL describe the payload (more reach)
                sqe[1] = (sqe[1] & 0x3F) | 0x40
                sqe[24:40] = spec.build_sgl(0, len(payload), 0, 1) if payload else \
                    spec.build_sgl(0, int.from_bytes(sqe[32:36], "little") & 0x1FFFF, 5, 0xA)
            lk = links[which & 1]
            if lk.conn.closing:
                continue
            hdr = _CH.pack(4, 0, 72, 72 if payload else 0, 72 + len(payload))
            push_bytes(lk.conn, hdr + bytes(sqe) + payload)
            lk.ft.written.clear()
        env.tgt.check_keep_alive(env.clock.now + 10**12)
    finally:
        env.close()  # as the hosts' sockets would close: the shared buffer pool gets its buffers back


# ---------------------------------------------------------------------------------------------
# iSCSI PDUs, login and text keys


# What the harness's stand-in LU reads back: the READ data of a fuzzed command is a view of this
# (a fuzzed Expected Data Transfer Length says up to 4 GiB; a real LU would bound it too).
_READ_CAP = 1 << 20
_READ_DATA = memoryview(bytes(range(256)) * (_READ_CAP // 256))


def _fuzz_scsi_execute(task: Any) -> None:
    """The in-memory initiator's LU, made cheap: reads return a view of a shared buffer (at most
    1 MiB; less than asked is an underflow the target reports), writes are looked at, not kept."""
    if task.cdb[0] in (0x28, 0x08):  # READ(10), READ(6)
        n = min(task.transfer_length if task.cdb[0] == 0x28 else task.cdb[4] * 512, _READ_CAP)
        task.data_in = [_READ_DATA[:n]]
        task.data_in_length = n
    elif task.cdb[0] == 0x2A:
        for v in task.data_out:
            len(v)


def _drop_output(bufs: list[Any]) -> list[Any]:
    # What the target sends is not checked, only that each buffer is still a live buffer (no
    # copy: a fuzzed read sends up to 1 MiB).
    for b in bufs:
        memoryview(b)
    return []


def iscsi_pdus(data: bytes) -> None:
    """Raw bytes into a target connection: in login, or after a complete login."""
    if not data:
        return
    from spydk.iscsi.conn import TargetConfig
    from tests.iscsi.test_conn import logged_in, make
    head, data = data[0], data[1:]
    # Writes up to 1 MiB: the same code paths, without zeroing 16 MiB buffers per input.
    cfg = TargetConfig(max_write_length=1 << 20)
    # The initiator's reader only reads login responses (what follows is dropped unread).
    ini, conn, _ = logged_in(config=cfg, max_rx_data=8192) if head & 1 else make(config=cfg, max_rx_data=8192)
    ini.collect = _drop_output  # type: ignore[method-assign]
    ini.scsi.execute = _fuzz_scsi_execute  # type: ignore[method-assign]
    for chunk in _chunks(data, (head >> 1) * 53 + 1):
        ini.raw(chunk)
        if ini.failed is not None:
            return
    for task in list(ini.scsi.pending):
        ini.collect(conn.complete_task(task))


def iscsi_text(data: bytes) -> None:
    """Login/Text key=value data through the negotiator (the data segment of a Login PDU)."""
    from spydk.iscsi import negotiation as ng
    try:
        pairs = ng.parse_text(data)
    except ng.NegotiationError:
        return
    n = ng.Negotiator(ng.Limits(), leading=bool(data[:1] and data[0] & 1))
    try:
        n.answer(pairs, in_login=True)
        n.finish()
        ng.Negotiator(ng.Limits()).answer(pairs, in_login=False)
    except ng.NegotiationError:
        return


# ---------------------------------------------------------------------------------------------
# SCSI CDBs through the logical unit


def scsi_cdbs(data: bytes) -> None:
    """Records of [cdb length][cdb][2-byte data-out length][data-out] against one LU."""
    from spydk.scsi.task import ScsiStatus
    from tests.scsi.helpers import I1, I2, Harness
    from tests.scsi.memory_backend import MemoryBackend
    h = Harness(MemoryBackend(num_blocks=64))
    pos = 0
    while pos < len(data):
        n = data[pos] & 31
        cdb = data[pos + 1:pos + 1 + n]
        pos += 1 + n
        dlen = int.from_bytes(data[pos:pos + 2], "little") & 0xFFF
        out = data[pos + 2:pos + 2 + dlen]
        pos += 2 + dlen
        task = h.submit(cdb, out, transfer_length=dlen or 512, port=I1 if n & 1 else I2)
        if h.completed.count(task) != 1:
            raise AssertionError(f"CDB {cdb.hex()} completed {h.completed.count(task)} times")
        if task.status not in (ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION, ScsiStatus.RESERVATION_CONFLICT):
            raise AssertionError(f"CDB {cdb.hex()}: status {task.status}")


# ---------------------------------------------------------------------------------------------
# JSON-RPC framing and parameters, JSON config files


def jsonrpc_framing(data: bytes) -> None:
    from spydk.rpc.framing import JsonStreamDecoder
    if not data:
        return
    d = JsonStreamDecoder(max_size=1 << 16)
    for chunk in _chunks(data[1:], data[0] + 1):
        d.feed(chunk)
        if d.error is not None:
            return


_METHODS: list[Any] = []


def rpc_params(data: bytes) -> None:
    """JSON params decoded by a method's schema (the first byte picks the method)."""
    from spydk.rpc import errors
    from spydk.rpc.registry import all_methods
    if not _METHODS:
        import importlib

        from spydk.rpc.discovery import plugin_modules
        for m in plugin_modules():
            importlib.import_module(m)
        _METHODS.extend(sorted(all_methods(), key=lambda m: m.name))
    if len(data) < 2:
        return
    m = _METHODS[int.from_bytes(data[:2], "little") % len(_METHODS)]
    try:
        params = json.loads(data[2:])
    except (ValueError, RecursionError):
        return
    try:
        m.schema.decode(params)
    except errors.RpcError:
        return


def json_config(data: bytes) -> None:
    from spydk.apps.json_config import ConfigError, parse_config, parse_config_text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_config(parse_config_text(text, "<fuzz>"), "<fuzz>")
    except (ConfigError, RecursionError):
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "nvme_tcp_controller": nvme_tcp_controller,
    "nvme_tcp_host": nvme_tcp_host,
    "nvmf_controller": nvmf_controller,
    "iscsi_pdus": iscsi_pdus,
    "iscsi_text": iscsi_text,
    "scsi_cdbs": scsi_cdbs,
    "jsonrpc_framing": jsonrpc_framing,
    "rpc_params": rpc_params,
    "json_config": json_config,
}


def prepare(name: str) -> None:
    """Import what a target uses (so coverage instrumentation sees it) and warm it up."""
    import importlib
    for m in ("tests.nvmf.conftest", "tests.nvmf.helpers", "tests.iscsi.test_conn", "tests.scsi.helpers",
              "tests.scsi.memory_backend", "spydk.iscsi.negotiation", "spydk.rpc.framing",
              "spydk.rpc.registry", "spydk.rpc.discovery", "spydk.apps.json_config"):
        importlib.import_module(m)
    TARGETS[name](b"")
    if name == "rpc_params":
        rpc_params(b"\0\0{}")
