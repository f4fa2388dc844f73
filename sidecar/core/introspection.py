"""Opaque tokens, decided from RFC 7662 introspection answers. Pure: no I/O, the clock injected.

An answer is data that `sidecar.keys.introspect` fetched. `AnswerCache` keeps answers under a
digest of the token (never the token), a positive one until the token's `exp` or the configured
TTL, whichever is first, and a negative one briefly. `decide_answer` applies the claim rules of a
JWT to an active answer, so that an opaque token means what a JWT with the same claims means.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core import claims as rules
from sidecar.core.errors import Inactive
from sidecar.core.policy import Policy
from sidecar.core.validator import Decision

# Same digest as the decision cache: collisions are out of reach.
DIGEST_BYTES = 16


def digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=DIGEST_BYTES).digest()


def decide_answer(
    answer: Mapping[str, Any], policy: Policy, now: int, issuer_audience: bool = True
) -> Decision:
    """The decision an answer gives. Raises the TokenError of the first rule that fails:
    `Inactive` for `"active": false` (or anything but `true`), then the JWT's own rules on the
    answer's members: `exp`/`nbf`/`iat` with the skew, `iss` and `aud` when configured, the
    lifetime bound, and the user (`sub`, or the namespace's rules). An answer without `sub` and
    without a namespace is the client's own token (client credentials): its `client_id` is the
    user, as RFC 9068 §2.2 has it for a JWT access token."""
    if answer.get("active") is not True:
        raise Inactive()
    # What a JWT must carry for the configured iss and aud, an answer must carry too.
    rules.require(answer, tuple(n for n in policy.required if n in ("iss", "aud")))
    rules.check_times(answer, now, policy.skew)
    rules.check_lifetime(answer, policy.max_lifetime)
    rules.check_issuer(answer, policy.iss)
    if issuer_audience:
        rules.check_audience(answer, policy.aud)
    claims = {k: v for k, v in answer.items() if k != "active"}
    no_user = claims.get("sub") is None and "user_id" not in claims
    if policy.namespace is None and no_user and "client_id" in claims:
        claims["sub"] = claims["client_id"]
    return Decision.accepted(rules.find_user(claims, policy.namespace), claims, policy.namespace)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How long answers are kept: `ttl` for an active one (never past its `exp`), `negative`
    for an inactive one, `size` answers at most (least recently used first out)."""

    ttl: float
    negative: float
    size: int


class AnswerCache:
    """Introspection answers by token digest, each until its deadline."""

    def __init__(self, settings: CacheSettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[Mapping[str, Any], float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Mapping[str, Any] | None:
        entry = self._entries.get(key)
        if entry is not None:
            answer, until = entry
            if self._clock() < until:
                self._entries.move_to_end(key)
                self.hits += 1
                return answer
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: bytes, answer: Mapping[str, Any]) -> None:
        """Keeps `answer` as long as the settings allow. Every answer is kept for a while, so
        that the requests that waited for it find it: an active one whose `exp` has passed is
        kept as long as an inactive one (it decides as expired)."""
        now = self._clock()
        negative = now + self._settings.negative
        until = negative
        if answer.get("active") is True:
            until = now + self._settings.ttl
            exp = answer.get("exp")
            if isinstance(exp, (int, float)) and not isinstance(exp, bool):
                until = min(until, float(exp))
            if until <= now:
                until = negative
        self._entries[key] = (answer, until)
        self._entries.move_to_end(key)
        if len(self._entries) > self._settings.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
