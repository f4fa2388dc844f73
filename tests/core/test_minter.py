"""The minting core: who may mint, what a minted token holds, and that it validates.

Secure tokens are checked by PyJWT (an independent library) and by the sidecar's own Validator on
the same configuration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, RSAAlgorithm
from support import (
    ALGORITHMS,
    CURVES,
    b64url,
    insecure_config,
    key_pair,
    secure_config,
    secure_env,
    verify_material,
)

from sidecar import config
from sidecar.config import Config
from sidecar.core.errors import (
    CallDisabled,
    CallError,
    CallInvalidArgument,
    CallPermissionDenied,
    CallUnauthenticated,
    Reason,
)
from sidecar.core.minter import DEFAULT_TTL_SECONDS, Minted, Minter
from sidecar.keys import algorithms

NOW = 1_700_000_000
ISS = "https://issuer.example"
AUD = "sync-service"
NS = "https://electric-sql.com/jwt/claims"
SECRET = "mint-" + "x" * 40
NONE_HEADER = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # base64url('{"alg":"none","typ":"JWT"}')
RS_ES = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")


def segment(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def insecure(**env: str) -> Config:
    return insecure_config(**env)


_SECURE: dict[tuple[str, tuple[tuple[str, str], ...]], Config] = {}


def secure(alg: str, **env: str) -> Config:
    """Cached: loading an RSA signing key checks it, which is slow."""
    key = (alg, tuple(sorted(env.items())))
    if key not in _SECURE:
        _SECURE[key] = secure_config(alg, **env)
    return _SECURE[key]


def minter(cfg: Config, now: float = NOW) -> Minter:
    return config.build_minter(cfg, clock=lambda: now)


def validate(cfg: Config, token: str, now: float = NOW) -> Any:
    return config.build_validator(cfg, clock=lambda: now).decide(token)


# ---------------------------------------------------------------------------------------------
# Insecure mode


def test_insecure_token_shape() -> None:
    minted = minter(insecure()).mint("alice")
    assert minted == Minted(token=minted.token, expires_at=None)
    head, _, signature = minted.token.split(".")
    assert head == NONE_HEADER
    header_bytes = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
    assert header_bytes == b'{"alg":"none","typ":"JWT"}'
    assert signature == ""
    assert minted.token.endswith(".")
    assert minted.token.count(".") == 2
    assert "=" not in minted.token
    assert segment(minted.token, 1) == {"user_id": "alice"}


def test_insecure_claims_are_the_request_claims_plus_user_id() -> None:
    claims = {"role": "admin", "tags": ["a", 1, None, True], "meta": {"k": 1.5}, "iss": "me"}
    minted = minter(insecure()).mint("alice", claims)
    assert segment(minted.token, 1) == {**claims, "user_id": "alice"}
    assert claims == {
        "role": "admin",
        "tags": ["a", 1, None, True],
        "meta": {"k": 1.5},
        "iss": "me",
    }


def test_insecure_exp_only_with_ttl() -> None:
    m = minter(insecure())
    assert "exp" not in segment(m.mint("alice").token, 1)
    minted = m.mint("alice", ttl=90)
    assert segment(minted.token, 1) == {"exp": NOW + 90, "user_id": "alice"}
    assert minted.expires_at == NOW + 90
    assert segment(m.mint("alice", ttl=90.9).token, 1)["exp"] == NOW + 90


def test_insecure_writes_no_iat_or_nbf() -> None:
    payload = segment(minter(insecure()).mint("alice", ttl=60).token, 1)
    assert "iat" not in payload
    assert "nbf" not in payload


def test_insecure_user_under_namespace() -> None:
    cfg = insecure(AUTH_JWT_NAMESPACE=NS)
    nested = {"role": "x"}
    minted = minter(cfg).mint("alice", {NS: nested, "top": 1})
    assert segment(minted.token, 1) == {NS: {"role": "x", "user_id": "alice"}, "top": 1}
    assert nested == {"role": "x"}  # the request's object is not changed
    assert segment(minter(cfg).mint("bob").token, 1) == {NS: {"user_id": "bob"}}


def test_insecure_namespace_allows_top_level_user_claims_that_validate_ignores() -> None:
    cfg = insecure(AUTH_JWT_NAMESPACE=NS)
    minted = minter(cfg).mint("alice", {"sub": "mallory", "user_id": "mallory"})
    decision = validate(cfg, minted.token)
    assert decision.valid
    assert decision.user_id == "alice"


@pytest.mark.parametrize("namespace", [None, NS])
@pytest.mark.parametrize("ttl", [None, 60])
def test_insecure_minted_token_validates_on_the_same_config(
    namespace: str | None, ttl: int | None
) -> None:
    cfg = insecure(**({"AUTH_JWT_NAMESPACE": namespace} if namespace else {}))
    minted = minter(cfg).mint("alice", {"role": "admin"}, ttl=ttl)
    decision = validate(cfg, minted.token)
    assert decision.valid
    assert decision.user_id == "alice"
    assert decision.expires_at == (None if ttl is None else float(NOW + ttl))
    assert decision.claims == segment(minted.token, 1)


def test_insecure_token_expires_after_ttl_plus_skew() -> None:
    cfg = insecure()
    token = minter(cfg).mint("alice", ttl=60).token
    assert validate(cfg, token, now=NOW + 62).valid
    assert validate(cfg, token, now=NOW + 63).reason is Reason.EXPIRED


@pytest.mark.parametrize("ttl", [None, 60])
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_insecure_time_claims_are_reserved_too(claim: str, ttl: int | None) -> None:
    """Every minted token must pass Validate: a caller's `exp: 1` would make one that cannot."""
    with pytest.raises(CallInvalidArgument, match=f'"{claim}"'):
        minter(insecure()).mint("alice", {claim: NOW - 100}, ttl=ttl)


