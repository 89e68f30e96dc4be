"""`spydk rpc`: SPDK rpc.py's command line, built from per-area modules.

    spydk rpc [-s SOCK] [-t TIMEOUT] [-r RETRIES] [-v] [--dry-run] METHOD [args...]
    spydk rpc < script.txt        # one command per line, '#' comments

Plug-in point: every layer's and module's ``rpc_cli.py`` (found by spydk.rpc.discovery) provides

    def add_commands(sub: argparse._SubParsersAction, call: Call) -> None

which adds one sub-parser per method, with rpc.py's flags and positional arguments, and
sets ``func=lambda args: ...`` on it. ``call(method, params)`` performs the request
(None-valued params are dropped); the printers below format results like rpc.py, and
``add_command``/``arg`` cover commands whose arguments map one to one onto parameters.
Third-party packages add modules through the ``spydk.cli`` entry point group.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from spydk.rpc import discovery
from spydk.rpc.client import DEFAULT_SOCKET, DEFAULT_TIMEOUT, Client, ClientError, NoServerError
from spydk.rpc.errors import RpcError

# Namespace attributes of `spydk rpc`'s own options; method parsers must not use these dests.
GLOBAL_DESTS = frozenset({"rpc_server_addr", "rpc_timeout", "rpc_conn_retries", "rpc_verbose",
                          "rpc_dry_run", "called_rpc_name", "func"})


class Call:
    """The ``call`` given to add_commands: bound to a client once the arguments are parsed."""

    def __init__(self) -> None:
        self.client: Any = None
        self.dry_run = False

    def __call__(self, method: str, params: dict[str, Any] | None = None) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if self.dry_run:
            req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
            if params:
                req["params"] = params
            print("Request:\n" + json.dumps(req, indent=2))
            raise _DryRun
        if self.client is None:
            raise ClientError("no client")
        return self.client.call(method, params)


class _DryRun(Exception):
    pass


class UsageError(Exception):
    """Arguments that parse but make no sense together; reported in the user's own terms."""


def positive(convert: Callable[[str], Any] = int, unit: str = "") -> Callable[[str], Any]:
    """An argparse ``type`` that accepts numbers above zero, so the error names the argument the
    user typed (not the parameter the CLI derives from it)."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0{unit}, got {text}")
        return value
    parse.__name__ = convert.__name__  # argparse names the type in its messages
    return parse


def mib_to_blocks(total_mib: float, block_size: int, what: str = "total_size") -> int:
    """rpc.py's size arguments are MiB; the methods take a block count."""
    blocks = int(total_mib * 1024 * 1024) // block_size
    if blocks < 1:
        raise UsageError(f"{what} {total_mib:g} MiB is less than one block of {block_size} bytes")
    return blocks


# -- printers, as rpc.py formats results --------------------------------------------------

def print_dict(d: Any) -> None:
    print(json.dumps(d, indent=2))


def print_json(s: Any) -> None:
    print(json.dumps(s, indent=2).strip('"'))


def print_array(a: Sequence[str]) -> None:
    print(" ".join(shlex.quote(v) for v in a))


def add_simple(sub: argparse._SubParsersAction, call: Call, name: str, help: str,
               printer: Callable[[Any], None] | None = print_dict) -> argparse.ArgumentParser:
    """A command without arguments that prints its result (or nothing with printer=None)."""
    p = sub.add_parser(name, help=help)

    def run(args: argparse.Namespace) -> None:
        res = call(name)
        if printer is not None:
            printer(res)
    p.set_defaults(func=run)
    return p


# (flags, kwargs) of one argparse argument; its dest becomes the RPC parameter name.
Arg = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **kw: Any) -> Arg:
    """One argument of ``add_command``, written as for ``ArgumentParser.add_argument``."""
    return flags, kw


