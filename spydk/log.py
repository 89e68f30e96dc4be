"""Logging with SPDK's knobs: levels, print level, per-component debug flags, timestamps.

Every component logs through ``get_logger("bdev")`` (= ``logging.getLogger("spydk.bdev")``),
which also registers "bdev" as a flag. ``-L bdev`` / ``log_set_flag bdev`` turns on debug
records of that component only; "all" means every flag.

Two thresholds, as in SPDK:
- level (log_set_level): records below it are dropped (a debug record of a flagged
  component is always kept);
- print level (log_set_print_level): records below it are not printed to stderr.

Levels are SPDK's names; NOTICE sits between INFO and WARNING.
Never log on the I/O path: this is for control-plane events.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

LEVELS: dict[str, int] = {
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": NOTICE,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}
_NAMES = {v: k for k, v in LEVELS.items()}

ROOT = "spydk"

_flags: dict[str, bool] = {}
_level = NOTICE
_print_level = NOTICE
_timestamps = False
_handler: logging.Handler | None = None


def get_logger(component: str) -> logging.Logger:
    """The logger of a component; registers ``component`` as a log flag."""
    _flags.setdefault(component, False)
    return logging.getLogger(f"{ROOT}.{component}")


def register_flag(name: str) -> None:
    _flags.setdefault(name, False)


def _component(logger_name: str) -> str | None:
    if not logger_name.startswith(ROOT + "."):
        return None
    return logger_name[len(ROOT) + 1:].split(".", 1)[0]


def flags() -> dict[str, bool]:
    """Every known flag and whether it is on, sorted by name (log_get_flags)."""
    names = set(_flags)
    for name in list(logging.Logger.manager.loggerDict):
        comp = _component(name)
        if comp:
            names.add(comp)
    return {n: _flags.get(n, False) for n in sorted(names)}


def set_flag(name: str, enabled: bool = True) -> None:
    """Turn a component's debug output on or off; "all" means every known flag.

    Raises ValueError for a flag nobody registered (so a typo is reported, not ignored).
    """
    known = flags()
    if name == "all":
        for n in known:
            _flags[n] = enabled
    elif name in known:
        _flags[name] = enabled
    else:
        raise ValueError(f"unknown log flag {name!r}; known flags: {', '.join(known) or 'none'}")
    _apply()


def flag_enabled(name: str) -> bool:
    return _flags.get(name, False)


def level_name(level: int) -> str:
    return _NAMES.get(level, logging.getLevelName(level))


def parse_level(name: str) -> int:
    try:
        return LEVELS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}") from None


def set_level(name: str) -> None:
    global _level
    _level = parse_level(name)
    _apply()


def get_level() -> str:
    return level_name(_level)


def set_print_level(name: str) -> None:
    global _print_level
    _print_level = parse_level(name)
    _apply()


def get_print_level() -> str:
    return level_name(_print_level)


def enable_timestamps(enabled: bool) -> None:
    global _timestamps
    _timestamps = enabled


class _Filter(logging.Filter):
    """Keeps a record when it clears both thresholds, or when its component is flagged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= max(_level, _print_level):
            return True
        if record.levelno < logging.INFO:
            comp = _component(record.name)
            return comp is not None and _flags.get(comp, False)
        return False


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        comp = _component(record.name) or record.name
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        line = f"{comp}: *{level_name(record.levelno)}*: {msg}"
        if _timestamps:
            t = record.created
            line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t))}.{int(t % 1 * 1e6):06d}] {line}"
        return line


def _apply() -> None:
    root = logging.getLogger(ROOT)
    lowest = min(_level, _print_level)
    if any(_flags.values()):
        lowest = logging.DEBUG
    root.setLevel(lowest)


def setup(stream: TextIO | None = None, flags_on: list[str] | tuple[str, ...] = ()) -> None:
    """Attach the stderr handler (once) and apply -L flags."""
    global _handler
    root = logging.getLogger(ROOT)
    if _handler is None:
        _handler = logging.StreamHandler(stream or sys.stderr)
        _handler.addFilter(_Filter())
        _handler.setFormatter(_Formatter())
        root.addHandler(_handler)
        root.propagate = False
    for f in flags_on:
        set_flag(f)
    _apply()


def flush() -> None:
    if _handler is not None:
        _handler.flush()


def _reset_for_tests() -> None:
    global _level, _print_level, _timestamps
    for k in _flags:
        _flags[k] = False
    _level = _print_level = NOTICE
    _timestamps = False
    _apply()


def notice(logger: logging.Logger, msg: str, *args: object) -> None:
    logger.log(NOTICE, msg, *args)
