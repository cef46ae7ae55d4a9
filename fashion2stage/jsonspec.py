"""Frozen dataclasses read from JSON with every field checked, and written back: the machinery of the run specs
(:mod:`fashion2stage.specs`) and of ``labels.json`` (:mod:`fashion2stage.labels`).

A field's type is its annotation: ``int``, ``float``, ``str``, ``bool``, ``tuple[X, ...]``, ``list[X]``,
``dict[str, X]``, a nested dataclass, ``X | None``, or ``dict`` / ``Any`` for a free record (provenance: how a
model was trained, read by people, never by a predictor). Its rule is metadata made by :func:`rule`; rules across
fields go in the class's ``validated(file, where)``, which returns the instance (or a completed copy). A class may
map old key names to its fields with a class attribute ``ALIASES = {"old": "new"}``, so files written before a
rename still load.

Every problem is one :class:`~fashion2stage.errors.DataError` naming the file, the field (dotted for nested objects
and their entries, ``[i]`` for list items) and the rule it breaks: an unknown key, a missing field, a value of the
wrong type, out of range, a repeated name.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

from fashion2stage.errors import DataError

_RULES = ("gt", "ge", "le", "length", "min_length", "unique", "choices")


def rule(**checks) -> dict:
    """Field metadata: ``gt``, ``ge``, ``le`` (numbers, or each number of a list), ``length`` / ``min_length``
    (lists, strings), ``unique`` (lists), ``choices`` (a value among these)."""
    unknown = set(checks) - set(_RULES)
    if unknown:
        raise TypeError(f"unknown rule(s) {sorted(unknown)}")
    return {"rule": checks}


def from_json(cls, data, file: str | Path, where: str = ""):
    """An instance of the dataclass ``cls`` from parsed JSON ``data`` (an object), every field checked.
    ``where``: the dotted name of ``data`` inside the file ('' for the whole file)."""
    if not isinstance(data, dict):
        raise DataError(file, f"{_name(where) or 'the file'} must be a JSON object, not {_kind(data)}")
    data = _unalias(cls, data, file, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise DataError(file, f"unknown key {_join(where, unknown[0])!r} (expected: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        path = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(file, f"lacks the field {path!r}")
            continue
        values[name] = _value(hints[name], data[name], file, path)
        _check(f.metadata.get("rule", {}), values[name], file, path, data[name])
    obj = cls(**values)
    # rules across fields (and the reading of a field whose type another field decides)
    return obj.validated(file, where) if hasattr(obj, "validated") else obj


def to_json(obj) -> dict:
    """The JSON object of a dataclass instance (tuples become lists), in field order."""
    return _plain(obj)


def _plain(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _unalias(cls, data: dict, file, where: str) -> dict:
    aliases = getattr(cls, "ALIASES", {})
    out = {}
    for k, v in data.items():
        new = aliases.get(k, k)
        if new in out:
            raise DataError(file, f"both {_join(where, new)!r} and its old name {_join(where, k)!r}: keep one")
        out[new] = v
    return out


def _value(hint, v, file, path: str):
    """``v`` converted to the annotation ``hint`` (lists to tuples where the field is a tuple), or DataError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _value(rest[0], v, file, path)
        if dict not in rest:
            raise TypeError(f"{path}: a union of {rest} needs its own reader")
        # ``Spec | dict``: an object, kept as the file has it and read by the class's ``validated``, where the
        # sibling fields say which class it is
        return _value(dict, v, file, path)
    if hint is Any or hint is dict and isinstance(v, dict):
        return v
    if dataclasses.is_dataclass(hint):
        return from_json(hint, v, file, path)
    if origin in (tuple, list):
        if not isinstance(v, list):
            _wrong(v, hint, file, path)
        items = [_value(args[0], x, file, f"{path}[{i}]") for i, x in enumerate(v)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(v, dict):
            _wrong(v, hint, file, path)
        return {k: _value(args[1], x, file, f"{path}.{k}") for k, x in v.items()}
    if hint is bool and isinstance(v, bool) or hint is str and isinstance(v, str):
        return v
    if hint is int and isinstance(v, int) and not isinstance(v, bool):
        return v
    if hint is float and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    _wrong(v, hint, file, path)


def _check(checks: dict, v, file, path: str, raw) -> None:
    """``v`` (converted) against the field's rules; a message shows ``raw``, the value as the file has it."""
    if v is None or not checks:
        return
    numbers = list(v.values()) if isinstance(v, dict) else v if isinstance(v, (tuple, list)) else [v]
    for op, bound in checks.items():
        if op == "gt" and any(x <= bound for x in numbers):
            _broken(raw, f"> {bound}", file, path)
        elif op == "ge" and any(x < bound for x in numbers):
            _broken(raw, f">= {bound}", file, path)
        elif op == "le" and any(x > bound for x in numbers):
            _broken(raw, f"<= {bound}", file, path)
        elif op == "choices" and v not in bound:
            _broken(raw, f"one of {', '.join(map(str, bound))}", file, path)
        elif op == "length" and len(v) != bound:
            _broken(raw, f"{bound} long", file, path)
        elif op == "min_length" and len(v) < bound:
            _broken(raw, "non-empty" if bound == 1 else f"at least {bound} long", file, path)
        elif op == "unique" and len(set(v)) != len(v):
            twice = next(x for i, x in enumerate(v) if x in v[:i])
            raise DataError(file, f"field {path!r} names {twice!r} twice; names must be distinct")


def _broken(v, what: str, file, path: str):
    raise DataError(file, f"field {path!r} is {_short(v)}; it must be {what}")


def _wrong(v, hint, file, path: str):
    raise DataError(file, f"field {path!r} is {_short(v)}; it must be {_describe(hint)}")


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (tuple, list):
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
    if origin is dict or hint is dict:
        return "a JSON object" if not args else f"an object of {_describe(args[1]).split(' ', 1)[1]}s"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _short(v) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else f"{_kind(v)} {str(v)}"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _name(where: str) -> str:
    return f"field {where!r}" if where else ""
