"""Reading a trace: spdk_trace's text lines and Chrome/Perfetto trace JSON.

Objects (an NVMe/TCP request, a controller command, a bdev I/O, an iSCSI task) are
numbered as spdk_trace numbers them: a record of a ``new_object`` trace point gives its
object id the next index of that object type; later records with the same id belong to it
until the id starts a new object. A "ctx" argument names the object one layer up (the
controller command of a bdev I/O, the TCP request of a controller command), which is how
the Chrome export draws each I/O's path through the layers.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from spydk.trace.ring import Entry, TraceFile

_PTR_ARGS = frozenset(("ctx", "qpair", "pdu"))
_NAME_LEN = 24  # width of the name column, as spdk_trace prints it


@dataclass
class _Tp:
    name: str
    owner_type: int
    object_type: int
    new_object: bool
    args: list[str]
    str_arg: str
    group: str


@dataclass
class Span:
    """One object's life: its records, first to last."""
    object_type: int
    object_id: int
    index: int
    label: str                 # e.g. "r12"
    group: str
    records: list[Entry] = field(default_factory=list)
    parent: Span | None = None

    @property
    def start(self) -> int:
        return self.records[0].tsc

    @property
    def end(self) -> int:
        return self.records[-1].tsc


def _tpoints(tf: TraceFile) -> dict[int, _Tp]:
    d = tf.description
    groups = {int(k): v for k, v in d["groups"].items()}
    return {t["id"]: _Tp(t["name"], t["owner_type"], t["object_type"], t["new_object"], t["args"],
                         t["str_arg"], groups.get(t["id"] // 64, "?"))
            for t in d["tpoints"]}


class Decoded:
    """Entries with their trace point, object span and object-relative time."""

    def __init__(self, tf: TraceFile):
        self.tf = tf
        self.tps = _tpoints(tf)
        self.obj_prefix = {int(k): v for k, v in tf.description["object_prefix"].items()}
        self.owner_prefix = {int(k): v for k, v in tf.description["owner_prefix"].items()}
        self.spans: list[Span] = []
        self.span_of: list[Span | None] = []
        live: dict[tuple[int, int], Span] = {}
        counters: dict[int, int] = {}
        for e in tf.entries:
            tp = self.tps.get(e.tpoint_id)
            sp: Span | None = None
            if tp is not None and tp.object_type:
                key = (tp.object_type, e.object_id)
                if tp.new_object:
                    n = counters.get(tp.object_type, 0)
                    counters[tp.object_type] = n + 1
                    sp = Span(tp.object_type, e.object_id, n,
                              f"{self.obj_prefix.get(tp.object_type, 'o')}{n}", tp.group)
                    if "ctx" in tp.args:
                        sp.parent = self._find_parent(live, e.args[tp.args.index("ctx")], tp.object_type)
                    live[key] = sp
                    self.spans.append(sp)
                else:
                    sp = live.get(key)
                if sp is not None:
                    sp.records.append(e)
            self.span_of.append(sp)

    @staticmethod
    def _find_parent(live: dict[tuple[int, int], Span], ctx: int, own_type: int) -> Span | None:
        """The most recently started live object of another type whose id is ``ctx`` (layers
        may use the same request object as their id: the innermost one started last)."""
        best: Span | None = None
        for (ot, oid), sp in live.items():
            if oid == ctx and ot != own_type and (best is None or sp.start > best.start):
                best = sp
        return best

    def root(self, sp: Span) -> Span:
        while sp.parent is not None:
            sp = sp.parent
        return sp


def format_text(tf: TraceFile, lcore: int | None = None, print_tsc: bool = False) -> Iterator[str]:
    """Lines as spdk_trace prints them: lcore, microseconds, owner, name, size, object id, args."""
    dec = Decoded(tf)
    yield f"TSC Rate: {tf.tsc_rate}"
    counts: dict[int, int] = {}
    for e in tf.entries:
        counts[e.lcore] = counts.get(e.lcore, 0) + 1
    for lc in sorted(counts):
        if lcore is None or lc == lcore:
            yield f"Trace Size of lcore ({lc}): {counts[lc]}"
    if not tf.entries:
        return
    offset = tf.entries[0].tsc
    us_per_tick = 1e6 / tf.tsc_rate
    for e, sp in zip(tf.entries, dec.span_of, strict=True):
        if lcore is not None and e.lcore != lcore:
            continue
        tp = dec.tps.get(e.tpoint_id)
        parts = [f"{e.lcore:2d}: {(e.tsc - offset) * us_per_tick:10.3f} "]
        if print_tsc:
            parts.append(f"({e.tsc - offset:9d}) ")
        prefix = dec.owner_prefix.get(tp.owner_type, "") if tp else ""
        parts.append(f"{prefix}{e.thread_id:02d} " if prefix else "    ")
        parts.append(f"{(tp.name if tp else f'TPOINT_{e.tpoint_id}'):<{_NAME_LEN}} ")
        parts.append(f"size: {e.size:6d} " if e.size else " " * 13)
        if tp is not None and tp.object_type:
            if sp is None:
                parts.append(f"id:    {'N/A':<17}")
            else:
                ids = sp.label + (f" ({sp.parent.label})" if sp.parent is not None and tp.new_object else "")
                parts.append(f"id:    {ids:<17}")
                if not tp.new_object:
                    parts.append(f"{'time: ':<7}{(e.tsc - sp.start) * us_per_tick:<16.3f} ")
        elif e.object_id:
            parts.append(f"{'object: ':<7.7}0x{e.object_id:<14x} ")
        if tp is not None:
            for name, val in zip(tp.args, e.args, strict=False):
                if not name:
                    continue
                if name in _PTR_ARGS:
                    parts.append(f"{(name + ': '):<7.7}0x{val:<14x} ")
                else:
                    signed = val - (1 << 64) if val >= 1 << 63 else val
                    parts.append(f"{(name + ': '):<7.7}{signed:<16d} ")
            if tp.str_arg:
                parts.append(f"{(tp.str_arg + ': '):<7.7}{e.string:<16.16} ")
        yield "".join(parts).rstrip()


def to_chrome(tf: TraceFile) -> dict[str, Any]:
    """Chrome trace event JSON (opens in chrome://tracing and ui.perfetto.dev).

    Each object is an async slice (begin/end with its label as id) in its layer's category,
    with a nested slice per state; ``args`` name its parent object and the I/O it belongs
    to (the root object, e.g. the TCP request), so one I/O's path through transport,
    controller and bdev can be followed. Records about no object are instant events on
    their thread.
    """
    dec = Decoded(tf)
    pid = tf.pid
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
         "args": {"name": f"{tf.description.get('app_name', 'spydk')} (pid {pid})"}},
    ]
    if not tf.entries:
        return {"traceEvents": events, "displayTimeUnit": "ns"}
    offset = tf.entries[0].tsc
    us = 1e6 / tf.tsc_rate

    def ts(t: int) -> float:
        return round((t - offset) * us, 3)

    threads: set[int] = set()
    for sp in dec.spans:
        first = sp.records[0]
        tp0 = dec.tps[first.tpoint_id]
        root = dec.root(sp)
        args: dict[str, Any] = {"object": sp.label, "io": root.label, "layer": sp.group}
        if sp.parent is not None:
            args["parent"] = sp.parent.label
        if tp0.str_arg and first.string:
            args[tp0.str_arg] = first.string
        for name, val in zip(tp0.args, first.args, strict=False):
            if name and name not in _PTR_ARGS:
                args[name] = val
        if first.size:
            args["size"] = first.size
        sid = f"{sp.group}:{sp.label}"
        tid = first.thread_id
        threads.add(tid)
        events.append({"ph": "b", "cat": sp.group, "name": f"{sp.group} {sp.label}", "id": sid,
                       "pid": pid, "tid": tid, "ts": ts(sp.start), "args": args})
        recs = sp.records
        for a, b in zip(recs, recs[1:], strict=False):
            name = dec.tps[a.tpoint_id].name
            events.append({"ph": "b", "cat": sp.group, "name": name, "id": sid, "pid": pid, "tid": tid,
                           "ts": ts(a.tsc)})
            events.append({"ph": "e", "cat": sp.group, "name": name, "id": sid, "pid": pid, "tid": tid,
                           "ts": ts(b.tsc)})
        last = dec.tps[recs[-1].tpoint_id].name
        events.append({"ph": "n", "cat": sp.group, "name": last, "id": sid, "pid": pid, "tid": tid,
                       "ts": ts(sp.end)})
        events.append({"ph": "e", "cat": sp.group, "name": f"{sp.group} {sp.label}", "id": sid,
                       "pid": pid, "tid": tid, "ts": ts(sp.end)})
    for e, osp in zip(tf.entries, dec.span_of, strict=True):
        if osp is not None:
            continue
        tp = dec.tps.get(e.tpoint_id)
        threads.add(e.thread_id)
        args = {}
        if tp is not None:
            args = {n: v for n, v in zip(tp.args, e.args, strict=False) if n}
            if tp.str_arg:
                args[tp.str_arg] = e.string
        events.append({"ph": "i", "s": "t", "cat": tp.group if tp else "?",
                       "name": tp.name if tp else f"TPOINT_{e.tpoint_id}", "pid": pid, "tid": e.thread_id,
                       "ts": ts(e.tsc), "args": args})
    for tid in sorted(threads):
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": f"spydk thread {tid}" if tid else "no thread"}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"tsc_rate": tf.tsc_rate, "entries": len(tf.entries)}}
