"""The NVMe-oF target: transports, subsystems, referrals and the discovery generation counter.

The default Target (``get_target``, named nvmf_tgt) is created by the "nvmf" subsystem at
start-up; nvmf_create_target adds more (each with its own transports, listeners and
subsystems), which every nvmf RPC selects with ``tgt_name``.
Configuration methods raise NvmfConfigError; the RPC layer turns that into JSON-RPC errors.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spydk.log import get_logger
from spydk.nvme import tls_psk
from spydk.nvme.spec import AnaState
from spydk.nvme.tls_psk import TlsKey
from spydk.nvmf import discovery
from spydk.nvmf.discovery import Referral
from spydk.nvmf.subsystem import (
    DISCOVERY_NQN,
    ListenAddress,
    Listener,
    NvmfConfigError,
    Subsystem,
)
from spydk.nvmf.transport import Transport, TransportOptions

if TYPE_CHECKING:
    from spydk.nvmf.request import Qpair
    from spydk.thread import Poller, Thread

log = get_logger("nvmf")

DEFAULT_MAX_SUBSYSTEMS = 1024
KEEP_ALIVE_POLL_US = 100_000


class Target:
    def __init__(self, name: str = "nvmf_tgt", *, max_subsystems: int = DEFAULT_MAX_SUBSYSTEMS,
                 clock: Callable[[], int] = time.monotonic_ns):
        self.name = name
        self.clock = clock
        self.max_subsystems = max_subsystems
        self.transports: dict[str, Transport] = {}
        self.subsystems: dict[str, Subsystem] = {}
        self.referrals: list[Referral] = []
        self.generation = 0
        self.discovery_filters: tuple[str, ...] = ("match_any",)
        self.admin_cmd_passthru: dict[str, bool] = {"identify_ctrlr": False}
        self.crdt: tuple[int, int, int] = (0, 0, 0)  # nvmf_set_crdt: retry delays in Identify
        # DH-HMAC-CHAP: what nvmf_set_config allows the exchange to choose from
        self.dhchap_digests: tuple[str, ...] = ("sha256", "sha384", "sha512")
        self.dhchap_dhgroups: tuple[str, ...] = ("null", "ffdhe2048", "ffdhe3072", "ffdhe4096",
                                                 "ffdhe6144", "ffdhe8192")
        self.thread: Thread | None = None
        self._ka_poller: Poller | None = None
        self._port_ids: dict[tuple[str, str], int] = {}
        # nvmf_get_stats counters
        self.admin_qpairs = 0
        self.io_qpairs = 0
        self.live_qpairs: set[Qpair] = set()
        self.pending_bdev_io = 0
        self.completed_nvme_io = 0
        self.subsystems[DISCOVERY_NQN] = Subsystem(DISCOVERY_NQN, allow_any_host=True, discovery=True)

    # -- threads and pollers -------------------------------------------------------------------

    def start(self, thread: Thread) -> None:
        """Run the target's pollers on ``thread`` (the app thread)."""
        self.thread = thread
        self._ka_poller = thread.poller_register(self._keep_alive_poll, None, KEEP_ALIVE_POLL_US,
                                                 "nvmf_keep_alive")

    def _keep_alive_poll(self, _arg: Any) -> int:
        return self.check_keep_alive(self.clock())

    def check_keep_alive(self, now_ns: int) -> int:
        """Free every controller whose keep-alive timer ran out; returns how many."""
        n = 0
        for s in list(self.subsystems.values()):
            for c in list(s.controllers.values()):
                if c.keep_alive_expired(now_ns):
                    log.error("keep-alive timeout (%d ms) of controller %d of %s, host %s: "
                              "freeing it and its queue pairs", c.kato_ms, c.cntlid, s.nqn, c.hostnqn)
                    c.destroy("keep-alive timeout")
                    n += 1
        return n

    async def shutdown(self) -> None:
        if self._ka_poller is not None:
            self._ka_poller.unregister()
            self._ka_poller = None
        for s in self.subsystems.values():
            for c in list(s.controllers.values()):
                c.destroy("target shutting down")
        # Channels are released here, before any await, while this is the app thread.
        for s in self.subsystems.values():
            for ns in s.namespaces.values():
                ns.backend.close()
        for t in list(self.transports.values()):
            await t.close()
        self.transports.clear()

    # -- transports -----------------------------------------------------------------------------

    def add_transport(self, transport: Transport) -> None:
        if transport.trtype in self.transports:
            raise NvmfConfigError(f"transport {transport.trtype} already exists", 17)
        self.transports[transport.trtype] = transport

    def transport_opts(self) -> TransportOptions:
        t = self.transports.get("TCP")
        return t.opts if t is not None else TransportOptions()

    # -- subsystems -----------------------------------------------------------------------------

    def add_subsystem(self, subsys: Subsystem) -> Subsystem:
        if subsys.nqn in self.subsystems:
            raise NvmfConfigError(f"subsystem {subsys.nqn} already exists", 17)
        if len(self.subsystems) >= self.max_subsystems:
            raise NvmfConfigError(f"the target already has max_subsystems ({self.max_subsystems}) "
                                  "subsystems; raise it with nvmf_set_max_subsystems", 28)
        self.subsystems[subsys.nqn] = subsys
        self.bump_generation()
        return subsys

    def get_subsystem(self, nqn: str) -> Subsystem:
        s = self.subsystems.get(nqn)
        if s is None:
            raise NvmfConfigError(f"subsystem {nqn} does not exist", 19)
        return s

    async def remove_subsystem(self, nqn: str) -> None:
        if nqn == DISCOVERY_NQN:
            raise NvmfConfigError("the discovery subsystem cannot be deleted", 1)
        s = self.get_subsystem(nqn)
        for c in list(s.controllers.values()):
            c.destroy(f"subsystem {nqn} deleted")
        del self.subsystems[nqn]
        for lst in list(s.listeners):
            await self._release_listen(lst.address)
        for ns in s.namespaces.values():
            ns.backend.close()
        self.bump_generation()

    # -- listeners ------------------------------------------------------------------------------

    def _transport_for(self, addr: ListenAddress) -> Transport:
        t = self.transports.get(addr.trtype)
        if t is None:
            raise NvmfConfigError(f"transport {addr.trtype} does not exist; create it with "
                                  f"nvmf_create_transport -t {addr.trtype}", 22)
        return t

    async def add_listener(self, subsys: Subsystem, addr: ListenAddress, *,
                           ana_state: AnaState = AnaState.OPTIMIZED,
                           secure_channel: bool = False) -> Listener:
        if subsys.find_listener(addr) is not None:
            raise NvmfConfigError(f"{subsys.nqn} already listens on {addr}", 17)
        t = self._transport_for(addr)
        if secure_channel and addr.trtype.upper() != "TCP":
            raise NvmfConfigError(f"a secure channel (TLS) needs a TCP listener, not {addr.trtype}")
        for other in self.subsystems.values():
            o = other.find_listener(addr)
            if o is not None and o.secure_channel != secure_channel:
                raise NvmfConfigError(
                    f"{addr} already serves {other.nqn} {'with' if o.secure_channel else 'without'} a "
                    f"secure channel; one address is either TLS or plain text: use another port", 17)
        if addr not in t.listening():
            await t.listen(addr)
        lst = Listener(addr, default_state=ana_state, secure_channel=secure_channel)
        subsys.listeners.append(lst)
        self.bump_generation()
        return lst

    def secure_address(self, addr: ListenAddress) -> bool:
        """Does a connection to ``addr`` start with a TLS handshake?"""
        for s in self.subsystems.values():
            lst = s.find_listener(addr)
            if lst is not None:
                return lst.secure_channel
        return False

    def tls_key(self, addr: ListenAddress, identity: bytes) -> tuple[TlsKey, str, str] | None:
        """The TLS PSK (and host, subsystem NQNs) a TLS PSK identity stands for on ``addr``."""
        parsed = tls_psk.parse_identity(identity)
        if parsed is None:
            log.error("TLS PSK identity %r on %s is not an NVMe retained-PSK identity", identity[:300], addr)
            return None
        suite, hostnqn, subnqn = parsed
        s = self.subsystems.get(subnqn)
        lst = s.find_listener(addr) if s is not None else None
        if s is None or lst is None or not lst.secure_channel:
            log.error("TLS from host %s: subsystem %s has no secure-channel listener on %s",
                      hostnqn, subnqn, addr)
            return None
        hp = s.host_psks.get(hostnqn)
        if hp is None:
            log.error("TLS from host %s to %s: the host has no PSK (nvmf_subsystem_add_host --psk)",
                      hostnqn, subnqn)
            return None
        if hp.psk.suite is not suite:
            log.error("TLS from host %s to %s: the host offers %s, its PSK is for %s", hostnqn, subnqn,
                      suite.name, hp.psk.suite.name)
            return None
        return tls_psk.derive(hp.psk, hostnqn, subnqn), hostnqn, subnqn

    async def remove_listener(self, subsys: Subsystem, addr: ListenAddress) -> None:
        lst = subsys.find_listener(addr)
        if lst is None:
            raise NvmfConfigError(f"{subsys.nqn} does not listen on {addr}", 2)
        subsys.listeners.remove(lst)
        for c in list(subsys.controllers.values()):
            if c.listen_address == addr:
                c.destroy(f"listener {addr} removed from {subsys.nqn}")
        await self._release_listen(addr)
        self.bump_generation()

    async def _release_listen(self, addr: ListenAddress) -> None:
        if any(s.find_listener(addr) for s in self.subsystems.values()):
            return
        t = self.transports.get(addr.trtype)
        if t is not None and addr in t.listening():
            await t.stop_listen(addr)

    def port_id(self, addr: ListenAddress) -> int:
        key = (addr.traddr, addr.trsvcid)
        pid = self._port_ids.get(key)
        if pid is None:
            pid = self._port_ids[key] = len(self._port_ids)
        return pid

    # -- discovery ------------------------------------------------------------------------------

    def bump_generation(self) -> None:
        """The discovery log changed: new generation, and tell discovery controllers."""
        self.generation += 1
        d = self.subsystems.get(DISCOVERY_NQN)
        if d is not None:
            for c in list(d.controllers.values()):
                c.discovery_changed()

    def discovery_log(self, hostnqn: str, via: ListenAddress | None) -> bytes:
        return discovery.build_log(self, hostnqn, via)

    def add_referral(self, ref: Referral) -> None:
        if any(r.address == ref.address and r.subnqn == ref.subnqn for r in self.referrals):
            raise NvmfConfigError(f"referral to {ref.address} ({ref.subnqn}) already exists", 17)
        self.referrals.append(ref)
        self.bump_generation()

    def remove_referral(self, addr: ListenAddress, subnqn: str | None) -> None:
        for r in self.referrals:
            if r.address == addr and (subnqn is None or r.subnqn == subnqn):
                self.referrals.remove(r)
                self.bump_generation()
                return
        raise NvmfConfigError(f"no referral to {addr}", 2)

    # -- queue pair accounting ------------------------------------------------------------------

    def qpair_connected(self, qp: Qpair) -> None:
        if qp.qid == 0:
            self.admin_qpairs += 1
        else:
            self.io_qpairs += 1

    def qpair_opened(self, qp: Qpair) -> None:
        self.live_qpairs.add(qp)

    def qpair_closed(self, qp: Qpair) -> None:
        """The transport connection of ``qp`` is gone: detach it from its controller."""
        self.live_qpairs.discard(qp)
        qp.state = "deleting"
        if qp.ctrlr is not None:
            qp.ctrlr.qpair_gone(qp)
            qp.ctrlr = None
        elif qp.auth is not None and qp.qid == 0:
            qp.auth.ctrlr.destroy("admin queue closed before the host authenticated")
        qp.outstanding.clear()
        qp.fused_first = None

    def stats(self) -> dict[str, Any]:
        cur_admin = sum(1 for q in self.live_qpairs if q.qid == 0)
        cur_io = sum(1 for q in self.live_qpairs if q.qid > 0)
        return {
            "name": "nvmf_tgt_poll_group_000",
            "admin_qpairs": self.admin_qpairs,
            "io_qpairs": self.io_qpairs,
            "current_admin_qpairs": cur_admin,
            "current_io_qpairs": cur_io,
            "pending_bdev_io": self.pending_bdev_io,
            "completed_nvme_io": self.completed_nvme_io,
            "transports": [t.stats() for t in self.transports.values()],
        }


