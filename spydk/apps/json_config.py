"""The JSON config file (``--json FILE``, ``save_config`` output) and its replay at start-up.

    {"subsystems": [{"subsystem": "bdev",
                     "config": [{"method": "bdev_malloc_create", "params": {...}}, ...]}]}

Like SPDK, replay is two passes: methods allowed before init (STARTUP) first, then the
subsystems are initialized, then every other method. A method allowed in both states runs
in the first pass only. ``config`` may be null, and may hold nested arrays (batches), which
are flattened in order. Other keys at the top level are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, subsystem, method, parameter."""


@dataclass(slots=True)
class ConfigEntry:
    subsystem: str
    method: str
    params: Any
    index: int  # 1-based position inside the subsystem's config, for messages


@dataclass
class SubsystemConfig:
    name: str
    entries: list[ConfigEntry] = field(default_factory=list)


def read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text: {e}") from None
    return parse_config_text(text, path)


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        what = "ends too early (truncated?)" if e.pos >= len(text.rstrip()) else "is not valid JSON"
        raise ConfigError(f"config file {source} {what}: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {source}: the top level must be an object with a \"subsystems\" array")
    return doc


def parse_config(doc: dict[str, Any], source: str) -> list[SubsystemConfig]:
    subs = doc.get("subsystems")
    if subs is None:
        raise ConfigError(f"config file {source}: missing the \"subsystems\" array")
    if not isinstance(subs, list):
        raise ConfigError(f"config file {source}: \"subsystems\" must be an array")
    out: list[SubsystemConfig] = []
    for i, s in enumerate(subs, 1):
        if not isinstance(s, dict) or not isinstance(s.get("subsystem"), str):
            raise ConfigError(f"config file {source}: subsystems[{i - 1}] must be an object with a "
                              f"\"subsystem\" name")
        name = s["subsystem"]
        cfg = s.get("config")
        sc = SubsystemConfig(name)
        if cfg is None:
            out.append(sc)
            continue
        if not isinstance(cfg, list):
            raise ConfigError(f"config file {source}: subsystem {name!r}: \"config\" must be an array or null")
        for item in _flatten(cfg):
            idx = len(sc.entries) + 1
            if not isinstance(item, dict) or not isinstance(item.get("method"), str):
                raise ConfigError(f"config file {source}: subsystem {name!r}, entry {idx}: each entry must be "
                                  f"an object with a \"method\" name")
            params = item.get("params")
            if params is not None and not isinstance(params, dict):
                raise ConfigError(f"config file {source}: subsystem {name!r}, method {item['method']!r} "
                                  f"(entry {idx}): \"params\" must be an object")
            sc.entries.append(ConfigEntry(name, item["method"], params, idx))
        out.append(sc)
    return out


def _flatten(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if isinstance(x, list):
            out.extend(_flatten(x))
        else:
            out.append(x)
    return out
