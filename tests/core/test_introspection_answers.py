"""The pure half of introspection: what an RFC 7662 answer decides, and how long it is kept."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core.errors import Reason, TokenError
from sidecar.core.introspection import AnswerCache, CacheSettings, decide_answer, digest
from sidecar.core.policy import Mode, Policy

NOW = 1_800_000_000
ISS = "https://idp.example"
AUD = "urn:sync"
POLICY = Policy(
    mode=Mode.SECURE,
    required=("iat", "exp", "iss", "aud"),
    iss=ISS,
    aud=AUD,
    skew=2,
    max_token_bytes=8192,
)
ACTIVE = {"active": True, "sub": "alice", "iss": ISS, "aud": AUD, "exp": NOW + 60, "scope": "a b"}


def reason(answer: dict[str, Any], policy: Policy = POLICY) -> Reason:
    with pytest.raises(TokenError) as raised:
        decide_answer(answer, policy, NOW)
    return raised.value.reason


def test_an_active_answer_is_a_decision_with_its_members_as_claims() -> None:
    decision = decide_answer(ACTIVE, POLICY, NOW)
    assert decision.valid
    assert decision.user_id == "alice"
    assert decision.expires_at == NOW + 60
    assert decision.claims == {k: v for k, v in ACTIVE.items() if k != "active"}


@pytest.mark.parametrize("active", [False, None, "true", 1])
def test_anything_but_active_true_is_inactive(active: Any) -> None:
    assert reason({**ACTIVE, "active": active}) is Reason.INACTIVE
    assert reason({k: v for k, v in ACTIVE.items() if k != "active"}) is Reason.INACTIVE


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"exp": NOW - 3}, Reason.EXPIRED),
        ({"nbf": NOW + 10}, Reason.NOT_YET_VALID),
        ({"iss": "https://evil.example"}, Reason.INVALID_CLAIM),
        ({"aud": "urn:other"}, Reason.INVALID_CLAIM),
        ({"sub": ""}, Reason.INVALID_USER_ID),
    ],
)
def test_the_answer_meets_the_rules_of_a_jwt(change: dict[str, Any], expected: Reason) -> None:
    assert reason({**ACTIVE, **change}) is expected


@pytest.mark.parametrize("member", ["iss", "aud"])
def test_a_configured_iss_or_aud_must_be_in_the_answer(member: str) -> None:
    assert reason({k: v for k, v in ACTIVE.items() if k != member}) is Reason.MISSING_CLAIM


def test_a_route_may_leave_out_the_issuers_audience() -> None:
    assert decide_answer({**ACTIVE, "aud": "urn:other"}, POLICY, NOW, issuer_audience=False).valid


def test_without_sub_the_client_is_the_user() -> None:
    answer = {k: v for k, v in ACTIVE.items() if k != "sub"} | {"client_id": "svc"}
    assert decide_answer(answer, POLICY, NOW).user_id == "svc"
    assert decide_answer({**answer, "user_id": "bob"}, POLICY, NOW).user_id == "bob"
    namespaced = Policy(mode=Mode.SECURE, namespace="ns", skew=2, max_token_bytes=8192)
    assert reason({"active": True, "client_id": "svc"}, namespaced) is Reason.INVALID_USER_ID
    assert decide_answer({"active": True, "ns": {"sub": "x"}}, namespaced, NOW).user_id == "x"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def test_an_active_answer_is_kept_for_the_ttl_and_never_past_exp() -> None:
    clock = Clock()
    cache = AnswerCache(CacheSettings(ttl=30, negative=5, size=10), clock)
    key = digest("t")
    cache.put(key, {**ACTIVE, "exp": NOW + 60})
    clock.now = NOW + 29.9
    assert cache.get(key) is not None
    clock.now = NOW + 30
    assert cache.get(key) is None
    cache.put(key, {**ACTIVE, "exp": NOW + 40})
    clock.now = NOW + 39.9
    assert cache.get(key) is not None
    clock.now = NOW + 40
    assert cache.get(key) is None  # its exp, before the TTL


def test_an_inactive_or_expired_answer_is_kept_briefly() -> None:
    clock = Clock()
    cache = AnswerCache(CacheSettings(ttl=30, negative=5, size=10), clock)
    cache.put(digest("b"), {"active": False})
    expired = {**ACTIVE, "exp": NOW - 1}
    cache.put(digest("c"), expired)  # kept, so that the waiting request decides it as expired
    assert cache.get(digest("b")) == {"active": False}
    assert cache.get(digest("c")) == expired
    clock.now += 5
    assert cache.get(digest("b")) is None
    assert cache.get(digest("c")) is None


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = AnswerCache(CacheSettings(ttl=60, negative=5, size=2), Clock())
    for token in ("a", "b"):
        cache.put(digest(token), ACTIVE)
    assert cache.get(digest("a")) is not None  # a is now the most recent
    cache.put(digest("c"), ACTIVE)
    assert cache.get(digest("b")) is None
    assert cache.get(digest("a")) is not None
    assert (cache.hits, cache.misses) == (2, 1)
