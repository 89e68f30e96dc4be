"""`spydk top`: SPDK's spdk_top for spydk (and SPDK's own apps): live threads, pollers,
cores and bdevs of a running target, read over its RPC socket.

    spydk top [-r SOCKET] [-d SECONDS] [--tab threads|pollers|cores|bdevs] [--sort COLUMN]
    spydk top --once ...        print one screen (two samples, -d apart) and exit

Keys: 1-4 or Tab switch tabs, s / S next / previous sort column, i invert the order,
r cycle the refresh interval, q quit.

Built on ``rich`` (a renderer, not a framework): the screen is one table redrawn per
sample, and keys come from the terminal in cbreak mode, so the loop stays a plain
sample-render-wait cycle that also works with ``--once`` in scripts. Figures per second
and busy percentages are deltas between two samples, as spdk_top computes them; the
stats methods are the ones spdk_top calls (framework_get_reactors, thread_get_stats,
thread_get_pollers) plus bdev_get_iostat, read leniently so SPDK's apps work too.
"""
from __future__ import annotations

import argparse
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spydk.rpc.client import DEFAULT_SOCKET, Client, ClientError, NoServerError
from spydk.rpc.errors import RpcError

TABS = ("threads", "pollers", "cores", "bdevs")
INTERVALS = (0.5, 1.0, 2.0, 5.0)


@dataclass
class Snapshot:
    t: float                                  # monotonic seconds of the sample
    tick_rate: int = 1_000_000_000
    reactors: list[dict[str, Any]] = field(default_factory=list)
    threads: list[dict[str, Any]] = field(default_factory=list)
    pollers: list[dict[str, Any]] = field(default_factory=list)  # per thread
    bdevs: list[dict[str, Any]] = field(default_factory=list)
    bdev_tick_rate: int = 1_000_000_000


class TargetGone(Exception):
    """The target stopped answering (the message says which socket)."""


def sample(client: Client) -> Snapshot:
    """One round of the stats RPCs."""
    s = Snapshot(time.monotonic())
    r = client.call("framework_get_reactors")
    s.tick_rate = int(r.get("tick_rate") or s.tick_rate)
    s.reactors = r.get("reactors", [])
    s.threads = client.call("thread_get_stats").get("threads", [])
    s.pollers = client.call("thread_get_pollers").get("threads", [])
    try:
        io = client.call("bdev_get_iostat")
    except RpcError:
        io = {}  # an app without the bdev layer
    s.bdevs = io.get("bdevs", [])
    s.bdev_tick_rate = int(io.get("tick_rate") or s.bdev_tick_rate)
    return s


def _pct(busy: float, idle: float) -> float:
    total = busy + idle
    return 100.0 * busy / total if total > 0 else 0.0


def _by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {i.get(key): i for i in items}


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]        # raw values (numbers sort as numbers)
    formats: list[Callable[[Any], str]]


def _int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def _f1(v: Any) -> str:
    return f"{v:.1f}"


def _f2(v: Any) -> str:
    return f"{v:.2f}"


def _s(v: Any) -> str:
    return str(v)


