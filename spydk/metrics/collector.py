"""Prometheus metrics from the stats RPCs (what spdk_top and third-party exporters read).

A scrape calls the app's own stats methods (bdev_get_iostat, thread_get_stats, ...)
through its dispatcher, on the app thread, so the numbers are the same ones the RPCs
return and nothing extra is counted per I/O. Methods of subsystems the app does not have
are skipped. Names follow Prometheus conventions: ``spydk_`` prefix, base units
(seconds, bytes), ``_total`` on counters.
"""
from __future__ import annotations

import base64
import struct
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from spydk.rpc.errors import RpcError

_IO_TYPES = (("read", "bytes_read", "num_read_ops"), ("write", "bytes_written", "num_write_ops"),
             ("unmap", "bytes_unmapped", "num_unmap_ops"), ("copy", "bytes_copied", "num_copy_ops"))
# Histogram bucket bounds: powers of two nanoseconds from 1 us to ~17 s.
_LE_NS = tuple(1 << k for k in range(10, 35))


async def _call(app: Any, method: str, params: dict[str, Any] | None = None) -> Any:
    try:
        return await app.dispatcher.call(method, params)
    except RpcError:
        return None  # method absent in this app (no such subsystem) or not callable now


def histogram_buckets(data: str, shift: int) -> list[tuple[int, int]]:
    """(end value, count) of every non-empty bucket of SPDK's histogram layout."""
    raw = base64.b64decode(data)
    counts = struct.unpack(f"<{len(raw) // 8}Q", raw)
    out = []
    mask = (1 << shift) - 1
    for idx, c in enumerate(counts):
        if not c:
            continue
        r, i = idx >> shift, idx & mask
        if r == 0:
            end = i + 1
        else:
            width = 1 << (r - 1)
            end = (1 << (r + shift - 1)) + (i + 1) * width
        out.append((end, c))
    return out


async def collect(app: Any) -> list[Metric]:
    out: list[Metric] = []
    await _bdevs(app, out)
    await _threads(app, out)
    await _nvmf(app, out)
    await _iscsi(app, out)
    return out


async def _bdevs(app: Any, out: list[Metric]) -> None:
    st = await _call(app, "bdev_get_iostat")
    if st is None:
        return
    rate = st.get("tick_rate", 1_000_000_000) or 1_000_000_000
    ops = CounterMetricFamily("spydk_bdev_ops", "Completed bdev I/O by type", labels=["bdev", "type"])
    byt = CounterMetricFamily("spydk_bdev_bytes", "Bytes moved by completed bdev I/O", labels=["bdev", "type"])
    lat = CounterMetricFamily("spydk_bdev_latency_seconds", "Summed latency of completed bdev I/O",
                              labels=["bdev", "type"])
    lmax = GaugeMetricFamily("spydk_bdev_latency_max_seconds", "Largest latency since the last reset",
                             labels=["bdev", "type"])
    errs = CounterMetricFamily("spydk_bdev_io_errors", "Failed bdev I/O by status", labels=["bdev", "status"])
    for b in st.get("bdevs", []):
        name = b["name"]
        for t, bkey, okey in _IO_TYPES:
            ops.add_metric([name, t], b.get(okey, 0))
            byt.add_metric([name, t], b.get(bkey, 0))
            lat.add_metric([name, t], b.get(f"{t}_latency_ticks", 0) / rate)
            lmax.add_metric([name, t], b.get(f"max_{t}_latency_ticks", 0) / rate)
        for status, n in (b.get("io_error") or {}).items():
            errs.add_metric([name, status], n)
    out += [ops, byt, lat, lmax, errs]
    # Latency histograms of the bdevs that have one (bdev_enable_histogram).
    cfg = await _call(app, "framework_get_config", {"name": "bdev"}) or []
    hist = HistogramMetricFamily("spydk_bdev_io_latency_seconds",
                                 "bdev I/O latency (bdevs with bdev_enable_histogram on)", labels=["bdev"])
    any_hist = False
    for e in cfg:
        if e.get("method") != "bdev_enable_histogram" or not e["params"].get("enable"):
            continue
        name = e["params"]["name"]
        h = await _call(app, "bdev_get_histogram", {"name": name})
        if h is None:
            continue
        hr = h.get("tsc_rate", 1_000_000_000) or 1_000_000_000
        buckets = histogram_buckets(h["histogram"], h["bucket_shift"])
        cum: list[tuple[str, float]] = []
        total = 0
        i = 0
        for le in _LE_NS:
            lim = le * hr // 1_000_000_000
            while i < len(buckets) and buckets[i][0] <= lim:
                total += buckets[i][1]
                i += 1
            cum.append((repr(le / 1e9), total))
        grand = sum(c for _, c in buckets)
        cum.append(("+Inf", grand))
        # The sum is not kept by the histogram; the bucket midpoints estimate it.
        est = sum(end * c for end, c in buckets) / hr
        hist.add_metric([name], cum, est)
        any_hist = True
    if any_hist:
        out.append(hist)


