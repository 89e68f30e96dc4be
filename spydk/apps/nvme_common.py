"""What the NVMe tools (perf, identify, hello_world, discover) share: transport IDs from
-r, controller options from the TCP flags, connecting every controller, their display names."""
from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spydk.nvme.host import Controller, ControllerOpts, NvmeError, TransportId, TridError, parse_trid


def add_transport_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("-r", "--transport", action="append", default=[], metavar="TRID",
                   help="transport ID, e.g. 'trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:4420 "
                        "subnqn:nqn.2016-06.io.spdk:cnode1' (repeatable)")
    p.add_argument("-H", "--enable-tcp-hdgst", action="store_true", help="enable TCP header digest")
    p.add_argument("-I", "--enable-tcp-ddgst", action="store_true", help="enable TCP data digest")
    p.add_argument("-k", "--keepalive", type=int, default=10000, metavar="MS",
                   help="keep-alive timeout in milliseconds (default 10000)")
    p.add_argument("--hostnqn", help="host NQN (default: derived from a fixed UUID)")
    p.add_argument("-S", "--default-sock-impl", choices=("posix", "ssl"), default="posix",
                   help="ssl: NVMe/TCP over TLS 1.3 with the PSK of --psk-path")
    p.add_argument("--psk-path", help="file with the TLS PSK (NVMeTLSkey-1:..., as nvme gen-tls-key prints it)")
    p.add_argument("--dhchap-key", metavar="FILE",
                   help="file with the host's DH-HMAC-CHAP secret (DHHC-1:..., as nvme gen-dhchap-key prints it)")
    p.add_argument("--dhchap-ctrlr-key", metavar="FILE",
                   help="file with the controller's DH-HMAC-CHAP secret (bidirectional authentication)")
    # Accepted for compatibility with SPDK's tools; they change nothing here.
    for flag in ("-s", "-i", "-g"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("--no-huge", action="store_true", help=argparse.SUPPRESS)


def local_trids(sysfs: Path = Path("/")) -> list[TransportId]:
    """Every NVMe device bound to uio_pci_generic (what SPDK's tools probe without -r)."""
    from spydk.apps.nvme_setup import Sysfs
    return [TransportId(trtype="PCIE", traddr=d.bdf, trsvcid="", subnqn="")
            for d in Sysfs(sysfs).devices() if d.driver == "uio_pci_generic"]


def trids(args: argparse.Namespace, prog: str) -> list[TransportId]:
    if not args.transport:
        local = local_trids()
        if local:
            return local
        raise SystemExit(f"{prog}: no -r and no NVMe device bound to uio_pci_generic: give a "
                         "transport ID with -r (e.g. 'trtype:TCP traddr:127.0.0.1 trsvcid:4420 "
                         "subnqn:...') or run 'spydk setup' first")
    out: list[TransportId] = []
    for text in args.transport:
        try:
            t = parse_trid(text)
        except TridError as e:
            raise SystemExit(f"{prog}: -r {text!r}: {e}") from None
        if t.trtype not in ("TCP", "PCIE"):
            raise SystemExit(f"{prog}: -r {text!r}: only trtype:TCP and trtype:PCIe are supported")
        out.append(t)
    return out


def _secret_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise SystemExit(f"{flag} {path}: {e.strerror}") from None


def ctrlr_opts(args: argparse.Namespace, t: TransportId, **kw: Any) -> ControllerOpts:
    psk = _secret_file(args.psk_path, "--psk-path")
    if psk is not None and args.default_sock_impl != "ssl":
        raise SystemExit("--psk-path is used with -S ssl (TLS), as in SPDK's tools")
    if psk is None and args.default_sock_impl == "ssl":
        raise SystemExit("-S ssl needs the PSK: --psk-path FILE")
    opts = ControllerOpts(header_digest=args.enable_tcp_hdgst, data_digest=args.enable_tcp_ddgst,
                          keep_alive_timeout_ms=args.keepalive, psk=psk,
                          dhchap_key=_secret_file(args.dhchap_key, "--dhchap-key"),
                          dhchap_ctrlr_key=_secret_file(args.dhchap_ctrlr_key, "--dhchap-ctrlr-key"), **kw)
    hostnqn = t.hostnqn or args.hostnqn
    if hostnqn:
        opts.hostnqn = hostnqn
    return opts


async def connect_all(ts: Sequence[TransportId], opts: Sequence[ControllerOpts], prog: str
                      ) -> list[Controller]:
    out: list[Controller] = []
    for t, o in zip(ts, opts, strict=True):
        c = Controller(t, o)
        try:
            await c.connect()
        except (NvmeError, ConnectionError) as e:
            for done in out:
                await done.detach()
            print(f"{prog}: cannot attach {t}: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        out.append(c)
    return out


def ctrlr_name(c: Controller) -> str:
    """Perf's device name: 'TCP (addr:127.0.0.1 subnqn:nqn...)' or 'PCIE (0000:00:04.0)'."""
    if c.trid.trtype == "PCIE":
        return f"PCIE ({c.trid.traddr})"
    return f"TCP (addr:{c.trid.traddr} subnqn:{c.trid.subnqn})"


def attached_line(c: Controller) -> str:
    """How the tools name a controller once attached (as SPDK's do, per transport)."""
    t = c.trid
    if t.trtype == "PCIE":
        cd = c.cdata
        ids = f" [{cd.vid:04x}:{cd.ssvid:04x}]" if cd is not None else ""
        return f"NVMe Controller at {t.traddr}{ids}"
    return f"NVMe over Fabrics controller at {t.traddr}:{t.trsvcid}: {t.subnqn}"


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
