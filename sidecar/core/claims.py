"""Claim rules, as Electric applies them: required claims, time claims, iss and aud, the user;
and two profile checks of our own, off unless configured: the `typ` header and the lifetime.

Each function raises the `TokenError` for the first rule that fails and returns quietly otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.core.errors import (
    ExpiredToken,
    InvalidClaim,
    InvalidHeader,
    InvalidUserId,
    LifetimeTooLong,
    MissingClaim,
    MissingHeader,
    NotYetValid,
)

_NUMBER = (int, float)


def require(claims: Mapping[str, Any], names: tuple[str, ...]) -> None:
    """Each named claim must be present; `null` counts as present, and fails its own check."""
    for name in names:
        if name not in claims:
            raise MissingClaim(name)


def media_type(value: str) -> str:
    """A `typ` value as RFC 7515 §4.1.9 compares it: case-insensitively, with `application/`
    prepended when it has no `/` (`at+jwt` and `application/AT+JWT` are the same)."""
    lowered = value.strip().lower()
    return lowered if "/" in lowered else "application/" + lowered


def check_typ(header: Mapping[str, Any], accepted: frozenset[str] | None) -> None:
    """RFC 8725 §3.11: a token of another kind (an ID token) is not taken for an access token."""
    if accepted is None:
        return
    if "typ" not in header:
        raise MissingHeader("typ")
    typ = header["typ"]
    if not isinstance(typ, str) or media_type(typ) not in accepted:
        raise InvalidHeader("typ", typ)


def check_lifetime(claims: Mapping[str, Any], bound: int | None) -> None:
    """`exp - iat` at most `bound` seconds (after check_times, which checked their types)."""
    if bound is None:
        return
    require(claims, ("iat", "exp"))
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > bound:
        raise LifetimeTooLong(lifetime, bound)


def check_times(claims: Mapping[str, Any], now: int, skew: int) -> None:
    """Checks `exp`, `nbf` and `iat`, in that order, when present. Bounds are inclusive of skew.

    A NumericDate is a JSON number; `type() in` keeps bools (an int subclass) out.
    """
    if "exp" in claims:
        exp = claims["exp"]
        if type(exp) not in _NUMBER:
            raise InvalidClaim("exp", exp)
        if exp + skew < now:
            raise ExpiredToken()
    if "nbf" in claims:
        nbf = claims["nbf"]
        if type(nbf) not in _NUMBER:
            raise InvalidClaim("nbf", nbf)
        if nbf - skew > now:
            raise NotYetValid()
    if "iat" in claims:
        iat = claims["iat"]
        if type(iat) not in _NUMBER or iat - skew > now:
            raise InvalidClaim("iat", iat)


def check_issuer(claims: Mapping[str, Any], iss: str | None) -> None:
    if iss is not None and "iss" in claims and claims["iss"] != iss:
        raise InvalidClaim("iss", claims["iss"])


def check_audience(claims: Mapping[str, Any], aud: str | None) -> None:
    """`aud` may be a string equal to the configured value, or a list that contains it."""
    if aud is None or "aud" not in claims:
        return
    value = claims["aud"]
    if value == aud or (isinstance(value, list) and aud in value):
        return
    raise InvalidClaim("aud", value)


def find_user(claims: Mapping[str, Any], namespace: str | None) -> str:
    """`sub`, or else `user_id`, under the namespace when one is set: a non-blank string.

    Like Electric's `claims["sub"] || claims["user_id"]`, only null and false fall through to
    `user_id`; an empty `sub` is refused rather than skipped.
    """
    source = claims if namespace is None else claims.get(namespace)
    if not isinstance(source, dict):
        raise InvalidUserId()
    user = source.get("sub")
    if user is None or user is False:
        user = source.get("user_id")
    if type(user) is not str or not user.strip():
        raise InvalidUserId()
    return user
