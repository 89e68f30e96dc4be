"""NVM subsystems: namespaces, allowed hosts, listeners and their ANA states.

A Subsystem is pure configuration plus the list of live controllers; the target
(tgt.py) owns the subsystems and the controllers (ctrlr.py) reference them.
Configuration errors raise NvmfConfigError with a message naming the bad value.
"""
from __future__ import annotations

import os
import re
import stat
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spydk import keyring
from spydk.nvme import tls_psk
from spydk.nvme.auth import dhchap
from spydk.nvme.spec import AnaState
from spydk.nvmf.reservation import NsReservation, PtplError

if TYPE_CHECKING:
    from spydk.nvmf.ctrlr import Controller
    from spydk.nvmf.io import NamespaceBackend

DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
NQN_MAX_LEN = 223
UUID_NQN_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"
DEFAULT_SERIAL = "00000000000000000000"
DEFAULT_MODEL = "SPDK bdev Controller"
DEFAULT_MAX_NAMESPACES = 32
MIN_CNTLID = 1
MAX_CNTLID = 0xFFEF

ANA_STATE_NAMES = {
    AnaState.OPTIMIZED: "optimized",
    AnaState.NON_OPTIMIZED: "non_optimized",
    AnaState.INACCESSIBLE: "inaccessible",
    AnaState.PERSISTENT_LOSS: "persistent_loss",
    AnaState.CHANGE: "change",
}
ANA_STATE_BY_NAME = {v: k for k, v in ANA_STATE_NAMES.items()}


class NvmfConfigError(ValueError):
    """A configuration request that cannot be honoured (bad NQN, duplicate nsid, ...)."""

    def __init__(self, message: str, errno_: int = 22):
        super().__init__(message)
        self.errno = errno_


_DATE_RE = re.compile(r"^nqn\.(\d{4})-(\d{2})\.([^:]+)(:.*)?$")
_LABEL_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?$")


def validate_nqn(nqn: str) -> None:
    """Raise NvmfConfigError saying what is wrong with ``nqn`` (NVMe base spec 4.5 naming)."""
    raw = nqn.encode()
    if len(raw) > NQN_MAX_LEN:
        raise NvmfConfigError(f"NQN is {len(raw)} bytes long, the maximum is {NQN_MAX_LEN}: {nqn!r}")
    if nqn == DISCOVERY_NQN:
        return
    if nqn.startswith(UUID_NQN_PREFIX):
        tail = nqn[len(UUID_NQN_PREFIX):]
        try:
            ok = len(tail) == 36 and str(_uuid.UUID(tail)) == tail.lower()
        except ValueError:
            ok = False
        if not ok:
            raise NvmfConfigError(f"NQN {nqn!r}: a UUID NQN must end in a 36-character UUID "
                                  f"(e.g. {UUID_NQN_PREFIX}{_uuid.UUID(int=0)})")
        return
    if not nqn.startswith("nqn."):
        raise NvmfConfigError(f"NQN {nqn!r} must start with 'nqn.' "
                              "(format nqn.yyyy-mm.reverse.domain:name)")
    m = _DATE_RE.match(nqn)
    if m is None:
        raise NvmfConfigError(f"NQN {nqn!r}: expected nqn.yyyy-mm.<reverse domain>[:<name>] "
                              "with a 4-digit year and a 2-digit month")
    month = int(m.group(2))
    if not 1 <= month <= 12:
        raise NvmfConfigError(f"NQN {nqn!r}: month {m.group(2)} is not 01..12")
    for label in m.group(3).split("."):
        if not _LABEL_RE.match(label):
            raise NvmfConfigError(f"NQN {nqn!r}: domain label {label!r} is invalid (letters, "
                                  "digits and inner hyphens, starting with a letter)")
    if m.group(4) is not None and len(m.group(4)) < 2:
        raise NvmfConfigError(f"NQN {nqn!r}: the name after ':' is empty")


def parse_hex_id(text: str, nbytes: int, what: str) -> bytes:
    """NGUID (16 bytes) / EUI-64 (8 bytes) from hex, dashes allowed as in SPDK's RPC."""
    h = text.replace("-", "")
    if len(h) != 2 * nbytes:
        raise NvmfConfigError(f"{what} must be {2 * nbytes} hex digits, got {text!r}")
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise NvmfConfigError(f"{what} is not hexadecimal: {text!r}") from None


