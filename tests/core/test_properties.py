"""Properties of the decision core, with Hypothesis.

- `Validator.decide` never raises, whatever the input, and always returns a well-formed Decision:
  a Reason, a message (Electric's wording) exactly when refused, claims only when valid.
- A token that Mint issues for any non-blank user and any JSON claims validates to that user.
"""

from __future__ import annotations

import json
import re
import string
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms
from support import b64url, insecure_config, secure_config, signing_material

from sidecar.config import Config, build_minter, build_validator
from sidecar.core import jws
from sidecar.core.errors import Reason
from sidecar.core.validator import Decision, Validator

NOW = 1_700_000_000
ISS = "https://issuer.example"
AUD = "sync-service"
NS = "https://electric-sql.com/jwt/claims"
B64URL = string.ascii_letters + string.digits + "-_"
CLAIM_NAMES = ("iat", "exp", "nbf", "iss", "aud", "sub", "user_id", NS)
RESERVED = frozenset({"iat", "exp", "nbf", "iss", "aud", "sub", "user_id", NS})

SETTINGS = settings(max_examples=200, deadline=None, database=None)

# Every config the properties run against: both modes, an HMAC and an ECDSA secure config.
CONFIGS = {
    "insecure": ("insecure", {}),
    "insecure-ns": ("insecure", {"AUTH_JWT_NAMESPACE": NS}),
    "HS256": ("HS256", {"AUTH_JWT_ISS": ISS, "AUTH_JWT_AUD": AUD}),
    "ES256": ("ES256", {"AUTH_JWT_NAMESPACE": NS}),
}


@cache
def config(name: str) -> Config:
    alg, env = CONFIGS[name]
    return insecure_config(**env) if alg == "insecure" else secure_config(alg, **env)


@cache
def validator(name: str) -> Validator:
    return build_validator(config(name), clock=lambda: NOW)


# Electric's messages, and the reason each one goes with.
MESSAGES = [
    (Reason.MALFORMED, re.compile(r"Invalid token")),
    (Reason.ALGORITHM_MISMATCH, re.compile(r"Signing algorithm mismatch")),
    (Reason.BAD_SIGNATURE, re.compile(r"Invalid token signature")),
    (Reason.EXPIRED, re.compile(r"Expired token")),
    (Reason.NOT_YET_VALID, re.compile(r"Token is not yet valid")),
    (Reason.MISSING_CLAIM, re.compile(r'Missing required "(iat|exp|iss|aud)" claim')),
    (Reason.INVALID_CLAIM, re.compile(r'Invalid "(exp|nbf|iat|iss|aud)" claim value: .+', re.S)),
    (Reason.INVALID_USER_ID, re.compile(r"Missing or invalid 'user_id'")),
]


def decide(name: str, token: str) -> Decision:
    """Decides and checks everything that must hold of any decision."""
    decision = validator(name).decide(token)
    assert isinstance(decision, Decision)
    assert isinstance(decision.reason, Reason)
    assert isinstance(decision.message, str)
    if decision.valid:
        assert decision.reason is Reason.UNSPECIFIED
        assert decision.message == ""
        assert isinstance(decision.user_id, str)
        assert decision.user_id.strip()
        assert isinstance(decision.claims, dict)
        exp = decision.claims.get("exp")
        assert decision.expires_at == (None if exp is None else float(exp))
        # What is valid is plain, finite JSON that survives a round trip.
        dumped = json.dumps(decision.claims, allow_nan=False)
        assert json.loads(dumped) == decision.claims
    else:
        assert decision.reason is not Reason.UNSPECIFIED
        assert decision.message
        assert (decision.user_id, decision.claims, decision.expires_at) == ("", {}, None)
        matches = [reason for reason, pattern in MESSAGES if pattern.fullmatch(decision.message)]
        assert matches == [decision.reason], decision
    return decision


# ---------------------------------------------------------------------------------------------
# Strategies

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
# Objects whose keys are often the claims the rules look at, so that every rule gets exercised.
claim_objects = st.dictionaries(
    st.sampled_from(CLAIM_NAMES) | st.text(max_size=8),
    json_values
    | st.integers(NOW - 10, NOW + 10)
    | st.just(ISS)
    | st.just(AUD)
    | st.lists(st.just(AUD) | st.text(max_size=4), max_size=3)
    | st.dictionaries(st.sampled_from(("sub", "user_id")), json_values, max_size=2),
    max_size=8,
)
headers = st.dictionaries(
    st.sampled_from(("alg", "typ", "kid")) | st.text(max_size=6),
    st.sampled_from(("none", "HS256", "ES256", "RS256", "JWT")) | json_values,
    max_size=4,
)
segments = st.text(alphabet=B64URL, max_size=40)
signatures = st.sampled_from(["", "c2ln", "AAAA"]) | segments


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # allows Infinity, which the sidecar must refuse


