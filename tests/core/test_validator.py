"""The decision core: the whole decision table, per mode, in the order the checks run.

Order (issue 2): parse -> alg -> signature -> required claims -> time claims -> iss/aud -> user.
Secure tokens are signed by PyJWT (an independent library); odd headers and payloads are signed
with PyJWT's own algorithm objects over bytes we choose, so that only the intended check fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypedDict

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import get_default_algorithms
from support import (
    ALGORITHMS,
    b64url,
    insecure_config,
    key_pair,
    secure_config,
    sign,
    signing_material,
    unsigned,
)

from authsidecar.v1 import auth_pb2
from sidecar.config import Config, build_validator
from sidecar.core import jws, policy
from sidecar.core.errors import (
    AlgorithmMismatch,
    ExpiredToken,
    InvalidClaim,
    MalformedToken,
    Reason,
    TokenError,
)
from sidecar.core.validator import Decision, Validator

NOW = 1_700_000_000
FUTURE_IAT = 4838572800
ISS = "https://issuer.example"
AUD = "sync-service"
NS = "https://electric-sql.com/jwt/claims"
HS_OTHER_SECRET = "t" * 64

MALFORMED = (Reason.MALFORMED, "Invalid token")
MISMATCH = (Reason.ALGORITHM_MISMATCH, "Signing algorithm mismatch")
BAD_SIGNATURE = (Reason.BAD_SIGNATURE, "Invalid token signature")
EXPIRED = (Reason.EXPIRED, "Expired token")
NOT_YET_VALID = (Reason.NOT_YET_VALID, "Token is not yet valid")
BAD_USER = (Reason.INVALID_USER_ID, "Missing or invalid 'user_id'")

Expected = tuple[Reason, str]


def missing(claim: str) -> Expected:
    return Reason.MISSING_CLAIM, f'Missing required "{claim}" claim'


def invalid(claim: str, shown: str) -> Expected:
    return Reason.INVALID_CLAIM, f'Invalid "{claim}" claim value: {shown}'


# ---------------------------------------------------------------------------------------------
# Helpers


@cache
def _config(alg: str | None, env: tuple[tuple[str, str], ...]) -> Config:
    """Configs are cached: loading one with an RSA signing key checks the private key (slow)."""
    return insecure_config(**dict(env)) if alg is None else secure_config(alg, **dict(env))


def validator(alg: str | None, now: float = NOW, **env: str) -> Validator:
    """A validator for `alg` (None: insecure mode) whose clock is stopped at `now`."""
    return build_validator(_config(alg, tuple(sorted(env.items()))), clock=lambda: now)


def _json(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@cache
def _prepared(alg: str, material: str) -> Any:
    """PyJWT's key object for `material`, loaded once: loading an RSA private key is slow."""
    return get_default_algorithms()[alg].prepare_key(material)


