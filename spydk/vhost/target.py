"""The app's vhost controllers (one ``VhostTarget`` per app, ``target_of(app)``).

Sockets are created in ``socket_dir``: the working directory by default, as in SPDK, or
the directory given to ``spydk vhost -S``. Their permissions follow the process umask
(run ``umask`` before starting the app, or chmod the socket once it exists).
"""
from __future__ import annotations

import errno
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spydk.vhost.controller import VhostController, VhostError

_default_socket_dir: Path | None = None


def set_default_socket_dir(path: str | Path | None) -> None:
    """``spydk vhost -S DIR``: where controllers of apps started later put their sockets."""
    global _default_socket_dir
    _default_socket_dir = Path(path) if path else None


class VhostTarget:
    def __init__(self, socket_dir: Path | None = None):
        self.socket_dir = socket_dir or _default_socket_dir or Path.cwd()
        self.controllers: dict[str, VhostController] = {}

    def get(self, name: str) -> VhostController:
        c = self.controllers.get(name)
        if c is None:
            raise VhostError(f"controller {name!r} does not exist", errno.ENODEV)
        return c

    def check_new(self, name: str) -> None:
        if not name or "/" in name:
            raise VhostError(f"controller name {name!r} is not a valid socket file name")
        if name in self.controllers:
            raise VhostError(f"controller {name!r} already exists", errno.EEXIST)
        if len(str(self.socket_dir / name)) > 107:
            raise VhostError(f"socket path {self.socket_dir / name} is longer than 107 bytes; "
                             "use a shorter name or socket directory (-S)")

    def add(self, c: VhostController) -> None:
        c.listen()
        self.controllers[c.name] = c

    def remove(self, name: str, done: Callable[[], None]) -> None:
        c = self.get(name)
        if c.session is not None and c.session.started():
            raise VhostError(f"controller {name!r} has a running front end; stop the VM first",
                             errno.EBUSY)
        del self.controllers[name]
        c.close(done)

    def config(self, kind: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for c in self.controllers.values():
            if c.kind == kind:
                out.extend(c.config_entries())
        return out


_targets: weakref.WeakKeyDictionary[Any, VhostTarget] = weakref.WeakKeyDictionary()


def target_of(app: Any) -> VhostTarget:
    t = _targets.get(app)
    if t is None:
        t = _targets[app] = VhostTarget()
    return t
