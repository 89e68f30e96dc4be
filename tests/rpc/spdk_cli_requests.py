"""What SPDK's own command line (the PyPI ``spdk`` package's ``spdk.cli`` parsers) sends.

SPDK's interface is read at test time from what the test extras install, not from a copy in
this repository: every sub-command of SPDK's ``rpc.py`` parser is run against a dry-run
client twice, once with every option given and once with only what it requires, and the
JSON-RPC requests it would send are collected. Values are placeholders of the argument's
type; only the method names, parameter names and JSON types matter to the tests.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
from typing import Any

# Arguments whose text SPDK's CLI parses itself: placeholders of the right shape.
SHAPED = {
    "luns": "Malloc0:0",
    "pg_ig_maps": "1:1",
    "portals": "127.0.0.1:3260",
    "tpoint_mask": "0x1",  # parsed as hex by SPDK's CLI
}


def _fill(action: argparse.Action) -> list[str]:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                           argparse._StoreConstAction, argparse._CountAction,
                           argparse.BooleanOptionalAction)):
        return action.option_strings[:1]
    if action.dest in SHAPED:
        value = SHAPED[action.dest]
    elif action.choices:
        value = str(list(action.choices)[0])
    elif action.type is int:
        value = "1"
    elif action.type is float:
        value = "1.5"
    else:
        value = "x"
    count = action.nargs if isinstance(action.nargs, int) else 1
    return action.option_strings[:1] + [value] * count


@functools.cache
def spdk_cli_requests() -> dict[str, list[dict[str, Any]]]:
    """method -> the params objects SPDK's CLI sends for it (full and minimal forms)."""
    from spdk import spdk_rpc
    from spdk.rpc.client import JSONRPCDryRunClient

    parser, sub = spdk_rpc.create_parser()
    spdk_rpc.suppress_cli_prints()
    found: dict[str, list[dict[str, Any]]] = {}
    for name, sp in sub.choices.items():
        actions = [a for a in sp._actions if not isinstance(a, argparse._HelpAction)]
        for every_option in (True, False):
            argv = [name]
            for a in actions:
                if every_option or not a.option_strings or a.required:
                    argv += _fill(a)
            client = JSONRPCDryRunClient(batch_mode=True)
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    args = parser.parse_args(argv)
                    args.client = client
                    args.func(args)
            except (Exception, SystemExit):
                continue  # a placeholder the command cannot use; the other form may do
            for req in client._reqs:
                found.setdefault(req["method"], []).append(dict(req.get("params") or {}))
    return found


def minimal_requests() -> dict[str, dict[str, Any]]:
    """method -> the params SPDK's CLI sends with only the required arguments (the smallest)."""
    return {m: min(reqs, key=len) for m, reqs in spdk_cli_requests().items()}