def jwt_sign(alg: str, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    """Like support.sign (PyJWT, the test key), with the key loaded once."""
    return jwt.encode(claims, _prepared(alg, signing_material(alg)), algorithm=alg, headers=headers)


def forge(alg: str, header: Any, payload: Any, material: str | None = None) -> str:
    """Signs `header.payload` with PyJWT's `alg` implementation, whatever the header says.

    `header` and `payload` are JSON values or raw bytes. `material` defaults to the test key.
    """
    algorithm = get_default_algorithms()[alg]
    key = _prepared(alg, signing_material(alg) if material is None else material)
    signing_input = f"{b64url(_json(header))}.{b64url(_json(payload))}"
    return f"{signing_input}.{b64url(algorithm.sign(signing_input.encode(), key))}"


def other_private_pem(alg: str) -> str:
    """A second private key of the right kind for `alg`, that the sidecar does not know."""
    return key_pair(alg, which=1).private_pem


def other_material(alg: str) -> str:
    return HS_OTHER_SECRET if alg.startswith("HS") else other_private_pem(alg)


def header_for(alg: str) -> dict[str, str]:
    return {"alg": alg, "typ": "JWT"}


def good(**changes: Any) -> dict[str, Any]:
    """Claims that pass every secure check at NOW; `changes` with value DROP remove a claim."""
    claims: dict[str, Any] = {"iat": NOW - 10, "exp": NOW + 600, "sub": "alice"}
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


DROP = object()


def assert_refused(decision: Decision, expected: Expected) -> None:
    reason, message = expected
    # Equality with a fresh refusal also checks user_id, claims and expires_at are empty.
    assert decision == Decision(valid=False, reason=reason, message=message)


def assert_valid(decision: Decision, user: str, claims: dict[str, Any]) -> None:
    assert decision.valid is True
    assert decision.user_id == user
    assert decision.claims == claims
    assert decision.reason is Reason.UNSPECIFIED
    assert decision.message == ""
    exp = claims.get("exp")
    assert decision.expires_at == (None if exp is None else float(exp))


def swap_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


@dataclass(frozen=True)
class Mode:
    """One way of running the sidecar: insecure (alg None) or secure with one algorithm."""

    alg: str | None

    def validator(self, now: float = NOW, **env: str) -> Validator:
        return validator(self.alg, now, **env)

    def token(self, claims: Any) -> str:
        if self.alg is None:
            return unsigned(claims)
        return forge(self.alg, header_for(self.alg), claims)

    def claims(self, **extra: Any) -> dict[str, Any]:
        """The claims this mode requires, plus `extra`."""
        base: dict[str, Any] = {} if self.alg is None else {"iat": NOW, "exp": NOW + 600}
        return {**base, **extra}


MODES = [Mode(None), *(Mode(alg) for alg in ALGORITHMS)]
MODE_IDS = ["insecure", *ALGORITHMS]


@pytest.fixture(params=MODES, ids=MODE_IDS)
def mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode


# A few modes are enough where the rule under test does not depend on the algorithm.
FEW_MODES = [Mode(None), Mode("HS256"), Mode("ES256")]
FEW_IDS = ["insecure", "HS256", "ES256"]


@pytest.fixture(params=FEW_MODES, ids=FEW_IDS)
def some_mode(request: pytest.FixtureRequest) -> Mode:
    mode: Mode = request.param
    return mode


# ---------------------------------------------------------------------------------------------
# The reason codes are API: the core's enum and the proto's must agree exactly.


def test_reason_matches_proto_enum_name_for_name_and_value_for_value() -> None:
    proto = dict(auth_pb2.Reason.items())
    assert all(name.startswith("REASON_") for name in proto)
    assert {name.removeprefix("REASON_"): value for name, value in proto.items()} == {
        reason.name: reason.value for reason in Reason
    }


def test_reason_values_are_the_documented_ones() -> None:
    assert [(r.name, r.value) for r in Reason] == [
        ("UNSPECIFIED", 0),
        ("MALFORMED", 1),
        ("ALGORITHM_MISMATCH", 2),
        ("BAD_SIGNATURE", 3),
        ("EXPIRED", 4),
        ("NOT_YET_VALID", 5),
        ("MISSING_CLAIM", 6),
        ("INVALID_CLAIM", 7),
        ("INVALID_USER_ID", 8),
        ("SHAPE_MISMATCH", 9),
        ("FORBIDDEN", 10),
        ("INACTIVE", 11),
        ("REVOKED", 12),
    ]


# ---------------------------------------------------------------------------------------------
# Secure mode: a valid token, for every algorithm.


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_accepts_a_pyjwt_token(alg: str) -> None:
    claims = good(iss=ISS, aud=AUD, nbf=NOW, role="admin", tags=["a", "b"], meta={"x": 1.5})
    # support.sign: PyJWT with the PEM itself, the way a user's backend would call it.
    decision = validator(alg, AUTH_JWT_ISS=ISS, AUTH_JWT_AUD=AUD).decide(sign(alg, claims))
    assert_valid(decision, "alice", claims)
    assert decision.expires_at == float(NOW + 600)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_accepts_extra_header_fields(alg: str) -> None:
    token = jwt_sign(alg, good(), headers={"kid": "key-1", "cty": "JWT"})
    assert_valid(validator(alg).decide(token), "alice", good())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_secure_does_not_require_nbf_iss_or_aud_unless_configured(alg: str) -> None:
    claims = {"iat": NOW, "exp": NOW + 1, "user_id": "bob", "iss": "anyone", "aud": "anything"}
    assert_valid(validator(alg).decide(jwt_sign(alg, claims)), "bob", claims)


# ---------------------------------------------------------------------------------------------
# Step 1: parse. Malformed input is MALFORMED in every mode, before any other check.


def _deep(levels: int) -> dict[str, Any]:
    """A claims object `levels` containers deep, counting the claims object itself."""
    inner: Any = "x"
    for _ in range(levels - 1):
        inner = {"a": inner}
    return {"sub": "alice", "deep": inner}


def raw(payload: bytes, header: bytes = b'{"alg":"none"}', signature: str = "") -> str:
    """`header.payload.signature` from raw bytes."""
    return f"{b64url(header)}.{b64url(payload)}.{signature}"


GOOD_HEADER = b64url(b'{"alg":"none"}')
GOOD_PAYLOAD = b64url(b'{"sub":"alice"}')
DEEP_LIST = b'{"sub":"alice","x":' + b"[" * 40 + b"]" * 40 + b"}"

MALFORMED_TOKENS = {
    "empty": "",
    "dot": ".",
    "two dots": "..",
    "one part": GOOD_PAYLOAD,
    "four parts": f"{GOOD_HEADER}.{GOOD_PAYLOAD}.c2ln.c2ln",
    "five parts": f"{GOOD_HEADER}.{GOOD_PAYLOAD}...",
    "empty header": f".{GOOD_PAYLOAD}.",
    "empty payload": f"{GOOD_HEADER}..",
    "plus in header": GOOD_HEADER[:-1] + "+." + GOOD_PAYLOAD + ".",
    "slash in payload": f"{GOOD_HEADER}.{GOOD_PAYLOAD[:-1]}/.",
    "star in signature": f"{GOOD_HEADER}.{GOOD_PAYLOAD}.c2l*",
    "space": f"{GOOD_HEADER}. {GOOD_PAYLOAD}.",
    "trailing newline": f"{GOOD_HEADER}.{GOOD_PAYLOAD}.\n",
    "leading space": f" {GOOD_HEADER}.{GOOD_PAYLOAD}.",
    "non-ascii": f"{GOOD_HEADER}.{GOOD_PAYLOAD}é.",
    "padding on payload": f"{GOOD_HEADER}.{GOOD_PAYLOAD}==.",
    "padding on header": f"{b64url(b'{}')}==.{GOOD_PAYLOAD}.",
    "padding on signature": f"{GOOD_HEADER}.{GOOD_PAYLOAD}.c2lnbg==",
    "impossible length": f"{GOOD_HEADER}.{GOOD_PAYLOAD}A.",
    "signature impossible length": f"{GOOD_HEADER}.{GOOD_PAYLOAD}.c2lnA",
    "header not json": raw(b'{"sub":"alice"}', header=b"alg=none"),
    "payload not json": raw(b"sub=alice"),
    "payload truncated json": raw(b'{"sub":"alice"'),
    "payload trailing garbage": raw(b'{"sub":"alice"}x'),
    "payload not utf-8": raw(b'{"sub":"\xff\xfe"}'),
    "payload with BOM": raw(b'\xef\xbb\xbf{"sub":"alice"}'),
    "payload empty": raw(b""),
    "header array": raw(b'{"sub":"alice"}', header=b'["alg","none"]'),
    "header string": raw(b'{"sub":"alice"}', header=b'"none"'),
    "header null": raw(b'{"sub":"alice"}', header=b"null"),
    "payload array": raw(b'[{"sub":"alice"}]'),
    "payload string": raw(b'"alice"'),
    "payload number": raw(b"1"),
    "payload null": raw(b"null"),
    "payload true": raw(b"true"),
    "NaN": raw(b'{"sub":"alice","exp":NaN}'),
    "Infinity": raw(b'{"sub":"alice","exp":Infinity}'),
    "-Infinity": raw(b'{"sub":"alice","nbf":-Infinity}'),
    "1e400": raw(b'{"sub":"alice","exp":1e400}'),
    "-1e400": raw(b'{"sub":"alice","x":-1e400}'),
    "NaN in header": raw(b'{"sub":"alice"}', header=b'{"alg":"none","x":NaN}'),
    "int beyond double": raw(b'{"sub":"alice","x":' + b"9" * 400 + b"}"),
    "33 levels": unsigned(_deep(33)),
    "deep list": raw(DEEP_LIST),
    "deep header": raw(b'{"sub":"alice"}', header=json.dumps(_deep(40)).encode()),
}


@pytest.mark.parametrize("token", MALFORMED_TOKENS.values(), ids=MALFORMED_TOKENS.keys())
def test_malformed(some_mode: Mode, token: str) -> None:
    # In secure mode this also shows parse runs first: every header here says alg "none", or
    # has no alg, which would otherwise be ALGORITHM_MISMATCH.
    assert_refused(some_mode.validator().decide(token), MALFORMED)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub":"alice","iat":1,"exp":NaN}',
        b'{"sub":"alice","iat":1,"exp":Infinity}',
        b'{"sub":"alice","iat":1,"exp":1e400}',
        b'["sub","alice"]',
        b"not json",
        json.dumps(_deep(33)).encode(),
    ],
    ids=["NaN", "Infinity", "1e400", "array", "not json", "33 levels"],
)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_malformed_even_with_a_valid_signature(alg: str, payload: bytes) -> None:
    assert_refused(validator(alg).decide(forge(alg, header_for(alg), payload)), MALFORMED)


