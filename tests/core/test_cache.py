"""The decision cache: a hit is exactly what the Validator would say now, or it is not a hit.

Real Validators over PyJWT-signed tokens; the clock is a list the test moves by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envoy.service.auth.v3 import external_auth_pb2
from support import insecure_config, secure_config, sign, unsigned

from authsidecar.v1 import auth_pb2
from sidecar.adapters.auth_service import AuthService, to_response
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.config import build_minter, build_validator
from sidecar.core.cache import DIGEST_BYTES, CachingValidator, Responses, caching
from sidecar.core.errors import Reason
from sidecar.core.validator import Decision

NOW = 1_700_000_000
SKEW = 2
MAX_TTL = 300


class Clock:
    """A hand-moved clock, shared by the cache and the Validator it wraps."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(
    clock: Clock, size: int = 100, alg: str = "HS256"
) -> tuple[CachingValidator, Callable[[str], Decision]]:
    """A cache in front of a Validator, and an uncached Validator on the same clock."""
    cfg = secure_config(alg, SIDECAR_CLOCK_SKEW_SECONDS=str(SKEW))
    validator = build_validator(cfg, clock=clock)
    return CachingValidator(validator, size, MAX_TTL, SKEW, clock), validator.decide


def token(sub: str = "alice", ttl: int = 60, nbf: int | None = None, alg: str = "HS256") -> str:
    claims: dict[str, object] = {"sub": sub, "iat": NOW, "exp": NOW + ttl}
    if nbf is not None:
        claims["nbf"] = nbf
    return sign(alg, claims)


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_a_hit_returns_the_very_same_decision(clock: Clock, alg: str) -> None:
    cached, _ = make(clock, alg=alg)
    good = token(alg=alg)  # once: ECDSA signatures differ on every signing
    first = cached.decide(good)
    assert first.valid and first.user_id == "alice"
    assert cached.decide(good) is first
    assert (cached.hits, cached.misses) == (1, 1)


def test_an_expired_token_is_never_served_from_the_cache(clock: Clock) -> None:
    cached, uncached = make(clock)
    good = token(ttl=60)
    assert cached.decide(good).valid
    # Up to exp + skew, as the Validator allows; one second later, Expired, like the Validator.
    for now in range(NOW, NOW + 60 + SKEW + 3):
        clock.now = now
        decision = cached.decide(good)
        assert (decision.valid, decision.reason) == (
            uncached(good).valid,
            uncached(good).reason,
        ), now
    assert cached.decide(good).reason == Reason.EXPIRED
    assert len(cached) == 0


def test_a_cached_decision_lapses_at_exp_even_within_skew_and_is_verified_again(
    clock: Clock,
) -> None:
    """`until` is min(exp, now + max_ttl): past exp, the next call is a miss (still valid)."""
    cached, _ = make(clock)
    good = token(ttl=60)
    cached.decide(good)
    clock.now = NOW + 60 + 1  # within the skew
    assert cached.decide(good).valid
    assert (cached.hits, cached.misses) == (0, 2)


def test_nbf_is_checked_on_every_hit_so_a_clock_stepping_back_is_refused(clock: Clock) -> None:
    cached, uncached = make(clock)
    later = token(nbf=NOW)
    assert cached.decide(later).valid
    clock.now = NOW - SKEW - 1  # the wall clock stepped back (NTP): nbf is now in the future
    assert cached.decide(later).reason == Reason.NOT_YET_VALID == uncached(later).reason


def test_an_entry_lives_at_most_max_ttl(clock: Clock) -> None:
    cached, _ = make(clock)
    long_lived = token(ttl=10 * MAX_TTL)
    first = cached.decide(long_lived)
    clock.now = NOW + MAX_TTL - 1
    assert cached.decide(long_lived) is first
    clock.now = NOW + MAX_TTL
    again = cached.decide(long_lived)
    assert again.valid and again is not first
    assert (cached.hits, cached.misses) == (1, 2)


def test_only_valid_decisions_are_cached(clock: Clock) -> None:
    cached, _ = make(clock)
    for bad in ("garbage", token(ttl=-60), unsigned({"sub": "a"}), token()[:-3] + "AAA"):
        assert not cached.decide(bad).valid
        assert not cached.decide(bad).valid
    assert len(cached) == 0
    assert cached.hits == 0


def test_entries_are_bounded_least_recently_used_first(clock: Clock) -> None:
    cached, _ = make(clock, size=3)
    tokens = [token(sub=f"u{i}") for i in range(5)]
    for t in tokens[:3]:
        cached.decide(t)
    cached.decide(tokens[0])  # now the most recently used
    for t in tokens[3:]:
        cached.decide(t)
    assert len(cached) == 3
    hits = cached.hits
    assert cached.decide(tokens[0]).valid and cached.hits == hits + 1  # kept
    assert cached.decide(tokens[1]).valid and cached.hits == hits + 1  # evicted: a miss


