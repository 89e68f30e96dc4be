"""NVMe/TCP I/O queues spread across reactors (one process per core), as SPDK's poll groups.

The main reactor owns the listening sockets and admission: ICReq, Connect, DH-HMAC-CHAP, and
every admin queue (so a controller's state, keep-alive, features, AERs and reservations live in
one place). When an I/O queue's Connect succeeds, ``Spreader.place`` picks the next reactor
round-robin (the main reactor included). For another reactor it:

1. exports the codec state (negotiated digests and alignments, bytes received and not parsed),
   the Connect response not yet written, and the controller's I/O context (subsystem, cntlid,
   host, qid, SQ size and head): an ``IoQueueHandoff``;
2. puts a placeholder queue pair (``RemoteQueue`` owner) in the controller's ``io_qpairs``
   under that qid, so every controller-wide state change that closes I/O queues (CC.EN=0,
   shutdown, keep-alive expiry, host removal, listener removal, subsystem deletion, target
   shutdown) goes through ``owner.disconnect`` as it does for a local queue, which here sends
   ``ioq_disconnect`` to the reactor holding it;
3. sends ``ioq_adopt`` with the socket's descriptor (SCM_RIGHTS across processes), and drops
   its own descriptor without writing anything.

The worker's ``IoQueueHost`` resumes the codec, attaches the queue pair to a
``RemoteController`` (the controller's I/O context, over the worker's replica of the
subsystem and its namespace bdevs), writes the Connect response and runs the queue: the
transport's fast path and ``nvmf.io.exec_io`` work on it unchanged. Commands that need
controller-wide state go to the main reactor (``io_forward``): the reservation commands, and
every I/O command of a subsystem while it holds a reservation (the conflict check reads the
reservation state, which lives on main; ``resv_active`` tells the workers when that starts and
ends). When the worker's connection closes, ``ioq_closed`` frees the qid on main and adds the
queue's SMART counters and error log entries to the controller.

Messages are dicts of JSON values (plus descriptors) over a ``Channel``; any pair of objects
with ``send`` works, so tests run a main Target and a worker Target in one process.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from spydk.log import get_logger
from spydk.nvme import spec, tcp
from spydk.nvme.spec import AnaState
from spydk.nvmf import io as nvmf_io
from spydk.nvmf import reservation_cmds as resv
from spydk.nvmf.request import Qpair, Request
from spydk.nvmf.subsystem import ListenAddress, Listener, Subsystem

if TYPE_CHECKING:
    from spydk.nvmf.io import NamespaceBackend
    from spydk.nvmf.subsystem import Namespace
    from spydk.nvmf.tgt import Target
    from spydk.nvmf.transports.tcp import TcpConnection

log = get_logger("nvmf")

Message = dict[str, Any]


class Channel(Protocol):
    """One direction of a link between two reactors: a message, with descriptors to pass.
    ``send`` owns the descriptors: it closes them once they are passed (or cannot be)."""

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None: ...


@dataclass
class IoQueueHandoff:
    """Everything a reactor needs to run an I/O queue admitted by the main reactor."""

    token: int  # names the queue in every later message about it
    tgt: str
    subnqn: str
    cntlid: int
    hostnqn: str
    hostid: str  # hex
    qid: int
    sqsize: int
    sq_head: int
    listen: dict[str, str]
    codec: tcp.MovedState
    first_out: bytes  # the Connect response, written by the new reactor before anything else
    resv_active: bool = False

    def to_msg(self) -> Message:
        d = asdict(self)
        d["codec"]["unparsed"] = self.codec.unparsed.hex()
        d["first_out"] = self.first_out.hex()
        return {"op": "ioq_adopt", **d}

    @classmethod
    def from_msg(cls, m: Message) -> IoQueueHandoff:
        c = dict(m["codec"])
        c["unparsed"] = bytes.fromhex(c["unparsed"])
        return cls(m["token"], m["tgt"], m["subnqn"], m["cntlid"], m["hostnqn"], m["hostid"], m["qid"],
                   m["sqsize"], m["sq_head"], dict(m["listen"]), tcp.MovedState(**c),
                   bytes.fromhex(m["first_out"]), bool(m.get("resv_active", False)))


# --------------------------------------------------------------------------------------------
# Replicas: what a reactor needs of a subsystem to run its I/O queues
# --------------------------------------------------------------------------------------------


def replica_spec(tgt: Target, s: Subsystem) -> Message:
    """The parts of ``s`` (and the TCP transport) an I/O queue reads, as JSON values."""
    tr = tgt.transports.get("TCP")
    return {
        "transport": tr.opts.to_json() if tr is not None else {},
        "nqn": s.nqn, "serial_number": s.serial_number, "model_number": s.model_number,
        "max_namespaces": s.max_namespaces_set, "allow_any_host": s.allow_any_host,
        "ana_reporting": s.ana_reporting, "min_cntlid": s.min_cntlid, "max_cntlid": s.max_cntlid,
        "hosts": list(s.hosts),
        "namespaces": [{"nsid": n.nsid, "bdev_name": n.bdev_name, "uuid": n.uuid.hex(), "nguid": n.nguid.hex(),
                        "eui64": n.eui64.hex(), "anagrpid": n.anagrpid, "auto_visible": n.auto_visible,
                        "hosts": sorted(n.hosts)} for n in sorted(s.namespaces.values(), key=lambda n: n.nsid)],
        "listeners": [{"address": lst.address.to_json(), "default_state": int(lst.default_state),
                       "ana_states": {str(g): int(st) for g, st in sorted(lst.ana_states.items())},
                       "secure_channel": lst.secure_channel} for lst in s.listeners],
    }


def apply_replica(tgt: Target, sp: Message, open_backend: Callable[[str], NamespaceBackend]) -> Subsystem:
    """Create or update this reactor's replica of a subsystem from ``replica_spec``'s output.
    Nothing listens here: the listeners only answer ANA questions. Raises NvmfConfigError or
    the backend's error when a namespace's bdev cannot be opened here."""
    from spydk.nvmf.transport import TransportOptions
    from spydk.nvmf.transports.tcp import TcpTransport
    if "TCP" not in tgt.transports:
        tgt.add_transport(TcpTransport(tgt, TransportOptions(**sp["transport"])))
    s = tgt.subsystems.get(sp["nqn"])
    if s is None:
        s = Subsystem(sp["nqn"], serial_number=sp["serial_number"], model_number=sp["model_number"],
                      max_namespaces=sp["max_namespaces"], allow_any_host=sp["allow_any_host"],
                      ana_reporting=sp["ana_reporting"], min_cntlid=sp["min_cntlid"], max_cntlid=sp["max_cntlid"])
        tgt.add_subsystem(s)
    s.allow_any_host = sp["allow_any_host"]
    s.ana_reporting = sp["ana_reporting"]
    s.hosts = list(sp["hosts"])
    want = {n["nsid"]: n for n in sp["namespaces"]}
    for nsid in [k for k, ns in s.namespaces.items() if k not in want or ns.bdev_name != want[k]["bdev_name"]]:
        s.remove_namespace(nsid).backend.close()
    for nsid, n in want.items():
        ns = s.namespaces.get(nsid)
        if ns is None:
            ns = s.add_namespace(n["bdev_name"], open_backend(n["bdev_name"]), nsid=nsid,
                                 nguid=bytes.fromhex(n["nguid"]), eui64=bytes.fromhex(n["eui64"]),
                                 uuid=bytes.fromhex(n["uuid"]), anagrpid=n["anagrpid"],
                                 auto_visible=n["auto_visible"])
        ns.hosts = set(n["hosts"])
    s.masking = any(not n.auto_visible for n in s.namespaces.values())
    s.listeners = [Listener(ListenAddress(**lst["address"]),
                            {int(g): AnaState(v) for g, v in lst["ana_states"].items()},
                            AnaState(lst["default_state"]), lst["secure_channel"]) for lst in sp["listeners"]]
    return s


# --------------------------------------------------------------------------------------------
# Main reactor
# --------------------------------------------------------------------------------------------


def dup_socket(conn: TcpConnection) -> list[int] | None:
    """The connection's socket descriptor, duplicated (the mover owns the copy), or None."""
    t = conn.transport
    sock = t.get_extra_info("socket") if t is not None else None
    if sock is None:
        return None
    return [os.dup(sock.fileno())]


