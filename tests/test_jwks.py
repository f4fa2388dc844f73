"""JWK Set parsing and key selection: real keys generated here, tokens signed by PyJWT."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import HMACAlgorithm
from support import public_jwk

from sidecar.core import jws
from sidecar.core.errors import KeysUnavailable
from sidecar.keys import algorithms, jwks

RS = frozenset({"RS256"})
ANY_ASYMMETRIC = frozenset({"RS256", "RS384", "ES256", "ES384"})


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(6)]


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_set(*keys: Any) -> str:
    return json.dumps({"keys": list(keys)})


def sign(key: Any, alg: str = "RS256", **header: Any) -> str:
    return jwt.encode({"sub": "u"}, key, algorithm=alg, headers=header or None)


def forge(header: dict[str, Any], secret: bytes) -> str:
    """An HS256 token with any header at all, which PyJWT would refuse to write."""
    head = jws.b64url_encode(json.dumps(header).encode())
    body = jws.b64url_encode(json.dumps({"sub": "u"}).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{jws.b64url_encode(mac)}"


def check(verifier: jwks.JwksVerifier, token: str) -> bool:
    parsed = jws.parse(token, 1 << 16)
    return verifier.verify(parsed.header, parsed.signing_input, parsed.signature)


class Hook:
    """Counts unknown-kid notifications."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def verifier_for(document: str, allowed: frozenset[str] = RS, **kw: Any) -> jwks.JwksVerifier:
    keys, _ = jwks.parse(document, allowed, allow_oct=kw.pop("allow_oct", False))
    return jwks.JwksVerifier(allowed, keys, **kw)


# RFC 7638 §3.1: the example key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWK"
    "RXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
    "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRw"
    "r3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_thumbprint_matches_rfc_7638_example() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert algorithms.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_covers_only_the_required_members(ec_key: ec.EllipticCurvePrivateKey) -> None:
    bare = public_jwk(ec_key)
    assert algorithms.thumbprint({**bare, "kid": "x", "use": "sig"}) == algorithms.thumbprint(bare)
    assert algorithms.thumbprint({**bare, "x": bare["y"]}) != algorithms.thumbprint(bare)
    with pytest.raises(ValueError, match="thumbprint"):
        algorithms.thumbprint({"kty": "OKP", "crv": "Ed25519"})


