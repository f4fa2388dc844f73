"""What the core enforces, as plain values: the mode, the claim rules and Mint's limits.

`config` builds these from settings; the core (validator, minter) reads nothing else, so it can be
built by hand in tests and by any future source of configuration.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Mode(enum.StrEnum):
    """Electric's two auth modes. Insecure checks no signature: development only."""

    SECURE = "secure"
    INSECURE = "insecure"


@dataclass(frozen=True, kw_only=True)
class Policy:
    """The rules a token must meet, besides its signature."""

    mode: Mode = Mode.SECURE
    required: tuple[str, ...] = ()
    """Claims that must be present (secure mode: `iat`, `exp`, and `iss`/`aud` when set)."""
    iss: str | None = None
    aud: str | None = None
    namespace: str | None = None
    """Read the user from `claims[namespace]` rather than from the top level."""
    skew: int
    """Seconds of clock drift allowed for `exp`, `nbf` and `iat`."""
    max_token_bytes: int
    """Longer tokens are refused unparsed, as malformed."""
    typ: frozenset[str] | None = None
    """The `typ` header values accepted, as `claims.media_type` gives them; None: any."""
    max_lifetime: int | None = None
    """The longest `exp - iat` accepted, in seconds; None: no bound."""


@dataclass(frozen=True, kw_only=True)
class MintPolicy:
    """Who may mint, and the longest lifetime Mint grants."""

    max_ttl: int
    secret: bytes | None = field(default=None, repr=False)
    """The bearer secret Mint callers must send; None turns Mint off in secure mode."""
