"""Wycheproof's RSA-PSS and EdDSA vectors against the sidecar's verifiers, from a PEM key and from
the same key as a JWK, as a configuration would give them.

The vectors are Project Wycheproof's (C2SP/wycheproof at dac1dd4, `testvectors_v1/`), kept
unchanged in tests/vectors/wycheproof/ under its Apache 2.0 licence (LICENSE beside them). PS256,
PS384 and PS512 fix the salt at the hash's length (RFC 7518 §3.5), so every signature of the
zero-salt file, valid for PSS at large, must be refused, but for its one case signed with a salt of
32 bytes, which is a good PS256 signature.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import b64url

from sidecar.keys import algorithms, jwks

VECTORS = Path(__file__).parent / "vectors" / "wycheproof"
# File -> the algorithm whose verifier it checks, and whether its "valid" cases are valid for it.
# The zero-salt file's case 69 is a signature with the salt PS256 uses.
PS256_SALT_CASE = ("rsa_pss_2048_sha256_mgf1_0_test.json", 69, "s_len changed to 32")
FILES = {
    "rsa_pss_2048_sha256_mgf1_32_test.json": ("PS256", True),
    "rsa_pss_2048_sha384_mgf1_48_test.json": ("PS384", True),
    "rsa_pss_4096_sha512_mgf1_64_test.json": ("PS512", True),
    "rsa_pss_2048_sha256_mgf1_0_test.json": ("PS256", False),
    "ed25519_test.json": ("Ed25519", True),
    "ed448_test.json": ("Ed448", True),
}
# How many cases each file holds, so that a truncated copy cannot pass unnoticed.
COUNTS = {
    "rsa_pss_2048_sha256_mgf1_32_test.json": 108,
    "rsa_pss_2048_sha384_mgf1_48_test.json": 141,
    "rsa_pss_4096_sha512_mgf1_64_test.json": 179,
    "rsa_pss_2048_sha256_mgf1_0_test.json": 103,
    "ed25519_test.json": 151,
    "ed448_test.json": 87,
}


def _jwk(group: dict[str, Any], alg: str) -> dict[str, Any]:
    jwk = dict(group["publicKeyJwk"]) if "publicKeyJwk" in group else _rsa_jwk(group)
    jwk.pop("alg", None)
    return {**jwk, "kid": "w"}


def _rsa_jwk(group: dict[str, Any]) -> dict[str, Any]:
    """The zero-salt file has no JWK (no JOSE alg means salt 0): built from its numbers."""
    key = group["publicKey"]
    return {
        "kty": "RSA",
        "n": b64url(bytes.fromhex(key["modulus"]).lstrip(b"\0")),
        "e": b64url(bytes.fromhex(key["publicExponent"])),
    }


@pytest.mark.parametrize("name", FILES)
def test_wycheproof(name: str) -> None:
    alg, valid_means_valid = FILES[name]
    document = json.loads((VECTORS / name).read_text())
    outcomes: Counter[str] = Counter()
    wrong = []
    for group in document["testGroups"]:
        from_pem = algorithms.verifier(alg, group["publicKeyPem"])
        key_set, warnings = jwks.parse(
            json.dumps({"keys": [_jwk(group, alg)]}), frozenset({alg}), allow_oct=False
        )
        assert warnings == []
        from_jwk = jwks.JwksVerifier(frozenset({alg}), key_set)
        for case in group["tests"]:
            message, signature = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
            expected = case["result"] == "valid" and valid_means_valid
            if (name, case["tcId"], case["comment"]) == PS256_SALT_CASE:
                expected = True
            header = {"alg": alg, "kid": "w"}
            got = (
                from_pem.verify(header, message, signature),
                from_jwk.verify(header, message, signature),
            )
            outcomes[case["result"]] += 1
            if got != (expected, expected):
                wrong.append((case["tcId"], case["comment"], got))
    assert wrong == []
    assert sum(outcomes.values()) == COUNTS[name] == document["numberOfTests"]
    assert "acceptable" not in outcomes