class RemoteQueue:
    """Owner of the placeholder queue pair of an I/O queue living on another reactor."""

    def __init__(self, spreader: Spreader, peer: int, token: int):
        self.spreader = spreader
        self.peer = peer
        self.token = token

    def send_completion(self, req: Request) -> None:
        """A command forwarded from that reactor completed here: send it back."""
        self.spreader.peers[self.peer].send({
            "op": "io_forward_done", "token": self.token, "cid": req.cid, "status": req.status,
            "dw0": req.dw0, "dw1": req.dw1,
            "data": bytes(req.data).hex() if req.xfer == 2 and req.data is not None else None,
            "resv_active": req.qpair.ctrlr.subsys.reservations_active if req.qpair.ctrlr else False})

    def disconnect(self, reason: str) -> None:
        sp = self.spreader
        ph = sp.remote.pop(self.token, None)
        if ph is None:
            return
        ph.ctrlr = None
        sp.peers[self.peer].send({"op": "ioq_disconnect", "token": self.token, "reason": reason})


class Spreader:
    """Main reactor side: places I/O queues on reactors and answers what their queues ask.

    ``peers[i]`` is the channel to reactor i+1; reactor 0 is this one. Messages from a peer
    come in through ``on_message(peer_index, msg)``."""

    def __init__(self, tgt: Target, peers: Sequence[Channel],
                 take_socket: Callable[[TcpConnection], list[int] | None] = dup_socket,
                 share_bdev: Callable[[str], tuple[Message, list[int]] | None] | None = None):
        self.tgt = tgt
        self.peers = list(peers)
        self.take_socket = take_socket
        # A bdev's memory for another process (descriptors the caller keeps), or None when the
        # other reactor opens the bdev by name itself.
        self.share_bdev = share_bdev
        self.sent_specs: dict[tuple[int, str], str] = {}  # (peer, nqn) -> replica last sent
        self.next = 0
        self.next_token = 1
        self.remote: dict[int, Qpair] = {}  # token -> placeholder in its controller's io_qpairs
        self.placed = [0] * (len(self.peers) + 1)  # I/O queues given to each reactor

    def place(self, conn: TcpConnection) -> bool:
        """``conn``'s I/O queue Connect just succeeded: keep it (False) or move it (True)."""
        n = len(self.peers) + 1
        i = self.next
        self.next = (i + 1) % n
        qp = conn.qp
        ctrlr = qp.ctrlr
        if i == 0 or ctrlr is None or conn.closing:
            self.placed[0] += 1
            return False
        try:
            st = conn.tq.export_state()
        except tcp.LocalProtocolError:  # mid-transfer (pipelined data): it stays here
            self.placed[0] += 1
            return False
        if qp.outstanding or conn.r2t_reqs or conn.buf_wait:
            self.placed[0] += 1
            return False
        fds = self.take_socket(conn)
        if fds is None:
            self.placed[0] += 1
            return False
        token = self.next_token
        self.next_token += 1
        subsys = ctrlr.subsys
        la = conn.listen_address
        ho = IoQueueHandoff(
            token, self.tgt.name, subsys.nqn, ctrlr.cntlid, ctrlr.hostnqn, ctrlr.hostid.hex(), qp.qid,
            qp.sqsize, qp.sq_head, {"trtype": la.trtype, "adrfam": la.adrfam, "traddr": la.traddr,
                                   "trsvcid": la.trsvcid},
            st, b"".join(bytes(b) for b in conn.out), subsys.reservations_active)
        ph = Qpair(RemoteQueue(self, i - 1, token), la, conn.peer)
        ph.qid = qp.qid
        ph.sqsize = qp.sqsize
        ph.ctrlr = ctrlr
        ph.hostnqn = qp.hostnqn
        ph.connected = True
        ph.state = "active"
        ctrlr.io_qpairs[qp.qid] = ph
        self.remote[token] = ph
        subsys.on_reservations_changed = self._resv_changed
        subsys.on_replica_changed = self._replica_changed
        self.tgt.io_qpairs -= 1  # counted by the reactor that runs it
        conn.moved()
        msg = ho.to_msg()
        self._add_replica(i - 1, subsys, msg, fds)
        self.peers[i - 1].send(msg, fds)  # closes the descriptors once passed
        self.placed[i] += 1
        return True

    def _add_replica(self, peer: int, subsys: Subsystem, msg: Message, fds: list[int],
                     force: bool = False) -> bool:
        """Put the subsystem's replica in ``msg`` unless ``peer`` has this one already."""
        sp = replica_spec(self.tgt, subsys)
        key = (peer, subsys.nqn)
        js = json.dumps(sp, sort_keys=True)
        if self.sent_specs.get(key) == js:
            return False
        self.sent_specs[key] = js
        bdevs = []
        if self.share_bdev is not None:
            for n in sp["namespaces"]:
                got = self.share_bdev(n["bdev_name"])
                if got is not None:
                    info, bfds = got
                    bdevs.append({**info, "fds": list(range(len(fds), len(fds) + len(bfds)))})
                    fds.extend(os.dup(fd) for fd in bfds)
        msg["replica"] = sp
        msg["bdevs"] = bdevs
        return True

    def _replica_changed(self, subsys: Subsystem) -> None:
        """A namespace or ANA state of ``subsys`` changed: reactors that hold a replica follow."""
        for peer, nqn in list(self.sent_specs):
            if nqn != subsys.nqn:
                continue
            if subsys.nqn not in self.tgt.subsystems:
                continue
            msg: Message = {"op": "replica"}
            fds: list[int] = []
            if self._add_replica(peer, subsys, msg, fds):
                self.peers[peer].send(msg, fds)

    def _resv_changed(self, subsys: Subsystem) -> None:
        msg = {"op": "resv_active", "subnqn": subsys.nqn, "active": subsys.reservations_active}
        for p in self.peers:
            p.send(msg)

    def on_message(self, peer: int, msg: Message) -> None:
        op = msg.get("op")
        if op == "ioq_closed":
            ph = self.remote.pop(msg["token"], None)
            if ph is None or ph.ctrlr is None:
                return
            ctrlr = ph.ctrlr
            ph.ctrlr = None
            if ctrlr.io_qpairs.get(ph.qid) is ph:
                del ctrlr.io_qpairs[ph.qid]
            ctrlr.reads += msg.get("reads", 0)
            ctrlr.writes += msg.get("writes", 0)
            ctrlr.read_units += msg.get("read_units", 0)
            ctrlr.write_units += msg.get("write_units", 0)
            for cid, status, nsid in msg.get("errors", ()):
                r = Request(ph, b"", cid, 0, 0, nsid, 0, 0)
                r.status = status
                ctrlr.record_error(r)
        elif op == "io_forward":
            ph = self.remote.get(msg["token"])
            if ph is None or ph.ctrlr is None:
                self.peers[peer].send({"op": "io_forward_done", "token": msg["token"], "cid": msg["cid"],
                                       "status": nvmf_io.ST_TRANSIENT_TRANSPORT, "dw0": 0, "dw1": 0,
                                       "data": None, "resv_active": False})
                return
            sqe = bytes.fromhex(msg["sqe"])
            opc, flags, cid, nsid = spec.SQE_HEAD.unpack_from(sqe, 0)
            data = bytes.fromhex(msg["data"]) if msg.get("data") is not None else None
            req = Request(ph, sqe, cid, opc, flags, nsid, msg["xfer"], msg["length"], data)
            ph.outstanding[cid] = req
            ph.ctrlr.exec_io(req)
        else:
            log.error("reactor %d sent an unknown NVMe-oF message %r; ignored", peer + 1, op)


