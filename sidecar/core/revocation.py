"""Revocations: which otherwise valid tokens are refused. Pure: no I/O, the clock is injected.

Three kinds, each keyed by what the token says, never by its bytes (an ECDSA signature is
malleable, so a re-encoded token would miss a digest's entry):

- `TOKEN`: one token, by `(iss, jti)`, kept until its `exp` plus the skew (then it is expired);
- `USER`: every token of `(iss, user)` whose `iat` is before a time (logout everywhere);
- `ISSUER`: every token of `iss` whose `iat` is before a time (a key compromise).

A token without `iss` is filed under "". A token with no `iat` (insecure mode allows it) is
refused by any user or issuer revocation that covers it: nothing says it was issued after.

`Held` is one worker's copy, which a store adapter fills; `RevokingDecider` consults it on every
valid decision (cache hits included, so no cached decision of a revoked token is ever served),
and refuses to decide from a copy older than the staleness bound when the posture is closed.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core.cache import Decider
from sidecar.core.credentials import check_bearer
from sidecar.core.errors import CallInvalidArgument, RevocationsUnavailable, Revoked
from sidecar.core.validator import Decision

# A token revocation is kept at most this long: a token living longer is not a bearer token.
MAX_TOKEN_SECONDS = 366 * 86400


class Kind(enum.Enum):
    """What a revocation covers; the value is its name in the stores and on the wire."""

    TOKEN = "token"  # noqa: S105 - a kind's name, not a secret
    USER = "user"
    ISSUER = "issuer"


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation. `subject`: the `jti` (TOKEN), the user (USER), "" (ISSUER). `at`: until
    when a TOKEN revocation is kept, or the "not before" time of a USER or ISSUER one."""

    kind: Kind
    iss: str
    subject: str
    at: float

    @classmethod
    def checked(cls, kind: Any, iss: Any, subject: Any, at: Any) -> Revocation:
        """A revocation from values a store read back. Raises ValueError on anything that the
        sidecar does not write: an unknown kind, a non-string, a time that is not finite."""
        if not (isinstance(iss, str) and isinstance(subject, str)):
            raise ValueError("iss and subject must be strings")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError("at must be a finite number")
        return cls(Kind(kind), iss, subject, float(at))


class Held:
    """The revocations one worker holds, and when they were last known to match the store.

    Lookups are dictionary reads: O(1) with any number held. `synced_at` is a monotonic time set
    by the store adapter whenever it confirms its copy (a sync, a message, a ping); None means
    never: no copy has been loaded yet.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], float] = {}
        self._users: dict[tuple[str, str], float] = {}
        self._issuers: dict[str, float] = {}
        self.synced_at: float | None = None
        self.changes = 0
        """Counts every change applied: adapters and tests can tell that one arrived."""

    def __len__(self) -> int:
        return len(self._tokens) + len(self._users) + len(self._issuers)

    def add(self, revocation: Revocation) -> bool:
        """Applies one revocation; a later time wins. Returns whether anything changed."""
        kind, iss, subject, at = (
            revocation.kind,
            revocation.iss,
            revocation.subject,
            revocation.at,
        )
        table: dict[Any, float]
        key: Any
        if kind is Kind.TOKEN:
            table, key = self._tokens, (iss, subject)
        elif kind is Kind.USER:
            table, key = self._users, (iss, subject)
        else:
            table, key = self._issuers, iss
        if table.get(key, -math.inf) >= at:
            return False
        table[key] = at
        self.changes += 1
        return True

    def replace(self, revocations: Iterable[Revocation]) -> None:
        """The store's whole set, after a (re)sync: what it no longer holds is dropped."""
        self._tokens, self._users, self._issuers = {}, {}, {}
        for revocation in revocations:
            self.add(revocation)
        self.changes += 1

    def prune(self) -> int:
        """Drops token revocations past their time (the token has expired); returns how many."""
        now = self._clock()
        gone = [key for key, until in self._tokens.items() if until <= now]
        for key in gone:
            del self._tokens[key]
        return len(gone)

    def revoked(self, claims: Mapping[str, Any], user_id: str) -> bool:
        """Whether a valid token with `claims`, of the user `user_id`, is revoked."""
        iss = claims.get("iss")
        if not isinstance(iss, str):
            iss = ""
        if self._tokens:
            jti = claims.get("jti")
            if isinstance(jti, str):
                until = self._tokens.get((iss, jti))
                if until is not None and until > self._clock():
                    return True
        if self._users or self._issuers:
            iat = claims.get("iat")
            issued = iat if isinstance(iat, int | float) and not isinstance(iat, bool) else None
            for before in (self._users.get((iss, user_id)), self._issuers.get(iss)):
                if before is not None and (issued is None or issued < before):
                    return True
        return False

    def entries(self) -> list[Revocation]:
        """Every revocation held, for inspection."""
        return [
            *(Revocation(Kind.TOKEN, i, s, t) for (i, s), t in self._tokens.items()),
            *(Revocation(Kind.USER, i, s, t) for (i, s), t in self._users.items()),
            *(Revocation(Kind.ISSUER, i, "", t) for i, t in self._issuers.items()),
        ]


