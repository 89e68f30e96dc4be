"""`spydk rpc` commands of the framework: app, log, notify, thread, save/load_config.

Flags and positional arguments follow SPDK's rpc.py, so scripts written for it work.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from spydk.rpc.cli import Call, add_simple, print_dict

LOG_LEVELS = ["ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"]
KILL_SIGNALS = ["SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1"]


def add_commands(sub: argparse._SubParsersAction, call: Call) -> None:
    from spydk.apps import trace_rpc_cli
    _app(sub, call)
    _log(sub, call)
    _notify(sub, call)
    _config(sub, call)
    trace_rpc_cli.add_commands(sub, call)


def _app(sub: argparse._SubParsersAction, call: Call) -> None:
    add_simple(sub, call, "spdk_get_version", "Get the application's version")

    p = sub.add_parser("rpc_get_methods", help="List the RPC methods")
    p.add_argument("-c", "--current", action="store_true", help="only methods callable in the current state")
    p.add_argument("-i", "--include-aliases", action="store_true", help="include deprecated aliases")
    p.set_defaults(func=lambda a: print_dict(call("rpc_get_methods", {"current": a.current,
                                                                      "include_aliases": a.include_aliases})))

    p = sub.add_parser("spdk_kill_instance", help="Send a signal to the application (SIGINT/SIGTERM: shut down)")
    p.add_argument("sig_name", choices=KILL_SIGNALS, help="signal to send")
    p.set_defaults(func=lambda a: call("spdk_kill_instance", {"sig_name": a.sig_name}))

    add_simple(sub, call, "framework_start_init", "Initialize the subsystems (after --wait-for-rpc)", None)
    add_simple(sub, call, "framework_wait_init", "Wait until the subsystems are initialized", None)
    add_simple(sub, call, "framework_get_reactors", "Show the reactors and their threads")
    add_simple(sub, call, "framework_get_subsystems", "List the subsystems in initialization order")
    add_simple(sub, call, "framework_get_scheduler", "Show the thread scheduler and its period")

    p = sub.add_parser("framework_set_scheduler", help="Select the thread scheduler (static only)")
    p.add_argument("name", help="scheduler name (static)")
    p.add_argument("-p", "--period", type=int, help="scheduler period in microseconds")
    p.set_defaults(func=lambda a: print_dict(call("framework_set_scheduler", {
        k: v for k, v in (("name", a.name), ("period", a.period)) if v is not None})))

    p = sub.add_parser("thread_set_cpumask", help="Set a thread's cpumask (it keeps its own core)")
    p.add_argument("-i", "--id", type=int, required=True, help="thread id (thread_get_stats)")
    p.add_argument("-m", "--cpumask", required=True, help="hex mask (0x3) or core list ([0,1])")
    p.set_defaults(func=lambda a: print_dict(call("thread_set_cpumask", {"id": a.id, "cpumask": a.cpumask})))

    p = sub.add_parser("framework_get_config", help="Print a subsystem's configuration")
    p.add_argument("name", help="subsystem name")
    p.add_argument("--with-batches", action=argparse.BooleanOptionalAction, default=False,
                   help="keep batch arrays in the output")
    p.set_defaults(func=lambda a: print_dict(call("framework_get_config", {"name": a.name,
                                                                           "with_batches": a.with_batches})))

    add_simple(sub, call, "thread_get_stats", "Show busy/idle statistics of every thread")
    add_simple(sub, call, "thread_get_pollers", "Show the pollers of every thread")
    add_simple(sub, call, "thread_get_io_channels", "Show the io_channels of every thread")

    p = sub.add_parser("spydk_set_poll_mode", help="spydk only: busy-poll the reactor, or go back to events")
    p.add_argument("enabled", choices=["true", "false"], help="true: busy-poll; false: event-driven")
    p.set_defaults(func=lambda a: call("spydk_set_poll_mode", {"enabled": a.enabled == "true"}))


def _log(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("log_set_flag", help="Turn on a log flag")
    p.add_argument("flag", help='log flag name (e.g. "bdev") or "all"')
    p.set_defaults(func=lambda a: call("log_set_flag", {"flag": a.flag}))

    p = sub.add_parser("log_clear_flag", help="Turn off a log flag")
    p.add_argument("flag", help='log flag name (e.g. "bdev") or "all"')
    p.set_defaults(func=lambda a: call("log_clear_flag", {"flag": a.flag}))

    add_simple(sub, call, "log_get_flags", "Show the log flags")

    p = sub.add_parser("log_set_level", help="Set the log level")
    p.add_argument("level", choices=LOG_LEVELS, help="log level")
    p.set_defaults(func=lambda a: call("log_set_level", {"level": a.level}))
    add_simple(sub, call, "log_get_level", "Show the log level")

    p = sub.add_parser("log_set_print_level", help="Set the level printed to stderr")
    p.add_argument("level", choices=LOG_LEVELS, help="log print level")
    p.set_defaults(func=lambda a: call("log_set_print_level", {"level": a.level}))
    add_simple(sub, call, "log_get_print_level", "Show the level printed to stderr")

    p = sub.add_parser("log_enable_timestamps", help="Turn timestamps in log lines on or off")
    p.add_argument("--timestamps", dest="enabled", action=argparse.BooleanOptionalAction, required=True,
                   help="--timestamps or --no-timestamps")
    p.set_defaults(func=lambda a: call("log_enable_timestamps", {"enabled": a.enabled}))


def _notify(sub: argparse._SubParsersAction, call: Call) -> None:
    add_simple(sub, call, "notify_get_types", "List the notification types")
    p = sub.add_parser("notify_get_notifications", help="Get notifications")
    p.add_argument("-i", "--id", type=int, help="first notification id (default 0)")
    p.add_argument("-n", "--max", type=int, help="most notifications to return (default: all)")
    p.set_defaults(func=lambda a: print_dict(call("notify_get_notifications", {"id": a.id, "max": a.max})))


# -- save_config / load_config: client-side compositions, as in rpc.py -----------------------

def save_config(call: Call, out: TextIO, indent: int = 2, subsystems: str | None = None,
                with_batches: bool = False) -> None:
    """Write {"subsystems": [{"subsystem", "config"}...]} in init order (with dependencies)."""
    subs = call("framework_get_subsystems")
    closure: dict[str, set[str]] = {}
    for s in subs:
        closure[s["subsystem"]] = {s["subsystem"]}.union(*(closure.get(d, {d}) for d in s["depends_on"]))
    if subsystems is None:
        wanted = set(closure)
    else:
        wanted = set()
        for name in subsystems.split(","):
            if name not in closure:
                raise SystemExit(f"spydk rpc: save_config: no subsystem {name!r} "
                                 f"(the application has: {', '.join(closure)})")
            wanted |= closure[name]
    doc: dict[str, Any] = {"subsystems": [
        {"subsystem": s["subsystem"],
         "config": call("framework_get_config", {"name": s["subsystem"], "with_batches": with_batches})}
        for s in subs if s["subsystem"] in wanted]}
    json.dump(doc, out, indent=None if indent < 0 else indent)
    out.write("\n")


def _read_json(source: str | None) -> Any:
    where = source or "stdin"
    try:
        if source is None:
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        return json.loads(text)
    except OSError as e:
        raise SystemExit(f"spydk rpc: cannot read {where}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"spydk rpc: {where} is not valid JSON: {e.msg} at line {e.lineno} "
                         f"column {e.colno}") from None


def _entries(config: list[Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for x in config or []:
        if isinstance(x, list):
            out.extend(_entries(x))
        else:
            out.append(x)
    return out


def load_config(call: Call, source: str | None, include_aliases: bool = False) -> None:
    """Replay a saved config on a running app: every entry the app's state allows, then
    framework_start_init when it is allowed, then what became allowed, until nothing moves."""
    doc = _read_json(source)
    subs = [(s["subsystem"], _entries(s.get("config"))) for s in doc.get("subsystems", [])]
    subs = [(name, es) for name, es in subs if es]
    known = set(call("rpc_get_methods", {"include_aliases": include_aliases}))
    if not subs:
        if "framework_start_init" in call("rpc_get_methods", {"current": True}):
            call("framework_start_init")
        return
    for name, es in subs:
        for e in es:
            if e.get("method") not in known:
                raise SystemExit(f"spydk rpc: load_config: subsystem {name!r}: method {e.get('method')!r} is "
                                 f"not known to the application")
    while subs:
        now = set(call("rpc_get_methods", {"current": True, "include_aliases": include_aliases}))
        progressed = False
        for _name, es in subs:
            for e in list(es):
                if e["method"] in now:
                    call(e["method"], e.get("params"))
                    es.remove(e)
                    progressed = True
        subs = [(n, es) for n, es in subs if es]
        if "framework_start_init" in now:
            call("framework_start_init")
            progressed = True
        if not progressed:
            break
    if subs:
        left = ", ".join(f"{e['method']} ({n})" for n, es in subs for e in es)
        print(f"spydk rpc: load_config: skipped entries not callable in the app's current state: {left}")


def _config(sub: argparse._SubParsersAction, call: Call) -> None:
    p = sub.add_parser("save_config", help="Print the live configuration as a --json config file")
    p.add_argument("-i", "--indent", type=int, default=2, help="indent (negative: compact). Default 2")
    p.add_argument("-s", "--subsystems", help="comma-separated subsystems to save (with their dependencies)")
    p.add_argument("--with-batches", action=argparse.BooleanOptionalAction, default=False,
                   help="keep batch arrays in the output")
    p.set_defaults(func=lambda a: save_config(call, sys.stdout, a.indent, a.subsystems, a.with_batches))

    p = sub.add_parser("load_config", help="Apply a configuration saved by save_config")
    p.add_argument("-i", "--include-aliases", action="store_true", help="accept deprecated method aliases")
    p.add_argument("-j", "--json-conf", help="config file (default: stdin)")
    p.set_defaults(func=lambda a: load_config(call, a.json_conf, a.include_aliases))

    p = sub.add_parser("save_subsystem_config", help="Print one subsystem's configuration")
    p.add_argument("-i", "--indent", type=int, default=2, help="indent (negative: compact). Default 2")
    p.add_argument("-n", "--name", required=True, help="subsystem name")
    p.add_argument("--with-batches", action=argparse.BooleanOptionalAction, default=False,
                   help="keep batch arrays in the output")

    def save_one(a: argparse.Namespace) -> None:
        doc = {"subsystem": a.name,
               "config": call("framework_get_config", {"name": a.name, "with_batches": a.with_batches})}
        json.dump(doc, sys.stdout, indent=None if a.indent < 0 else a.indent)
        sys.stdout.write("\n")
    p.set_defaults(func=save_one)

    p = sub.add_parser("load_subsystem_config", help="Apply one subsystem's configuration")
    p.add_argument("-j", "--json-conf", help="config file (default: stdin)")

    def load_one(a: argparse.Namespace) -> None:
        doc = _read_json(a.json_conf)
        now = set(call("rpc_get_methods", {"current": True}))
        left = []
        for e in _entries(doc.get("config")):
            if e.get("method") in now:
                call(e["method"], e.get("params"))
            else:
                left.append(e.get("method"))
        if left:
            print(f"spydk rpc: load_subsystem_config: skipped (not callable now): {', '.join(map(str, left))}")
    p.set_defaults(func=load_one)
