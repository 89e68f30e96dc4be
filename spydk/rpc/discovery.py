"""Where RPC handlers and `spydk rpc` commands are found: by file name, with no list to edit.

A *layer* (a package directly under ``spydk``: bdev, nvmf, iscsi, apps, ...) provides

    rpc.py       its server-side RPC handlers (``@rpc_method``) and subsystem registration
    rpc_cli.py   its `spydk rpc` commands: ``def add_commands(sub, call)``

A pluggable *module* is a package ``spydk/modules/<kind>/<name>/`` (kind: bdev, ...) whose
``__init__.py`` imports its code and its rpc.py, with an optional rpc_cli.py beside them.

Finding the names reads directories only (nothing is imported here), so this low layer knows
no higher one; the callers (spydk.apps.plugins, spydk.rpc.cli) import what it names.
Third-party packages use the ``spydk.plugins`` and ``spydk.cli`` entry point groups.
"""
from __future__ import annotations

import os
import pkgutil

import spydk

# The app layer's framework methods come first (their commands head `spydk rpc --help`);
# the other layers and the modules follow in name order.
_FIRST = "apps"


def _children(path: str, packages: bool) -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([path]) if m.ispkg == packages)


def _root() -> str:
    return spydk.__path__[0]


def layers() -> list[str]:
    """Names of the layer packages directly under spydk (``modules`` excluded)."""
    names = [n for n in _children(_root(), True) if n != "modules"]
    return sorted(names, key=lambda n: (n != _FIRST, n))


def layer_files(stem: str) -> list[str]:
    """``spydk.<layer>.<stem>`` for every layer that has a ``<stem>.py``."""
    return [f"spydk.{layer}.{stem}" for layer in layers()
            if stem in _children(os.path.join(_root(), layer), False)]


def module_packages() -> list[str]:
    """``spydk.modules.<kind>.<name>`` for every module package."""
    base = os.path.join(_root(), "modules")
    out = []
    for kind in _children(base, True):
        out += [f"spydk.modules.{kind}.{name}" for name in _children(os.path.join(base, kind), True)]
    return out


def plugin_modules() -> list[str]:
    """What to import so that every built-in RPC, subsystem and module is registered."""
    return layer_files("rpc") + module_packages()


def rpc_cli_modules() -> list[str]:
    """Every built-in module providing `spydk rpc` commands (``add_commands``)."""
    mods = [f"{p}.rpc_cli" for p in module_packages()
            if "rpc_cli" in _children(os.path.join(_root(), *p.split(".")[1:]), False)]
    return layer_files("rpc_cli") + mods