def test_thirty_two_levels_of_claims_are_fine(some_mode: Mode) -> None:
    claims = some_mode.claims(**_deep(32))
    assert_valid(some_mode.validator().decide(some_mode.token(claims)), "alice", claims)


def test_huge_but_finite_numbers_are_fine(some_mode: Mode) -> None:
    claims = some_mode.claims(sub="alice", big=1e308, neg=-1.5e308, int=2**1000)
    assert_valid(some_mode.validator().decide(some_mode.token(claims)), "alice", claims)


def test_whitespace_inside_the_json_is_fine(some_mode: Mode) -> None:
    claims = some_mode.claims(sub="alice")
    token = (
        forge(some_mode.alg, b' { "alg" : "%s" } ' % some_mode.alg.encode(), b"\n" + _json(claims))
        if some_mode.alg
        else f"{b64url(b' { } ')}.{b64url(b' ' + _json(claims) + b' ')}."
    )
    assert_valid(some_mode.validator().decide(token), "alice", claims)


def _sized_token(mode: Mode, pad: int = 100) -> str:
    return mode.token(mode.claims(sub="alice", pad="x" * pad))


def test_token_of_exactly_the_size_limit_is_parsed(some_mode: Mode) -> None:
    token = _sized_token(some_mode)
    decision = some_mode.validator(SIDECAR_MAX_TOKEN_BYTES=str(len(token))).decide(token)
    assert decision.valid
    assert decision.user_id == "alice"


def test_token_over_the_size_limit_is_malformed(some_mode: Mode) -> None:
    token = _sized_token(some_mode)
    decision = some_mode.validator(SIDECAR_MAX_TOKEN_BYTES=str(len(token) - 1)).decide(token)
    assert_refused(decision, MALFORMED)


def test_default_size_limit_is_8192(some_mode: Mode) -> None:
    """Tokens grow in steps of a base64 digit or two: the last one that fits the default limit
    is accepted and the first one past it is refused."""
    v = some_mode.validator()
    tokens = [_sized_token(some_mode, pad) for pad in range(5900, 6200)]
    fits = max((t for t in tokens if len(t) <= 8192), key=len)
    too_long = min((t for t in tokens if len(t) > 8192), key=len)
    assert len(fits) >= 8190
    assert len(too_long) <= 8195
    assert v.decide(fits).valid
    assert_refused(v.decide(too_long), MALFORMED)


def test_oversized_token_is_refused_without_decoding(
    some_mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = _sized_token(some_mode)
    v = some_mode.validator(SIDECAR_MAX_TOKEN_BYTES="64")

    def no_decoding(segment: str) -> bytes:
        raise AssertionError("an oversized token was decoded")

    monkeypatch.setattr(jws, "b64url_decode", no_decoding)
    assert_refused(v.decide(token), MALFORMED)


def test_hugely_nested_json_is_malformed_not_a_crash(some_mode: Mode) -> None:
    limit = 1 << 20
    v = some_mode.validator(SIDECAR_MAX_TOKEN_BYTES=str(limit))
    for opener in (b"[", b'{"a":', b'{"a":['):
        body = b'{"x":' + opener * ((limit * 3 // 4 - 100) // len(opener))
        token = raw(body)
        assert len(token) <= limit
        assert_refused(v.decide(token), MALFORMED)


# ---------------------------------------------------------------------------------------------
# Step 2 (secure): the header's alg must equal AUTH_JWT_ALG exactly.


def _family_swap(alg: str) -> str:
    """The same hash size in another family: HS256 -> RS256 -> ES256 -> HS256."""
    nxt = {"HS": "RS", "RS": "ES", "ES": "HS"}
    return nxt[alg[:2]] + alg[2:]


def _size_swap(alg: str) -> str:
    """Another hash size in the same family: 256 -> 384 -> 512 -> 256."""
    nxt = {"256": "384", "384": "512", "512": "256"}
    return alg[:2] + nxt[alg[2:]]


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("other", [_family_swap, _size_swap], ids=["family", "size"])
def test_token_signed_with_another_algorithm_is_a_mismatch(
    alg: str, other: Callable[[str], str]
) -> None:
    # Properly signed with its own algorithm's test key: only the alg differs.
    token = jwt_sign(other(alg), good())
    assert_refused(validator(alg).decide(token), MISMATCH)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "None"},
        {"alg": "NONE"},
        {"alg": ""},
        {"alg": None},
        {"typ": "JWT"},
        {},
        {"alg": ["ALG"]},
        {"alg": "lower"},
        {"alg": "ALG "},
        {"alg": "ALG\u0000"},
    ],
    ids=lambda h: json.dumps(h),
)
def test_alg_must_equal_the_configured_one_exactly(alg: str, header: dict[str, Any]) -> None:
    """Even with a signature the configured key accepts, a header that says otherwise fails."""
    header = json.loads(json.dumps(header).replace("ALG", alg))
    if header.get("alg") == "lower":
        header["alg"] = alg.lower()
    token = forge(alg, header, good())
    assert_refused(validator(alg).decide(token), MISMATCH)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("signature", ["", "c2ln"], ids=["empty", "junk"])
