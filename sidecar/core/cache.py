"""A bounded cache of valid decisions, in front of a Validator.

Clients send the same token for its whole lifetime, so verifying it once is enough, provided a
cached decision can never outlive its token. Hence:

- the key is a digest of the token, never the token (a heap dump shows no bearer credentials);
- only valid decisions are kept (a refusal is cheap to reach again, and caching refusals would
  let garbage tokens evict good ones);
- each entry lives until `min(exp, now + max_ttl)`, and `exp` and `nbf` are checked again on every
  hit with `claims.check_times`, the Validator's own rule, so skew is applied exactly as there;
- `clear()` empties it: a key or configuration reload must call it.

Pure like the Validator: no I/O, and the clock is injected.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from sidecar.core import claims as rules
from sidecar.core.errors import TokenError
from sidecar.core.validator import Decision

T = TypeVar("T")

Counters = tuple[Callable[[], None], Callable[[], None]]
"""What a cache calls on a hit and on a miss."""

# 16 bytes of BLAKE2b: collisions are out of reach (2^64 work), and the digest is cheap.
DIGEST_BYTES = 16


class Decider(Protocol):
    """What the adapters call: the Validator, or a cache in front of one."""

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        """`issuer_audience=False`: the issuer's `aud` is not checked (a route checks its own)."""


class CachingValidator:
    """`decide(token)` as the wrapped validator answers it, from memory when it can."""

    def __init__(
        self,
        validator: Decider,
        size: int,
        max_ttl: float,
        skew: int,
        clock: Callable[[], float] = time.time,
        epoch: Callable[[], int] | None = None,
        counters: Counters | None = None,
    ) -> None:
        """`epoch` changes whenever the keys behind `validator` change (a JWKS refresh): the
        cache then forgets every decision, so a rotated-out key's token is refused at once.
        `counters`: what to call on a hit and on a miss (metrics); by default they are counted
        in `hits` and `misses`."""
        if size < 1:
            raise ValueError("a cache needs room for at least one decision; size 0 means no cache")
        self._validator = validator
        self._size = size
        self._max_ttl = max_ttl
        self._skew = skew
        self._clock = clock
        self._epoch = epoch
        self._seen = epoch() if epoch is not None else 0
        # digest -> (decision, until): ordered from least to most recently used.
        self._entries: OrderedDict[bytes, tuple[Decision, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._hit, self._miss = counters or (self._count_hit, self._count_miss)

    def __len__(self) -> int:
        return len(self._entries)

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        key = hashlib.blake2b(token.encode(), digest_size=DIGEST_BYTES).digest()
        if not issuer_audience:  # a more lenient decision: never the answer to a strict one
            key += b"\0"
        now = self._clock()
        if self._epoch is not None and (epoch := self._epoch()) != self._seen:
            self._entries.clear()
            self._seen = epoch
        entry = self._entries.get(key)
        if entry is not None:
            decision, until = entry
            if now < until and self._still_in_time(decision, now):
                self._entries.move_to_end(key)
                self._hit()
                return decision
            del self._entries[key]
        self._miss()
        decision = self._validator.decide(token, issuer_audience)
        if decision.valid:
            until = now + self._max_ttl
            if decision.expires_at is not None:
                until = min(until, decision.expires_at)
            if now < until:
                self._entries[key] = (decision, until)
                if len(self._entries) > self._size:
                    self._entries.popitem(last=False)
        return decision

    def clear(self) -> None:
        """Forgets every decision: call it whenever keys or configuration change."""
        self._entries.clear()

    def _count_hit(self) -> None:
        self.hits += 1

    def _count_miss(self) -> None:
        self.misses += 1

    def _still_in_time(self, decision: Decision, now: float) -> bool:
        """The Validator's own time rules, on the claims it accepted, at the time `now`."""
        try:
            # Whole seconds, as the Validator compares them.
            rules.check_times(decision.claims, int(now), self._skew)
        except TokenError:
            return False
        return True


def caching(
    validator: Decider,
    size: int,
    max_ttl: float,
    skew: int,
    clock: Callable[[], float] = time.time,
    epoch: Callable[[], int] | None = None,
    counters: Counters | None = None,
) -> Decider:
    """`validator` behind a cache of `size` decisions; `validator` itself when size is 0."""
    if size == 0:
        return validator
    return CachingValidator(validator, size, max_ttl, skew, clock, epoch, counters)


class Responses(Generic[T]):
    """Wire responses built once per cached decision, for the adapters.

    A cache hit hands out the very `Decision` object that was stored, so the response built for it
    the first time can be sent again: nothing changes a protobuf response once it is built. Keyed
    by the decision's identity and a `variant` (Check: where the token was found). Each entry keeps
    its decision alive, so an id cannot be reused while the entry exists. Bounded, oldest first.
    Only valid decisions are kept, as in the cache. `size` 0 builds every response afresh.
    """

    def __init__(self, build: Callable[[Decision, str], T], size: int) -> None:
        self._build = build
        self._size = size
        self._items: dict[tuple[int, str], tuple[Decision, T]] = {}

    def get(self, decision: Decision, variant: str = "") -> T:
        key = (id(decision), variant)
        entry = self._items.get(key)
        if entry is not None and entry[0] is decision:
            return entry[1]
        response = self._build(decision, variant)
        if self._size and decision.valid:
            self._items[key] = (decision, response)
            if len(self._items) > self._size:
                del self._items[next(iter(self._items))]
        return response
