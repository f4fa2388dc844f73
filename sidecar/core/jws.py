"""Compact JWS: split, decode and encode tokens. No verification and no claim rules live here.

Everything that is not a well-formed token raises `MalformedToken` ("Invalid token"); nothing else
escapes, whatever the input.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from sidecar.core.crypto import Signer
from sidecar.core.errors import MalformedToken

# RFC 7515 §2: base64url without padding.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
# Deeper claims cannot be carried by google.protobuf.Struct within protobuf's recursion limit.
MAX_DEPTH = 32
_MAX_DOUBLE_INT = int(sys.float_info.max)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Characters whose unused low bits are zero at the end of a segment: 4 unused bits, or 2.
_ENDS_AFTER_ONE_BYTE = frozenset(_ALPHABET[::16])
_ENDS_AFTER_TWO_BYTES = frozenset(_ALPHABET[::4])


@dataclass(frozen=True, slots=True)
class Token:
    """A parsed, unverified token."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse(token: str, max_length: int) -> Token:
    """Splits and decodes `header.payload`, `header.payload.` or `header.payload.signature`."""
    if len(token) > max_length:
        _malformed()
    parts = token.split(".")
    if len(parts) == 2:
        parts.append("")
    elif len(parts) != 3:
        _malformed()
    header_b64, payload_b64, signature_b64 = parts
    return Token(
        header=_header(header_b64),
        claims=_json_object(payload_b64),
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=b64url_decode(signature_b64),
    )


def encode(header: dict[str, Any], claims: dict[str, Any], signer: Signer | None) -> str:
    """Builds a compact token; `signer=None` gives an unsigned one with an empty signature."""
    signing_input = f"{b64url_encode(_dumps(header))}.{b64url_encode(_dumps(claims))}"
    if signer is None:
        return signing_input + "."
    return f"{signing_input}.{b64url_encode(signer.sign(signing_input.encode('ascii')))}"


def b64url_decode(segment: str) -> bytes:
    """Strict base64url: no padding, and no stray bits in the last character.

    Stray bits would let one signature have several spellings (RFC 4648 §3.5).
    """
    rest = len(segment) % 4
    if (
        not _SEGMENT.fullmatch(segment)
        or rest == 1
        or (rest == 2 and segment[-1] not in _ENDS_AFTER_ONE_BYTE)
        or (rest == 3 and segment[-1] not in _ENDS_AFTER_TWO_BYTES)
    ):
        _malformed()
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _header(segment: str) -> dict[str, Any]:
    """Headers repeat (one issuer, one key): each distinct one is decoded once. Callers only read
    the dict. Bounded: a flood of distinct headers only empties the memo now and then."""
    header = _HEADERS.get(segment)
    if header is None:
        header = _json_object(segment)
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        _HEADERS[segment] = header
    return header


def _json_object(segment: str) -> dict[str, Any]:
    return json_object(b64url_decode(segment))


def json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object by the rules of a token's segments: UTF-8, no NaN or Infinity, no number
    beyond a double, no lone surrogate, at most MAX_DEPTH deep. Raises MalformedToken."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        _malformed()
    if not isinstance(value, dict):
        _malformed()
    # A `\ud800` escape decodes to a lone surrogate, which no protobuf string can carry.
    if "\\u" in text and not _encodable(value):
        _malformed()
    # Counting brackets is cheap; only a payload with many of them is walked.
    if text.count("{") + text.count("[") > MAX_DEPTH and _too_deep(value):
        _malformed()
    return value


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _reject(constant: str) -> NoReturn:
    """NaN and Infinity are not JSON; an `exp` of Infinity must not mean 'never expires'."""
    raise ValueError(constant)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _finite_int(text: str) -> int:
    """Ints beyond a double's range cannot be carried as JSON numbers by Struct or any client."""
    value = int(text)
    if abs(value) > _MAX_DOUBLE_INT:
        raise ValueError(text)
    return value


# Built once: json.loads with hooks would build a new decoder on every call.
_DECODER = json.JSONDecoder(
    parse_constant=_reject, parse_float=_finite_float, parse_int=_finite_int
)
_HEADERS: dict[str, dict[str, Any]] = {}
_MAX_HEADERS = 64


def _encodable(value: dict[str, Any]) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(root: dict[str, Any]) -> bool:
    """Iterative, so that no input can exhaust the interpreter's stack here."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _malformed() -> NoReturn:
    raise MalformedToken()
