"""`/.well-known/jwks.json`: Mint's public key as a JWK Set, checked against PyJWT and
cryptography (independent of python-jose, which builds it), and served by the side listener."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from support import CURVE_NAMES, insecure_config, key_pair, secure_config, secure_env

from sidecar import config
from sidecar.keys import algorithms
from sidecar.observe.observability import Observability
from sidecar.observe.side import JWKS_MAX_AGE_SECONDS, JWKS_PATH

PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def _public_jwk(alg: str) -> dict[str, Any]:
    """What PyJWT derives from the test key pair's public key (cryptography parses the PEM)."""
    public = serialization.load_pem_public_key(key_pair(alg).public_pem.encode())
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    jwk.pop("key_ops", None)  # PyJWT marks an RSA public key "verify"-only; not key material
    return jwk


@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "ES512", "PS256", "PS512", "EdDSA"])
def test_the_published_key_is_the_signers_public_key(alg: str) -> None:
    cfg = secure_config(alg)
    (jwk,) = algorithms.published_jwks(cfg.signer)["keys"]
    assert not set(PRIVATE_MEMBERS) & set(jwk)
    expected = _public_jwk(alg)
    assert {name: jwk[name] for name in expected} == expected
    assert set(jwk) == set(expected) | {"kid", "alg", "use"}
    assert (jwk["alg"], jwk["use"]) == (alg, "sig")
    assert jwk["kid"] == algorithms.thumbprint(expected)
    if alg.startswith("ES"):
        assert jwk["crv"] == CURVE_NAMES[alg]
    # A minted token names this key, and PyJWT verifies it with the published key alone.
    minted = config.build_minter(cfg).mint("alice").token
    assert jwt.get_unverified_header(minted)["kid"] == jwk["kid"]
    key = jwt.PyJWKSet.from_dict({"keys": [jwk]})[jwk["kid"]]
    assert jwt.decode(minted, key, algorithms=[alg])["user_id"] == "alice"


def test_a_jwks_file_keeps_its_own_kid(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**_public_jwk("RS256"), "kid": "main-2026"}]}))
    env = {**secure_env("RS256"), "AUTH_JWT_JWKS_FILE": str(path)}
    del env["AUTH_JWT_KEY"]
    (jwk,) = algorithms.published_jwks(config.load(env).signer)["keys"]
    assert jwk["kid"] == "main-2026"


def _without_signing_key(alg: str) -> dict[str, str]:
    env = secure_env(alg)
    del env["AUTH_JWT_SIGNING_KEY"]
    return env


@pytest.mark.parametrize(
    "env",
    [secure_env("HS256"), {"AUTH_MODE": "insecure"}, _without_signing_key("RS256")],
    ids=["hs256-signs-unpublished", "insecure", "rs256-no-signing-key"],
)
def test_no_rs_or_es_signer_publishes_no_key(env: dict[str, str]) -> None:
    assert algorithms.published_jwks(config.load(env).signer) == {"keys": []}


@asynccontextmanager
async def _observed(alg: str | None) -> AsyncIterator[tuple[Observability, str]]:
    extra = {"SIDECAR_HTTP_LISTEN": "127.0.0.1:0", "SIDECAR_WORKERS": "1"}
    cfg = secure_config(alg, **extra) if alg else insecure_config(**extra)
    observe = Observability(cfg)
    await observe.open()
    try:
        assert observe.side is not None
        yield observe, observe.side.address
    finally:
        await observe.close()


async def _get(address: str) -> tuple[int, dict[str, str], Any]:
    return await asyncio.to_thread(_get_now, address)


def _get_now(address: str) -> tuple[int, dict[str, str], Any]:
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", JWKS_PATH)
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(response.read())
    finally:
        connection.close()


async def test_the_side_listener_serves_the_set_and_a_reload_replaces_it() -> None:
    async with _observed("ES256") as (observe, address):
        status, headers, body = await _get(address)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == f"max-age={JWKS_MAX_AGE_SECONDS}"
        assert body == algorithms.published_jwks(secure_config("ES256").signer)
        observe.publish(secure_config("RS256"))  # what a reload to a new signer does
        assert (await _get(address))[2]["keys"][0]["kty"] == "RSA"
        observe.publish(secure_config("HS256"))
        assert (await _get(address))[2] == {"keys": []}


async def test_an_insecure_sidecar_serves_an_empty_set() -> None:
    async with _observed(None) as (_, address):
        status, _, body = await _get(address)
        assert (status, body) == (200, {"keys": []})
