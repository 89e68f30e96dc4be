"""Transport options, the interface every NVMe-oF transport implements, and their registry.

A transport is one module in spydk/nvmf/transports/ (tcp.py today) whose class is decorated
with ``@register_transport``; ``transport_class(trtype)`` imports the modules there on first
use, so a new transport needs no list edited anywhere.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spydk.nvmf.subsystem import ListenAddress
    from spydk.nvmf.tgt import Target


@dataclass
class TransportOptions:
    """nvmf_create_transport parameters; defaults are SPDK's TCP defaults."""

    max_queue_depth: int = 128
    max_io_qpairs_per_ctrlr: int = 127
    in_capsule_data_size: int = 4096
    max_io_size: int = 131072
    io_unit_size: int = 131072
    max_aq_depth: int = 128
    num_shared_buffers: int = 511
    buf_cache_size: int = 0xFFFFFFFF
    dif_insert_or_strip: bool = False
    zcopy: bool = False
    c2h_success: bool = True
    sock_priority: int = 0
    abort_timeout_sec: int = 1
    ack_timeout: int = 0
    data_wr_pool_size: int = 0
    acceptor_backlog: int = 100
    control_msg_num: int = 32
    kas: int = 10
    min_kato: int = 10000

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def validate(self) -> None:
        from spydk.nvmf.subsystem import NvmfConfigError
        if not 2 <= self.max_queue_depth <= 65535:
            raise NvmfConfigError(f"max_queue_depth must be 2..65535, got {self.max_queue_depth}")
        if not 2 <= self.max_aq_depth <= 4096:
            raise NvmfConfigError(f"max_aq_depth must be 2..4096, got {self.max_aq_depth}")
        if not 1 <= self.max_io_qpairs_per_ctrlr <= 65534:
            raise NvmfConfigError(f"max_io_qpairs_per_ctrlr must be 1..65534, got "
                                  f"{self.max_io_qpairs_per_ctrlr}")
        if self.in_capsule_data_size % 16 or self.in_capsule_data_size > 131072:
            raise NvmfConfigError("in_capsule_data_size must be a multiple of 16 and at most 131072, "
                                  f"got {self.in_capsule_data_size}")
        if self.max_io_size < 4096 or self.max_io_size & (self.max_io_size - 1):
            raise NvmfConfigError(f"max_io_size must be a power of two >= 4096, got {self.max_io_size}")
        if self.io_unit_size < 512 or self.io_unit_size > self.max_io_size:
            raise NvmfConfigError(f"io_unit_size must be 512..max_io_size, got {self.io_unit_size}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Transport:
    """Base class: the target calls listen/stop_listen; connections create queue pairs."""

    trtype = ""

    def __init__(self, tgt: Target, opts: TransportOptions):
        self.tgt = tgt
        self.opts = opts

    async def listen(self, addr: ListenAddress) -> None:
        raise NotImplementedError

    async def stop_listen(self, addr: ListenAddress) -> None:
        raise NotImplementedError

    def listening(self) -> list[ListenAddress]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {"trtype": self.trtype}

    def to_json(self) -> dict[str, Any]:
        return {"trtype": self.trtype, **self.opts.to_json()}


_transports: dict[str, type[Transport]] = {}


def register_transport(cls: type[Transport]) -> type[Transport]:
    """Class decorator: make ``cls`` what nvmf_create_transport creates for ``cls.trtype``."""
    _transports[cls.trtype.upper()] = cls
    return cls


def _load_transports() -> None:
    from spydk.nvmf import transports
    for m in pkgutil.iter_modules(transports.__path__):
        importlib.import_module(f"{transports.__name__}.{m.name}")


def transport_class(trtype: str) -> type[Transport] | None:
    """The registered transport for ``trtype`` (case-insensitive), or None."""
    if not _transports:
        _load_transports()
    return _transports.get(trtype.upper())


def transport_types() -> list[str]:
    if not _transports:
        _load_transports()
    return sorted(_transports)