DEFAULT_TARGET = "nvmf_tgt"
_target: Target | None = None  # the default target, made by the "nvmf" subsystem
_others: dict[str, Target] = {}  # made with nvmf_create_target
_app_thread: Thread | None = None


def get_target() -> Target:
    """The default target (``nvmf_tgt``)."""
    global _target
    if _target is None:
        _target = Target(DEFAULT_TARGET)
    return _target


def set_target(tgt: Target | None) -> None:
    global _target
    _target = tgt
    if tgt is None:
        _others.clear()


def set_app_thread(thread: Thread | None) -> None:
    """Where targets made at run time run their pollers."""
    global _app_thread
    _app_thread = thread


def find_target(name: str | None) -> Target | None:
    """The target called ``name`` (None: the default one)."""
    t = get_target()
    if name is None or name == t.name:
        return t
    return _others.get(name)


def targets() -> list[Target]:
    return [get_target(), *_others.values()]


def create_target(name: str, *, max_subsystems: int = DEFAULT_MAX_SUBSYSTEMS) -> Target:
    if not name:
        raise NvmfConfigError("a target needs a name")
    if find_target(name) is not None:
        raise NvmfConfigError(f"target {name!r} already exists", 17)
    t = _others[name] = Target(name, max_subsystems=max_subsystems or DEFAULT_MAX_SUBSYSTEMS)
    if _app_thread is not None:
        t.start(_app_thread)
    return t


async def delete_target(name: str) -> None:
    if name == get_target().name:
        raise NvmfConfigError(f"the default target {name!r} cannot be deleted (it lives as long as the app)", 1)
    t = _others.pop(name, None)
    if t is None:
        raise NvmfConfigError(f"target {name!r} does not exist", 19)
    await t.shutdown()


async def shutdown_all() -> None:
    for t in list(_others.values()):
        await t.shutdown()
    _others.clear()