def add_command(sub: argparse._SubParsersAction, call: Call, method: str, help: str, args: list[Arg],
                printer: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """A command whose arguments map one to one (by dest) onto the method's parameters."""
    p = sub.add_parser(method, help=help)
    dests = [p.add_argument(*flags, **kw).dest for flags, kw in args]

    def run(ns: argparse.Namespace) -> None:
        res = call(method, {d: getattr(ns, d) for d in dests})
        if printer is not None:
            printer(res)
    p.set_defaults(func=run)
    return p


# -- parser -------------------------------------------------------------------------------

def load_cli_modules() -> list[Any]:
    mods = []
    for name in discovery.rpc_cli_modules():
        mods.append(importlib.import_module(name))
    for ep in entry_points(group="spydk.cli"):
        mods.append(ep.load())
    return mods


def build_parser(call: Call) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spydk rpc", description="Call JSON-RPC methods of a spydk or SPDK application.")
    # The global options live under GLOBAL_DESTS, names no method's own option can take
    # (a method's "-t/--timeout-ms" once overwrote the client's socket timeout).
    parser.add_argument("-s", dest="rpc_server_addr", metavar="SERVER_ADDR", default=DEFAULT_SOCKET,
                        help=f"RPC Unix socket path (default {DEFAULT_SOCKET})")
    parser.add_argument("-t", dest="rpc_timeout", metavar="TIMEOUT", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("-r", dest="rpc_conn_retries", metavar="CONN_RETRIES", type=int, default=0,
                        help="retry connecting N times, 0.2 s apart (default 0)")
    parser.add_argument("-v", dest="rpc_verbose", action="store_true", help="print each request and answer")
    parser.add_argument("--dry-run", dest="rpc_dry_run", action="store_true",
                        help="print the request instead of sending it")
    sub = parser.add_subparsers(dest="called_rpc_name", metavar="METHOD", help="RPC method")
    for mod in load_cli_modules():
        mod.add_commands(sub, call)
    return parser


class _VerboseClient:
    def __init__(self, client: Client):
        self._c = client

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        req: dict[str, Any] = {"method": method}
        if params:
            req["params"] = params
        print("request:\n" + json.dumps(req, indent=2), file=sys.stderr)
        res = self._c.call(method, params)
        print("response:\n" + json.dumps(res, indent=2), file=sys.stderr)
        return res


def _run_one(args: argparse.Namespace, call: Call) -> int:
    try:
        args.func(args)
    except _DryRun:
        return 0
    except UsageError as e:
        print(f"spydk rpc: {args.called_rpc_name}: {e}", file=sys.stderr)
        return 1
    except RpcError as e:
        print(f"spydk rpc: {args.called_rpc_name} failed: {e.message} (code {e.code})", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        rc = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
        return rc
    except BrokenPipeError:
        # The reader went away (`spydk rpc ... | head`): stop quietly as Unix tools do, and
        # point stdout at /dev/null so the interpreter's final flush cannot complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, the status a shell shows for a tool killed by the pipe


def _main(argv: Sequence[str] | None) -> int:
    call = Call()
    parser = build_parser(call)
    args = parser.parse_args(argv)
    call.dry_run = args.rpc_dry_run
    script = not hasattr(args, "func")
    if script and sys.stdin.isatty():
        parser.print_help()
        return 1
    client: Client | None = None
    try:
        if not args.rpc_dry_run:
            client = Client(args.rpc_server_addr, args.rpc_timeout, connect_retries=args.rpc_conn_retries)
            call.client = _VerboseClient(client) if args.rpc_verbose else client
        if not script:
            return _run_one(args, call)
        for lineno, line in enumerate(sys.stdin, 1):
            words = shlex.split(line, comments=True)
            if not words:
                continue
            try:
                line_args = parser.parse_args(words)
            except SystemExit:
                print(f"spydk rpc: stdin line {lineno}: cannot parse {line.strip()!r}", file=sys.stderr)
                return 1
            if not hasattr(line_args, "func"):
                continue
            if _run_one(line_args, call):
                print(f"spydk rpc: stopped at stdin line {lineno}", file=sys.stderr)
                return 1
        return 0
    except NoServerError as e:
        print(f"spydk rpc: {e}", file=sys.stderr)
        return 1
    except ClientError as e:
        print(f"spydk rpc: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
