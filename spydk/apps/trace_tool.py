"""`spydk trace`: print a trace ring as SPDK's spdk_trace does, or export it for a browser.

    spydk trace -s spydk_tgt -p 1234            the live ring of process 1234
    spydk trace -f /dev/shm/spydk_tgt_trace.pid1234 --chrome out.json
    spydk trace -s nvmf_tgt -i 0 -c 0 -t        shm id 0, lcore 0 only, with raw ticks

--chrome writes Chrome trace event JSON: open it in ui.perfetto.dev or chrome://tracing.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from spydk.trace.report import format_text, to_chrome
from spydk.trace.ring import TraceFile, TraceFormatError, parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk trace", description="Print or export a spydk trace ring.")
    p.add_argument("-s", dest="app_name", help="app name of a running process (spydk_tgt, nvmf_tgt, ...)")
    p.add_argument("-p", dest="pid", type=int, help="pid of the traced process (with -s)")
    p.add_argument("-i", dest="shm_id", type=int, help="shared memory id of the traced process (with -s)")
    p.add_argument("-f", dest="file", help="a trace file (a copy of the /dev/shm one); excludes -s")
    p.add_argument("-c", dest="lcore", type=int, help="only records of this lcore")
    p.add_argument("-t", dest="tsc", action="store_true", help="also print each record's ticks")
    p.add_argument("-j", dest="json", action="store_true", help="print the records as JSON")
    p.add_argument("--chrome", metavar="OUT", help="write Chrome/Perfetto trace JSON to OUT ('-': stdout)")
    return p


def _path(a: argparse.Namespace) -> str:
    if a.file and a.app_name:
        raise SystemExit("spydk trace: -f and -s are mutually exclusive")
    if a.file:
        return str(a.file)
    if not a.app_name:
        raise SystemExit("spydk trace: give -f FILE, or -s APP_NAME with -p PID or -i SHM_ID "
                         "(trace_get_info prints the path of a running target's ring)")
    if a.shm_id is not None:
        return f"/dev/shm/{a.app_name}_trace.{a.shm_id}"
    if a.pid is not None:
        return f"/dev/shm/{a.app_name}_trace.pid{a.pid}"
    raise SystemExit("spydk trace: with -s, give -p PID or -i SHM_ID")


def load(path: str) -> TraceFile:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SystemExit(f"spydk trace: {path} does not exist; is the process running with tracing "
                         f"on (-e GROUPS or trace_enable_tpoint_group)?") from None
    try:
        return parse(data)
    except TraceFormatError as e:
        raise SystemExit(f"spydk trace: {path}: {e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    tf = load(_path(a))
    if a.chrome:
        doc = to_chrome(tf)
        if a.chrome == "-":
            json.dump(doc, sys.stdout)
            sys.stdout.write("\n")
        else:
            with open(a.chrome, "w") as f:
                json.dump(doc, f)
            print(f"wrote {len(doc['traceEvents'])} events to {a.chrome}; open it in ui.perfetto.dev",
                  file=sys.stderr)
        return 0
    if a.json:
        json.dump({"tsc_rate": tf.tsc_rate, "tpoints": tf.description["tpoints"],
                   "entries": [{"lcore": e.lcore, "tsc": e.tsc, "tpoint": e.tpoint_id, "thread": e.thread_id,
                                "size": e.size, "object_id": e.object_id, "args": list(e.args),
                                "string": e.string}
                               for e in tf.entries if a.lcore is None or e.lcore == a.lcore]},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    try:
        for line in format_text(tf, a.lcore, a.tsc):
            print(line)
    except BrokenPipeError:
        pass
    return 0
