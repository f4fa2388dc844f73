"""Request paths as a router sees them, for every check that compares a path.

Electric's advisory GHSA-m4f6-p2j8-rq76: auth compared the raw path while the router served
`/v1/shape/`, `/v1//shape`, `/v1/%73hape` and `/v1/x/../shape` as `/v1/shape`. So a path is
compared here after what any router does alike (RFC 3986): unreserved characters decoded
(§2.3, §6.2.2.2), empty segments merged, `.` and `..` resolved (§5.2.4). What routers do
differently is refused, never guessed at: an encoded `/`, `\\` or `%`, a backslash, a `;`
parameter, a control character, a malformed escape. Other escapes (`%3F`, UTF-8 bytes) stay
encoded, as a router that decodes after splitting sees them.
"""

from __future__ import annotations

import functools
import re

from sidecar.core.errors import AmbiguousPath

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Escapes whose meaning depends on the decoder: `/`, `\`, `%` itself, and controls.
_AMBIGUOUS_BYTES = frozenset((0x2F, 0x5C, 0x25, 0x7F, *range(0x20)))
_AMBIGUOUS_TEXT = re.compile(r"[\\;\x00-\x1f\x7f]|%(?![0-9A-Fa-f]{2})")


@functools.lru_cache(maxsize=512)
def segments(path: str) -> tuple[str, ...]:
    """The segments that `path` (no query) routes by; raises AmbiguousPath. Memoised: a sync
    server's clients ask for a handful of paths, and routes, `request.path` and the shape check
    read the same one (an ambiguous path raises each time: exceptions are not kept)."""
    if not path.startswith("/"):
        raise AmbiguousPath("the request path does not start with /")
    if _AMBIGUOUS_TEXT.search(path):
        raise AmbiguousPath("the request path is ambiguous")
    decoded = _ESCAPE.sub(_decode, path)
    resolved: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if resolved:
                resolved.pop()
            continue
        resolved.append(segment)
    return tuple(resolved)


def _decode(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    if byte in _AMBIGUOUS_BYTES:
        raise AmbiguousPath("the request path is ambiguous")
    return chr(byte) if byte in _UNRESERVED else match.group(0).upper()