def build(tab: str, prev: Snapshot | None, cur: Snapshot) -> Table:
    """The rows of one tab from two samples (prev None: totals only, rates 0)."""
    us = 1e6 / cur.tick_rate
    dt = (cur.t - prev.t) if prev is not None else 0.0
    core_of: dict[Any, int] = {}
    for c in cur.reactors:
        for lw in c.get("lw_threads", []):
            core_of[lw.get("id")] = c.get("lcore", 0)
    if tab == "threads":
        old = _by(prev.threads, "id") if prev else {}
        rows = []
        for t in cur.threads:
            o = old.get(t.get("id")) or {}
            db = t.get("busy", 0) - o.get("busy", 0) if o else 0
            di = t.get("idle", 0) - o.get("idle", 0) if o else 0
            rows.append([t.get("name", "?"), t.get("id", 0), core_of.get(t.get("id"), 0),
                         t.get("active_pollers_count", 0), t.get("timed_pollers_count", 0),
                         t.get("paused_pollers_count", 0), int(t.get("idle", 0) * us),
                         int(t.get("busy", 0) * us), _pct(db, di)])
        return Table(["Thread name", "ID", "Core", "Active pollers", "Timed pollers", "Paused pollers",
                      "Idle [us]", "Busy [us]", "Busy %"], rows,
                     [_s, _s, _s, _int, _int, _int, _int, _int, _f1])
    if tab == "pollers":
        old_p: dict[tuple[Any, Any], dict[str, Any]] = {}
        if prev:
            for th in prev.pollers:
                for kind in ("active_pollers", "timed_pollers", "paused_pollers"):
                    for p in th.get(kind, []):
                        old_p[(th.get("id"), p.get("id"))] = p
        rows = []
        for th in cur.pollers:
            for kind in ("active_pollers", "timed_pollers", "paused_pollers"):
                for p in th.get(kind, []):
                    op = old_p.get((th.get("id"), p.get("id")))
                    runs = p.get("run_count", 0)
                    rate = (runs - op.get("run_count", 0)) / dt if op and dt > 0 else 0.0
                    period = p.get("period_ticks", 0) * us
                    rows.append([p.get("name", "?"), kind.split("_")[0], th.get("name", "?"), runs, rate,
                                 p.get("busy_count", 0), int(period), p.get("state", "")])
        return Table(["Poller name", "Type", "On thread", "Run count", "Runs/s", "Busy count",
                      "Period [us]", "State"], rows, [_s, _s, _s, _int, _f1, _int, _int, _s])
    if tab == "cores":
        old = _by(prev.reactors, "lcore") if prev else {}
        pollers_of = {th.get("id"): th.get("active_pollers_count", 0) + th.get("timed_pollers_count", 0)
                      + th.get("paused_pollers_count", 0) for th in cur.threads}
        rows = []
        for c in cur.reactors:
            o = old.get(c.get("lcore")) or {}
            db = c.get("busy", 0) - o.get("busy", 0) if o else 0
            di = c.get("idle", 0) - o.get("idle", 0) if o else 0
            lws = c.get("lw_threads", [])
            rows.append([c.get("lcore", 0), len(lws), sum(pollers_of.get(t.get("id"), 0) for t in lws),
                         int(c.get("idle", 0) * us), int(c.get("busy", 0) * us), _pct(db, di),
                         "interrupt" if c.get("in_interrupt") else "poll"])
        return Table(["Core", "Threads", "Pollers", "Idle [us]", "Busy [us]", "Busy %", "Mode"], rows,
                     [_s, _int, _int, _int, _int, _f1, _s])
    if tab == "bdevs":
        old = _by(prev.bdevs, "name") if prev else {}
        bus = 1e6 / cur.bdev_tick_rate
        rows = []
        for b in cur.bdevs:
            ob = old.get(b.get("name"))

            def d(key: str, b: dict[str, Any] = b, o: dict[str, Any] | None = ob) -> float:
                return (b.get(key, 0) - o.get(key, 0)) if o is not None else 0.0
            rd, wr = d("num_read_ops"), d("num_write_ops")
            rows.append([
                b.get("name", "?"),
                rd / dt if dt > 0 else 0.0, wr / dt if dt > 0 else 0.0,
                d("bytes_read") / dt / 2**20 if dt > 0 else 0.0,
                d("bytes_written") / dt / 2**20 if dt > 0 else 0.0,
                d("read_latency_ticks") * bus / rd if rd else 0.0,
                d("write_latency_ticks") * bus / wr if wr else 0.0,
                b.get("num_read_ops", 0) + b.get("num_write_ops", 0),
                sum((b.get("io_error") or {}).values()),
            ])
        return Table(["Bdev name", "Read IOPS", "Write IOPS", "Read MiB/s", "Write MiB/s",
                      "Read lat [us]", "Write lat [us]", "Total I/O", "Errors"], rows,
                     [_s, _f1, _f1, _f2, _f2, _f1, _f1, _int, _int])
    raise ValueError(f"unknown tab {tab!r}; tabs: {', '.join(TABS)}")


def sort_rows(table: Table, col: int, reverse: bool) -> list[list[Any]]:
    def key(row: list[Any]) -> tuple[int, Any]:
        v = row[col]
        return (0, v) if isinstance(v, int | float) else (1, str(v))
    return sorted(table.rows, key=key, reverse=reverse)


@dataclass
class View:
    tab: str = "threads"
    sort_col: dict[str, int] = field(default_factory=dict)   # per tab; default: first column
    reverse: dict[str, bool] = field(default_factory=dict)
    interval: float = 1.0

    def key(self, k: str, ncols: int) -> bool:
        """Apply a key press; False means quit."""
        if k in ("q", "Q", "\x03"):
            return False
        if k in "1234" and k:
            self.tab = TABS[int(k) - 1]
        elif k == "\t":
            self.tab = TABS[(TABS.index(self.tab) + 1) % len(TABS)]
        elif k == "s":
            self.sort_col[self.tab] = (self.sort_col.get(self.tab, 0) + 1) % ncols
        elif k == "S":
            self.sort_col[self.tab] = (self.sort_col.get(self.tab, 0) - 1) % ncols
        elif k == "i":
            self.reverse[self.tab] = not self.reverse.get(self.tab, False)
        elif k == "r":
            i = INTERVALS.index(self.interval) if self.interval in INTERVALS else 0
            self.interval = INTERVALS[(i + 1) % len(INTERVALS)]
        return True