def _sign(alg: str, signing_input: str) -> str:
    algorithm = get_default_algorithms()[alg]
    return b64url(algorithm.sign(signing_input.encode(), _key(alg)))


@cache
def _key(alg: str) -> Any:
    return get_default_algorithms()[alg].prepare_key(signing_material(alg))


NAMES = list(CONFIGS)


# ---------------------------------------------------------------------------------------------
# decide() never raises


@SETTINGS
@given(name=st.sampled_from(NAMES), token=st.text())
def test_arbitrary_text(name: str, token: str) -> None:
    decide(name, token)


@SETTINGS
@given(name=st.sampled_from(NAMES), token=st.binary().map(lambda b: b.decode("latin-1")))
def test_arbitrary_bytes_as_text(name: str, token: str) -> None:
    decide(name, token)


@SETTINGS
@given(
    name=st.sampled_from(NAMES),
    parts=st.lists(st.text(alphabet=B64URL + "=", max_size=40), max_size=5),
)
def test_concatenated_base64url_segments(name: str, parts: list[str]) -> None:
    decide(name, ".".join(parts))


@SETTINGS
@given(
    name=st.sampled_from(NAMES),
    header=headers | json_values,
    payload=claim_objects | json_values,
    signature=signatures,
    shape=st.sampled_from(["h.p", "h.p.", "h.p.s"]),
)
def test_arbitrary_json_headers_and_payloads(
    name: str, header: Any, payload: Any, signature: str, shape: str
) -> None:
    signing_input = f"{b64url(_dumps(header))}.{b64url(_dumps(payload))}"
    tail = {"h.p": "", "h.p.": ".", "h.p.s": "." + signature}[shape]
    decision = decide(name, signing_input + tail)
    if decision.valid:
        assert decision.claims == payload


@SETTINGS
@given(
    name=st.sampled_from(["HS256", "ES256"]),
    extra_header=st.dictionaries(st.sampled_from(("typ", "kid", "cty")), json_values, max_size=2),
    payload=claim_objects | json_values,
)
def test_correctly_signed_arbitrary_payloads(
    name: str, extra_header: dict[str, Any], payload: Any
) -> None:
    """Signed with the configured key, so that the claim rules see every kind of payload."""
    alg = CONFIGS[name][0]
    signing_input = f"{b64url(_dumps({**extra_header, 'alg': alg}))}.{b64url(_dumps(payload))}"
    decision = decide(name, f"{signing_input}.{_sign(alg, signing_input)}")
    # Past the signature, only the claim rules can refuse.
    assert decision.reason not in (
        Reason.ALGORITHM_MISMATCH,
        Reason.BAD_SIGNATURE,
    )
    if decision.valid:
        assert decision.claims == payload


@SETTINGS
@given(
    name=st.sampled_from(["HS256", "ES256"]),
    position=st.integers(min_value=0),
    replacement=st.sampled_from(B64URL + ".="),
)
def test_one_character_changed_in_a_valid_token(name: str, position: int, replacement: str) -> None:
    alg = CONFIGS[name][0]
    claims = {"iat": NOW, "exp": NOW + 60, "iss": ISS, "aud": AUD, "sub": "alice"}
    claims[NS] = {"user_id": "alice"}  # HS256 reads `sub`, ES256 its namespace
    signing_input = f"{b64url(_dumps({'alg': alg}))}.{b64url(_dumps(claims))}"
    token = f"{signing_input}.{_sign(alg, signing_input)}"
    assert decide(name, token).valid
    index = position % len(token)
    changed = token[:index] + replacement + token[index + 1 :]
    decision = decide(name, changed)
    if decision.valid:
        # Base64 has slack in the last character of a segment, so a change there may decode to
        # the same bytes; any change to what the bytes say must be refused.
        original, now = token.split("."), changed.split(".")
        assert len(now) == 3
        assert [jws.b64url_decode(s) for s in now] == [jws.b64url_decode(s) for s in original]


# ---------------------------------------------------------------------------------------------
# Mint -> Validate round trip

mint_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
mint_claims = st.dictionaries(
    st.text(max_size=10).filter(lambda k: k not in RESERVED), mint_values, max_size=6
)
users = st.text(min_size=1, max_size=40).filter(lambda u: bool(u.strip()))


@SETTINGS
@given(
    name=st.sampled_from(NAMES),
    user=users,
    claims=mint_claims,
    ttl=st.none() | st.integers(min_value=1, max_value=86400),
)
def test_minted_tokens_validate_to_their_user(
    name: str, user: str, claims: dict[str, Any], ttl: int | None
) -> None:
    cfg = config(name)
    minted = build_minter(cfg, clock=lambda: NOW).mint(user, claims, ttl=ttl)
    decision = decide(name, minted.token)
    assert decision.valid, decision
    assert decision.user_id == user
    for key, value in claims.items():
        assert decision.claims[key] == value
    assert decision.expires_at == (None if minted.expires_at is None else float(minted.expires_at))
