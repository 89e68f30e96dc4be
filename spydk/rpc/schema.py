"""Parameter schemas and their decoder.

Each RPC declares its parameters with the names and types of SPDK's schema; the decoder
checks types, ranges, required names and refuses unknown names, with a message that names
the parameter and what was expected.
"""
from __future__ import annotations

import uuid as _uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spydk.rpc.errors import invalid_params

_INT_RANGES = {
    "uint8": (0, 0xFF), "uint16": (0, 0xFFFF), "uint32": (0, 0xFFFFFFFF),
    "uint64": (0, 0xFFFFFFFFFFFFFFFF), "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
TYPES = set(_INT_RANGES) | {"string", "boolean", "uuid", "object", "array", "enum", "bitmask",
                             "number", "any"}


@dataclass(frozen=True)
class Param:
    """One parameter. ``type`` is SPDK's schema type name.

    enum: ``choices`` lists the allowed strings. object: ``fields`` (optional) is the
    schema of its members. array: ``items`` (optional) is a Param describing one element.
    """

    name: str
    type: str
    required: bool = False
    choices: tuple[str, ...] = ()
    fields: tuple[Param, ...] | None = None
    items: Param | None = None
    deprecated: bool = False
    # Allow members not listed in ``fields`` (for objects whose shape we only partly check).
    open: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name}: unknown schema type {self.type!r}")


@dataclass
class Schema:
    params: tuple[Param, ...] = ()
    by_name: dict[str, Param] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {p.name: p for p in self.params}

    def decode(self, params: Any, where: str = "") -> dict[str, Any]:
        return decode_object(self.params, params, where, open_=False)


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return f"the number {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def decode_value(p: Param, v: Any, path: str) -> Any:
    t = p.type
    if t in _INT_RANGES:
        if isinstance(v, bool) or not isinstance(v, int):
            raise invalid_params(f"parameter '{path}' must be an integer ({t}), got {_describe(v)}")
        lo, hi = _INT_RANGES[t]
        if not lo <= v <= hi:
            raise invalid_params(f"parameter '{path}' is out of range for {t} ({lo}..{hi}): {v}")
        return v
    if t == "string":
        if not isinstance(v, str):
            raise invalid_params(f"parameter '{path}' must be a string, got {_describe(v)}")
        return v
    if t == "boolean":
        if not isinstance(v, bool):
            raise invalid_params(f"parameter '{path}' must be true or false, got {_describe(v)}")
        return v
    if t == "number":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise invalid_params(f"parameter '{path}' must be a number, got {_describe(v)}")
        return v
    if t == "uuid":
        if not isinstance(v, str):
            raise invalid_params(f"parameter '{path}' must be a UUID string, got {_describe(v)}")
        try:
            _uuid.UUID(v)
        except ValueError:
            raise invalid_params(f"parameter '{path}' is not a valid UUID: {v!r}") from None
        return v
    if t == "enum":
        if not isinstance(v, str) or (p.choices and v not in p.choices):
            raise invalid_params(f"parameter '{path}' must be one of {', '.join(p.choices)}; got {v!r}")
        return v
    if t == "bitmask":
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise invalid_params(f"parameter '{path}' must be an array of strings, got {_describe(v)}")
        bad = [x for x in v if p.choices and x not in p.choices]
        if bad:
            raise invalid_params(f"parameter '{path}' has unknown value(s) {bad}; allowed: {', '.join(p.choices)}")
        return v
    if t == "array":
        if not isinstance(v, list):
            raise invalid_params(f"parameter '{path}' must be an array, got {_describe(v)}")
        if p.items is None:
            return v
        return [decode_value(p.items, x, f"{path}[{i}]") for i, x in enumerate(v)]
    if t == "object":
        if not isinstance(v, dict):
            raise invalid_params(f"parameter '{path}' must be an object, got {_describe(v)}")
        if p.fields is None:
            return v
        return decode_object(p.fields, v, path, open_=p.open)
    return v  # "any"


def decode_object(fields: Sequence[Param], params: Any, where: str, open_: bool) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise invalid_params(f"{'parameter ' + repr(where) if where else 'params'} must be an object, "
                             f"got {_describe(params)}")
    by_name = {p.name: p for p in fields}
    out: dict[str, Any] = {}
    for k, v in params.items():
        p = by_name.get(k)
        path = f"{where}.{k}" if where else k
        if p is None:
            if open_:
                out[k] = v
                continue
            known = ", ".join(sorted(by_name)) or "none"
            raise invalid_params(f"unknown parameter '{path}' (accepted: {known})")
        out[k] = decode_value(p, v, path)
    missing = [p.name for p in fields if p.required and p.name not in out]
    if missing:
        names = ", ".join(f"'{where + '.' if where else ''}{m}'" for m in missing)
        raise invalid_params(f"missing required parameter{'s' if len(missing) > 1 else ''} {names}")
    return out
