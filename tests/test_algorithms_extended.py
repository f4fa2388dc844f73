"""PS256/384/512 and EdDSA (with RFC 9864's `Ed25519` and `Ed448`), beyond Electric's nine.

Tokens come from PyJWT, which implements both independently; the sidecar's own tokens are checked
by PyJWT in turn. Wycheproof's vectors are in tests/test_wycheproof.py.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, padding, rsa
from support import (
    EXTENDED,
    b64url,
    key_pair,
    public_jwk,
    secure_config,
    secure_env,
    sign,
    unsigned,
)

from sidecar import config
from sidecar.core.errors import ConfigError, Reason, TokenError
from sidecar.keys import jwks

NOW = time.time()
CLAIMS = {"user_id": "alice", "iat": int(NOW), "exp": int(NOW) + 600}


def decide(cfg: config.Config, token: str) -> Any:
    return config.build_validator(cfg, clock=lambda: NOW).check(token)


def refusal(cfg: config.Config, token: str) -> TokenError:
    with pytest.raises(TokenError) as raised:
        decide(cfg, token)
    return raised.value


def only_problem(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        config.load(env)
    (line,) = raised.value.problems
    return line


def private(alg: str) -> Any:
    return serialization.load_pem_private_key(key_pair(alg).private_pem.encode(), password=None)


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64url(json.dumps({**claims, 'user_id': 'mallory'}).encode())}.{signature}"


@pytest.mark.parametrize("alg", EXTENDED)
def test_a_pyjwt_token_verifies_with_a_pem_key(alg: str) -> None:
    cfg = secure_config(alg)
    assert decide(cfg, sign(alg, CLAIMS)).user_id == "alice"
    assert refusal(cfg, tampered(sign(alg, CLAIMS))).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("alg", EXTENDED)
def test_mint_signs_what_pyjwt_verifies(alg: str) -> None:
    minted = config.build_minter(secure_config(alg)).mint("bob").token
    header = jwt.get_unverified_header(minted)
    assert header["alg"] == alg
    jws = jwt.PyJWS()
    if alg in ("Ed25519", "Ed448"):
        jws.register_algorithm(alg, jwt.algorithms.OKPAlgorithm())
    public = serialization.load_pem_public_key(key_pair(alg).public_pem.encode())
    assert isinstance(public, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
    payload = jws.decode(minted, public, algorithms=[alg])
    assert json.loads(payload)["user_id"] == "bob"


def test_the_algorithm_comes_from_configuration() -> None:
    """A PS256 key does not verify RS256, nor an Ed25519 key's `EdDSA` token under `Ed25519`."""
    ps = secure_config("PS256")
    rs_token = jwt.encode(CLAIMS, private("PS256"), algorithm="RS256")
    assert refusal(ps, rs_token).reason is Reason.ALGORITHM_MISMATCH
    ed = secure_config("Ed25519")
    eddsa = jwt.encode(CLAIMS, private("Ed25519"), algorithm="EdDSA")
    assert refusal(ed, eddsa).reason is Reason.ALGORITHM_MISMATCH
    assert refusal(ed, unsigned(CLAIMS, {"alg": "none"})).reason is Reason.ALGORITHM_MISMATCH


def test_eddsa_takes_either_curve_and_a_curve_name_only_its_own() -> None:
    ed448_pem = key_pair("Ed448").public_pem
    cfg = config.load(secure_env("EdDSA", AUTH_JWT_KEY=ed448_pem, AUTH_JWT_SIGNING_KEY=""))
    token = jwt.encode(CLAIMS, private("Ed448"), algorithm="EdDSA")
    assert decide(cfg, token).user_id == "alice"
    line = only_problem(secure_env("Ed25519", AUTH_JWT_KEY=ed448_pem))
    assert line == "AUTH_JWT_KEY: is an Ed448 key, but Ed25519 needs Ed25519"


def test_pss_needs_a_salt_as_long_as_the_hash() -> None:
    """RFC 7518 §3.5: a PS256 signature with any other salt length is refused."""
    cfg = secure_config("PS256")
    header = b64url(b'{"alg":"PS256","typ":"JWT"}')
    body = b64url(json.dumps(CLAIMS).encode())
    signing_input = f"{header}.{body}".encode()
    key: rsa.RSAPrivateKey = private("PS256")
    for salt in (0, 20, padding.PSS.MAX_LENGTH):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
        signature = key.sign(signing_input, pss, hashes.SHA256())
        token = f"{header}.{body}.{b64url(signature)}"
        assert refusal(cfg, token).reason is Reason.BAD_SIGNATURE, salt
    # PKCS #1 v1.5 over the same input, named PS256: the wrong scheme.
    v15 = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    assert refusal(cfg, f"{header}.{body}.{b64url(v15)}").reason is Reason.BAD_SIGNATURE


