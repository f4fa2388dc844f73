"""HTTP/1.1 messages as the HTTP adapters see them: a parsed request in, a reply out.

The server (sidecar/protocols/http_server.py) parses and frames; an adapter maps a `Request` to a
`Reply`. A reply is encoded bytes already, so an adapter can build it once per cached decision
and a hit costs a lookup and a write. The server adds only what depends on the connection:
`content-length`, and `connection: close` when it closes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

# RFC 9110 §5.5: a field value has no control character but HTAB. Other bytes (obs-text) pass:
# a user id may be UTF-8, which proxies copy upstream byte for byte.
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(slots=True)
class Request:
    """One request, as read: `target` is the request-target as sent (path and query, not
    decoded); `headers` has lower-cased names, and repeated fields joined with `, `."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """A response: `head` is the status line and header lines, each ending in CRLF, without
    `content-length` and the blank line, which the server adds."""

    status: int
    head: bytes
    body: bytes = b""


Handler = Callable[[Request], Reply | Awaitable[Reply]]
"""What the server calls for a request under a route: a reply, or an awaitable of one (the
server writes a reply at once, and runs an awaitable as a task, keeping pipelined order)."""


class HeaderValueError(ValueError):
    """A header value that cannot be sent as one field (a CR, an LF, another control)."""


def reply(status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Reply:
    """Encodes a reply; raises HeaderValueError for a field that would not be one field."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise HeaderValueError(f"cannot send header {name!r} with this value")
        lines.append(f"{name}: {value}\r\n")
    return Reply(status, "".join(lines).encode(), body)


def is_field_value(value: str) -> bool:
    """Whether `value` can be sent as a header value as it is."""
    return _FIELD_VALUE.fullmatch(value) is not None
