"""A real Envoy verifies the sidecar's minted tokens with jwt_authn, fetching the key set from the
sidecar's `/.well-known/jwks.json` (examples/envoy/jwt-authn-remote-jwks.yaml, addresses
replaced): no Check call, and a forged or unsigned token is refused by Envoy itself. For RS256,
and for PS256 and EdDSA (an OKP key in the published set, RFC 8037), which Electric lacks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from support import (
    ENVOY_EXAMPLE,
    MINT_SECRET,
    Envoy,
    Upstream,
    b64url,
    running,
    secure_env,
    short_tmp_dir,
    start_envoy,
    start_upstream,
    unsigned,
)
from test_envoy import ENVOY_ARGS, SHAPE, bearer, seen, send
from test_metrics import http_address

from authsidecar.v1 import auth_pb2, auth_pb2_grpc

EXAMPLE = ENVOY_EXAMPLE.with_name("jwt-authn-remote-jwks.yaml")
ISSUER = "https://auth.example"  # the example's provider issuer
# The example's fixed addresses; each must occur exactly once.
LISTENER = "{ address: 127.0.0.1, port_value: 10000 }"
ADMIN = "{ address: 127.0.0.1, port_value: 9901 }"
UPSTREAM = "{ address: 127.0.0.1, port_value: 3000 }"
JWKS = "{ address: 127.0.0.1, port_value: 9090 }"


@dataclass
class Stack:
    envoy: Envoy
    upstream: Upstream
    mint: auth_pb2_grpc.AuthServiceStub


def example_config(*, upstream: str, jwks: str) -> str:
    text = EXAMPLE.read_text()
    for old, new in (
        (LISTENER, "{ address: 127.0.0.1, port_value: 0 }"),
        (ADMIN, "{ address: 127.0.0.1, port_value: 0 }"),
        (UPSTREAM, _socket_address(upstream)),
        (JWKS, _socket_address(jwks)),
    ):
        if text.count(old) != 1:
            raise AssertionError(f"{EXAMPLE} must contain {old} exactly once")
        text = text.replace(old, new)
    return text


def _socket_address(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{{ address: {host}, port_value: {int(port)} }}"


@pytest.fixture(scope="module", params=["RS256", "PS256", "EdDSA"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    env = secure_env(
        request.param,
        AUTH_JWT_ISS=ISSUER,
        SIDECAR_MINT_SECRET=MINT_SECRET,
        SIDECAR_HTTP_LISTEN="127.0.0.1:0",
    )
    upstream = start_upstream()
    try:
        with running(env) as sidecar, short_tmp_dir() as directory:
            config = example_config(
                upstream=f"127.0.0.1:{upstream.port}", jwks=http_address(sidecar)
            )
            envoy = start_envoy(config, directory, ENVOY_ARGS)
            try:
                with grpc.insecure_channel(sidecar.address) as channel:
                    yield Stack(envoy, upstream, auth_pb2_grpc.AuthServiceStub(channel))
            finally:
                envoy.stop()
    finally:
        upstream.stop()


def _mint(stack: Stack, user: str) -> str:
    reply = stack.mint.Mint(
        auth_pb2.MintRequest(user_id=user),
        metadata=(("authorization", f"Bearer {MINT_SECRET}"),),
        timeout=10,
    )
    token: str = reply.token
    return token


def _fetched(stack: Stack) -> int:
    """How many key sets the example's provider has fetched, from Envoy's own stats."""
    status, text = stack.envoy.admin_get("/stats?format=json&filter=jwks_fetch_success")
    assert status == 200, text
    return sum(int(stat.get("value", 0)) for stat in json.loads(text)["stats"])


def _keys_in(stack: Stack, timeout: float = 30) -> None:
    """Waits until Envoy's start-up fetch of the key set has succeeded (until then it answers
    401 to every token): a bounded poll on Envoy's own counter."""
    deadline = time.monotonic() + timeout
    while _fetched(stack) < 1:
        assert time.monotonic() < deadline, "Envoy never fetched the sidecar's key set"


def test_envoy_accepts_a_minted_token_with_the_published_key(stack: Stack) -> None:
    token = _mint(stack, "alice")
    _keys_in(stack)
    reply = send(stack.envoy.port, SHAPE, [bearer(token), ("x-user-id", "mallory")])
    assert seen(reply).headers["x-user-id"] == ["alice"]
    assert seen(reply).path == SHAPE


def _forged(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    tampered = b64url(json.dumps({**claims, "user_id": "mallory"}).encode())
    head = json.loads(_unb64(header))
    return [
        f"{header}.{tampered}.{signature}",  # the claims changed under a good signature
        unsigned(claims, {**head, "alg": "none"}),  # unsigned, with the right kid
        unsigned(claims, head, signature="A" * 342),  # a made-up signature
    ]


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_envoy_refuses_forged_and_unsigned_tokens(stack: Stack) -> None:
    good = _mint(stack, "alice")
    _keys_in(stack)
    assert send(stack.envoy.port, SHAPE, [bearer(good)]).status == 200  # the keys are in
    for token in _forged(good):
        reply = send(stack.envoy.port, SHAPE, [bearer(token)])
        assert reply.status == 401, (token, reply.body)
    assert send(stack.envoy.port, SHAPE).status == 401  # no token at all