def test_insecure_may_set_iss_and_aud_which_it_never_checks() -> None:
    minted = minter(insecure()).mint("alice", {"iss": "dev", "aud": ["a"]})
    assert segment(minted.token, 1) == {"iss": "dev", "aud": ["a"], "user_id": "alice"}
    assert validate(insecure(), minted.token).valid


# ---------------------------------------------------------------------------------------------
# Secure mode, every algorithm


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_stamps_iat_nbf_exp(alg: str) -> None:
    minted = minter(secure(alg)).mint("alice", {"role": "admin"})
    assert segment(minted.token, 0) == {"alg": alg, "typ": "JWT", "kid": rfc7638(alg)}
    assert segment(minted.token, 1) == {
        "role": "admin",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "user_id": "alice",
    }
    assert minted.expires_at == NOW + 900
    assert DEFAULT_TTL_SECONDS == 900


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_ttl(alg: str) -> None:
    minted = minter(secure(alg)).mint("alice", ttl=3600)
    assert segment(minted.token, 1)["exp"] == NOW + 3600
    assert minted.expires_at == NOW + 3600


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_whole_seconds_from_a_fractional_clock(alg: str) -> None:
    payload = segment(minter(secure(alg), now=NOW + 0.75).mint("alice").token, 1)
    assert (payload["iat"], payload["nbf"], payload["exp"]) == (NOW, NOW, NOW + 900)
    assert all(type(payload[k]) is int for k in ("iat", "nbf", "exp"))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_writes_iss_aud_and_namespace(alg: str) -> None:
    cfg = secure(alg, AUTH_JWT_ISS=ISS, AUTH_JWT_AUD=AUD, AUTH_JWT_NAMESPACE=NS)
    minted = minter(cfg).mint("alice", {NS: {"org": "acme"}})
    assert segment(minted.token, 1) == {
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 900,
        "iss": ISS,
        "aud": AUD,
        NS: {"org": "acme", "user_id": "alice"},
    }


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("extra", [{}, {"AUTH_JWT_ISS": ISS, "AUTH_JWT_AUD": AUD}])
def test_secure_token_passes_pyjwt(alg: str, extra: dict[str, str]) -> None:
    cfg = secure(alg, **extra)
    now = int(time.time())
    minted = config.build_minter(cfg).mint(
        "alice", {"role": "admin"}
    )  # the real clock, as PyJWT uses it
    claims = jwt.decode(
        minted.token,
        verify_material(alg),
        algorithms=[alg],
        audience=extra.get("AUTH_JWT_AUD"),
        issuer=extra.get("AUTH_JWT_ISS"),
        options={"require": ["iat", "nbf", "exp", *(["iss", "aud"] if extra else [])]},
    )
    assert claims["user_id"] == "alice"
    assert claims["role"] == "admin"
    assert now <= claims["iat"] <= now + 5
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(minted.token) == {
        "alg": alg,
        "typ": "JWT",
        "kid": rfc7638(alg),
    }