def format_hex_id(raw: bytes) -> str:
    return raw.hex().upper()


@dataclass(frozen=True)
class ListenAddress:
    """A transport address; trsvcid is a string as on the wire and in SPDK's RPC."""

    trtype: str
    traddr: str
    trsvcid: str
    adrfam: str = "IPv4"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ListenAddress:
        trtype = str(d.get("trtype", "")).upper()
        if trtype != "TCP":
            raise NvmfConfigError(f"listen_address.trtype {d.get('trtype')!r} is not supported "
                                  "(only TCP)")
        traddr = str(d.get("traddr", ""))
        if not traddr:
            raise NvmfConfigError("listen_address.traddr is required")
        adrfam = d.get("adrfam")
        if adrfam is None:
            adrfam = "IPv6" if ":" in traddr else "IPv4"
        fams = {"ipv4": "IPv4", "ipv6": "IPv6"}
        if str(adrfam).lower() not in fams:
            raise NvmfConfigError(f"listen_address.adrfam {adrfam!r} must be IPv4 or IPv6")
        adrfam = fams[str(adrfam).lower()]
        svc = d.get("trsvcid")
        if svc is None or svc == "":
            svc = "4420"
        try:
            port = int(svc)
        except ValueError:
            raise NvmfConfigError(f"listen_address.trsvcid {svc!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise NvmfConfigError(f"listen_address.trsvcid {svc!r} is out of range")
        return cls("TCP", traddr, str(port), adrfam)

    def to_json(self) -> dict[str, str]:
        return {"trtype": self.trtype, "adrfam": self.adrfam, "traddr": self.traddr,
                "trsvcid": self.trsvcid}

    def __str__(self) -> str:
        host = f"[{self.traddr}]" if self.adrfam == "IPv6" else self.traddr
        return f"{self.trtype} {host}:{self.trsvcid}"


@dataclass
class Listener:
    address: ListenAddress
    ana_states: dict[int, AnaState] = field(default_factory=dict)  # anagrpid -> state
    default_state: AnaState = AnaState.OPTIMIZED
    secure_channel: bool = False

    def ana_state(self, anagrpid: int) -> AnaState:
        return self.ana_states.get(anagrpid, self.default_state)


@dataclass
class Namespace:
    nsid: int
    bdev_name: str
    backend: NamespaceBackend
    nguid: bytes = bytes(16)
    eui64: bytes = bytes(8)
    uuid: bytes = bytes(16)
    anagrpid: int = 0
    nguid_given: bool = False
    resv: NsReservation = field(default_factory=NsReservation)
    auto_visible: bool = True  # False (no_auto_visible): only the hosts in ``hosts`` see it
    hosts: set[str] = field(default_factory=set)

    def visible_to(self, hostnqn: str) -> bool:
        return self.auto_visible or hostnqn in self.hosts

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nsid": self.nsid, "bdev_name": self.bdev_name, "name": self.bdev_name}
        if any(self.nguid):
            out["nguid"] = format_hex_id(self.nguid)
        if any(self.eui64):
            out["eui64"] = format_hex_id(self.eui64)
        if any(self.uuid):
            out["uuid"] = str(_uuid.UUID(bytes=self.uuid))
        out["anagrpid"] = self.anagrpid
        if not self.auto_visible:
            out["no_auto_visible"] = True
            out["hosts"] = [{"nqn": h} for h in sorted(self.hosts)]
        return out


NsChangeCb = Callable[["Subsystem", int], None]


def _secret_key(name: str, param: str) -> keyring.Key:
    """A keyring reference to a DH-HMAC-CHAP secret, checked to be one."""
    try:
        key = keyring.get_key(name)
    except keyring.KeyringError as e:
        raise NvmfConfigError(f"{param}: {e}", e.errno) from None
    try:
        dhchap.parse_secret(keyring.key_material(key))
    except (keyring.KeyringError, dhchap.SecretError) as e:
        keyring.put_key(key)
        raise NvmfConfigError(f"{param}: key {name!r}: {e}") from None
    return key


@dataclass(repr=False)
class HostPsk:
    """The TLS PSK of one allowed host: a keyring key or (as SPDK v24.01 also takes) a file path."""

    name: str
    psk: tls_psk.ConfiguredPsk
    key: keyring.Key | None = None  # the keyring reference, when it is one

    def release(self) -> None:
        keyring.put_key(self.key)
        self.key = None

    def __repr__(self) -> str:
        return f"HostPsk({self.name!r})"


def load_psk(name: str) -> HostPsk:
    """Read and check a PSK named in nvmf_subsystem_add_host: a keyring key, else a file path."""
    try:
        key: keyring.Key | None = keyring.get_key(name)
    except keyring.KeyringError:
        key = None
    if key is not None:
        try:
            return HostPsk(name, tls_psk.parse_interchange(keyring.key_material(key)), key)
        except (keyring.KeyringError, tls_psk.PskError) as e:
            keyring.put_key(key)
            raise NvmfConfigError(f"psk: key {name!r}: {e}") from None
    if not os.path.isabs(name):
        raise NvmfConfigError(f"psk: {name!r} is neither a keyring key (add it with keyring_file_add_key) "
                              "nor an absolute path to a PSK file", 126)
    try:
        st = os.stat(name)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise NvmfConfigError(f"psk: file {name} is accessible by others (mode "
                                  f"{stat.S_IMODE(st.st_mode):o}); chmod 0600 it", 1)
        with open(name, "rb") as f:
            text = f.read(tls_psk.MAX_INTERCHANGE + 2)
    except OSError as e:
        raise NvmfConfigError(f"psk: cannot read {name}: {e.strerror}", e.errno or 5) from None
    try:
        return HostPsk(name, tls_psk.parse_interchange(text))
    except tls_psk.PskError as e:
        raise NvmfConfigError(f"psk: file {name}: {e}") from None


@dataclass
class HostKeys:
    """The DH-HMAC-CHAP keys of one allowed host (keyring references)."""

    dhchap_key: keyring.Key | None = None
    dhchap_ctrlr_key: keyring.Key | None = None

    def release(self) -> None:
        keyring.put_key(self.dhchap_key)
        keyring.put_key(self.dhchap_ctrlr_key)
        self.dhchap_key = self.dhchap_ctrlr_key = None

    def names(self) -> dict[str, str]:
        d = {}
        if self.dhchap_key is not None:
            d["dhchap_key"] = self.dhchap_key.name
        if self.dhchap_ctrlr_key is not None:
            d["dhchap_ctrlr_key"] = self.dhchap_ctrlr_key.name
        return d

    def secrets(self) -> tuple[dhchap.Secret, dhchap.Secret | None]:
        """Read the secrets now (a rotated key file counts from the next Connect)."""
        assert self.dhchap_key is not None
        host = dhchap.parse_secret(keyring.key_material(self.dhchap_key))
        ctrl = None
        if self.dhchap_ctrlr_key is not None:
            ctrl = dhchap.parse_secret(keyring.key_material(self.dhchap_ctrlr_key))
        return host, ctrl


class Subsystem:
    def __init__(self, nqn: str, *, serial_number: str = DEFAULT_SERIAL,
                 model_number: str = DEFAULT_MODEL, max_namespaces: int = 0,
                 allow_any_host: bool = False, ana_reporting: bool = False,
                 min_cntlid: int = MIN_CNTLID, max_cntlid: int = MAX_CNTLID, discovery: bool = False):
        validate_nqn(nqn)
        if not serial_number.isascii() or not 0 < len(serial_number) <= 20 \
                or not serial_number.isprintable():
            raise NvmfConfigError(f"serial_number must be 1..20 printable ASCII characters: {serial_number!r}")
        if not model_number.isascii() or not 0 < len(model_number) <= 40 \
                or not model_number.isprintable():
            raise NvmfConfigError(f"model_number must be 1..40 printable ASCII characters: {model_number!r}")
        if not MIN_CNTLID <= min_cntlid <= max_cntlid <= MAX_CNTLID:
            raise NvmfConfigError(f"min_cntlid/max_cntlid must satisfy {MIN_CNTLID} <= min_cntlid <= "
                                  f"max_cntlid <= {MAX_CNTLID}; got {min_cntlid}/{max_cntlid}")
        self.nqn = nqn
        self.discovery = discovery
        self.serial_number = serial_number
        self.model_number = model_number
        self.max_namespaces_set = max_namespaces
        self.max_namespaces = max_namespaces or DEFAULT_MAX_NAMESPACES
        self.allow_any_host = allow_any_host
        self.ana_reporting = ana_reporting
        self.min_cntlid = min_cntlid
        self.max_cntlid = max_cntlid
        self.hosts: list[str] = []
        self.host_keys: dict[str, HostKeys] = {}  # DH-HMAC-CHAP keys of allowed hosts
        self.host_psks: dict[str, HostPsk] = {}  # TLS PSKs of allowed hosts (secure channel)
        self.namespaces: dict[int, Namespace] = {}
        self.listeners: list[Listener] = []
        self.controllers: dict[int, Controller] = {}
        self._next_cntlid = min_cntlid
        self.ns_change_listeners: list[NsChangeCb] = []
        self.ana_change_count = 0
        # True while any namespace has a registrant: I/O then takes the checked path.
        self.reservations_active = False
        self.on_reservations_changed: Callable[[Subsystem], None] | None = None
        # Called after a namespace, its hosts or an ANA state changed: replicas on other
        # reactors follow (spread.py).
        self.on_replica_changed: Callable[[Subsystem], None] | None = None
        # True while a namespace is hidden from some hosts: I/O then takes the checked path.
        self.masking = False

    # -- hosts --------------------------------------------------------------------------------

    def host_allowed(self, hostnqn: str) -> bool:
        return self.allow_any_host or hostnqn in self.hosts

    def set_host_keys(self, hostnqn: str, dhchap_key: str | None, dhchap_ctrlr_key: str | None) -> None:
        """Require DH-HMAC-CHAP from an allowed host (keys named in the keyring); None, None drops it.

        The key files are read here once, so that a key that is not a DHHC-1 secret is refused
        now rather than at the host's next Connect; they are read again at every Connect.
        """
        if hostnqn not in self.hosts:
            raise NvmfConfigError(f"host {hostnqn} is not in the allowed hosts of {self.nqn}; add it "
                                  "with nvmf_subsystem_add_host first", 2)
        if dhchap_ctrlr_key is not None and dhchap_key is None:
            raise NvmfConfigError("dhchap_ctrlr_key needs dhchap_key as well (the controller is "
                                  "authenticated only after the host)")
        new = HostKeys()
        try:
            if dhchap_key is not None:
                new.dhchap_key = _secret_key(dhchap_key, "dhchap_key")
            if dhchap_ctrlr_key is not None:
                new.dhchap_ctrlr_key = _secret_key(dhchap_ctrlr_key, "dhchap_ctrlr_key")
        except NvmfConfigError:
            new.release()
            raise
        old = self.host_keys.pop(hostnqn, None)
        if old is not None:
            old.release()
        if new.dhchap_key is not None:
            self.host_keys[hostnqn] = new

    def set_host_psk(self, hostnqn: str, psk: HostPsk | None) -> None:
        old = self.host_psks.pop(hostnqn, None)
        if old is not None:
            old.release()
        if psk is not None:
            self.host_psks[hostnqn] = psk

    def add_host(self, hostnqn: str) -> None:
        validate_nqn(hostnqn)
        if hostnqn in self.hosts:
            raise NvmfConfigError(f"host {hostnqn} is already allowed on {self.nqn}", 17)
        self.hosts.append(hostnqn)

    def remove_host(self, hostnqn: str) -> list[Controller]:
        """Forget the host; returns its controllers (the caller disconnects them)."""
        if hostnqn not in self.hosts:
            raise NvmfConfigError(f"host {hostnqn} is not in the allowed hosts of {self.nqn}", 2)
        self.hosts.remove(hostnqn)
        old = self.host_keys.pop(hostnqn, None)
        if old is not None:
            old.release()
        self.set_host_psk(hostnqn, None)
        return [c for c in self.controllers.values() if c.hostnqn == hostnqn]

    # -- namespaces ---------------------------------------------------------------------------

    def add_namespace(self, bdev_name: str, backend: NamespaceBackend, *, nsid: int = 0,
                      nguid: bytes | None = None, eui64: bytes | None = None,
                      uuid: bytes | None = None, anagrpid: int = 0,
                      ptpl_file: str | None = None, auto_visible: bool = True) -> Namespace:
        if self.discovery:
            raise NvmfConfigError("the discovery subsystem has no namespaces")
        if nsid == 0:
            nsid = next((i for i in range(1, self.max_namespaces + 1) if i not in self.namespaces), 0)
            if nsid == 0:
                raise NvmfConfigError(f"{self.nqn} is full: max_namespaces is {self.max_namespaces}", 28)
        elif not 1 <= nsid <= self.max_namespaces:
            raise NvmfConfigError(f"nsid {nsid} is out of range 1..{self.max_namespaces} "
                                  f"(max_namespaces of {self.nqn})")
        if nsid in self.namespaces:
            raise NvmfConfigError(f"nsid {nsid} is already in use in {self.nqn} "
                                  f"(by bdev {self.namespaces[nsid].bdev_name})", 17)
        for ns in self.namespaces.values():
            if ns.bdev_name == bdev_name:
                raise NvmfConfigError(f"bdev {bdev_name} is already namespace {ns.nsid} of {self.nqn}", 17)
        if anagrpid and not 1 <= anagrpid <= self.max_namespaces:
            raise NvmfConfigError(f"anagrpid {anagrpid} is out of range 1..{self.max_namespaces}")
        u = uuid if uuid is not None else bytes(getattr(backend, "uuid", bytes(16)))
        resv = NsReservation(ptpl_file, str(_uuid.UUID(bytes=bytes(getattr(backend, "uuid", bytes(16))))))
        try:
            resv.load()
        except PtplError as e:
            raise NvmfConfigError(f"{e}; move the file away to start without reservations") from None
        ns = Namespace(nsid, bdev_name, backend, nguid=nguid if nguid is not None else u,
                       eui64=eui64 or bytes(8), uuid=u, anagrpid=anagrpid or nsid,
                       nguid_given=nguid is not None, resv=resv, auto_visible=auto_visible)
        self.namespaces[nsid] = ns
        self.masking = any(not n.auto_visible for n in self.namespaces.values())
        self.reservations_changed()
        self._ns_changed(nsid)
        return ns

    def remove_namespace(self, nsid: int) -> Namespace:
        ns = self.namespaces.pop(nsid, None)
        if ns is None:
            raise NvmfConfigError(f"{self.nqn} has no namespace {nsid}", 2)
        self.masking = any(not n.auto_visible for n in self.namespaces.values())
        self.reservations_changed()
        self._ns_changed(nsid)
        return ns

    def reservations_changed(self) -> None:
        was = self.reservations_active
        self.reservations_active = any(ns.resv.active for ns in self.namespaces.values())
        if was != self.reservations_active and self.on_reservations_changed is not None:
            self.on_reservations_changed(self)  # other reactors' I/O queues must know (spread.py)

    def ns_add_host(self, nsid: int, hostnqn: str) -> None:
        """Make a namespace added with no_auto_visible visible to one more host."""
        ns = self._masked_ns(nsid)
        validate_nqn(hostnqn)
        if hostnqn in ns.hosts:
            raise NvmfConfigError(f"namespace {nsid} of {self.nqn} is already visible to {hostnqn}", 17)
        ns.hosts.add(hostnqn)
        self._ns_changed(nsid, hostnqn)

    def ns_remove_host(self, nsid: int, hostnqn: str) -> None:
        ns = self._masked_ns(nsid)
        if hostnqn not in ns.hosts:
            raise NvmfConfigError(f"namespace {nsid} of {self.nqn} is not visible to {hostnqn}", 2)
        ns.hosts.discard(hostnqn)
        self._ns_changed(nsid, hostnqn)

    def _masked_ns(self, nsid: int) -> Namespace:
        ns = self.namespaces.get(nsid)
        if ns is None:
            raise NvmfConfigError(f"{self.nqn} has no namespace {nsid}", 2)
        if ns.auto_visible:
            raise NvmfConfigError(f"namespace {nsid} of {self.nqn} is visible to every host; add it with "
                                  "no_auto_visible to choose its hosts", 1)
        return ns

    def _ns_changed(self, nsid: int, only_host: str | None = None) -> None:
        for c in list(self.controllers.values()):
            if only_host is None or c.hostnqn == only_host:
                c.namespace_changed(nsid)
        for cb in list(self.ns_change_listeners):
            cb(self, nsid)
        if self.on_replica_changed is not None:
            self.on_replica_changed(self)

    # -- listeners ----------------------------------------------------------------------------

    def find_listener(self, addr: ListenAddress) -> Listener | None:
        for lst in self.listeners:
            if lst.address == addr:
                return lst
        return None

    def listener_allows(self, addr: ListenAddress | None) -> bool:
        """May a host connect through ``addr``? (Discovery answers on every listener.)"""
        if self.discovery or addr is None:
            return True
        return self.find_listener(addr) is not None

    def set_ana_state(self, addr: ListenAddress, state: AnaState, anagrpid: int = 0) -> None:
        lst = self.find_listener(addr)
        if lst is None:
            raise NvmfConfigError(f"{self.nqn} has no listener {addr}", 2)
        if anagrpid:
            if not 1 <= anagrpid <= self.max_namespaces:
                raise NvmfConfigError(f"anagrpid {anagrpid} is out of range 1..{self.max_namespaces}")
            lst.ana_states[anagrpid] = state
        else:
            lst.default_state = state
            lst.ana_states.clear()
        self.ana_change_count += 1
        for c in list(self.controllers.values()):
            if c.listen_address == addr:
                c.ana_changed()
        if self.on_replica_changed is not None:
            self.on_replica_changed(self)

    def set_ns_ana_group(self, nsid: int, anagrpid: int) -> None:
        """Move a namespace to another ANA group: its paths then have that group's states."""
        ns = self.namespaces.get(nsid)
        if ns is None:
            raise NvmfConfigError(f"{self.nqn} has no namespace {nsid}", 2)
        if not 1 <= anagrpid <= self.max_namespaces:
            raise NvmfConfigError(f"anagrpid {anagrpid} is out of range 1..{self.max_namespaces} "
                                  f"(max_namespaces of {self.nqn})")
        if ns.anagrpid == anagrpid:
            return
        ns.anagrpid = anagrpid
        # Every host's ANA log changes (group membership), and Identify Namespace's ANAGRPID.
        self.ana_change_count += 1
        for c in list(self.controllers.values()):
            c.ana_changed()
        if self.on_replica_changed is not None:
            self.on_replica_changed(self)

    def ana_groups(self) -> list[int]:
        return sorted({ns.anagrpid for ns in self.namespaces.values()})

    # -- controller IDs -----------------------------------------------------------------------

    def allocate_cntlid(self) -> int:
        """The next free controller ID in min_cntlid..max_cntlid (0 when all are in use)."""
        span = self.max_cntlid - self.min_cntlid + 1
        for _ in range(span):
            c = self._next_cntlid
            self._next_cntlid = c + 1 if c < self.max_cntlid else self.min_cntlid
            if c not in self.controllers:
                return c
        return 0

    # -- JSON ---------------------------------------------------------------------------------

    def _host_json(self, hostnqn: str) -> dict[str, str]:
        d = {"nqn": hostnqn}
        k = self.host_keys.get(hostnqn)
        if k is not None:
            d.update(k.names())
        p = self.host_psks.get(hostnqn)
        if p is not None:
            d["psk"] = p.name
        return d

    @property
    def subtype(self) -> str:
        return "Discovery" if self.discovery else "NVMe"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nqn": self.nqn,
            "subtype": self.subtype,
            "listen_addresses": [lst.address.to_json() for lst in self.listeners],
            "allow_any_host": self.allow_any_host,
            "hosts": [self._host_json(h) for h in self.hosts],
        }
        if not self.discovery:
            out.update({
                "serial_number": self.serial_number,
                "model_number": self.model_number,
                "max_namespaces": self.max_namespaces,
                "min_cntlid": self.min_cntlid,
                "max_cntlid": self.max_cntlid,
                "ana_reporting": self.ana_reporting,
                "namespaces": [ns.to_json() for ns in sorted(self.namespaces.values(),
                                                             key=lambda n: n.nsid)],
            })
        return out