# --------------------------------------------------------------------------------------------
# Worker reactor
# --------------------------------------------------------------------------------------------


class RemoteController:
    """The I/O context of a controller whose admin queue lives on the main reactor: what
    ``nvmf.io.exec_io`` and the transport's fast path read, over this reactor's replica of
    the subsystem. One per moved I/O queue."""

    def __init__(self, host: IoQueueHost, subsys: Subsystem, ho: IoQueueHandoff):
        self.host = host
        self.tgt = host.tgt
        self.subsys = subsys
        self.token = ho.token
        self.cntlid = ho.cntlid
        self.hostnqn = ho.hostnqn
        self.hostid = bytes.fromhex(ho.hostid)
        self.listen_address = ListenAddress(**ho.listen)
        self.dead = False
        self.reads = self.writes = self.read_units = self.write_units = 0
        self.errors: list[tuple[int, int, int]] = []  # (cid, status, nsid), sent with ioq_closed
        self.io_qpairs: dict[int, Qpair] = {}

    def ns(self, nsid: int) -> Namespace | None:
        ns = self.subsys.namespaces.get(nsid)
        if ns is not None and not ns.auto_visible and self.hostnqn not in ns.hosts:
            return None
        return ns

    def exec_io(self, req: Request) -> None:
        if req.opcode in resv.RESERVATION_OPCODES or self.subsys.reservations_active:
            self.host.forward(self, req)
        else:
            nvmf_io.exec_io(self, req)  # type: ignore[arg-type]

    def exec_admin(self, req: Request) -> None:  # never: an I/O queue has qid > 0
        req.fail(spec.GenericStatus.INVALID_OPCODE)

    def record_error(self, req: Request) -> None:
        if len(self.errors) < 128:  # the error log keeps 128 entries
            self.errors.append((req.cid, req.status, req.nsid))

    def qpair_gone(self, qp: Qpair) -> None:
        self.host.queue_gone(self)

    def destroy(self, reason: str) -> None:
        for qp in list(self.io_qpairs.values()):
            qp.owner.disconnect(reason)