def test_okp_thumbprint_matches_rfc_8037() -> None:
    """RFC 8037 Appendix A.3: the Ed25519 key of A.2 and its thumbprint."""
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert algorithms.thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_the_kid_selects_the_key(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    verifier = verifier_for(
        key_set(public_jwk(rsa_keys[0], kid="a"), public_jwk(rsa_keys[1], kid="b"))
    )
    assert check(verifier, sign(rsa_keys[0], kid="a"))
    assert check(verifier, sign(rsa_keys[1], kid="b"))
    # Signed by a key of the set, but naming the other one: refused.
    assert not check(verifier, sign(rsa_keys[0], kid="b"))


def test_an_unknown_kid_is_refused_and_reported(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    hook = Hook()
    verifier = verifier_for(key_set(public_jwk(rsa_keys[0], kid="a")), on_unknown_kid=hook)
    assert not check(verifier, sign(rsa_keys[0], kid="zzz"))
    assert hook.calls == 1
    assert check(verifier, sign(rsa_keys[0], kid="a"))
    assert hook.calls == 1


def test_keys_without_kid_are_tried_for_any_kid(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    """As Envoy's jwt_authn: a JWK without `kid` matches every token `kid`."""
    verifier = verifier_for(key_set(public_jwk(rsa_keys[0], kid="a"), public_jwk(rsa_keys[1])))
    assert check(verifier, sign(rsa_keys[1], kid="a"))
    assert check(verifier, sign(rsa_keys[1], kid="other"))


def test_a_token_without_kid_tries_a_bounded_number_of_keys(
    rsa_keys: list[rsa.RSAPrivateKey],
) -> None:
    verifier = verifier_for(key_set(*(public_jwk(k, kid=str(i)) for i, k in enumerate(rsa_keys))))
    assert check(verifier, sign(rsa_keys[0]))
    assert check(verifier, sign(rsa_keys[jwks.MAX_TRIES - 1]))
    assert not check(verifier, sign(rsa_keys[jwks.MAX_TRIES]))
    # With its kid, the same token is found.
    assert check(verifier, sign(rsa_keys[jwks.MAX_TRIES], kid=str(jwks.MAX_TRIES)))


def test_the_key_type_and_curve_must_fit_the_alg(
    rsa_keys: list[rsa.RSAPrivateKey], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = verifier_for(
        key_set(public_jwk(rsa_keys[0], kid="r"), public_jwk(ec_key, kid="e")), ANY_ASYMMETRIC
    )
    assert check(verifier, sign(rsa_keys[0], "RS384", kid="r"))
    assert check(verifier, sign(ec_key, "ES256", kid="e"))
    # An HMAC token whose secret is the RSA key's public JWK text: the classic confusion.
    public_text = json.dumps(public_jwk(rsa_keys[0], kid="r")).encode()
    assert not check(verifier, forge({"alg": "HS256", "kid": "r"}, public_text))
    # ES384 is allowed, but the only EC key is P-256.
    p384 = ec.generate_private_key(ec.SECP384R1())
    assert not check(verifier, sign(p384, "ES384", kid="e"))


def test_the_jwks_own_alg_must_equal_the_tokens(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    verifier = verifier_for(key_set(public_jwk(rsa_keys[0], kid="a", alg="RS384")), ANY_ASYMMETRIC)
    assert check(verifier, sign(rsa_keys[0], "RS384", kid="a"))
    assert not check(verifier, sign(rsa_keys[0], "RS256", kid="a"))


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"use": "enc"}, "its use is 'enc'"),
        ({"key_ops": ["encrypt"]}, '"key_ops" do not include "verify"'),
        ({"key_ops": "verify"}, '"key_ops" do not include "verify"'),
        ({"alg": "ES256"}, "its alg 'ES256' does not fit a RSA key"),
        ({"alg": "RS512"}, "none of which is allowed"),
    ],
)
def test_keys_that_may_not_verify_are_skipped_with_a_warning(
    rsa_keys: list[rsa.RSAPrivateKey], extra: dict[str, Any], why: str
) -> None:
    document = key_set(
        public_jwk(rsa_keys[0], kid="bad", **extra), public_jwk(rsa_keys[1], kid="ok")
    )
    keys, warnings = jwks.parse(document, RS, allow_oct=False)
    assert len(warnings) == 1
    assert warnings[0].startswith("skipped kid 'bad': ")
    assert why in warnings[0]
    verifier = jwks.JwksVerifier(RS, keys)
    assert not check(verifier, sign(rsa_keys[0], kid="bad"))
    assert check(verifier, sign(rsa_keys[1], kid="ok"))


def test_unusable_keys_are_skipped_with_their_kid_named(
    rsa_keys: list[rsa.RSAPrivateKey], ec_key: ec.EllipticCurvePrivateKey
) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    point = public_jwk(ec_key)
    off_curve = {**point, "y": point["x"]}
    document = key_set(
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        public_jwk(small, kid="small"),
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "hmac"},
        {**off_curve, "kid": "curve"},
        {**point, "x": point["x"][:-3], "kid": "short"},
        {"kty": "RSA", "kid": "empty"},
        {"kty": "RSA", "kid": 7},
        "not an object",
        public_jwk(rsa_keys[0], kid="good"),
    )
    keys, warnings = jwks.parse(document, frozenset({"RS256", "ES256", "HS256"}), allow_oct=False)
    assert warnings == [
        "skipped key #0 (no kid): it fits EdDSA, Ed25519, none of which is allowed",
        "skipped kid 'small': it is a 1024-bit RSA key; at least 2048 bits are needed",
        "skipped kid 'hmac': symmetric (oct) keys are never taken from a URL",
        "skipped kid 'curve': its x and y are not a point on P-256",
        "skipped kid 'short': its x and y are not 32 bytes each, as P-256 needs",
        "skipped kid 'empty': it has no \"n\"",
        'skipped key #6 (no kid): its "kid" is not a string',
        "skipped key #7 (no kid): it is not a JSON object",
    ]
    assert keys.count == 1


