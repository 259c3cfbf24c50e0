"""Strict conversion of JSON data into (nested) dataclasses through pydantic, with errors that name the key.

pydantic validates the dataclasses of :mod:`fastclap.config.schema` as they are (no subclassing): strict types (JSON
``true`` is no number, ``2.0`` no integer, ``"10"`` no integer), no unknown keys, no ``NaN`` / ``Infinity``.
Its first error becomes one ``ValueError`` in the project's wording, naming the full dotted key
(``fastclap.loss.sof_weight: unknown key (known: ...)``, ``fastclap.schedule.steps: expected an integer, got
'10'``, ``fastclap.loss.temperatures[1]: must be a finite number, got nan``). This module stands apart (it
imports pydantic only) like the config it serves.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any, Dict, Iterator, Sequence

from pydantic import ConfigDict, TypeAdapter, ValidationError

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

_WHAT = {"int_type": "expected an integer", "int_parsing": "expected an integer", "int_from_float": "expected an integer",
         "float_type": "expected a number", "float_parsing": "expected a number", "bool_type": "expected true/false",
         "bool_parsing": "expected true/false", "string_type": "expected a string", "list_type": "expected a list",
         "dict_type": "expected an object", "dataclass_type": "expected an object", "model_type": "expected an object",
         "finite_number": "must be a finite number"}


def _types_in(tp: Any) -> Iterator[Any]:
    yield tp
    for arg in typing.get_args(tp):
        yield from _types_in(arg)


def _configure(cls: Any) -> None:
    """Give ``cls`` and every dataclass nested in its fields the strict pydantic config."""
    if "__pydantic_config__" in vars(cls):
        return
    cls.__pydantic_config__ = STRICT
    for tp in typing.get_type_hints(cls).values():
        for inner in _types_in(tp):
            if dataclasses.is_dataclass(inner):
                _configure(inner)


@functools.lru_cache(maxsize=None)
def _adapter(cls: Any) -> TypeAdapter:
    _configure(cls)
    return TypeAdapter(cls)


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def _type_at(cls: Any, loc: Sequence[Any]) -> Any:
    """The declared type at ``loc`` (field names and list / tuple indices) below ``cls``; None if unknown."""
    tp = cls
    for part in loc:
        tp = _unwrap(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            tp = typing.get_type_hints(tp).get(part)
        elif origin is list and args:
            tp = args[0]
        elif origin is tuple and args and isinstance(part, int) and part < len(args):
            tp = args[part]
        else:
            return None
    return _unwrap(tp)


def _value_at(data: Any, loc: Sequence[Any]) -> Any:
    for part in loc:
        data = data[part]
    return data


def _key(prefix: str, loc: Sequence[Any]) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _message(cls: Any, data: Dict[str, Any], error: Dict[str, Any], prefix: str) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    leaf, parent = _type_at(cls, loc), _type_at(cls, loc[:-1])
    if typing.get_origin(parent) is tuple and kind in ("missing", "too_long", "too_short"):
        loc, kind = loc[:-1], "tuple_length"
    if kind in ("tuple_type", "too_long", "too_short", "tuple_length"):
        n = len(typing.get_args(_type_at(cls, loc)))
        return f"{_key(prefix, loc)}: expected a list of {n} values, got {_value_at(data, loc)!r}"
    if kind == "unexpected_keyword_argument" and dataclasses.is_dataclass(parent):
        known = ", ".join(sorted(f.name for f in dataclasses.fields(parent)))
        return f"{_key(prefix, loc)}: unknown key (known: {known})"
    if kind == "literal_error":
        return f"{_key(prefix, loc)}: must be one of {list(typing.get_args(leaf))}, got {value!r}"
    if kind in _WHAT:
        got = type(value).__name__ if kind in ("dataclass_type", "dict_type", "model_type") else repr(value)
        return f"{_key(prefix, loc)}: {_WHAT[kind]}, got {got}"
    return f"{_key(prefix, loc)}: {error['msg']}"


def from_json_data(cls: Any, data: Any, prefix: str) -> Any:
    """Dataclass ``cls`` built from JSON data ``data`` (a dict), strictly.

    Raises:
        ValueError: ``data`` is not an object, holds an unknown key, a value of the wrong type or a non-finite
            number; the message names the full key, ``prefix`` first.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{prefix}: expected an object, got {type(data).__name__}")
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{prefix}: not JSON data ({err})") from None
    try:
        return _adapter(cls).validate_json(text)
    except ValidationError as err:
        raise ValueError(_message(cls, data, err.errors()[0], prefix)) from None