def rfc7638(alg: str) -> str:
    """The RFC 7638 thumbprint of the test key for `alg`, from PyJWT's JWK of it."""
    public = None if alg.startswith("HS") else load_pem_public_key(verify_material(alg).encode())
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = HMACAlgorithm.to_jwk(verify_material(alg).encode(), as_dict=True)
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "oct": ("k", "kty")}
    canonical = json.dumps({m: jwk[m] for m in members[jwk["kty"]]}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_token_fails_pyjwt_with_another_key(alg: str) -> None:
    """PyJWT really checks the signature: the same token with its payload changed fails."""
    minted = minter(secure(alg)).mint("alice")
    head, _, sig = minted.token.split(".")
    other = base64.urlsafe_b64encode(b'{"user_id":"mallory"}').rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            f"{head}.{other}.{sig}",
            verify_material(alg),
            algorithms=[alg],
            options={"verify_exp": False},
        )


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("namespace", [None, NS])
def test_secure_token_validates_on_the_same_config(alg: str, namespace: str | None) -> None:
    env = {"AUTH_JWT_ISS": ISS, "AUTH_JWT_AUD": AUD}
    if namespace:
        env["AUTH_JWT_NAMESPACE"] = namespace
    cfg = secure(alg, **env)
    minted = minter(cfg).mint("alice", {"role": "admin"}, ttl=120)
    decision = validate(cfg, minted.token)
    assert decision.valid, decision
    assert decision.user_id == "alice"
    assert decision.expires_at == float(NOW + 120)
    assert decision.claims == segment(minted.token, 1)
    # And it expires when it says it does, with Electric's 2 s of skew.
    assert validate(cfg, minted.token, now=NOW + 122).valid
    assert validate(cfg, minted.token, now=NOW + 123).reason is Reason.EXPIRED