@dataclass(frozen=True)
class Posture:
    """What to do with a copy older than `max_staleness` seconds: `fail_open` keeps deciding
    from it; closed (the default) answers UNAVAILABLE until the store is reached again."""

    max_staleness: float
    fail_open: bool = False

    def stale(self, synced_at: float, now: float) -> bool:
        """Whether a copy confirmed at `synced_at` is too old at `now` (monotonic seconds)."""
        return now - synced_at > self.max_staleness


class RevokingDecider:
    """`inner`'s decisions, with revoked tokens refused as REASON_REVOKED."""

    def __init__(
        self,
        inner: Decider,
        held: Held,
        posture: Posture,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._held = held
        self._posture = posture
        self._monotonic = monotonic

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        decision = self._inner.decide(token, issuer_audience)
        if not decision.valid:
            return decision
        held = self._held
        synced = held.synced_at
        if synced is None:
            raise RevocationsUnavailable("the revocations are not loaded yet")
        posture = self._posture
        if not posture.fail_open and posture.stale(synced, self._monotonic()):
            raise RevocationsUnavailable(
                "the revocation store has not been reached for longer than "
                "SIDECAR_REVOCATION_MAX_STALENESS_SECONDS"
            )
        if held.revoked(decision.claims, decision.user_id):
            return Decision.refused(Revoked())
        return decision


def token_revocation(iss: str, jti: str, exp: float, skew: int, now: float) -> Revocation:
    """A TOKEN revocation kept until `exp` plus `skew`. Raises ValueError on a blank `jti`, or an
    `exp` that is past or more than MAX_TOKEN_SECONDS ahead."""
    if not jti.strip():
        raise ValueError("jti must not be blank")
    if not math.isfinite(exp) or exp + skew <= now:
        raise ValueError("expires_at must be in the future (an expired token is refused anyway)")
    if exp - now > MAX_TOKEN_SECONDS:
        raise ValueError(f"expires_at must be at most {MAX_TOKEN_SECONDS} seconds ahead")
    return Revocation(Kind.TOKEN, iss, jti, exp + skew)


def not_before(kind: Kind, iss: str, subject: str, at: float | None, now: float) -> Revocation:
    """A USER or ISSUER revocation of tokens issued before `at` (None: now). Raises ValueError on
    a blank user, or a time more than a year ahead (it would lock the user out until then)."""
    if kind is Kind.USER and not subject.strip():
        raise ValueError("user_id must not be blank")
    when = now if at is None else at
    if not math.isfinite(when) or when - now > MAX_TOKEN_SECONDS:
        raise ValueError("not_before must be a time no more than a year ahead")
    return Revocation(kind, iss, subject, when)


class Revoker:
    """Who may revoke, and the revocations that a request's fields make. Pure: the adapters
    store what it returns. Insecure mode lets anyone revoke, as it lets anyone mint."""

    def __init__(
        self,
        insecure: bool,
        secret: bytes | None,
        skew: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._insecure = insecure
        self._secret = secret
        self._skew = skew
        self._clock = clock

    def authorize(self, authorization: str | None) -> None:
        """Raises CallDisabled, CallUnauthenticated or CallPermissionDenied."""
        if not self._insecure:
            check_bearer(authorization, self._secret, "Revoke", "SIDECAR_ADMIN_SECRET")

    def token(self, iss: str, jti: str, exp: float | None) -> Revocation:
        if exp is None:
            raise CallInvalidArgument("a token's revocation needs its expires_at (its exp)")
        return self._made(lambda now: token_revocation(iss, jti, exp, self._skew, now))

    def user(self, iss: str, user_id: str, at: float | None) -> Revocation:
        return self._made(lambda now: not_before(Kind.USER, iss, user_id, at, now))

    def issuer(self, iss: str, at: float | None) -> Revocation:
        return self._made(lambda now: not_before(Kind.ISSUER, iss, "", at, now))

    def _made(self, make: Callable[[float], Revocation]) -> Revocation:
        try:
            return make(self._clock())
        except ValueError as error:
            raise CallInvalidArgument(str(error)) from None