async def _threads(app: Any, out: list[Metric]) -> None:
    r = await _call(app, "framework_get_reactors")
    if r is not None:
        rate = r.get("tick_rate", 1_000_000_000)
        busy = CounterMetricFamily("spydk_reactor_busy_seconds", "Time the reactor spent doing work",
                                   labels=["lcore"])
        idle = CounterMetricFamily("spydk_reactor_idle_seconds", "Time the reactor had nothing to do",
                                   labels=["lcore"])
        nthr = GaugeMetricFamily("spydk_reactor_threads", "Lightweight threads on the reactor", labels=["lcore"])
        for c in r.get("reactors", []):
            lc = str(c["lcore"])
            busy.add_metric([lc], c["busy"] / rate)
            idle.add_metric([lc], c["idle"] / rate)
            nthr.add_metric([lc], len(c.get("lw_threads", [])))
        out += [busy, idle, nthr]
    t = await _call(app, "thread_get_stats")
    if t is not None:
        rate = t.get("tick_rate", 1_000_000_000)
        busy = CounterMetricFamily("spydk_thread_busy_seconds", "Time a lightweight thread spent doing work",
                                   labels=["thread", "id"])
        idle = CounterMetricFamily("spydk_thread_idle_seconds", "Time a lightweight thread was idle",
                                   labels=["thread", "id"])
        pol = GaugeMetricFamily("spydk_thread_pollers", "Pollers of a thread by state",
                                labels=["thread", "id", "state"])
        for th in t.get("threads", []):
            lab = [th["name"], str(th["id"])]
            busy.add_metric(lab, th["busy"] / rate)
            idle.add_metric(lab, th["idle"] / rate)
            for st in ("active", "timed", "paused"):
                pol.add_metric(lab + [st], th.get(f"{st}_pollers_count", 0))
        out += [busy, idle, pol]
    p = await _call(app, "thread_get_pollers")
    if p is not None:
        runs = CounterMetricFamily("spydk_poller_runs", "Times a poller ran", labels=["thread", "poller"])
        bus = CounterMetricFamily("spydk_poller_busy_runs", "Times a poller ran and found work",
                                  labels=["thread", "poller"])
        for th in p.get("threads", []):
            for kind in ("active_pollers", "timed_pollers", "paused_pollers"):
                for po in th.get(kind, []):
                    lab = [th["name"], f"{po['name']}#{po['id']}"]
                    runs.add_metric(lab, po["run_count"])
                    bus.add_metric(lab, po["busy_count"])
        out += [runs, bus]


async def _nvmf(app: Any, out: list[Metric]) -> None:
    s = await _call(app, "nvmf_get_stats")
    if s is None:
        return
    qp = CounterMetricFamily("spydk_nvmf_qpairs_created", "NVMe-oF queue pairs created, by type",
                             labels=["poll_group", "type"])
    cur = GaugeMetricFamily("spydk_nvmf_qpairs", "NVMe-oF queue pairs connected now, by type",
                            labels=["poll_group", "type"])
    done = CounterMetricFamily("spydk_nvmf_commands_completed", "NVMe I/O commands completed",
                               labels=["poll_group"])
    pend = GaugeMetricFamily("spydk_nvmf_pending_bdev_io", "bdev I/O in flight for NVMe-oF commands",
                             labels=["poll_group"])
    conns = GaugeMetricFamily("spydk_nvmf_transport_connections", "Connections of a transport",
                              labels=["poll_group", "trtype"])
    for pg in s.get("poll_groups", []):
        n = pg["name"]
        qp.add_metric([n, "admin"], pg.get("admin_qpairs", 0))
        qp.add_metric([n, "io"], pg.get("io_qpairs", 0))
        cur.add_metric([n, "admin"], pg.get("current_admin_qpairs", 0))
        cur.add_metric([n, "io"], pg.get("current_io_qpairs", 0))
        done.add_metric([n], pg.get("completed_nvme_io", 0))
        pend.add_metric([n], pg.get("pending_bdev_io", 0))
        for tr in pg.get("transports", []):
            if "connections" in tr:
                conns.add_metric([n, tr["trtype"]], tr["connections"])
    out += [qp, cur, done, pend, conns]
    subs = await _call(app, "nvmf_get_subsystems") or []
    nsg = GaugeMetricFamily("spydk_nvmf_subsystem_namespaces", "Namespaces of a subsystem", labels=["nqn"])
    ctg = GaugeMetricFamily("spydk_nvmf_subsystem_controllers", "Controllers of a subsystem", labels=["nqn"])
    qpg = GaugeMetricFamily("spydk_nvmf_subsystem_qpairs", "Queue pairs of a subsystem by state",
                            labels=["nqn", "state"])
    for sub in subs:
        nqn = sub["nqn"]
        if sub.get("subtype") == "Discovery":
            continue
        nsg.add_metric([nqn], len(sub.get("namespaces", [])))
        ctrls = await _call(app, "nvmf_subsystem_get_controllers", {"nqn": nqn}) or []
        ctg.add_metric([nqn], len(ctrls))
        by_state: dict[str, int] = {}
        for q in await _call(app, "nvmf_subsystem_get_qpairs", {"nqn": nqn}) or []:
            by_state[q.get("state", "?")] = by_state.get(q.get("state", "?"), 0) + 1
        for st, c in by_state.items():
            qpg.add_metric([nqn, st], c)
    out += [nsg, ctg, qpg]


async def _iscsi(app: Any, out: list[Metric]) -> None:
    s = await _call(app, "iscsi_get_stats")
    if s is None:
        return
    g = GaugeMetricFamily("spydk_iscsi_connections", "iSCSI connections by state", labels=["state"])
    for st, n in s.items():
        g.add_metric([st], n)
    out.append(g)
    conns = await _call(app, "iscsi_get_connections") or []
    per = GaugeMetricFamily("spydk_iscsi_target_connections", "iSCSI connections by target node",
                            labels=["target", "initiator"])
    by: dict[tuple[str, str], int] = {}
    for c in conns:
        k = (c.get("target_node_name", ""), c.get("initiator_name", c.get("initiator_addr", "")))
        by[k] = by.get(k, 0) + 1
    for k, n in by.items():
        per.add_metric(list(k), n)
    out.append(per)