class IoQueueHost:
    """Worker reactor side: runs the I/O queues the main reactor hands over.

    ``attach(conn, fds)`` gives the resumed connection its socket (default: asyncio's
    ``connect_accepted_socket``, then ``conn.resumed()``)."""

    def __init__(self, tgt: Target, to_main: Channel,
                 attach: Callable[[TcpConnection, Sequence[int]], None] | None = None,
                 open_backend: Callable[[str], NamespaceBackend] | None = None,
                 attach_bdev: Callable[[Message, list[int]], None] | None = None):
        self.tgt = tgt
        self.to_main = to_main
        self.attach = attach or attach_socket
        self.open_backend = open_backend or _bdev_backend
        # Makes a bdev shared by the main reactor usable here (its descriptors are the
        # callee's); None: bdevs are opened by name.
        self.attach_bdev = attach_bdev
        self.queues: dict[int, TcpConnection] = {}
        self.forwarded: dict[tuple[int, int], Request] = {}
        self.adopted = 0

    def on_message(self, msg: Message, fds: Sequence[int] = ()) -> None:
        op = msg.get("op")
        fds = list(fds)
        if "replica" in msg:
            err = self._replica(msg, fds)
            if err and op == "ioq_adopt":
                ho = IoQueueHandoff.from_msg(msg)
                log.error("I/O queue %d of controller %d of %s handed to this reactor: %s; closing it",
                          ho.qid, ho.cntlid, ho.subnqn, err)
                for fd in fds:
                    os.close(fd)
                self.to_main.send({"op": "ioq_closed", "token": ho.token})
                return
        if op == "ioq_adopt":
            self._adopt(IoQueueHandoff.from_msg(msg), fds)
            return
        for fd in fds:  # only ioq_adopt carries one
            os.close(fd)
        if op == "replica":
            pass
        elif op == "ioq_disconnect":
            conn = self.queues.get(msg["token"])
            if conn is not None:
                conn.disconnect(msg.get("reason", "controller state changed"))
        elif op == "resv_active":
            s = self.tgt.subsystems.get(msg["subnqn"])
            if s is not None:
                s.reservations_active = bool(msg["active"])
        elif op == "io_forward_done":
            req = self.forwarded.pop((msg["token"], msg["cid"]), None)
            if req is None:
                return
            if msg.get("data") is not None:
                req.data = bytes.fromhex(msg["data"])
            req.dw0 = msg["dw0"]
            req.dw1 = msg["dw1"]
            conn = self.queues.get(msg["token"])
            if conn is not None and conn.qp.ctrlr is not None:
                conn.qp.ctrlr.subsys.reservations_active = bool(msg.get("resv_active"))
            req.io_done(msg["status"])
        else:
            log.error("the main reactor sent an unknown NVMe-oF message %r; ignored", op)

    def _replica(self, msg: Message, fds: list[int]) -> str:
        """Apply a subsystem replica (and attach the bdevs it shares); takes the bdevs'
        descriptors out of ``fds``. Returns an error message, or ""."""
        from spydk.nvmf.subsystem import NvmfConfigError
        used: set[int] = set()
        err = ""
        for b in msg.get("bdevs", ()):
            mine = [fds[i] for i in b["fds"]]
            used.update(b["fds"])
            if self.attach_bdev is None:
                for fd in mine:
                    os.close(fd)
                continue
            try:
                self.attach_bdev(b, mine)
            except Exception as e:  # noqa: BLE001 - reported, the queue is refused
                err = err or f"bdev {b.get('name')} cannot be attached here: {e}"
        keep = [fd for i, fd in enumerate(fds) if i not in used]
        fds[:] = keep
        if err:
            return err
        try:
            apply_replica(self.tgt, msg["replica"], self.open_backend)
        except (NvmfConfigError, Exception) as e:  # noqa: BLE001 - the bdev layer's errors too
            return f"its subsystem cannot be replicated here: {e}"
        return ""

    def _adopt(self, ho: IoQueueHandoff, fds: Sequence[int]) -> None:
        from spydk.nvmf.transports.tcp import TcpConnection, TcpTransport
        tr = self.tgt.transports.get("TCP")
        subsys = self.tgt.subsystems.get(ho.subnqn)
        if not isinstance(tr, TcpTransport) or subsys is None:
            log.error("I/O queue %d of controller %d of %s handed to this reactor, which has no "
                      "%s: closing it", ho.qid, ho.cntlid, ho.subnqn,
                      "TCP transport" if tr is None else "replica of that subsystem")
            for fd in fds:
                os.close(fd)
            self.to_main.send({"op": "ioq_closed", "token": ho.token})
            return
        subsys.reservations_active = ho.resv_active
        rc = RemoteController(self, subsys, ho)
        conn = TcpConnection(tr, rc.listen_address, tq=tcp.TcpQueuePair.resume(ho.codec))
        qp = conn.qp
        qp.qid = ho.qid
        qp.sqsize = ho.sqsize
        qp.sq_head = ho.sq_head
        qp.hostnqn = ho.hostnqn
        qp.connected = True
        qp.state = "active"
        qp.ctrlr = rc  # type: ignore[assignment]
        rc.io_qpairs[ho.qid] = qp
        conn.max_inflight = ho.sqsize + 1
        conn.out.append(ho.first_out)
        self.queues[ho.token] = conn
        self.adopted += 1
        self.tgt.qpair_connected(qp)
        self.attach(conn, fds)

    def forward(self, rc: RemoteController, req: Request) -> None:
        """Run ``req`` on the main reactor, in the controller there."""
        self.forwarded[(rc.token, req.cid)] = req
        data = bytes(req.data).hex() if req.xfer == 1 and req.data is not None else None
        self.to_main.send({"op": "io_forward", "token": rc.token, "cid": req.cid, "sqe": bytes(req.sqe).hex(),
                           "xfer": req.xfer, "length": req.length, "data": data})

    def queue_gone(self, rc: RemoteController) -> None:
        if self.queues.pop(rc.token, None) is None:
            return
        rc.dead = True
        for key in [k for k in self.forwarded if k[0] == rc.token]:
            del self.forwarded[key]
        self.to_main.send({"op": "ioq_closed", "token": rc.token, "reads": rc.reads, "writes": rc.writes,
                           "read_units": rc.read_units, "write_units": rc.write_units,
                           "errors": rc.errors})


