"""Conversions between JSON-like dicts and google.protobuf.Struct.

Struct numbers are doubles. Reading one back, a whole number becomes an int again, so that
`{"iat": 1700000000}` survives a round trip as it was written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

# Doubles carry every integer up to 2**53 exactly; beyond it, leave the float as it is.
_EXACT = 2**53


def to_struct(values: Mapping[str, Any], into: Struct | None = None) -> Struct:
    """Fills `into` (or a new Struct) from a JSON-like mapping."""
    struct = Struct() if into is None else into
    struct.update(values)
    return struct


def from_struct(struct: Struct) -> dict[str, Any]:
    """A Struct as a dict, with whole-number doubles turned back into ints."""
    return _ints(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {key: _ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ints(item) for item in value]
    return value