def test_oct_keys_from_a_file_verify_hs_tokens() -> None:
    secret = b"s" * 32
    jwk = {**HMACAlgorithm.to_jwk(secret, as_dict=True), "kid": "h"}
    allowed = frozenset({"HS256", "HS512"})
    keys, warnings = jwks.parse(key_set(jwk), allowed, allow_oct=True)
    assert warnings == []
    verifier = jwks.JwksVerifier(allowed, keys)
    assert check(verifier, sign(secret, "HS256", kid="h"))
    # 32 bytes is too short for HS512 (RFC 7518 §3.2): that alg has no key.
    assert not check(verifier, sign(secret * 2, "HS512", kid="h"))


def test_no_usable_key_is_fatal(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    with pytest.raises(jwks.JwksProblem, match=r"no key usable with RS256 .*kid 'x'"):
        jwks.parse(key_set(public_jwk(rsa_keys[0], kid="x", use="enc")), RS, allow_oct=False)
    with pytest.raises(jwks.JwksProblem, match="no key usable"):
        jwks.parse(key_set(), RS, allow_oct=False)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"{", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b'{"keys": [NaN]}', "is not valid JSON"),
        (b"[" * 100_000, "is not valid JSON"),
        (b"[]", "is not a JWK Set"),
        (b'{"keys": {}}', "is not a JWK Set"),
    ],
)
def test_documents_that_are_not_key_sets(document: bytes, problem: str) -> None:
    with pytest.raises(jwks.JwksProblem, match=problem):
        jwks.parse(document, RS, allow_oct=False)


def test_a_huge_set_is_cut(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    many = [public_jwk(rsa_keys[0], kid=str(i)) for i in range(jwks.MAX_KEYS + 1)]
    keys, warnings = jwks.parse(key_set(*many), RS, allow_oct=False)
    assert warnings == [f"the set has {jwks.MAX_KEYS + 1} keys; only the first 64 are used"]
    assert keys.count == jwks.MAX_KEYS


def test_before_a_set_is_loaded_verify_raises(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    verifier = jwks.JwksVerifier(RS)
    token = sign(rsa_keys[0], kid="a")
    with pytest.raises(KeysUnavailable):
        check(verifier, token)
    keys, _ = jwks.parse(key_set(public_jwk(rsa_keys[0], kid="a")), RS, allow_oct=False)
    verifier.update(keys)
    assert check(verifier, token)


def test_a_non_string_kid_is_refused() -> None:
    secret = b"k" * 32
    jwk = {**HMACAlgorithm.to_jwk(secret, as_dict=True), "kid": "1"}
    verifier = verifier_for(key_set(jwk), frozenset({"HS256"}), allow_oct=True)
    assert check(verifier, forge({"alg": "HS256", "kid": "1"}, secret))
    assert not check(verifier, forge({"alg": "HS256", "kid": 1}, secret))


def test_the_set_maps_thumbprints_to_kids(rsa_keys: list[rsa.RSAPrivateKey]) -> None:
    jwk = public_jwk(rsa_keys[0], kid="named")
    parsed, _ = jwks.parse(key_set(jwk, public_jwk(rsa_keys[1])), RS, allow_oct=False)
    assert parsed.kid_by_thumbprint == {algorithms.thumbprint(jwk): "named"}