def test_ps_needs_2048_bits() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = (
        small.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    line = only_problem({"AUTH_JWT_ALG": "PS384", "AUTH_JWT_KEY": pem})
    assert line == "AUTH_JWT_KEY: is a 1024-bit RSA key; PS384 needs at least 2048 bits"


@pytest.mark.parametrize(
    ("alg", "material", "expected"),
    [
        ("EdDSA", "garbage", "expected an Ed25519 or Ed448 public key in PEM"),
        ("PS256", key_pair("EdDSA").public_pem, "is not an RSA key, but AUTH_JWT_ALG=PS256"),
        ("Ed448", key_pair("RS256").public_pem, "is not an Ed25519 or Ed448 key"),
    ],
)
def test_a_key_of_another_family_is_one_line(alg: str, material: str, expected: str) -> None:
    line = only_problem({"AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": material})
    assert line.startswith("AUTH_JWT_KEY: ")
    assert expected in line


def test_the_signing_key_must_pair_with_the_key() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    line = only_problem(secure_env("EdDSA", AUTH_JWT_SIGNING_KEY=pem))
    assert line == (
        "AUTH_JWT_SIGNING_KEY: is not the private half of AUTH_JWT_KEY; "
        "Mint's tokens would not verify"
    )


def write_set(tmp_path: Path, *keys: dict[str, Any]) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": list(keys)}))
    return str(path)


def test_a_jwk_set_of_okp_and_pss_keys(tmp_path: Path) -> None:
    path = write_set(
        tmp_path,
        public_jwk(private("PS256"), kid="ps"),
        public_jwk(private("EdDSA"), kid="ed"),
        public_jwk(private("Ed448"), kid="ed448"),
    )
    env = {"AUTH_JWT_ALG": "PS256, EdDSA, Ed448", "AUTH_JWT_JWKS_FILE": path}
    cfg = config.load(env)
    assert cfg.warnings == ()
    assert decide(cfg, sign("PS256", CLAIMS, {"kid": "ps"})).user_id == "alice"
    assert decide(cfg, sign("EdDSA", CLAIMS, {"kid": "ed"})).user_id == "alice"
    assert decide(cfg, sign("Ed448", CLAIMS, {"kid": "ed448"})).user_id == "alice"
    ed448_under_eddsa = jwt.encode(CLAIMS, private("Ed448"), "EdDSA", headers={"kid": "ed448"})
    assert decide(cfg, ed448_under_eddsa).user_id == "alice"
    # The Ed25519 key does not verify under Ed448's name, even when the kid points at it.
    head = b64url(json.dumps({"alg": "Ed448", "kid": "ed"}).encode())
    signing_input = f"{head}.{b64url(json.dumps(CLAIMS).encode())}"
    signature = private("EdDSA").sign(signing_input.encode())
    wrong = f"{signing_input}.{b64url(signature)}"
    assert refusal(cfg, wrong).reason is Reason.BAD_SIGNATURE


def test_okp_keys_that_cannot_be_used_are_named() -> None:
    ed = public_jwk(private("EdDSA"))
    document = json.dumps(
        {
            "keys": [
                {**ed, "kid": "x448", "crv": "X448"},
                {**ed, "kid": "short", "x": b64url(bytes(31))},
                {**ed, "kid": "noalg"},
                {**ed, "kid": "marked", "alg": "Ed448"},
                public_jwk(ed448.Ed448PrivateKey.generate(), kid="ok"),
            ]
        }
    )
    _, warnings = jwks.parse(document, frozenset({"Ed448"}), allow_oct=False)
    assert warnings == [
        "skipped kid 'x448': unknown OKP curve 'X448'",
        "skipped kid 'short': its x is not an Ed25519 public key",
        "skipped kid 'noalg': it fits EdDSA, Ed25519, none of which is allowed",
        "skipped kid 'marked': its alg 'Ed448' does not fit a OKP key",
    ]


def test_electric_keeps_its_wording_for_its_nine() -> None:
    """An Ed25519 PEM for RS256 reads as Electric says a bad RS key does."""
    line = only_problem({"AUTH_JWT_ALG": "RS256", "AUTH_JWT_KEY": key_pair("EdDSA").public_pem})
    assert line.startswith("AUTH_JWT_KEY: is not a valid key for AUTH_JWT_ALG=RS256")
