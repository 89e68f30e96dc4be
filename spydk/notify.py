"""Notifications (SPDK's lib/notify): typed events kept in a ring that clients poll
with notify_get_notifications.

    register_type("bdev_register")
    send("bdev_register", "Malloc0")
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# Events kept for late readers; older ones are dropped (ids keep counting).
RING_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    type: str
    ctx: str

    def to_json(self) -> dict[str, object]:
        return {"type": self.type, "ctx": self.ctx, "id": self.id}


_types: list[str] = []
_ring: deque[Notification] = deque(maxlen=RING_SIZE)
_next_id = 0


def register_type(name: str) -> None:
    if name not in _types:
        _types.append(name)


def types() -> list[str]:
    return list(_types)


def send(type_: str, ctx: str) -> int:
    """Record an event; returns its id. The type must have been registered."""
    global _next_id
    if type_ not in _types:
        raise ValueError(f"notification type {type_!r} is not registered")
    n = Notification(_next_id, type_, ctx)
    _next_id += 1
    _ring.append(n)
    return n.id


def get(id_from: int = 0, max_count: int = 0) -> list[Notification]:
    """Events with id >= id_from, oldest first; at most max_count when it is > 0."""
    out = [n for n in _ring if n.id >= id_from]
    return out[:max_count] if max_count > 0 else out


def _reset_for_tests() -> None:
    global _next_id
    _ring.clear()
    _next_id = 0
