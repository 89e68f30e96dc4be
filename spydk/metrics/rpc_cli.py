"""`spydk rpc metrics_*` (spydk only)."""
from __future__ import annotations

import argparse

from spydk.rpc.cli import Call, add_simple, print_dict


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("metrics_start_exporter", help="Serve Prometheus metrics over HTTP (spydk only)")
    p.add_argument("-a", "--address", help="address to bind (default 127.0.0.1; non-loopback needs --allow-remote)")
    p.add_argument("-p", "--port", type=int, help="TCP port (default 9464)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback address (no authentication!)")
    p.set_defaults(func=lambda a: print_dict(call("metrics_start_exporter", {
        "address": a.address, "port": a.port, "allow_remote": a.allow_remote or None})))
    add_simple(sub, call, "metrics_stop_exporter", "Stop serving Prometheus metrics (spydk only)")
    add_simple(sub, call, "metrics_get_exporter", "Show the Prometheus endpoint (spydk only)")