def render(view: View, table: Table, socket_path: str, when: str) -> Any:
    from rich.console import Group
    from rich.table import Table as RTable
    from rich.text import Text

    col = view.sort_col.get(view.tab, 0) % max(1, len(table.columns))
    rev = view.reverse.get(view.tab, False)
    tabs = Text()
    for i, t in enumerate(TABS, 1):
        tabs.append(f" [{i}] {t.capitalize()} ", style="bold reverse" if t == view.tab else "")
    head = Text(f"spydk top  {socket_path}  {when}  refresh {view.interval:g}s  "
                f"sort: {table.columns[col]} {'desc' if rev else 'asc'}", style="bold")
    rt = RTable(expand=True, show_lines=False, header_style="bold cyan")
    for i, c in enumerate(table.columns):
        mark = (" v" if rev else " ^") if i == col else ""
        rt.add_column(Text(c + mark), justify="left" if i == 0 or table.formats[i] is _s else "right",
                      no_wrap=True)
    for row in sort_rows(table, col, rev):
        rt.add_row(*(f(v) for f, v in zip(table.formats, row, strict=True)))
    keys = Text("1-4/Tab: tab  s/S: sort column  i: invert  r: refresh interval  q: quit", style="dim")
    return Group(head, tabs, rt, keys)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spydk top", description="Live view of a running spydk (or SPDK) target.")
    p.add_argument("-r", "--rpc-socket", default=DEFAULT_SOCKET, help=f"RPC socket (default {DEFAULT_SOCKET})")
    p.add_argument("-d", "--delay", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--tab", choices=TABS, default="threads", help="tab to start on")
    p.add_argument("--sort", help="column to sort by (its name, case-insensitive)")
    p.add_argument("--reverse", action="store_true", help="sort descending")
    p.add_argument("--once", action="store_true", help="print one screen and exit (no terminal needed)")
    return p


def _gone(path: str, e: Exception) -> TargetGone:
    return TargetGone(f"lost the target at {path}: {e}. Is it still running? "
                      f"(start it again, or point -r at its socket)")


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.delay <= 0:
        print("spydk top: -d must be more than 0 seconds", file=sys.stderr)
        return 2
    view = View(tab=a.tab, interval=a.delay)
    try:
        client = Client(a.rpc_socket, timeout=5.0)
    except NoServerError:
        print(f"spydk top: no SPDK application is listening at {a.rpc_socket}; start one "
              f"(spydk tgt) or point -r at its socket", file=sys.stderr)
        return 1
    except ClientError as e:
        print(f"spydk top: {e}", file=sys.stderr)
        return 1
    try:
        if a.sort:
            cols = build(view.tab, None, _sample(client, a.rpc_socket)).columns
            names = [c.lower() for c in cols]
            if a.sort.lower() not in names:
                print(f"spydk top: no column {a.sort!r} on tab {view.tab}; columns: {', '.join(cols)}",
                      file=sys.stderr)
                return 2
            view.sort_col[view.tab] = names.index(a.sort.lower())
        view.reverse[view.tab] = a.reverse
        if a.once or not sys.stdin.isatty():
            return _once(client, view, a.rpc_socket)
        return _interactive(client, view, a.rpc_socket)
    except TargetGone as e:
        print(f"spydk top: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _sample(client: Client, path: str) -> Snapshot:
    try:
        return sample(client)
    except (ClientError, OSError) as e:
        raise _gone(path, e) from None


def _once(client: Client, view: View, path: str) -> int:
    from rich.console import Console
    prev = _sample(client, path)
    time.sleep(view.interval)
    cur = _sample(client, path)
    Console(width=int(os.environ.get("COLUMNS", "160"))).print(
        render(view, build(view.tab, prev, cur), path, time.strftime("%H:%M:%S")))
    return 0


def _interactive(client: Client, view: View, path: str) -> int:
    import termios
    import tty

    from rich.console import Console
    from rich.live import Live

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    console = Console()
    prev: Snapshot | None = None
    cur = _sample(client, path)
    try:
        tty.setcbreak(fd)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                table = build(view.tab, prev, cur)
                live.update(render(view, table, path, time.strftime("%H:%M:%S")), refresh=True)
                deadline = time.monotonic() + view.interval
                redraw = False
                while not redraw:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    ready, _, _ = select.select([fd], [], [], left)
                    if not ready:
                        break
                    k = os.read(fd, 16).decode(errors="replace")
                    for ch in k:
                        if not view.key(ch, len(table.columns)):
                            return 0
                    redraw = True  # show the new tab/sort at once, with the samples we have
                if not redraw:
                    prev, cur = cur, _sample(client, path)
    except KeyboardInterrupt:
        return 0
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
