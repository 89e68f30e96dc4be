"""`spydk`: the console entry point.

    spydk tgt [options]         all subsystems (SPDK's spdk_tgt)
    spydk nvmf_tgt [options]    bdev + nvmf
    spydk iscsi_tgt [options]   bdev + scsi + iscsi
    spydk rpc ...               the JSON-RPC command line (spydk.rpc.cli)
    spydk bdevperf ...          spydk.apps.bdevperf:main(argv), when present
    spydk perf|identify|hello_world|discover|setup ...   the NVMe host tools (spydk.apps.nvme_*)
    spydk blobcli IMAGE ...     inspect and check a blobstore (spydk.apps.blobcli)
    spydk top ...               spydk.apps.top (SPDK's spdk_top)
    spydk trace ...             spydk.apps.trace_tool (SPDK's spdk_trace)

Target options are SPDK's (-m, -r, -c/--json, --wait-for-rpc, -L, -e, -i, ...) plus --poll,
--default-config and --metrics. Options SPDK needs for DPDK (--no-huge, -s) are accepted and
ignored: spydk needs no hugepages.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence

from spydk import log as spydk_log
from spydk.apps.app import APP_SUBSYSTEMS, App, AppOptions, StartupError, default_config, describe_exports
from spydk.rpc.server import DEFAULT_SOCKET

# Event mode's spin after work (--spin-us): long enough to catch a queue-depth-1 host's next
# command without a kernel wake-up; an idle target still sleeps (docs/performance.md).
DEFAULT_SPIN_US = 200

NVME_TOOLS = {"perf": "spydk.apps.nvme_perf", "identify": "spydk.apps.nvme_identify",
              "hello_world": "spydk.apps.nvme_hello", "discover": "spydk.apps.nvme_discover",
              "setup": "spydk.apps.nvme_setup"}
APP_NAMES = {"tgt": "spydk_tgt", "nvmf_tgt": "nvmf_tgt", "iscsi_tgt": "iscsi_tgt", "vhost": "vhost"}
USAGE = """usage: spydk {tgt,nvmf_tgt,iscsi_tgt,vhost,rpc,bdevperf,perf,identify,hello_world,discover,setup,blobcli,top,trace} [options]

  tgt        start a target with every subsystem (like SPDK's spdk_tgt)
  nvmf_tgt   start an NVMe-oF target (bdev + nvmf subsystems)
  iscsi_tgt  start an iSCSI target (bdev + scsi + iscsi subsystems)
  vhost      start a vhost-user target for VMs (bdev + scsi + vhost_blk + vhost_scsi)
  rpc        call a JSON-RPC method of a running application (like SPDK's rpc.py)
  bdevperf   run the block device benchmark
  perf       NVMe I/O benchmark (like spdk_nvme_perf)
  identify   print what NVMe controllers report (like spdk_nvme_identify)
  hello_world  write "Hello world!" to a namespace and read it back (like SPDK's example)
  discover   list a discovery controller's log (like SPDK's discovery example)
  setup      hugepages and NVMe devices for the user-space driver (like SPDK's setup.sh)
  blobcli    inspect and check a blobstore / lvol store image (read-only unless --repair)
  top        live view of a running target's threads, pollers, cores and bdevs (like spdk_top)
  trace      print a trace ring like spdk_trace, or export Chrome/Perfetto JSON

`spydk tgt --default-config` starts with a 64 MiB Malloc0 bdev; `spydk COMMAND -h` for options.
"""


def parse_cpumask(text: str) -> list[int]:
    """SPDK's -m: a hex mask ("0x3") or a core list ("[0,2-3]")."""
    t = text.strip()
    if t.startswith("["):
        cores: list[int] = []
        for part in t.strip("[]").split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                cores.extend(range(int(lo), int(hi) + 1))
            elif part.strip():
                cores.append(int(part))
        if not cores:
            raise argparse.ArgumentTypeError(f"empty core list {text!r}")
        return sorted(set(cores))
    try:
        mask = int(t, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a hex cpumask nor a core list like [0,1]") from None
    if mask <= 0:
        raise argparse.ArgumentTypeError("the cpumask selects no core")
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def target_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"spydk {cmd}", description=f"Start spydk's {APP_NAMES[cmd]}.")
    p.add_argument("-m", "--cpumask", type=parse_cpumask, default=[0],
                   help="cores, hex mask or [list]; one reactor runs on the main core (default 0x1)")
    p.add_argument("-p", "--main-core", type=int, help="core of the reactor (default: first core of -m)")
    p.add_argument("-r", "--rpc-socket", default=DEFAULT_SOCKET, help=f"RPC Unix socket (default {DEFAULT_SOCKET})")
    p.add_argument("-c", "--json", "--config", dest="json", metavar="FILE", help="JSON config file to replay")
    p.add_argument("--json-ignore-init-errors", action="store_true", help="log failing config entries and go on")
    p.add_argument("--wait-for-rpc", action="store_true",
                   help="wait for framework_start_init before initializing the subsystems")
    p.add_argument("-L", "--logflag", action="append", default=[], metavar="FLAG",
                   help='debug output of a component (repeatable; "all" for every one)')
    p.add_argument("--poll", action="store_true", help="busy-poll the reactor (one core at 100%%, lowest latency)")
    p.add_argument("--spin-us", type=int, default=DEFAULT_SPIN_US, metavar="US",
                   help="event mode: keep polling this many microseconds after the last work before "
                        f"sleeping (default {DEFAULT_SPIN_US}; 0 sleeps at once; an idle target sleeps)")
    p.add_argument("--default-config", action="store_true",
                   help="start with the embedded default config (a 64 MiB Malloc0 bdev, block size 512)")
    if cmd in ("vhost", "tgt"):
        p.add_argument("-S", "--vhost-socket-dir", dest="socket_dir", metavar="DIR",
                       help="directory of the vhost-user sockets (default: the working directory)")
    p.add_argument("-e", "--tpoint-group-mask", "--tpoint-group", metavar="GROUPS",
                   help="trace groups to enable: a group mask (0x8) or names[:tpoint mask], comma-separated "
                        "(bdev,nvmf_tcp,nvmf_ctrlr,iscsi_conn,scsi,thread,all); see docs/observability.md")
    p.add_argument("-i", "--shm-id", type=int, default=-1,
                   help="shared memory id: names the trace ring /dev/shm/<app>_trace.<id> (default: .pid<pid>)")
    p.add_argument("--num-trace-entries", type=int, default=32768, help="size of the trace ring (default 32768)")
    p.add_argument("--metrics", metavar="ADDR:PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (loopback unless "
                        "--metrics-allow-remote)")
    p.add_argument("--metrics-allow-remote", action="store_true",
                   help="let --metrics bind a non-loopback address (the endpoint has no authentication)")
    # Accepted for command-line compatibility with SPDK's apps; they change nothing here.
    p.add_argument("--no-huge", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-s", "--mem-size", help=argparse.SUPPRESS)
    return p


FD_LIMIT_CAP = 1 << 20  # when the hard limit is unlimited


def raise_fd_limit() -> None:
    """Take the open-file limit up to the hard limit: the default connection limits (1024 per
    NVMe/TCP listener and per iSCSI portal group) need more descriptors than the usual soft
    limit of 1024, and a target short of descriptors can only refuse new connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FD_LIMIT_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as e:
            # the target still runs; its connection limits refuse what the descriptors cannot hold
            logging.getLogger("spydk.app").warning(
                "open-file limit stays at %d (raising it to %d failed: %s); raise it with "
                "`ulimit -n` to hold more connections", soft, want, e)


def run_target(cmd: str, argv: Sequence[str]) -> int:
    args = target_parser(cmd).parse_args(argv)
    spydk_log.setup()
    if getattr(args, "socket_dir", None):
        from spydk.vhost.target import set_default_socket_dir
        if not os.path.isdir(args.socket_dir):
            print(f"spydk {cmd}: -S {args.socket_dir}: not a directory", file=sys.stderr)
            return 2
        set_default_socket_dir(args.socket_dir)
    if args.json and args.default_config:
        print(f"spydk {cmd}: --json and --default-config cannot be combined", file=sys.stderr)
        return 2
    lcore = args.main_core if args.main_core is not None else args.cpumask[0]
    if args.main_core is not None and args.main_core not in args.cpumask:
        print(f"spydk {cmd}: main core {args.main_core} is not in the cpumask", file=sys.stderr)
        return 2
    from spydk.thread import cores
    try:
        cores.check_cores(args.cpumask)
    except cores.CoreError as e:
        print(f"spydk {cmd}: -m: {e}", file=sys.stderr)
        return 2
    opts = AppOptions(name=APP_NAMES[cmd], rpc_socket=args.rpc_socket, json_config=args.json,
                      json_ignore_init_errors=args.json_ignore_init_errors, wait_for_rpc=args.wait_for_rpc,
                      subsystems=APP_SUBSYSTEMS[cmd], poll=args.poll, spin_us=args.spin_us, lcore=lcore, cpumask=1 << lcore,
                      tpoint_group_mask=args.tpoint_group_mask, shm_id=args.shm_id,
                      num_trace_entries=args.num_trace_entries, metrics=args.metrics,
                      metrics_allow_remote=args.metrics_allow_remote)
    if args.default_config:
        opts.config, opts.config_source = default_config(), "<default config>"
    log = spydk_log.get_logger("app")
    raise_fd_limit()  # before the workers fork: they inherit it
    others = [c for c in args.cpumask if c != lcore]
    if others:
        # Fork before any loop, socket or config exists: a worker starts with the plugins
        # imported (every operation registered) and nothing of main's state to undo.
        from spydk.apps.plugins import load_plugins
        from spydk.apps.worker import worker_main
        load_plugins()
        poll, spin_us, subsystems, name = args.poll, args.spin_us, APP_SUBSYSTEMS[cmd], APP_NAMES[cmd]
        opts.workers = cores.spawn_workers(others, lambda core, sock: worker_main(core, sock, poll, subsystems,
                                                                                 name, spin_us))
    cores.pin_to_core(lcore)

    def say_what_is_exported() -> None:
        for line in describe_exports(opts.config or {}):
            log.log(spydk_log.NOTICE, "default config: %s", line)
    return _run(App(opts), args.logflag, cmd, say_what_is_exported if args.default_config else None)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _run(app: App, logflags: list[str], cmd: str, started: Callable[[], None] | None = None) -> int:
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.shutdown, f"signal {signal.Signals(sig).name}")

    async def main() -> int:
        from spydk.apps.plugins import load_plugins
        load_plugins()  # flags of every component exist before -L is checked
        for f in logflags:
            try:
                spydk_log.set_flag(f)
            except ValueError as e:
                print(f"spydk {cmd}: -L {f}: {e}", file=sys.stderr)
                return 2
        await app.start()
        if started is not None:
            started()
        await app.wait_shutdown()
        return app.exit_code

    try:
        return loop.run_until_complete(main())
    except StartupError as e:
        print(f"spydk {cmd}: cannot start: {e}", file=sys.stderr)
        return 1
    finally:
        if app.opts.workers is not None and not app.opts.workers.stopping:
            app.opts.workers.kill()   # start-up failed before the app could stop them in order
        spydk_log.flush()
        loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd in APP_NAMES:
        return run_target(cmd, rest)
    if cmd == "rpc":
        from spydk.rpc.cli import main as rpc_main
        return rpc_main(rest)
    if cmd == "blobcli":
        from spydk.apps.blobcli import main as blobcli_main
        return blobcli_main(rest)
    if cmd == "top":
        from spydk.apps.top import main as top_main
        return top_main(rest)
    if cmd == "trace":
        from spydk.apps.trace_tool import main as trace_main
        return trace_main(rest)
    if cmd == "bdevperf":
        try:
            mod = importlib.import_module("spydk.apps.bdevperf")
        except ModuleNotFoundError as e:
            if e.name not in ("spydk.apps.bdevperf",):
                raise
            print("spydk: bdevperf is not part of this build yet", file=sys.stderr)
            return 2
        rc: int = mod.main(rest)
        return rc
    if cmd in NVME_TOOLS:
        tool = importlib.import_module(NVME_TOOLS[cmd])
        code: int = tool.main(rest)
        return code
    print(f"spydk: unknown command {cmd!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