def _bdev_backend(name: str) -> NamespaceBackend:
    from spydk.nvmf.bdev_ns import BdevBackend
    return BdevBackend(name)


def attach_socket(conn: TcpConnection, fds: Sequence[int]) -> None:
    """Give a resumed connection its socket on this reactor's event loop."""
    sock = socket.socket(fileno=fds[0])
    for fd in fds[1:]:
        os.close(fd)
    loop = asyncio.get_running_loop()

    async def run() -> None:
        try:
            await loop.connect_accepted_socket(lambda: conn, sock=sock)
        except OSError as e:
            log.error("I/O queue handed to this reactor: its socket cannot be used (%s); closing it", e)
            sock.close()
            conn.connection_lost(e)
            return
        conn.resumed()

    loop.create_task(run())


@dataclass
class LocalLink:
    """Two reactors' channels in one process (tests): a message is delivered at the next loop
    iteration (or at ``pump()`` without a loop), descriptors duplicated as SCM_RIGHTS would."""

    deliver: Callable[[Message, Sequence[int]], None]
    queue: list[tuple[Message, list[int]]] = field(default_factory=list)
    sent: int = 0

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None:
        self.sent += 1
        self.queue.append((msg, list(fds)))  # the receiver gets them as SCM_RIGHTS would
        try:
            asyncio.get_running_loop().call_soon(self.pump)
        except RuntimeError:
            pass

    def pump(self) -> int:
        n = 0
        while self.queue:
            msg, fds = self.queue.pop(0)
            self.deliver(msg, fds)
            n += 1
        return n