def _other_public_pem(alg: str) -> str:
    """A public key of the right kind for `alg` that did not sign anything here."""
    if alg.startswith("RS"):
        # RSA keys are not bound to a hash size: the support key for another RS size will do.
        return key_pair({"RS256": "RS384", "RS384": "RS512", "RS512": "RS256"}[alg]).public_pem
    curve = CURVES[alg]
    return (
        ec.generate_private_key(curve)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_token_does_not_validate_under_another_key(alg: str) -> None:
    minted = minter(secure(alg)).mint("alice")
    other = "o" * 64 if alg.startswith("HS") else _other_public_pem(alg)
    cfg = config.load({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": other})
    assert validate(cfg, minted.token).reason is Reason.BAD_SIGNATURE


# ---------------------------------------------------------------------------------------------
# authorize()


@pytest.mark.parametrize("header", [None, "", "Bearer nope", "garbage", "Basic abc"])
def test_insecure_lets_anyone_mint(header: str | None) -> None:
    minter(insecure()).authorize(header)


@pytest.mark.parametrize("header", [None, "", f"Bearer {SECRET}", "Bearer x"])
def test_secure_without_mint_secret_is_disabled(header: str | None) -> None:
    with pytest.raises(CallDisabled, match="SIDECAR_MINT_SECRET"):
        minter(secure("HS256")).authorize(header)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_credential_is_unauthenticated(header: str | None) -> None:
    with pytest.raises(CallUnauthenticated, match="Bearer"):
        minter(secure("HS256", SIDECAR_MINT_SECRET=SECRET)).authorize(header)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-secret-" + "x" * 40,
        f"Bearer {SECRET}x",
        f"Bearer {SECRET[:-1]}",
        f"Bearer {SECRET.upper()}",
        "Bearer",
        "Bearer ",
        SECRET,
        f"Basic {SECRET}",
        f"Token {SECRET}",
        f"Bearer{SECRET}",
        f"Bearerx {SECRET}",
        f" Bearer {SECRET}",
    ],
)
def test_wrong_credential_or_scheme_is_permission_denied(header: str) -> None:
    with pytest.raises(CallPermissionDenied):
        minter(secure("HS256", SIDECAR_MINT_SECRET=SECRET)).authorize(header)


@pytest.mark.parametrize(
    "header",
    [f"Bearer {SECRET}", f"bearer {SECRET}", f"BEARER {SECRET}", f"Bearer {SECRET} "],
)
def test_bearer_secret_is_authorized(header: str) -> None:
    minter(secure("HS256", SIDECAR_MINT_SECRET=SECRET)).authorize(header)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_authorize_works_for_asymmetric_algorithms(alg: str) -> None:
    m = minter(secure(alg, SIDECAR_MINT_SECRET=SECRET))
    m.authorize(f"Bearer {SECRET}")
    with pytest.raises(CallPermissionDenied):
        m.authorize("Bearer wrong")


def test_mint_errors_are_mint_errors() -> None:
    for error in (CallDisabled, CallUnauthenticated, CallPermissionDenied, CallInvalidArgument):
        assert issubclass(error, CallError)


# ---------------------------------------------------------------------------------------------
# mint(): bad requests


BOTH = [pytest.param(insecure, id="insecure"), pytest.param(lambda: secure("ES256"), id="ES256")]


@pytest.mark.parametrize("make", BOTH)
@pytest.mark.parametrize("user", ["", " ", "\t\n", "\u2003"])
def test_blank_user_is_invalid(make: Any, user: str) -> None:
    with pytest.raises(CallInvalidArgument, match="user_id"):
        minter(make()).mint(user)


@pytest.mark.parametrize("make", BOTH)
@pytest.mark.parametrize("ttl", [0, -1, -0.5, 0.5, 3601, 3600.5, math.nan, math.inf, -math.inf])
def test_bad_ttl_is_invalid(make: Any, ttl: float) -> None:
    cfg = make()
    cfg = config.load(
        {
            **(secure_env("ES256") if cfg.mode == "secure" else {"AUTH_MODE": "insecure"}),
            "SIDECAR_MINT_MAX_TTL_SECONDS": "3600",
        }
    )
    with pytest.raises(CallInvalidArgument, match="SIDECAR_MINT_MAX_TTL_SECONDS"):
        minter(cfg).mint("alice", ttl=ttl)


@pytest.mark.parametrize("ttl", [1, 3600])
def test_ttl_bounds_are_inclusive(ttl: int) -> None:
    cfg = insecure(SIDECAR_MINT_MAX_TTL_SECONDS="3600")
    assert minter(cfg).mint("alice", ttl=ttl).expires_at == NOW + ttl


def test_default_ttl_ceiling_is_a_day() -> None:
    m = minter(insecure())
    assert m.mint("alice", ttl=86400).expires_at == NOW + 86400
    with pytest.raises(CallInvalidArgument):
        m.mint("alice", ttl=86401)


@pytest.mark.parametrize("make", BOTH)
@pytest.mark.parametrize("claim", ["sub", "user_id"])
def test_claims_may_not_set_the_user(make: Any, claim: str) -> None:
    with pytest.raises(CallInvalidArgument, match=f'"{claim}"'):
        minter(make()).mint("alice", {claim: "mallory"})


@pytest.mark.parametrize("claim", ["sub", "user_id"])
def test_claims_may_not_set_the_user_under_the_namespace(claim: str) -> None:
    for cfg in (insecure(AUTH_JWT_NAMESPACE=NS), secure("HS256", AUTH_JWT_NAMESPACE=NS)):
        with pytest.raises(CallInvalidArgument, match=f'"{claim}"'):
            minter(cfg).mint("alice", {NS: {claim: "mallory"}})


@pytest.mark.parametrize("value", ["bob", ["x"], 1, None])
def test_namespace_claim_must_be_an_object(value: Any) -> None:
    with pytest.raises(CallInvalidArgument, match="must be an object"):
        minter(insecure(AUTH_JWT_NAMESPACE=NS)).mint("alice", {NS: value})


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
@pytest.mark.parametrize("claim", ["iat", "nbf", "exp", "iss", "aud"])
def test_secure_claims_may_not_set_stamped_claims(alg: str, claim: str) -> None:
    # Reserved whether or not iss and aud are configured.
    for cfg in (secure(alg), secure(alg, AUTH_JWT_ISS=ISS, AUTH_JWT_AUD=AUD)):
        with pytest.raises(CallInvalidArgument, match=f'"{claim}"'):
            minter(cfg).mint("alice", {claim: 1})


@pytest.mark.parametrize("alg", RS_ES)
def test_rs_es_without_signing_key_is_disabled(alg: str) -> None:
    env = secure_env(alg, SIDECAR_MINT_SECRET=SECRET)
    del env["AUTH_JWT_SIGNING_KEY"]
    m = minter(config.load(env))
    m.authorize(f"Bearer {SECRET}")  # the caller is fine; minting itself is off
    with pytest.raises(CallDisabled, match="AUTH_JWT_SIGNING_KEY"):
        m.mint("alice")


@pytest.mark.parametrize("make", BOTH)
@pytest.mark.parametrize(
    "claims",
    [
        {"x": math.nan},
        {"x": math.inf},
        {"x": -math.inf},
        {"nested": {"list": [1, math.nan]}},
    ],
    ids=["nan", "inf", "-inf", "nested"],
)
def test_non_finite_numbers_are_invalid(make: Any, claims: dict[str, Any]) -> None:
    with pytest.raises(CallInvalidArgument):
        minter(make()).mint("alice", claims)


# ---------------------------------------------------------------------------------------------
# Every minted token passes Validate on the same sidecar: claims that would make one it refuses
# are refused up front.


def _deep(levels: int) -> dict[str, Any]:
    inner: Any = "x"
    for _ in range(levels):
        inner = {"a": inner}
    return inner  # type: ignore[no-any-return]


@pytest.mark.parametrize("make", BOTH)
def test_claims_nested_too_deep_for_validate_are_refused(make: Any) -> None:
    cfg = make()
    ok = minter(cfg).mint("alice", {"d": _deep(31)})  # 32 levels with the claims object
    assert validate(cfg, ok.token).valid
    with pytest.raises(CallInvalidArgument):
        minter(cfg).mint("alice", {"d": _deep(32)})


@pytest.mark.parametrize("make", BOTH)
def test_claims_too_large_for_validate_are_refused(make: Any) -> None:
    cfg = make()
    ok = minter(cfg).mint("alice", {"pad": "x" * 5000})
    assert validate(cfg, ok.token).valid
    with pytest.raises(CallInvalidArgument, match="SIDECAR_MAX_TOKEN_BYTES"):
        minter(cfg).mint("alice", {"pad": "x" * 7000})


@pytest.mark.parametrize("make", BOTH)
def test_numbers_beyond_a_double_are_refused(make: Any) -> None:
    cfg = make()
    assert validate(cfg, minter(cfg).mint("alice", {"n": 2**1000}).token).valid
    with pytest.raises(CallInvalidArgument):
        minter(cfg).mint("alice", {"n": 10**400})


def test_a_user_id_no_protobuf_string_can_carry_is_refused() -> None:
    with pytest.raises(CallInvalidArgument):
        minter(insecure()).mint("\ud800")


@pytest.mark.parametrize("user", ["alice", " padded ", "Zoë 🚀", "a" * 500])
def test_any_non_blank_user_round_trips(user: str) -> None:
    for cfg in (insecure(), secure("HS384"), secure("ES384", AUTH_JWT_NAMESPACE=NS)):
        decision = validate(cfg, minter(cfg).mint(user).token)
        assert decision.valid
        assert decision.user_id == user


def test_a_signer_with_a_kid_names_it_in_the_header() -> None:
    """The core signs through the Signer interface; a key id, when the signer has one, is sent."""
    cfg = secure("HS256")
    assert isinstance(cfg.signer, algorithms.JoseSigner)
    signer = algorithms.JoseSigner("HS256", cfg.signer.key, kid="key-1")
    minted = Minter(cfg.policy, cfg.mint_policy, signer, lambda: NOW).mint("alice")
    assert segment(minted.token, 0) == {"alg": "HS256", "typ": "JWT", "kid": "key-1"}
    assert validate(cfg, minted.token).valid


# ---------------------------------------------------------------------------------------------
# The profile checks: what Mint writes passes them on the same config


@pytest.mark.parametrize(("listed", "written"), [("at+jwt", "at+jwt"), ("at+jwt, JWT", "JWT")])
def test_mint_writes_a_typ_that_the_list_accepts(listed: str, written: str) -> None:
    for cfg in (insecure(SIDECAR_JWT_TYP=listed), secure("HS256", SIDECAR_JWT_TYP=listed)):
        token = minter(cfg).mint("alice").token
        assert jwt.get_unverified_header(token)["typ"] == written
        assert validate(cfg, token).valid


def test_mint_stays_within_the_lifetime_bound() -> None:
    for cfg in (
        insecure(SIDECAR_JWT_MAX_LIFETIME_SECONDS="300"),
        secure("HS256", SIDECAR_JWT_MAX_LIFETIME_SECONDS="300"),
    ):
        default = minter(cfg).mint("alice")
        claims = segment(default.token, 1)
        assert claims["exp"] - claims["iat"] == 300  # not the 15-minute default
        assert validate(cfg, default.token).valid
        assert validate(cfg, minter(cfg).mint("alice", ttl=300).token).valid
        with pytest.raises(CallInvalidArgument, match="SIDECAR_JWT_MAX_LIFETIME_SECONDS"):
            minter(cfg).mint("alice", ttl=301)
