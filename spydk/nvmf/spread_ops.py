"""spread.py over the reactors' links (spydk.thread.cores): the NVMe/TCP transport of a
multi-core app spreads its I/O queues over the worker reactors.

Two operations, registered when this module is imported (before the workers are forked):
``nvmf_spread`` (main -> worker: a queue to adopt, a replica, a state change, a forwarded
command's result) and ``nvmf_spread_main`` (worker -> main: a queue closed, a command to run
in its controller). Each is a one-way notification carrying one message dict.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spydk.log import get_logger
from spydk.nvmf.spread import IoQueueHost, Message, Spreader
from spydk.thread import cores
from spydk.thread.link import Link, LinkClosed
from spydk.thread.thread import get_thread

if TYPE_CHECKING:
    from spydk.nvmf.tgt import Target
    from spydk.nvmf.transports.tcp import TcpTransport

log = get_logger("nvmf")

TO_WORKER = "nvmf_spread"
TO_MAIN = "nvmf_spread_main"


class LinkChannel:
    """A Channel over a reactor link: one notification per message, descriptors beside it."""

    def __init__(self, link: Link, op: str, *prefix: Any):
        self.link = link
        self.op = op
        self.prefix = prefix

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None:
        if fds:
            # A call, not a notification: the descriptors stay open until the other reactor
            # has them (a send may be retried later), then they are closed here.
            fdl = list(fds)
            fut = self.link.call(self.op, *self.prefix, msg, fds=fdl)

            def sent(f: Any) -> None:
                for fd in fdl:
                    os.close(fd)
                if not f.cancelled() and f.exception() is not None:
                    log.error("NVMe-oF message %r not delivered: %s", msg.get("op"), f.exception())
            fut.add_done_callback(sent)
            return
        try:
            self.link.notify(self.op, *self.prefix, msg)
        except LinkClosed:
            log.error("NVMe-oF message %r not delivered: the other reactor is gone", msg.get("op"))


def spreader_for(tr: TcpTransport) -> Spreader | None:
    """On the main reactor of a multi-core app: the Spreader of a new TCP transport."""
    ws = cores.workers()
    if ws is None or cores.worker_core() is not None:
        return None
    peers = [LinkChannel(w.link, TO_WORKER, tr.tgt.name) for w in ws if w.link is not None]
    if not peers:
        return None
    sp = Spreader(tr.tgt, peers, share_bdev=share_bdev)
    _spreaders[tr.tgt.name] = sp
    return sp


_spreaders: dict[str, Spreader] = {}  # main: by target name


def share_bdev(name: str) -> tuple[Message, list[int]] | None:
    """Nothing to pass: bdevs reach every reactor through the replicated RPCs (malloc memory is a
    memfd every reactor maps), so a worker opens the namespace's bdev by name."""
    return None


def attach_bdev(info: Message, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


# -- operations ----------------------------------------------------------------------------

_hosts: dict[str, IoQueueHost] = {}  # worker: by target name


def _worker_target(name: str) -> Target:
    from spydk.nvmf.tgt import Target
    return Target(name)


def _host(tgt_name: str, link: Link) -> IoQueueHost:
    host = _hosts.get(tgt_name)
    if host is None:
        tgt = _worker_target(tgt_name)
        tgt.thread = get_thread()
        host = _hosts[tgt_name] = IoQueueHost(tgt, LinkChannel(link, TO_MAIN, cores.worker_core(), tgt_name),
                                              attach_bdev=attach_bdev)
    return host


def _on_worker(tgt_name: str, msg: Message, *, fds: list[int]) -> None:
    link = cores.main_link()
    if link is None:
        for fd in fds:
            os.close(fd)
        return
    _host(tgt_name, link).on_message(msg, fds)


def _on_main(core: int, tgt_name: str, msg: Message, *, fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    sp = _spreaders.get(tgt_name)
    ws = cores.workers()
    if sp is None or ws is None:
        return
    idx = next((i for i, w in enumerate(ws) if w.core == core), None)
    if idx is not None:
        sp.on_message(idx, msg)


def worker_stats(tgt_name: str, *, fds: list[int]) -> list[dict[str, Any]]:
    """On a worker: the poll group of target ``tgt_name`` here (SPDK has one per core)."""
    link = cores.main_link()
    if link is None:
        return []
    st = _host(tgt_name, link).tgt.stats()
    st["name"] = f"nvmf_tgt_poll_group_{cores.worker_core() or 0:03d}"
    return [st]


cores.register_op(TO_WORKER, _on_worker)
cores.register_op(TO_MAIN, _on_main)
cores.register_op("nvmf_worker_stats", worker_stats)
