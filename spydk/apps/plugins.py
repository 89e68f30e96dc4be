"""Where RPCs, subsystems and modules come from.

Importing a plugin module registers what it provides (rpc_method, register_subsystem, the bdev
module registry). Built-in plugins are found by file name (spydk.rpc.discovery: every layer's
rpc.py, every package under spydk/modules/<kind>/); third-party packages add theirs through
the ``spydk.plugins`` entry point group, or list module names in the ``SPYDK_PLUGINS``
environment variable (comma-separated).
"""
from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from spydk.rpc import discovery

_loaded = False


def builtin_plugins() -> list[str]:
    return discovery.plugin_modules()


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    for name in builtin_plugins():
        importlib.import_module(name)
    for ep in entry_points(group="spydk.plugins"):
        ep.load()
    # Extra plugin modules without packaging (tests, local experiments): comma-separated names.
    for name in filter(None, os.environ.get("SPYDK_PLUGINS", "").split(",")):
        importlib.import_module(name.strip())
    _loaded = True
