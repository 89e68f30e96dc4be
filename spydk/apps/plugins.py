"""Where RPCs, subsystems and bdev modules come from.

Importing a plugin module registers what it provides (rpc_method, register_subsystem,
bdev module registry). Built-in plugins are listed here; third-party packages add theirs
through the ``spydk.plugins`` entry point group, or list module names in the
``SPYDK_PLUGINS`` environment variable (comma-separated).
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

BUILTIN_PLUGINS: tuple[str, ...] = (
    "spydk.apps.framework_rpc",
    "spydk.keyring",
    "spydk.iscsi.subsystem",
    "spydk.bdev",
    "spydk.nvmf",
)

_loaded = False


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    for name in BUILTIN_PLUGINS:
        importlib.import_module(name)
    for ep in entry_points(group="spydk.plugins"):
        ep.load()
    # Extra plugin modules without packaging (tests, local experiments): comma-separated names.
    for name in filter(None, os.environ.get("SPYDK_PLUGINS", "").split(",")):
        importlib.import_module(name.strip())
    _loaded = True