def test_alg_none_is_a_mismatch_not_a_bad_signature(alg: str, signature: str) -> None:
    token = unsigned(good(), signature=signature)
    assert_refused(validator(alg).decide(token), MISMATCH)
    assert_refused(validator(alg).decide(token.rstrip(".")), MISMATCH)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"])
def test_hs_rs_confusion_is_a_mismatch(alg: str) -> None:
    """The classic attack: HMAC over the token with the server's public PEM as the secret."""
    public_pem = key_pair(alg).public_pem.encode()
    for hs, digest in (
        ("HS256", hashlib.sha256),
        ("HS384", hashlib.sha384),
        ("HS512", hashlib.sha512),
    ):
        signing_input = f"{b64url(_json(header_for(hs)))}.{b64url(_json(good()))}"
        mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
        token = f"{signing_input}.{b64url(mac)}"
        assert_refused(validator(alg).decide(token), MISMATCH)
        # And if the attacker also writes the configured alg, the HMAC is not a signature.
        signing_input = f"{b64url(_json(header_for(alg)))}.{b64url(_json(good()))}"
        mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
        token = f"{signing_input}.{b64url(mac)}"
        assert_refused(validator(alg).decide(token), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_mismatch_comes_before_claims(alg: str) -> None:
    """A token with nothing right but its shape: the alg is reported first."""
    token = unsigned({"exp": "soon"}, header={"alg": "none"})
    assert_refused(validator(alg, AUTH_JWT_ISS=ISS).decide(token), MISMATCH)


# ---------------------------------------------------------------------------------------------
# Step 3 (secure): the signature.


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_tampered_payload_is_a_bad_signature(alg: str) -> None:
    token = jwt_sign(alg, good())
    forged = swap_segment(token, 1, b64url(_json(good(sub="mallory"))))
    assert_refused(validator(alg).decide(forged), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_tampered_header_is_a_bad_signature(alg: str) -> None:
    token = jwt_sign(alg, good())
    forged = swap_segment(token, 0, b64url(_json({"alg": alg, "typ": "JWT", "kid": "x"})))
    assert_refused(validator(alg).decide(forged), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_signature_from_another_key_is_bad(alg: str) -> None:
    token = forge(alg, header_for(alg), good(), material=other_material(alg))
    assert_refused(validator(alg).decide(token), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_signature_of_another_token_is_bad(alg: str) -> None:
    mine, theirs = jwt_sign(alg, good()), jwt_sign(alg, good(sub="bob"))
    forged = swap_segment(mine, 2, theirs.split(".")[2])
    assert_refused(validator(alg).decide(forged), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_empty_signature_and_two_part_token_are_bad_signatures(alg: str) -> None:
    token = jwt_sign(alg, good())
    head, payload, _ = token.split(".")
    assert_refused(validator(alg).decide(f"{head}.{payload}."), BAD_SIGNATURE)
    assert_refused(validator(alg).decide(f"{head}.{payload}"), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_truncated_extended_or_flipped_signature_is_bad(alg: str) -> None:
    token = jwt_sign(alg, good())
    head, payload, sig = token.split(".")
    raw = jws.b64url_decode(sig)
    variants = [
        raw[:-1],
        raw + b"\x00",
        raw[:-1] + bytes([raw[-1] ^ 1]),
        bytes([raw[0] ^ 0x80]) + raw[1:],
        b"\x00" * len(raw),
        raw[: len(raw) // 2],
    ]
    for variant in variants:
        forged = f"{head}.{payload}.{b64url(variant)}"
        assert_refused(validator(alg).decide(forged), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_bad_signature_comes_before_claims(alg: str) -> None:
    token = forge(alg, header_for(alg), {"exp": "soon"}, material=other_material(alg))
    assert_refused(validator(alg).decide(token), BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_es_der_signature_is_not_accepted(alg: str) -> None:
    """JWS ES signatures are raw r||s; the DER form a naive verifier takes must fail."""
    private = serialization.load_pem_private_key(signing_material(alg).encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    hash_alg: hashes.HashAlgorithm = {
        "ES256": hashes.SHA256(),
        "ES384": hashes.SHA384(),
        "ES512": hashes.SHA512(),
    }[alg]
    signing_input = f"{b64url(_json(header_for(alg)))}.{b64url(_json(good()))}"
    der = private.sign(signing_input.encode(), ec.ECDSA(hash_alg))
    assert_refused(validator(alg).decide(f"{signing_input}.{b64url(der)}"), BAD_SIGNATURE)


# ---------------------------------------------------------------------------------------------
# Step 4 (secure): required claims.


class _FullEnv(TypedDict):
    AUTH_JWT_ISS: str
    AUTH_JWT_AUD: str


FULL_ENV: _FullEnv = {"AUTH_JWT_ISS": ISS, "AUTH_JWT_AUD": AUD}


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("claim", ["iat", "exp", "iss", "aud"])
def test_missing_required_claim(alg: str, claim: str) -> None:
    claims = good(**{"iss": ISS, "aud": AUD, claim: DROP})
    assert_refused(validator(alg, **FULL_ENV).decide(jwt_sign(alg, claims)), missing(claim))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_required_claims_are_checked_in_order(alg: str) -> None:
    v = validator(alg, **FULL_ENV)
    assert_refused(v.decide(jwt_sign(alg, {"sub": "alice"})), missing("iat"))
    assert_refused(v.decide(jwt_sign(alg, {"iat": NOW, "sub": "alice"})), missing("exp"))
    assert_refused(
        v.decide(jwt_sign(alg, {"iat": NOW, "exp": NOW + 9, "aud": AUD})), missing("iss")
    )


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_missing_claim_comes_before_time_claims(alg: str) -> None:
    token = jwt_sign(alg, good(exp=NOW - 100, nbf=NOW + 100, iss="evil", iat=DROP))
    assert_refused(validator(alg, **FULL_ENV).decide(token), missing("iat"))
    token = jwt_sign(alg, {"iat": NOW, "exp": NOW - 100, "sub": "alice"})
    assert_refused(validator(alg, **FULL_ENV).decide(token), missing("iss"))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_null_required_claim_counts_as_present_and_then_fails_its_check(alg: str) -> None:
    v = validator(alg, **FULL_ENV)
    assert_refused(
        v.decide(forge(alg, header_for(alg), good(iss=ISS, aud=AUD, iat=None))),
        invalid("iat", "null"),
    )
    assert_refused(
        v.decide(forge(alg, header_for(alg), good(iss=None, aud=AUD))), invalid("iss", "null")
    )
    assert_refused(
        v.decide(forge(alg, header_for(alg), good(iss=ISS, aud=None))), invalid("aud", "null")
    )


def test_insecure_mode_requires_no_claims() -> None:
    assert_valid(validator(None).decide(unsigned({"sub": "alice"})), "alice", {"sub": "alice"})


# ---------------------------------------------------------------------------------------------
# Step 5: time claims (both modes), then iss and aud (secure).


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_expired(alg: str) -> None:
    assert_refused(validator(alg).decide(jwt_sign(alg, good(exp=NOW - 3))), EXPIRED)
    assert_refused(validator(alg).decide(jwt_sign(alg, good(exp=0))), EXPIRED)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_not_yet_valid(alg: str) -> None:
    assert_refused(validator(alg).decide(jwt_sign(alg, good(nbf=NOW + 3))), NOT_YET_VALID)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_iat_in_the_future(alg: str) -> None:
    decision = validator(alg).decide(jwt_sign(alg, good(iat=FUTURE_IAT)))
    assert_refused(decision, invalid("iat", "4838572800"))
    assert decision.message == 'Invalid "iat" claim value: 4838572800'


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_wrong_issuer(alg: str) -> None:
    decision = validator(alg, **FULL_ENV).decide(jwt_sign(alg, good(iss="evil", aud=AUD)))
    assert_refused(decision, invalid("iss", '"evil"'))
    assert decision.message == 'Invalid "iss" claim value: "evil"'


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        (AUD, None),
        ([AUD], None),
        (["other", AUD], None),
        ([AUD, AUD], None),
        ("other", invalid("aud", '"other"')),
        (AUD.upper(), invalid("aud", f'"{AUD.upper()}"')),
        (["a", "b"], invalid("aud", '["a","b"]')),
        ([], invalid("aud", "[]")),
        ([[AUD]], invalid("aud", f'[["{AUD}"]]')),
        ({"aud": AUD}, invalid("aud", f'{{"aud":"{AUD}"}}')),
        (1, invalid("aud", "1")),
    ],
    ids=lambda v: json.dumps(v) if not isinstance(v, tuple) else "refused",
)
def test_audience_string_or_list(alg: str, aud: Any, expected: Expected | None) -> None:
    claims = good(iss=ISS, aud=aud)
    decision = validator(alg, **FULL_ENV).decide(forge(alg, header_for(alg), claims))
    if expected is None:
        assert_valid(decision, "alice", claims)
    else:
        assert_refused(decision, expected)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_issuer_is_compared_exactly(alg: str) -> None:
    v = validator(alg, AUTH_JWT_ISS=ISS)
    for iss, shown in ((ISS + "/", f'"{ISS}/"'), ([ISS], f'["{ISS}"]'), ("", '""')):
        decision = v.decide(forge(alg, header_for(alg), good(iss=iss)))
        assert_refused(decision, invalid("iss", shown))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_order_exp_nbf_iat_iss_aud_user(alg: str) -> None:
    v = validator(alg, **FULL_ENV)

    def decide(**changes: Any) -> Decision:
        return v.decide(forge(alg, header_for(alg), good(**{"iss": ISS, "aud": AUD, **changes})))

    everything = {"exp": NOW - 9, "nbf": NOW + 9, "iat": FUTURE_IAT, "iss": "evil", "aud": "x"}
    assert_refused(decide(**everything, sub=""), EXPIRED)
    everything.pop("exp")
    assert_refused(decide(**everything, sub=""), NOT_YET_VALID)
    everything.pop("nbf")
    assert_refused(decide(**everything, sub=""), invalid("iat", "4838572800"))
    everything.pop("iat")
    assert_refused(decide(**everything, sub=""), invalid("iss", '"evil"'))
    everything.pop("iss")
    assert_refused(decide(**everything, sub=""), invalid("aud", '"x"'))
    everything.pop("aud")
    assert_refused(decide(**everything, sub=""), BAD_USER)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("soon", '"soon"'),
        ("1700000000", '"1700000000"'),
        ("bientôt", '"bientôt"'),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ([NOW], f"[{NOW}]"),
        ([], "[]"),
        ({"at": 1}, '{"at":1}'),
        ({"a": [1, "b"]}, '{"a":[1,"b"]}'),
    ],
    ids=lambda v: json.dumps(v, ensure_ascii=False),
)
def test_time_claim_of_the_wrong_type(mode: Mode, claim: str, value: Any, shown: str) -> None:
    claims = mode.claims(sub="alice", **{claim: value})
    decision = mode.validator().decide(mode.token(claims))
    assert_refused(decision, invalid(claim, shown))


def test_time_claims_are_checked_in_insecure_mode_when_present() -> None:
    v = validator(None)
    assert_refused(v.decide(unsigned({"sub": "a", "exp": NOW - 3})), EXPIRED)
    assert_refused(v.decide(unsigned({"sub": "a", "nbf": NOW + 3})), NOT_YET_VALID)
    assert_refused(
        v.decide(unsigned({"sub": "a", "iat": FUTURE_IAT})), invalid("iat", "4838572800")
    )


def test_insecure_mode_ignores_iss_and_aud() -> None:
    claims = {"sub": "alice", "iss": "evil", "aud": ["nobody"]}
    assert_valid(validator(None).decide(unsigned(claims)), "alice", claims)


# ---------------------------------------------------------------------------------------------
# Clock skew: exact boundaries, with an injected clock.


@pytest.mark.parametrize("skew", [2, 0, 5])
def test_clock_skew_boundaries(some_mode: Mode, skew: int) -> None:
    v = some_mode.validator(SIDECAR_CLOCK_SKEW_SECONDS=str(skew))

    def decide(**claims: Any) -> Decision:
        # iat and exp are overridden where the case is about them; otherwise they are harmless.
        return v.decide(some_mode.token(some_mode.claims(sub="alice", **claims)))

    assert decide(exp=NOW - skew).valid
    assert_refused(decide(exp=NOW - skew - 1), EXPIRED)
    assert decide(nbf=NOW + skew).valid
    assert_refused(decide(nbf=NOW + skew + 1), NOT_YET_VALID)
    assert decide(iat=NOW + skew).valid
    assert_refused(decide(iat=NOW + skew + 1), invalid("iat", str(NOW + skew + 1)))


def test_default_skew_is_two_seconds(some_mode: Mode) -> None:
    v = some_mode.validator()
    claims = some_mode.claims

    assert v.decide(some_mode.token(claims(sub="a", exp=NOW - 2))).valid
    assert_refused(v.decide(some_mode.token(claims(sub="a", exp=NOW - 3))), EXPIRED)
    assert v.decide(some_mode.token(claims(sub="a", nbf=NOW + 2))).valid
    assert_refused(v.decide(some_mode.token(claims(sub="a", nbf=NOW + 3))), NOT_YET_VALID)
    assert v.decide(some_mode.token(claims(sub="a", iat=NOW + 2))).valid
    assert_refused(
        v.decide(some_mode.token(claims(sub="a", iat=NOW + 3))), invalid("iat", str(NOW + 3))
    )


def test_float_numeric_dates(some_mode: Mode) -> None:
    v = some_mode.validator()

    def decide(**claims: Any) -> Decision:
        return v.decide(some_mode.token(some_mode.claims(sub="alice", **claims)))

    decision = decide(exp=NOW + 0.5)
    assert decision.valid
    assert decision.expires_at == NOW + 0.5
    assert decide(exp=NOW - 2.0).valid
    assert decide(exp=NOW - 1.5).valid
    assert_refused(decide(exp=NOW - 2.5), EXPIRED)
    assert decide(nbf=NOW + 1.5, iat=NOW - 0.25).valid
    assert decide(nbf=NOW + 2.0).valid
    assert_refused(decide(nbf=NOW + 2.5), NOT_YET_VALID)
    assert decide(iat=NOW + 2.0).valid
    assert_refused(decide(iat=NOW + 2.5), invalid("iat", f"{NOW + 2.5}"))
    assert_refused(decide(iat=4838572800.5), invalid("iat", "4838572800.5"))


def test_negative_and_zero_dates(some_mode: Mode) -> None:
    v = some_mode.validator()

    def decide(**claims: Any) -> Decision:
        return v.decide(some_mode.token(some_mode.claims(sub="alice", **claims)))

    assert decide(iat=0, nbf=-1).valid
    assert_refused(decide(exp=-1), EXPIRED)
    assert_refused(decide(exp=-1e300), EXPIRED)
    assert decide(exp=1e300).valid


def test_the_clock_counts_whole_seconds(some_mode: Mode) -> None:
    """Like Electric (Joken.current_time), a fraction of a second on the clock is dropped."""
    late = some_mode.validator(now=NOW + 0.999)
    assert late.decide(some_mode.token(some_mode.claims(sub="a", exp=NOW - 2))).valid
    assert_refused(
        late.decide(some_mode.token(some_mode.claims(sub="a", nbf=NOW + 3))), NOT_YET_VALID
    )


def test_the_clock_is_read_for_every_decision(some_mode: Mode) -> None:
    now = [float(NOW)]
    v = build_validator(_config(some_mode.alg, ()), clock=lambda: now[0])
    token = some_mode.token(some_mode.claims(sub="alice", exp=NOW + 10))
    assert v.decide(token).valid
    now[0] = NOW + 12
    assert v.decide(token).valid
    now[0] = NOW + 13
    assert_refused(v.decide(token), EXPIRED)


# ---------------------------------------------------------------------------------------------
# Step 6: the user, in both modes.

USER_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("sub", {"sub": "alice"}, "alice"),
    ("user_id", {"user_id": "bob"}, "bob"),
    ("sub preferred", {"sub": "alice", "user_id": "bob"}, "alice"),
    ("sub null falls back", {"sub": None, "user_id": "bob"}, "bob"),
    ("sub false falls back", {"sub": False, "user_id": "bob"}, "bob"),
    ("sub kept untrimmed", {"sub": " alice "}, " alice "),
    ("unicode", {"user_id": "Zoë 🚀"}, "Zoë 🚀"),
    ("empty sub is not skipped", {"sub": "", "user_id": "bob"}, None),
    ("blank sub is not skipped", {"sub": "  ", "user_id": "bob"}, None),
    ("zero sub is not skipped", {"sub": 0, "user_id": "bob"}, None),
    ("true sub", {"sub": True}, None),
    ("none", {}, None),
    ("only sub null", {"sub": None}, None),
    ("empty", {"user_id": ""}, None),
    ("blank", {"user_id": "   "}, None),
    ("whitespace", {"user_id": "\t\n\r "}, None),
    ("unicode space", {"user_id": "\u2003\u00a0"}, None),
    ("number", {"user_id": 42}, None),
    ("float", {"user_id": 4.2}, None),
    ("bool", {"user_id": True}, None),
    ("null", {"user_id": None}, None),
    ("list", {"user_id": ["alice"]}, None),
    ("object", {"user_id": {"id": "alice"}}, None),
    ("other names ignored", {"uid": "alice", "userId": "alice", "email": "a@b"}, None),
]


@pytest.mark.parametrize(
    ("claims", "user"), [c[1:] for c in USER_CASES], ids=[c[0] for c in USER_CASES]
)
def test_user(mode: Mode, claims: dict[str, Any], user: str | None) -> None:
    full = mode.claims(**claims)
    decision = mode.validator().decide(mode.token(full))
    if user is None:
        assert_refused(decision, BAD_USER)
    else:
        assert_valid(decision, user, full)


NS_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("user_id under namespace", {NS: {"user_id": "bob"}}, "bob"),
    ("sub under namespace", {NS: {"sub": "alice"}}, "alice"),
    ("sub preferred", {NS: {"sub": "alice", "user_id": "bob"}}, "alice"),
    ("sub null falls back", {NS: {"sub": None, "user_id": "bob"}}, "bob"),
    ("sub false falls back", {NS: {"sub": False, "user_id": "bob"}}, "bob"),
    ("top level ignored", {"sub": "alice", NS: {"user_id": "bob"}}, "bob"),
    ("only top level", {"sub": "alice", "user_id": "alice"}, None),
    ("namespace empty", {"sub": "alice", NS: {}}, None),
    ("namespace string", {NS: "bob"}, None),
    ("namespace list", {NS: [{"user_id": "bob"}]}, None),
    ("namespace null", {NS: None, "user_id": "bob"}, None),
    ("namespace number", {NS: 1}, None),
    ("blank under namespace", {NS: {"user_id": " "}}, None),
    ("number under namespace", {NS: {"user_id": 7}}, None),
    ("other namespace", {"https://example.com/claims": {"user_id": "bob"}}, None),
    ("nested further is not searched", {NS: {"claims": {"user_id": "bob"}}}, None),
]


@pytest.mark.parametrize(
    ("claims", "user"), [c[1:] for c in NS_CASES], ids=[c[0] for c in NS_CASES]
)
def test_user_under_namespace(mode: Mode, claims: dict[str, Any], user: str | None) -> None:
    full = mode.claims(**claims)
    decision = mode.validator(AUTH_JWT_NAMESPACE=NS).decide(mode.token(full))
    if user is None:
        assert_refused(decision, BAD_USER)
    else:
        assert_valid(decision, user, full)


def test_namespace_is_a_plain_key_not_a_path(some_mode: Mode) -> None:
    claims = some_mode.claims(a={"b": {"user_id": "nested"}}, **{"a.b": {"user_id": "dotted"}})
    decision = some_mode.validator(AUTH_JWT_NAMESPACE="a.b").decide(some_mode.token(claims))
    assert_valid(decision, "dotted", claims)


# ---------------------------------------------------------------------------------------------
# Insecure mode: shapes it accepts, and the signature is never looked at.


@pytest.mark.parametrize(
    "header",
    [{"alg": "none"}, {"alg": "HS256", "typ": "JWT"}, {"alg": "RS512"}, {}, {"alg": 1}],
    ids=json.dumps,
)
@pytest.mark.parametrize(
    "tail", ["", ".", ".c2ln", ".c2lnbmF0dXJl", ".AAAA"], ids=["h.p", "h.p.", "sig", "sig2", "zero"]
)
def test_insecure_accepts_every_shape_and_any_alg(header: dict[str, Any], tail: str) -> None:
    claims = {"sub": "alice", "exp": NOW + 60}
    token = unsigned(claims, header=header).rstrip(".") + tail
    assert_valid(validator(None).decide(token), "alice", claims)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_insecure_never_verifies_signatures(alg: str) -> None:
    claims = good()
    real = jwt_sign(alg, claims)
    wrong_key = forge(alg, header_for(alg), claims, material=other_material(alg))
    for token in (real, wrong_key, swap_segment(real, 2, "")):
        assert_valid(validator(None).decide(token), "alice", claims)


def test_insecure_still_needs_json_objects() -> None:
    assert_refused(validator(None).decide(unsigned({"sub": "a"}, header=[])), MALFORMED)
    assert_refused(validator(None).decide(unsigned([{"sub": "a"}])), MALFORMED)


def test_insecure_with_no_exp_has_no_expiry() -> None:
    decision = validator(None).decide(unsigned({"user_id": "alice", "role": "x"}))
    assert_valid(decision, "alice", {"user_id": "alice", "role": "x"})
    assert decision.expires_at is None


# ---------------------------------------------------------------------------------------------
# Decision fields, and check() raising what decide() reports.


def test_refusal_carries_no_claims_or_expiry_even_when_the_token_has_them(mode: Mode) -> None:
    token = mode.token(mode.claims(sub="", role="admin", exp=NOW + 60))
    decision = mode.validator().decide(token)
    assert_refused(decision, BAD_USER)
    assert decision.claims == {}
    assert decision.expires_at is None
    assert decision.user_id == ""


def test_valid_decision_carries_the_claims_unchanged(mode: Mode) -> None:
    claims = mode.claims(
        sub="alice",
        exp=NOW + 60,
        nested={"list": [1, 2.5, None, True, "s"], "obj": {"k": "v"}},
        unicode="日本",
        empty={},
    )
    decision = mode.validator().decide(mode.token(claims))
    assert_valid(decision, "alice", claims)
    assert decision.expires_at == NOW + 60
    assert isinstance(decision.expires_at, float)


def test_to_json() -> None:
    v = validator(None)
    refused = v.decide(unsigned({"sub": "a", "exp": 1})).to_json()
    assert refused == {
        "valid": False,
        "user_id": "",
        "claims": {},
        "reason": "REASON_EXPIRED",
        "message": "Expired token",
        "expires_at": None,
    }
    valid = v.decide(unsigned({"sub": "a", "exp": NOW})).to_json()
    assert valid == {
        "valid": True,
        "user_id": "a",
        "claims": {"sub": "a", "exp": NOW},
        "reason": "REASON_UNSPECIFIED",
        "message": "",
        "expires_at": float(NOW),
    }
    assert json.loads(json.dumps(valid)) == valid


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("", MalformedToken),
        (unsigned({"sub": "a", "iat": NOW, "exp": NOW + 9}), AlgorithmMismatch),
        (jwt_sign("HS256", {"sub": "a", "iat": NOW, "exp": NOW - 9}), ExpiredToken),
        (jwt_sign("HS256", {"sub": "a", "iat": NOW, "exp": [1]}), InvalidClaim),
    ],
)
def test_check_raises_what_decide_reports(token: str, error: type[TokenError]) -> None:
    v = validator("HS256")
    with pytest.raises(error) as raised:
        v.check(token)
    decision = v.decide(token)
    assert (decision.reason, decision.message) == (raised.value.reason, raised.value.message)


def test_check_returns_the_valid_decision() -> None:
    token = jwt_sign("HS256", good())
    assert validator("HS256").check(token) == validator("HS256").decide(token)


def test_pyjwt_agrees_on_a_token_we_accept() -> None:
    """A sanity anchor: the independent library reads the same claims from the same token."""
    claims = good(iss=ISS, aud=[AUD, "x"])
    token = jwt_sign("ES384", claims)
    ours = validator("ES384", **FULL_ENV).decide(token)
    theirs = jwt.decode(
        token,
        key_pair("ES384").public_pem,
        algorithms=["ES384"],
        audience=AUD,
        issuer=ISS,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert ours.valid
    assert ours.claims == theirs


def test_a_secure_config_without_a_key_is_refused_not_run_open() -> None:
    """Config.load never builds one, but a hand-made secure Config must not skip signatures."""
    with pytest.raises(ValueError, match="verify key"):
        Validator(policy.Policy(mode=policy.Mode.SECURE, skew=2, max_token_bytes=8192), None)
    forged = unsigned({"sub": "mallory", "iat": NOW, "exp": NOW + 60}, header={"alg": "HS256"})
    loaded = _config("HS256", ())
    assert_refused(build_validator(loaded, clock=lambda: NOW).decide(forged), BAD_SIGNATURE)


# ---------------------------------------------------------------------------------------------
# Hardening beyond Electric: one spelling per signature, `crit`, lone surrogates


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# HS384, ES384 and ES512 signatures fill whole base64 groups: their last character has no
# unused bits, so they have one spelling already.
@pytest.mark.parametrize("alg", [a for a in ALGORITHMS if a not in ("HS384", "ES384", "ES512")])
def test_a_signature_spelled_with_stray_low_bits_is_malformed(alg: str) -> None:
    token = jwt_sign(alg, good())
    signature = token.rsplit(".", 1)[1]
    assert len(signature) % 4 in (2, 3)
    # Same decoded bytes (a lenient decoder drops the low bits), different spelling.
    twin = _ALPHABET[_ALPHABET.index(signature[-1]) | 1]
    assert validator(alg).decide(token).valid
    assert_refused(validator(alg).decide(token[:-1] + twin), MALFORMED)


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_secure_mode_refuses_critical_header_extensions(alg: str) -> None:
    header = {**header_for(alg), "crit": ["exp"]}
    assert_refused(validator(alg).decide(forge(alg, header, good())), MALFORMED)


def test_insecure_mode_ignores_the_header_even_with_crit() -> None:
    assert validator(None).decide(unsigned(good(), {"alg": "none", "crit": ["x"]})).valid


def _decide_payload(mode: Mode, payload: bytes) -> Decision:
    if mode.alg is None:
        return mode.validator().decide(raw(payload))
    return mode.validator().decide(forge(mode.alg, header_for(mode.alg), payload))


def test_a_lone_surrogate_escape_is_malformed(some_mode: Mode) -> None:
    payload = json.dumps(some_mode.claims(sub="\ud800")).encode()  # json.dumps writes the escape
    assert b"\\ud800" in payload
    assert_refused(_decide_payload(some_mode, payload), MALFORMED)


def test_an_escaped_surrogate_pair_is_one_character(some_mode: Mode) -> None:
    payload = json.dumps(some_mode.claims(sub="rocket \U0001f680")).encode()
    assert b"\\ud83d\\ude80" in payload
    decision = _decide_payload(some_mode, payload)
    assert decision.valid and decision.user_id == "rocket \U0001f680"


def test_decoded_headers_are_remembered_within_a_bound() -> None:
    """A repeated header is decoded once; a flood of distinct ones cannot grow the memo."""
    first = jws.parse(unsigned({"sub": "a"}, header={"alg": "none", "n": 0}), 8192).header
    again = jws.parse(unsigned({"sub": "b"}, header={"alg": "none", "n": 0}), 8192).header
    assert again is first and first == {"alg": "none", "n": 0}
    for n in range(1, 200):
        assert jws.parse(unsigned({}, header={"alg": "none", "n": n}), 8192).header["n"] == n
    assert len(jws._HEADERS) <= jws._MAX_HEADERS


# ---------------------------------------------------------------------------------------------
# Profile checks of our own (issue 19), off unless configured: `typ` and the lifetime.


def typed(mode: Mode, typ: Any, claims: dict[str, Any]) -> str:
    """A token of `mode` whose header's `typ` is `typ` (DROP: no `typ`)."""
    header: dict[str, Any] = {"alg": mode.alg or "none"}
    if typ is not DROP:
        header["typ"] = typ
    if mode.alg is None:
        return f"{b64url(_json(header))}.{b64url(_json(claims))}."
    return forge(mode.alg, header, claims)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_a_typ_allow_list_compares_as_rfc_7515_says(some_mode: Mode, typ: str) -> None:
    claims = some_mode.claims(sub="alice")
    decision = some_mode.validator(SIDECAR_JWT_TYP="at+jwt").decide(typed(some_mode, typ, claims))
    assert_valid(decision, "alice", claims)


@pytest.mark.parametrize(
    ("typ", "expected"),
    [
        ("JWT", (Reason.INVALID_CLAIM, 'Invalid "typ" header value: "JWT"')),
        (
            "application/jwt+at",
            (Reason.INVALID_CLAIM, 'Invalid "typ" header value: "application/jwt+at"'),
        ),
        (7, (Reason.INVALID_CLAIM, 'Invalid "typ" header value: 7')),
        (DROP, (Reason.MISSING_CLAIM, 'Missing required "typ" header')),
    ],
)
def test_another_typ_is_refused(some_mode: Mode, typ: Any, expected: Expected) -> None:
    token = typed(some_mode, typ, some_mode.claims(sub="alice"))
    assert_refused(some_mode.validator(SIDECAR_JWT_TYP="at+jwt, jwt+x").decide(token), expected)


def test_without_a_typ_list_any_typ_passes(some_mode: Mode) -> None:
    claims = some_mode.claims(sub="alice")
    for typ in ("JWT", "at+jwt", 7, DROP):
        assert some_mode.validator().decide(typed(some_mode, typ, claims)).valid


def test_a_lifetime_bound(some_mode: Mode) -> None:
    checked = some_mode.validator(SIDECAR_JWT_MAX_LIFETIME_SECONDS="600")
    at_bound = some_mode.token(some_mode.claims(sub="alice", iat=NOW - 100, exp=NOW + 500))
    assert checked.decide(at_bound).valid
    longer = some_mode.token(some_mode.claims(sub="alice", iat=NOW - 100, exp=NOW + 501))
    assert_refused(
        checked.decide(longer),
        (Reason.INVALID_CLAIM, "Token lifetime (exp - iat) of 601 s exceeds 600 s"),
    )
    assert some_mode.validator().decide(longer).valid  # off by default: Electric's semantics


@pytest.mark.parametrize("absent", ["iat", "exp"])
def test_a_lifetime_bound_needs_iat_and_exp(absent: str) -> None:
    claims = {"user_id": "alice", "iat": NOW - 10, "exp": NOW + 10}
    del claims[absent]
    checked = validator(None, SIDECAR_JWT_MAX_LIFETIME_SECONDS="600")
    assert_refused(checked.decide(unsigned(claims)), missing(absent))
