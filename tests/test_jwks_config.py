"""Key sources in the configuration: exactly one per issuer, JWKS files, URLs and OIDC issuers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm
from support import public_jwk

from sidecar import config
from sidecar.core.errors import ConfigError, KeysUnavailable, Reason
from sidecar.keys import algorithms

SECURE = {"AUTH_MODE": "secure"}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        config.load(env)
    return raised.value.problems


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write_set(tmp_path: Path, *keys: dict[str, Any]) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


def token(key: Any, alg: str, kid: str | None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 60, **claims}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("AUTH_JWT_KEY", "AUTH_JWT_JWKS_FILE"),
        ("AUTH_JWT_KEY_FILE", "AUTH_JWT_JWKS_URL"),
        ("AUTH_JWT_JWKS_FILE", "AUTH_JWT_OIDC_ISSUER"),
        ("AUTH_JWT_JWKS_URL", "AUTH_JWT_OIDC_ISSUER"),
    ],
)
def test_two_key_sources_are_one_problem_naming_both(first: str, second: str) -> None:
    env = {
        **SECURE,
        "AUTH_JWT_ALG": "RS256",
        first: "https://x.example",
        second: "https://y.example",
    }
    assert problems(env) == [f"{second}: is set together with {first}; set exactly one key source"]


def test_a_jwks_file_verifies_tokens_by_kid(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_set(
        tmp_path,
        public_jwk(rsa_key, kid="r"),
        public_jwk(ec_key, kid="e"),
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"},
    )
    cfg = config.load({**SECURE, "AUTH_JWT_ALG": "RS256, ES256", "AUTH_JWT_JWKS_FILE": path})
    assert cfg.warnings == ("skipped kid 'ed': its x is not an Ed25519 public key",)
    assert "alg=ES256,RS256 keys=jwks-file" in cfg.describe()
    validator = config.build_validator(cfg)
    assert validator.decide(token(rsa_key, "RS256", "r")).user_id == "alice"
    assert validator.decide(token(ec_key, "ES256", "e")).valid
    assert validator.decide(token(ec_key, "ES256", "r")).reason == Reason.BAD_SIGNATURE
    assert validator.decide(token(rsa_key, "RS384", "r")).reason == Reason.ALGORITHM_MISMATCH


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("{", "is not valid JSON"),
        ('{"keys": []}', "holds no key usable with RS256"),
    ],
)
def test_a_bad_jwks_file_is_a_config_error(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    env = {**SECURE, "AUTH_JWT_ALG": "RS256", "AUTH_JWT_JWKS_FILE": str(path)}
    (line,) = problems(env)
    assert line.startswith("AUTH_JWT_JWKS_FILE: ")
    assert problem in line


@pytest.mark.parametrize(
    ("alg", "problem"),
    [
        ("RS256,HS256", "never holds secrets"),
        ("RS256,XS1", "Missing or invalid 'alg'"),
        ("", "Missing or invalid 'alg'"),
    ],
)
def test_the_alg_allow_list_is_checked(alg: str, problem: str) -> None:
    env = {**SECURE, "AUTH_JWT_ALG": alg, "AUTH_JWT_JWKS_URL": "https://idp.example/jwks"}
    (line,) = problems(env)
    assert line.startswith("AUTH_JWT_ALG: ")
    assert problem in line


def test_an_allow_list_needs_a_jwks_source() -> None:
    env = {**SECURE, "AUTH_JWT_ALG": "RS256,ES256", "AUTH_JWT_KEY": "x"}
    assert problems(env)[0].startswith("AUTH_JWT_ALG: Missing or invalid 'alg'")


def test_a_url_source_waits_for_its_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    cfg = config.load(
        {**SECURE, "AUTH_JWT_ALG": "RS256", "AUTH_JWT_JWKS_URL": "https://idp.example/jwks"}
    )
    assert cfg.remote is not None
    assert cfg.remote.url == "https://idp.example/jwks"
    assert not cfg.remote.discovery
    assert cfg.fetch.refresh == 300
    assert cfg.fetch.min_refresh == 10
    with pytest.raises(KeysUnavailable):
        config.build_validator(cfg).decide(token(rsa_key, "RS256", None))


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("http://idp.example/jwks", None, False),
        ("http://idp.example/jwks", "true", True),
        ("http://127.0.0.1:8080/jwks", None, True),
    ],
)
def test_http_is_for_loopback_or_by_opt_in(url: str, allow: str | None, ok: bool) -> None:
    env = {**SECURE, "AUTH_JWT_ALG": "RS256", "AUTH_JWT_JWKS_URL": url}
    if allow:
        env["SIDECAR_JWKS_ALLOW_HTTP"] = allow
    if ok:
        assert config.load(env).remote is not None
    else:
        (line,) = problems(env)
        assert line.startswith("AUTH_JWT_JWKS_URL: is http:// to idp.example")


def test_an_oidc_issuer_is_the_required_iss_unless_told_otherwise() -> None:
    env = {**SECURE, "AUTH_JWT_ALG": "ES256", "AUTH_JWT_OIDC_ISSUER": "https://idp.example/r"}
    cfg = config.load(env)
    assert cfg.iss == "https://idp.example/r"
    assert cfg.remote is not None and cfg.remote.discovery
    assert "iss" in cfg.policy.required
    other = config.load({**env, "AUTH_JWT_ISS": "https://tokens.example"})
    assert other.iss == "https://tokens.example"


def test_fetch_settings_are_checked(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("nothing here")
    env = {
        **SECURE,
        "AUTH_JWT_ALG": "RS256",
        "AUTH_JWT_JWKS_URL": "https://idp.example/jwks",
        "SIDECAR_JWKS_REFRESH_SECONDS": "5",
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS": "6",
        "SIDECAR_JWKS_CA_FILE": str(not_pem),
    }
    assert problems(env) == [
        f"SIDECAR_JWKS_CA_FILE: cannot use {not_pem}: no PEM certificates in it",
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS: must not exceed SIDECAR_JWKS_REFRESH_SECONDS (5)",
    ]


def test_mint_with_a_jwks_file_signs_with_the_jwks_kid(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = write_set(
        tmp_path,
        public_jwk(rsa_key, kid="rsa-1"),
        public_jwk(ec_key, kid="ec-1"),
    )
    env = {
        **SECURE,
        "AUTH_JWT_ALG": "ES256,RS256",
        "AUTH_JWT_JWKS_FILE": path,
        "AUTH_JWT_SIGNING_KEY": pem(rsa_key),
    }
    cfg = config.load(env)
    minted = config.build_minter(cfg).mint("bob").token
    assert jwt.get_unverified_header(minted) == {"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}
    assert config.build_validator(cfg).decide(minted).user_id == "bob"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert problems({**env, "AUTH_JWT_SIGNING_KEY": pem(stranger)}) == [
        "AUTH_JWT_SIGNING_KEY: is not the private half of a key in AUTH_JWT_JWKS_FILE; "
        "Mint's tokens would not verify"
    ]


def test_mint_without_a_jwks_kid_uses_the_thumbprint(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    path = write_set(tmp_path, jwk)
    env = {
        **SECURE,
        "AUTH_JWT_ALG": "ES256",
        "AUTH_JWT_JWKS_FILE": path,
        "AUTH_JWT_SIGNING_KEY": pem(ec_key),
    }
    minted = config.build_minter(config.load(env)).mint("bob").token
    assert jwt.get_unverified_header(minted)["kid"] == algorithms.thumbprint(jwk)
