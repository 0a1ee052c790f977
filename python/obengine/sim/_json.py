"""JSON text with exact numbers: a :class:`~decimal.Decimal` is written as a JSON number with
exactly its digits (``Decimal("304.41")`` -> ``304.41``, ``Decimal("1.0000000000000000")`` ->
``1.0000000000000000``, ``Decimal("1543836448605.0")`` -> ``1543836448605.0``), which neither
:mod:`json` nor ``orjson`` can do without a float in between. A float is refused: nothing the
simulated exchange writes may pass through one.
"""
from __future__ import annotations

import json
from decimal import Decimal

__all__ = ["dumps", "number"]

_string = json.JSONEncoder(ensure_ascii=False).encode


def number(value: Decimal) -> str:
    """The exact JSON number text of a finite ``Decimal`` (plain notation, never an
    exponent)."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return format(value, "f")


def _write(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        out.append(number(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"a JSON object key must be a str, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, float):
        raise TypeError("a float is not exact: write a Decimal")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON of ``value`` (dicts with str keys, lists, tuples, str, int, bool,
    None, finite ``Decimal``); keys keep their insertion order."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode()
