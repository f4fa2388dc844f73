"""The parsers of the settings table: each turns a variable's text into the value Config holds,
or raises `Invalid` with the text that follows `NAME: ` in the problem line.

They are pure functions of the text (the CA-file parser aside, which must open the file to say
whether it holds certificates), so the table can name them and tests can call them one by one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from sidecar.core import claims
from sidecar.core.policy import Mode
from sidecar.core.rules import DefaultRoute
from sidecar.keys import algorithms

EVENT_LOOPS: Final = ("auto", "asyncio", "uvloop")
"""SIDECAR_EVENT_LOOP's choices; the runtime runs the loop that the choice names."""


def has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


MINT_SECRET_MIN_BYTES = 32
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_OWNED_HEADERS = ("authorization", "host", "content-length", "transfer-encoding")
# RFC 3986 §2.3 unreserved: a secret that goes into a query string as it is, with no encoding
# for Envoy, a proxy or Electric to disagree on.
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
ELECTRIC_SECRET_MIN_CHARS = 16
_REALM = re.compile(r"[ !#-\[\]-~]+")  # RFC 9110 quoted-string text, minus `"` and `\`
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
ALG_PROBLEM = (
    "Missing or invalid 'alg' configuration option for secure auth mode "
    f"(expected one of {', '.join(algorithms.ALGORITHMS)})"
)


class Invalid(ValueError):
    """A value does not parse. The text follows `NAME: ` in the problem line."""


Parser = Callable[[str], Any]
"""Turns a setting's text (its value, or its default) into the value Config holds."""


def text(raw: str) -> str:
    return raw


def mode(raw: str) -> Mode:
    if raw not in tuple(Mode):
        raise Invalid(f'must be "{Mode.SECURE}" or "{Mode.INSECURE}", not "{raw}"')
    return Mode(raw)


def alg_list(raw: str) -> tuple[str, ...]:
    """One algorithm, or (with a JWKS source) a comma-separated allow-list."""
    algs = tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
    if not algs or any(a not in algorithms.SUPPORTED_ALGS for a in algs):
        raise Invalid(ALG_PROBLEM)
    return algs


def typ_list(raw: str) -> frozenset[str]:
    """`typ` values as RFC 7515 §4.1.9 compares them (see core/claims.media_type)."""
    values = frozenset(claims.media_type(v) for v in raw.split(",") if v.strip())
    if not values or any(not v or any(c.isspace() or c in ",;" for c in v) for v in values):
        raise Invalid(f'must be media types separated by commas, such as "at+jwt", not "{raw}"')
    return values


def ca_file(raw: str) -> str:
    try:
        ssl.create_default_context(cafile=raw)
    except ssl.SSLError:  # before OSError: it is one
        raise Invalid(f"cannot use {raw}: no PEM certificates in it") from None
    except OSError as error:
        raise Invalid(f"cannot use {raw}: {error.strerror}") from None
    return raw


def whole(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        # Plain ASCII digits only: int() would also take "1_000", " 5 " and other scripts' digits.
        value = int(raw) if raw.isascii() and raw.isdigit() else low - 1
        if not low <= value <= high:
            raise Invalid(f'must be a whole number from {low} to {high}, not "{raw}"')
        return value

    return parse


def seconds(low: int, high: int) -> Parser:
    integer = whole(low, high)
    return lambda raw: float(integer(raw))


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in _BOOLS:
        raise Invalid(f'must be true or false, not "{lowered}"')
    return _BOOLS[lowered]


def header(raw: str) -> str:
    """An HTTP header name (RFC 9110 token), lower-cased; never one Envoy or the token owns."""
    lowered = raw.lower()
    if not _HEADER_NAME.fullmatch(lowered):
        raise Invalid(f'must be an HTTP header name, not "{raw}"')
    if lowered in _OWNED_HEADERS:
        raise Invalid(f'may not be "{lowered}"')
    return lowered


def cookie(raw: str) -> str:
    """A cookie name: an RFC 6265 token, compared case-sensitively."""
    if not _TOKEN.fullmatch(raw):
        raise Invalid(f'must be a cookie name (an RFC 6265 token), not "{raw}"')
    return raw


def claim_headers(raw: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    """`org_id=x-org-id, realm_access.roles=x-roles`: dotted claim paths to header names."""
    pairs: list[tuple[tuple[str, ...], str]] = []
    for item in (part.strip() for part in raw.split(",")):
        claim, equals, name = (piece.strip() for piece in item.partition("="))
        if not item or not equals or not claim or not all(claim.split(".")):
            raise Invalid(f'must be claim=header pairs such as "org_id=x-org-id", not "{item}"')
        header_name = header(name)
        if header_name in (h for _, h in pairs):
            raise Invalid(f'names the header "{header_name}" twice')
        pairs.append((tuple(claim.split(".")), header_name))
    return tuple(pairs)


def realm(raw: str) -> str:
    if not _REALM.fullmatch(raw):
        raise Invalid("must be printable ASCII without quotes or backslashes")
    return raw


def event_loop(raw: str) -> str:
    choice = one_of(EVENT_LOOPS)(raw)
    if choice == "uvloop" and not has_uvloop():
        raise Invalid("uvloop is not installed")
    return choice


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for one of `choices`, in any case."""

    def parse(raw: str) -> str:
        choice = raw.lower()
        if choice not in choices:
            raise Invalid(f'must be one of {", ".join(choices)}, not "{choice}"')
        return choice

    return parse


def default_route(raw: str) -> DefaultRoute:
    """SIDECAR_DEFAULT_ROUTE, as the enum that core/rules.py compares by identity."""
    return DefaultRoute(one_of(tuple(DefaultRoute))(raw))


def _host_port(raw: str, forms: str) -> str:
    host, _, port = raw.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise Invalid(f'must be {forms}, not "{raw}"')
    return raw


def listen(raw: str) -> str:
    if raw.startswith("unix:"):
        if len(raw) == len("unix:"):
            raise Invalid("unix: needs a path, as in unix:/run/auth-sidecar.sock")
        return raw
    return _host_port(raw, "host:port, [v6]:port or unix:/path")


def workers(raw: str) -> int:
    """`auto`: the CPUs this process may run on (taskset and cpuset limits included)."""
    if raw == "auto":
        return max(len(os.sched_getaffinity(0)), 1)
    return int(whole(1, 1024)(raw))


def http_listen(raw: str) -> str:
    return _host_port(raw, "host:port or [v6]:port")


def path(raw: str) -> str:
    if not raw.startswith("/") or "?" in raw or "#" in raw:
        raise Invalid(f'must be a path such as /v1/shape, not "{raw}"')
    return raw


def electric_secret(raw: str) -> str:
    if len(raw) < ELECTRIC_SECRET_MIN_CHARS or not _URL_SAFE.fullmatch(raw):
        raise Invalid(
            f"must be at least {ELECTRIC_SECRET_MIN_CHARS} characters of A-Z a-z 0-9 . _ ~ -"
            " (it goes into a query string unencoded)"
        )
    return raw


def mint_secret(raw: str) -> bytes:
    secret = raw.encode()
    if len(secret) < MINT_SECRET_MIN_BYTES:
        raise Invalid(f"must be at least {MINT_SECRET_MIN_BYTES} bytes long")
    return secret


def revocation_store(raw: str) -> str:
    """`embedded`, or a Redis URL: redis://, rediss:// (TLS) or unix://, with a host or path."""
    if raw == "embedded":
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise Invalid(
            "must be embedded, or a URL such as redis://host:6379/0, rediss://host:6380 or "
            "unix:///run/redis.sock"
        )
    return raw