def test_clear_forgets_every_decision(clock: Clock) -> None:
    cached, _ = make(clock)
    good = token()
    first = cached.decide(good)
    cached.clear()
    assert len(cached) == 0
    assert cached.decide(good) is not first
    assert cached.misses == 2


def test_a_change_of_keys_forgets_every_decision(clock: Clock) -> None:
    """A JWKS refresh bumps the epoch: a token of a rotated-out key is decided afresh."""
    generation = [0]
    validator = build_validator(secure_config("HS256"), clock)
    cached = CachingValidator(validator, 10, 300, 2, clock, epoch=lambda: generation[0])
    good = token()
    first = cached.decide(good)
    assert cached.decide(good) is first
    generation[0] += 1
    assert cached.decide(good) is not first
    assert (cached.hits, cached.misses) == (1, 2)


def test_the_cache_holds_digests_never_tokens(clock: Clock) -> None:
    cached, _ = make(clock)
    good = token()
    cached.decide(good)
    (key,) = cached._entries
    assert len(key) == DIGEST_BYTES
    assert good.encode() not in key and key not in good.encode()


def test_insecure_tokens_without_exp_live_until_max_ttl(clock: Clock) -> None:
    validator = build_validator(insecure_config(), clock=clock)
    cached = CachingValidator(validator, 10, MAX_TTL, SKEW, clock)
    plain = unsigned({"sub": "a"})
    first = cached.decide(plain)
    assert cached.decide(plain) is first
    clock.now = NOW + MAX_TTL
    assert cached.decide(plain) is not first


def test_size_zero_means_no_cache(clock: Clock) -> None:
    validator = build_validator(insecure_config(), clock=clock)
    assert caching(validator, 0, MAX_TTL, SKEW) is validator
    assert isinstance(caching(validator, 1, MAX_TTL, SKEW), CachingValidator)
    with pytest.raises(ValueError, match="size 0"):
        CachingValidator(validator, 0, MAX_TTL, SKEW)


def test_responses_are_built_once_per_cached_decision(clock: Clock) -> None:
    cached, _ = make(clock)
    built: list[tuple[Decision, str]] = []

    def build(decision: Decision, variant: str) -> object:
        built.append((decision, variant))
        return object()

    responses = Responses(build, size=2)
    good = cached.decide(token())
    first = responses.get(good, "authorization")
    assert responses.get(cached.decide(token()), "authorization") is first
    assert responses.get(good, "x-token") is not first  # another variant, another response
    refused = cached.decide("garbage")
    assert responses.get(refused) is not responses.get(refused)  # refusals are never kept
    assert len(built) == 4
    for i in range(3):  # bounded: the oldest goes first
        responses.get(cached.decide(token(sub=f"u{i}")))
    assert responses.get(good, "authorization") is not first


def test_size_zero_builds_every_response(clock: Clock) -> None:
    cached, _ = make(clock)
    responses = Responses(lambda decision, variant: object(), size=0)
    good = cached.decide(token())
    assert responses.get(good) is not responses.get(good)


async def test_validate_and_check_answer_a_hit_with_the_response_of_the_first_call(
    clock: Clock,
) -> None:
    cfg = secure_config("HS256")
    cached = CachingValidator(build_validator(cfg, clock=clock), 100, MAX_TTL, SKEW, clock)
    auth = AuthService(cached, build_minter(cfg), memo_size=100)
    good = token()
    first = await auth.Validate(auth_pb2.ValidateRequest(token=good), None)  # type: ignore[arg-type]
    again = await auth.Validate(auth_pb2.ValidateRequest(token=good), None)  # type: ignore[arg-type]
    assert again is first and first == to_response(cached.decide(good))
    check = EnvoyAuthorization(cached, cfg.envoy, memo_size=100)
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.headers["authorization"] = f"Bearer {good}"
    allowed = await check.Check(request, None)  # type: ignore[arg-type]
    assert await check.Check(request, None) is allowed  # type: ignore[arg-type]
    assert allowed == check.respond(cached.decide(good), "authorization")
    clock.now = NOW + 60 + SKEW + 1  # expired: never the stored response
    assert (await auth.Validate(auth_pb2.ValidateRequest(token=good), None)).reason == (  # type: ignore[arg-type]
        auth_pb2.REASON_EXPIRED
    )
    assert (await check.Check(request, None)).denied_response.status.code == 401  # type: ignore[arg-type]
