"""Host-side storage targets for the interop tests: spydk itself, and reference targets
we did not write (Debian's tgt, qemu-storage-daemon) that prove the harness.

Every target binds 127.0.0.1 only (the guest reaches it as 10.0.2.2), logs to a file,
and is stopped by its own PID.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def installed_command(name: str) -> Path:
    """A console script installed beside the running interpreter (its venv's bin/), so the
    tests run from whatever environment spydk is installed in, not only the repo's .venv.
    sys.executable is not resolved: a venv's python is a link to the base interpreter."""
    return Path(sys.executable).parent / name


SPYDK_CLI = installed_command("spydk")

NVMF_NQN = "nqn.2016-06.io.spdk:cnode1"
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
SPDK_IQN_BASE = "iqn.2016-06.io.spdk:"


class TargetError(Exception):
    """A target did not start or answer; the message carries the end of its log."""


def require_tools(*tools: str) -> None:
    """Fail loudly (not skip) when a host tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise TargetError("missing host tools: " + ", ".join(missing) +
                          " (scripts/setup.sh installs scripts/debian-packages.txt)")


def free_tcp_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


def stop_pid(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10) -> None:
    """Send ``sig`` to this process, wait ``grace`` seconds, then SIGKILL it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until(cond: Any, proc: subprocess.Popen[bytes], log: Path, what: str,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if proc.poll() is not None:
            raise TargetError(f"{what} exited with status {proc.returncode} before it was ready:\n"
                              + log_tail(log))
        if time.monotonic() > deadline:
            raise TargetError(f"{what} not ready after {timeout:g} s:\n" + log_tail(log))
        time.sleep(0.1)


# --------------------------------------------------------------------------- spydk

def rpc_call(sock_path: Path, method: str, params: dict[str, Any] | None = None,
             timeout: float = 5) -> Any:
    """One JSON-RPC 2.0 call over a unix socket; returns the parsed response object."""
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        req["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(json.dumps(req).encode())
        dec = json.JSONDecoder()
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise TargetError(f"{method}: connection closed after {len(buf)} bytes")
            buf += chunk
            try:
                obj, _ = dec.raw_decode(buf.decode().lstrip())
                return obj
            except ValueError:
                continue  # incomplete: read more


def _rpc_ready(sock_path: Path) -> bool:
    if not sock_path.is_socket():
        return False
    try:
        resp = rpc_call(sock_path, "spdk_get_version", timeout=2)
        if not (isinstance(resp, dict) and "result" in resp):
            return False
        # The socket answers while the JSON config is still being applied.
        resp = rpc_call(sock_path, "framework_wait_init", timeout=30)
    except (OSError, ValueError, TargetError):
        return False
    return isinstance(resp, dict) and ("result" in resp or
                                       resp.get("error", {}).get("code") == -32601)


def config_tcp_ports(config: dict[str, Any]) -> set[int]:
    """The TCP ports a JSON config listens on (NVMe-oF listeners, iSCSI portals)."""
    ports: set[int] = set()
    for sub in config.get("subsystems", []):
        for entry in sub.get("config") or []:
            params = entry.get("params") or {}
            addr = params.get("listen_address")
            if isinstance(addr, dict) and str(addr.get("trtype", "")).upper() == "TCP":
                ports.add(int(addr["trsvcid"]))
            for portal in params.get("portals") or []:
                ports.add(int(portal["port"]))
    return ports


def listening_tcp_ports() -> set[int]:
    """Ports with a listening TCP socket on this host (from /proc, without connecting)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if len(f) > 3 and f[3] == "0A":  # TCP_LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass
class SpydkTarget:
    """A running ``spydk tgt`` process."""

    proc: subprocess.Popen[bytes]
    rpc_sock: Path
    config_path: Path
    log_path: Path
    workdir: Path    # its working directory (vhost-user sockets are created here)

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return rpc_call(self.rpc_sock, method, params)

    def stop(self) -> None:
        # SIGINT, as for SPDK apps: a clean shutdown of the reactor.
        stop_pid(self.proc, signal.SIGINT)


def start_spydk(config: dict[str, Any], workdir: Path, timeout: float = 30,
                extra_args: tuple[str, ...] = ()) -> SpydkTarget:
    """Start ``spydk tgt -r <sock> --json <config>`` in ``workdir``.  Ready when the RPC
    socket answers spdk_get_version and framework_wait_init, and every TCP port of the
    config is listening."""
    if not SPYDK_CLI.exists():
        raise TargetError(f"{SPYDK_CLI} missing: install spydk into the environment of "
                          f"{sys.executable} (pip install -e .) or run scripts/setup.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "spydk-config.json"
    cfg.write_text(json.dumps(config, indent=2))
    sock = workdir / "spydk.sock"
    log = workdir / "spydk.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen([str(SPYDK_CLI), "tgt", "-r", str(sock), "--json", str(cfg), *extra_args],
                                cwd=workdir, stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT)
    t = SpydkTarget(proc, sock, cfg, log, workdir)
    try:
        _wait_until(lambda: _rpc_ready(sock), proc, log, "spydk tgt", timeout)
        ports = config_tcp_ports(config)
        _wait_until(lambda: ports <= listening_tcp_ports(), proc, log,
                    f"spydk tgt (listening on {sorted(ports)})", timeout)
    except BaseException:
        t.stop()
        raise
    return t


# SPDK-style JSON configurations --------------------------------------------------

def _malloc(name: str, num_blocks: int, block_size: int) -> dict[str, Any]:
    return {"method": "bdev_malloc_create",
            "params": {"name": name, "num_blocks": num_blocks, "block_size": block_size}}


def nvmf_tcp_config(port: int, *, nqn: str = NVMF_NQN, serial: str = "SPYDK0001",
                    model: str = "spydk Controller", num_blocks: int = 131072,
                    block_size: int = 512, discovery: bool = True) -> dict[str, Any]:
    """One malloc namespace in one subsystem on a TCP listener at 127.0.0.1:port
    (and the discovery subsystem on the same port when ``discovery``)."""
    def listen(n: str) -> dict[str, Any]:
        return {"method": "nvmf_subsystem_add_listener",
                "params": {"nqn": n, "listen_address": {"trtype": "TCP", "adrfam": "IPv4",
                                                        "traddr": "127.0.0.1",
                                                        "trsvcid": str(port)}}}
    nvmf: list[dict[str, Any]] = [
        {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
        {"method": "nvmf_create_subsystem",
         "params": {"nqn": nqn, "allow_any_host": True, "serial_number": serial,
                    "model_number": model}},
        {"method": "nvmf_subsystem_add_ns",
         "params": {"nqn": nqn, "namespace": {"bdev_name": "Malloc0"}}},
        listen(nqn),
    ]
    if discovery:
        nvmf.append(listen(DISCOVERY_NQN))
    return {"subsystems": [
        {"subsystem": "bdev", "config": [_malloc("Malloc0", num_blocks, block_size)]},
        {"subsystem": "nvmf", "config": nvmf},
    ]}


def iscsi_config(port: int, *, name: str = "disk1", chap: tuple[str, str] | None = None,
                 num_blocks: int = 131072, block_size: int = 512) -> dict[str, Any]:
    """Target node ``iqn.2016-06.io.spdk:<name>`` with LUN 0 on a malloc bdev, portal
    127.0.0.1:port, any initiator; one-way CHAP required when ``chap=(user, secret)``."""
    node: dict[str, Any] = {
        "name": name, "alias_name": "Data Disk1",
        "luns": [{"bdev_name": "Malloc0", "lun_id": 0}],
        "pg_ig_maps": [{"pg_tag": 1, "ig_tag": 1}], "queue_depth": 64,
    }
    iscsi: list[dict[str, Any]] = [
        {"method": "iscsi_create_portal_group",
         "params": {"tag": 1, "portals": [{"host": "127.0.0.1", "port": str(port)}]}},
        {"method": "iscsi_create_initiator_group",
         "params": {"tag": 1, "initiators": ["ANY"], "netmasks": ["ANY"]}},
    ]
    if chap is None:
        node["disable_chap"] = True
    else:
        iscsi.append({"method": "iscsi_create_auth_group",
                      "params": {"tag": 1, "secrets": [{"user": chap[0], "secret": chap[1]}]}})
        node.update(disable_chap=False, require_chap=True, chap_group=1)
    iscsi.append({"method": "iscsi_create_target_node", "params": node})
    return {"subsystems": [
        {"subsystem": "bdev", "config": [_malloc("Malloc0", num_blocks, block_size)]},
        {"subsystem": "iscsi", "config": iscsi},
    ]}


def vhost_blk_config(ctrlr: str = "vhost.0", *, num_blocks: int = 131072,
                     block_size: int = 512) -> dict[str, Any]:
    """A vhost-user-blk controller ``ctrlr`` on a malloc bdev.  As in SPDK, its socket is
    created in the target's working directory (``SpydkTarget.workdir / ctrlr``)."""
    return {"subsystems": [
        {"subsystem": "bdev", "config": [_malloc("Malloc0", num_blocks, block_size)]},
        {"subsystem": "vhost_blk", "config": [
            {"method": "vhost_create_blk_controller",
             "params": {"ctrlr": ctrlr, "dev_name": "Malloc0"}}]},
    ]}


# --------------------------------------------------------------------------- tgt

@dataclass
class TgtTarget:
    """Debian's tgtd (user-space iSCSI target, in C) with one file-backed LUN."""

    proc: subprocess.Popen[bytes]
    ctrl: int          # tgtd control socket suffix (tgtadm -C)
    port: int
    iqn: str
    log_path: Path
    backing: Path
    lun_mb: int
    chap: tuple[str, str] | None = None
    _tgtadm_log: list[str] = field(default_factory=list)

    def tgtadm(self, *args: str, check: bool = True) -> str:
        res = subprocess.run(["tgtadm", "-C", str(self.ctrl), *args],
                             capture_output=True, text=True)
        self._tgtadm_log.append(f"tgtadm {' '.join(args)} -> {res.returncode}")
        if check and res.returncode != 0:
            raise TargetError(f"tgtadm {' '.join(args)}: {res.stderr.strip()}\n"
                              + log_tail(self.log_path))
        return res.stdout

    def stop(self) -> None:
        # tgtd ignores SIGTERM.  It exits on "delete system", which it refuses (EINVAL)
        # while targets exist: offline, delete the target, delete the system; SIGKILL
        # this very PID if it is still alive after that.
        if self.proc.poll() is None:
            self.tgtadm("--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
                        check=False)
            self.tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1",
                        "--force", check=False)
            self.tgtadm("--op", "delete", "--mode", "system", check=False)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # tgtd leaves its control socket files behind
        for suffix in ("", ".lock"):
            Path(f"/var/run/tgtd/socket.{self.ctrl}{suffix}").unlink(missing_ok=True)


def _free_tgt_ctrl() -> int:
    for _ in range(100):
        n = 1000 + int.from_bytes(os.urandom(2), "little") % 31000  # tgtd accepts < 32768
        if not Path(f"/var/run/tgtd/socket.{n}").exists():
            return n
    raise TargetError("no free tgtd control socket number")


def start_tgt(workdir: Path, *, iqn: str = "iqn.2024-01.org.spydk.test:tgt1",
              lun_mb: int = 64, chap: tuple[str, str] | None = None,
              timeout: float = 15) -> TgtTarget:
    require_tools("tgtd", "tgtadm")
    if os.geteuid() != 0:
        raise TargetError("tgtd needs root (it creates /var/run/tgtd)")
    workdir.mkdir(parents=True, exist_ok=True)
    backing = workdir / "lun1.img"
    with open(backing, "wb") as f:
        f.truncate(lun_mb << 20)
    Path("/var/run/tgtd").mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    ctrl = _free_tgt_ctrl()
    log = workdir / "tgtd.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen(["tgtd", "-f", "-C", str(ctrl),
                                 "--iscsi", f"portal=127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
    t = TgtTarget(proc, ctrl, port, iqn, log, backing, lun_mb, chap)
    try:
        def up() -> bool:
            return subprocess.run(["tgtadm", "-C", str(ctrl), "--op", "show", "--mode", "sys"],
                                  capture_output=True).returncode == 0
        _wait_until(up, proc, log, "tgtd", timeout)
        t.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", iqn)
        t.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "1",
                 "--lun", "1", "-b", str(backing))
        t.tgtadm("--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
        if chap is not None:
            t.tgtadm("--lld", "iscsi", "--op", "new", "--mode", "account",
                     "--user", chap[0], "--password", chap[1])
            t.tgtadm("--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "1",
                     "--user", chap[0])
    except BaseException:
        t.stop()
        raise
    return t


# --------------------------------------------------------------------------- qsd

@dataclass
class QsdTarget:
    """qemu-storage-daemon exporting a raw file as a vhost-user-blk socket."""

    proc: subprocess.Popen[bytes]
    socket_path: Path
    backing: Path
    log_path: Path
    size_mb: int

    def stop(self) -> None:
        stop_pid(self.proc, signal.SIGTERM, grace=5)


def start_qsd(workdir: Path, *, size_mb: int = 64, timeout: float = 15) -> QsdTarget:
    require_tools("qemu-storage-daemon")
    workdir.mkdir(parents=True, exist_ok=True)
    backing = workdir / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(size_mb << 20)
    sock = workdir / "vub.sock"
    log = workdir / "qsd.log"
    with open(log, "wb") as lf:
        proc = subprocess.Popen(
            ["qemu-storage-daemon",
             "--blockdev", f"driver=file,node-name=file0,filename={backing},cache.direct=off",
             "--blockdev", "driver=raw,node-name=disk0,file=file0",
             "--export", "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,"
                         f"addr.path={sock},writable=on"],
            stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT)
    t = QsdTarget(proc, sock, backing, log, size_mb)
    try:
        _wait_until(sock.is_socket, proc, log, "qemu-storage-daemon", timeout)
    except BaseException:
        t.stop()
        raise
    return t
