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
import sys
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
    # Queue depth: the I/O in flight on each bdev's channels (kept by the bdev layer).
    bdev_mod = sys.modules.get("spydk.bdev")
    if bdev_mod is not None:
        qd = GaugeMetricFamily("spydk_bdev_queue_depth", "bdev I/O in flight now (all channels)", labels=["bdev"])
        for b in bdev_mod.bdevs():
            qd.add_metric([b.name], sum(ch.outstanding for ch in list(b._channels)))
        out.append(qd)


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
    _nvmf_objects(out)


def _nvmf_objects(out: list[Metric]) -> None:
    """Per controller and per connection: counters the target keeps for SMART data and in
    its error paths (nothing is counted per I/O for this)."""
    mod = sys.modules.get("spydk.nvmf.tgt")
    if mod is None:
        return
    tgt = mod.get_target()
    lab = ["nqn", "cntlid", "host"]
    cmds = CounterMetricFamily("spydk_nvmf_controller_commands", "NVMe reads and writes of a controller",
                               labels=lab + ["type"])
    byts = CounterMetricFamily("spydk_nvmf_controller_bytes", "Bytes read and written by a controller",
                               labels=lab + ["type"])
    errs = CounterMetricFamily("spydk_nvmf_controller_errors", "Commands a controller completed with an error",
                               labels=lab)
    for sub in list(tgt.subsystems.values()):
        for c in list(sub.controllers.values()):
            k = [sub.nqn, str(c.cntlid), c.hostnqn]
            cmds.add_metric(k + ["read"], c.reads)
            cmds.add_metric(k + ["write"], c.writes)
            byts.add_metric(k + ["read"], c.read_units * 512)
            byts.add_metric(k + ["write"], c.write_units * 512)
            errs.add_metric(k, c.error_count)
    clab = ["peer", "nqn", "cntlid", "qid"]
    ccmd = CounterMetricFamily("spydk_nvmf_connection_commands", "Commands received on a queue pair", labels=clab)
    cdig = CounterMetricFamily("spydk_nvmf_connection_digest_errors", "Header and data digest failures",
                               labels=clab)
    cprot = CounterMetricFamily("spydk_nvmf_connection_protocol_errors", "Fatal NVMe/TCP protocol errors",
                                labels=clab)
    cqd = GaugeMetricFamily("spydk_nvmf_connection_outstanding",
                            "Commands in flight on a queue pair's general path (fast-path reads and writes "
                            "show in spydk_bdev_queue_depth)", labels=clab)
    for tr in list(tgt.transports.values()):
        for conn in list(getattr(tr, "connections", ())):
            qp = conn.qp
            ctrlr = qp.ctrlr
            peer = getattr(conn, "peer", {}) or {}
            k = [f"{peer.get('traddr', '?')}:{peer.get('trsvcid', '?')}",
                 ctrlr.subsys.nqn if ctrlr is not None else "", str(ctrlr.cntlid) if ctrlr is not None else "",
                 str(qp.qid)]
            ccmd.add_metric(k, qp.sq_head)
            cdig.add_metric(k, getattr(conn, "digest_errors", 0))
            cprot.add_metric(k, getattr(conn, "protocol_errors", 0))
            cqd.add_metric(k, len(qp.outstanding))
    out += [cmds, byts, errs, ccmd, cdig, cprot, cqd]


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
    _iscsi_objects(app, out)


def _iscsi_objects(app: Any, out: list[Metric]) -> None:
    """Per connection (queue depth, digest and PDU errors) and per LUN (the SCSI layer's
    counters), read from the objects that keep them."""
    mod = sys.modules.get("spydk.iscsi.iscsi_tgt")
    if mod is None:
        return
    tgt = mod.target_of(app)
    clab = ["id", "initiator", "target"]
    qd = GaugeMetricFamily("spydk_iscsi_connection_queue_depth", "SCSI commands in flight on a connection",
                           labels=clab)
    dig = CounterMetricFamily("spydk_iscsi_connection_digest_errors", "Header and data digest failures",
                              labels=clab)
    pdu = CounterMetricFamily("spydk_iscsi_connection_pdu_errors", "PDUs that could not be parsed", labels=clab)
    for pid, prot in list(tgt.connections.items()):
        conn = getattr(prot, "conn", None)
        if conn is None:
            continue
        info = prot.info()
        k = [str(pid), info.get("initiator_name", ""), info.get("target_node_name", "")]
        qd.add_metric(k, len(conn._cmds))
        dig.add_metric(k, conn.digest_errors)
        pdu.add_metric(k, conn.pdu_errors)
    llab = ["target", "lun"]
    ops = CounterMetricFamily("spydk_scsi_lun_ops", "SCSI reads and writes of a LUN", labels=llab + ["type"])
    byt = CounterMetricFamily("spydk_scsi_lun_bytes", "Bytes read and written by a LUN", labels=llab + ["type"])
    err = CounterMetricFamily("spydk_scsi_lun_errors", "SCSI commands of a LUN that ended in CHECK CONDITION",
                              labels=llab)
    for name, node in list(tgt.nodes.items()):
        dev = getattr(node, "device", None)
        if dev is None:
            continue
        for lun_id, lun in list(dev.luns.items()):
            st = lun.stats
            k = [name, str(lun_id)]
            ops.add_metric(k + ["read"], st.read_ops)
            ops.add_metric(k + ["write"], st.write_ops)
            byt.add_metric(k + ["read"], st.read_bytes)
            byt.add_metric(k + ["write"], st.write_bytes)
            err.add_metric(k, st.errors)
    out += [qd, dig, pdu, ops, byt, err]
