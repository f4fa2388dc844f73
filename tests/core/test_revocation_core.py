"""The revocation core: what is refused, the staleness rule, and the requests a Revoker takes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sidecar.core.errors import (
    CallInvalidArgument,
    CallPermissionDenied,
    Reason,
    RevocationsUnavailable,
)
from sidecar.core.revocation import (
    Held,
    Kind,
    Posture,
    Revocation,
    Revoker,
    RevokingDecider,
)
from sidecar.core.validator import Decision

NOW = 1_800_000_000.0


class Fixed:
    """A decider that accepts every token with the claims it was given."""

    def __init__(self, claims: dict[str, object], user: str = "alice") -> None:
        self.claims = claims
        self.user = user
        self.calls = 0

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        self.calls += 1
        return Decision.accepted(self.user, dict(self.claims), None)


def held(*revocations: Revocation, now: float = NOW) -> Held:
    h = Held(lambda: now)
    for r in revocations:
        h.add(r)
    h.synced_at = 0.0
    return h


@pytest.mark.parametrize(
    ("revocation", "claims", "revoked"),
    [
        (Revocation(Kind.TOKEN, "i", "j1", NOW + 10), {"iss": "i", "jti": "j1"}, True),
        (Revocation(Kind.TOKEN, "i", "j1", NOW + 10), {"iss": "i", "jti": "j2"}, False),
        (Revocation(Kind.TOKEN, "i", "j1", NOW + 10), {"iss": "other", "jti": "j1"}, False),
        (Revocation(Kind.TOKEN, "", "j1", NOW + 10), {"jti": "j1"}, True),
        # Past its time the entry no longer matters: the token has expired.
        (Revocation(Kind.TOKEN, "i", "j1", NOW - 1), {"iss": "i", "jti": "j1"}, False),
        (Revocation(Kind.USER, "i", "alice", NOW), {"iss": "i", "iat": NOW - 1}, True),
        (Revocation(Kind.USER, "i", "alice", NOW), {"iss": "i", "iat": NOW}, False),
        (Revocation(Kind.USER, "i", "bob", NOW), {"iss": "i", "iat": NOW - 1}, False),
        # No iat: nothing says that it was issued after the revocation.
        (Revocation(Kind.USER, "i", "alice", NOW), {"iss": "i"}, True),
        (Revocation(Kind.USER, "i", "alice", NOW), {"iss": "i", "iat": True}, True),
        (Revocation(Kind.ISSUER, "i", "", NOW), {"iss": "i", "iat": NOW - 5}, True),
        (Revocation(Kind.ISSUER, "i", "", NOW), {"iss": "j", "iat": NOW - 5}, False),
        (Revocation(Kind.ISSUER, "", "", NOW), {"iat": NOW - 5}, True),
    ],
)
def test_what_each_kind_refuses(
    revocation: Revocation, claims: dict[str, object], revoked: bool
) -> None:
    assert held(revocation).revoked(claims, "alice") is revoked


def test_a_later_time_wins_and_replace_drops_what_the_store_no_longer_has() -> None:
    h = held(Revocation(Kind.USER, "i", "alice", NOW))
    assert not h.add(Revocation(Kind.USER, "i", "alice", NOW - 100))
    assert h.revoked({"iss": "i", "iat": NOW - 50}, "alice")
    h.replace([Revocation(Kind.TOKEN, "i", "j", NOW + 5)])
    assert not h.revoked({"iss": "i", "iat": NOW - 50}, "alice")
    assert len(h) == 1


def test_prune_drops_only_ended_token_revocations() -> None:
    clock = [NOW]
    h = Held(lambda: clock[0])
    h.add(Revocation(Kind.TOKEN, "i", "a", NOW + 5))
    h.add(Revocation(Kind.TOKEN, "i", "b", NOW + 50))
    h.add(Revocation(Kind.USER, "i", "u", NOW))
    clock[0] = NOW + 10
    assert h.prune() == 1
    assert {r.subject for r in h.entries()} == {"b", "u"}


def test_values_read_back_are_checked_and_foreign_entries_refused() -> None:
    r = Revocation(Kind.USER, "i", "alice", NOW)
    assert Revocation.checked("user", "i", "alice", NOW) == r
    for bad in (("user", 1, "a", 1), ("nope", "i", "a", 1), ("user", "i", "a", float("nan"))):
        with pytest.raises(ValueError):
            Revocation.checked(*bad)


def test_revoked_decisions_are_refused_with_the_reason() -> None:
    inner = Fixed({"iss": "i", "jti": "j"})
    decider = RevokingDecider(
        inner, held(Revocation(Kind.TOKEN, "i", "j", NOW + 60)), Posture(10), lambda: 1.0
    )
    decision = decider.decide("t")
    assert (decision.valid, decision.reason, decision.message) == (
        False,
        Reason.REVOKED,
        "Token has been revoked",
    )


def test_staleness_closed_and_open() -> None:
    monotonic = [100.0]
    h = held()
    h.synced_at = 100.0
    closed = RevokingDecider(Fixed({}), h, Posture(10), lambda: monotonic[0])
    opened = RevokingDecider(Fixed({}), h, Posture(10, fail_open=True), lambda: monotonic[0])
    monotonic[0] = 110.0
    assert closed.decide("t").valid
    monotonic[0] = 110.5
    with pytest.raises(RevocationsUnavailable):
        closed.decide("t")
    assert opened.decide("t").valid
    h.synced_at = None  # never loaded: no copy to decide from, in either posture
    with pytest.raises(RevocationsUnavailable):
        opened.decide("t")


def test_refusals_are_not_held_to_the_staleness_rule() -> None:
    class Refusing:
        def decide(self, token: str, issuer_audience: bool = True) -> Decision:
            return Decision(valid=False, reason=Reason.EXPIRED, message="Expired token")

    h = Held()
    assert RevokingDecider(Refusing(), h, Posture(1)).decide("t").reason is Reason.EXPIRED


def test_revoker_requests() -> None:
    revoker = Revoker(False, b"s" * 32, skew=5, clock=lambda: NOW)
    assert revoker.token("i", "j", NOW + 60).at == NOW + 65
    assert revoker.user("i", "u", None).at == NOW
    assert revoker.issuer("i", NOW - 10).at == NOW - 10
    calls: list[Callable[[], Revocation]] = [
        lambda: revoker.token("i", " ", NOW + 60),
        lambda: revoker.token("i", "j", None),
        lambda: revoker.token("i", "j", NOW - 60),
        lambda: revoker.token("i", "j", NOW + 400 * 86400),
        lambda: revoker.user("i", "", None),
        lambda: revoker.issuer("i", float("inf")),
    ]
    for call in calls:
        with pytest.raises(CallInvalidArgument):
            call()
    with pytest.raises(CallPermissionDenied):
        revoker.authorize("Bearer " + "x" * 32)
    revoker.authorize("Bearer " + "s" * 32)
    Revoker(True, None, 0).authorize(None)  # insecure: anyone
