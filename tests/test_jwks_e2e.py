"""A real sidecar process that fetches its keys over HTTP from a server the tests control."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jwks_server import JwksServer, jwks_server
from support import StartSidecar, clean_env, public_jwk, until

from authsidecar.v1 import auth_pb2, auth_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with jwks_server(up=False) as running:
        yield running


def token(key: rsa.RSAPrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AUTH_MODE": "secure",
        "AUTH_JWT_ALG": "RS256",
        "AUTH_JWT_JWKS_URL": url,
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS": "1",
        **extra,
    }


def test_keys_down_at_start_means_unavailable_then_serving(
    sidecar_factory: StartSidecar, server: JwksServer, keys: list[rsa.RSAPrivateKey]
) -> None:
    server.serve_keys(public_jwk(keys[0], kid="a"))
    sidecar = sidecar_factory(env(server.url))  # start-up does not wait for the provider
    with grpc.insecure_channel(sidecar.address) as channel:
        # types-grpcio-health-checking declares HealthStub without its methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        check = external_auth_pb2_grpc.AuthorizationStub(channel)
        request = external_auth_pb2.CheckRequest()
        request.attributes.request.http.headers["authorization"] = "Bearer " + token(keys[0], "a")
        assert health.Check(health_pb2.HealthCheckRequest()).status == NOT_SERVING
        for call, message in (
            (auth.Validate, auth_pb2.ValidateRequest(token=token(keys[0], "a"))),
            (check.Check, request),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                call(message, timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert raised.value.details() == "no verification keys are loaded yet"
        server.up()
        until(lambda: health.Check(health_pb2.HealthCheckRequest()).status == SERVING)
        response = auth.Validate(auth_pb2.ValidateRequest(token=token(keys[0], "a")), timeout=5)
        assert response.valid
        assert response.user_id == "alice"
        assert check.Check(request, timeout=5).status.code == 0
    sidecar.terminate()
    assert any("no keys yet" in line for line in sidecar.log)
    assert any("loaded 1 keys from http://127.0.0.1" in line for line in sidecar.log)


def test_rotation_and_a_random_kid_flood(
    sidecar_factory: StartSidecar, server: JwksServer, keys: list[rsa.RSAPrivateKey]
) -> None:
    """The flood's fetch count is bounded by the elapsed time, whatever the machine's speed."""
    old, new = keys
    server.serve_keys(public_jwk(old, kid="old"))
    server.up()
    sidecar = sidecar_factory(env(server.url))
    with grpc.insecure_channel(sidecar.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)

        def validate(text: str) -> auth_pb2.ValidateResponse:
            return auth.Validate(auth_pb2.ValidateRequest(token=text), timeout=5)

        until(lambda: server.count() == 1)
        assert validate(token(old, "old")).valid
        # Rotation, step 1: the provider adds a key; its first token makes the sidecar refetch.
        server.serve_keys(public_jwk(old, kid="old"), public_jwk(new, kid="new"))
        until(lambda: validate(token(new, "new")).valid)
        # Step 2: the old key goes; the scheduled refresh would see it, an unknown kid sooner.
        server.serve_keys(public_jwk(new, kid="new"))

        def old_key_gone() -> bool:
            # An unknown kid asks for an early refetch (rate-limited by the sidecar).
            validate(token(new, "unknown-" + uuid.uuid4().hex))
            return not validate(token(old, "old")).valid

        until(old_key_gone)
        assert validate(token(new, "new")).valid
        # The flood: every call names a kid nobody published.
        before, started = server.count(), time.monotonic()
        calls = 0
        while time.monotonic() - started < 3:
            response = validate(token(new, uuid.uuid4().hex))
            assert response.reason == auth_pb2.REASON_BAD_SIGNATURE
            calls += 1
        elapsed = time.monotonic() - started
        fetches = server.count() - before
    sidecar.terminate()
    print(f"kid flood: {calls} calls in {elapsed:.1f}s caused {fetches} fetches")
    # At most one per SIDECAR_JWKS_MIN_REFRESH_SECONDS (1 s), plus one under way at the start.
    assert 1 <= fetches <= int(elapsed) + 2
    assert calls > 10 * fetches


def test_two_issuers_from_a_config_file(
    sidecar_factory: StartSidecar,
    server: JwksServer,
    keys: list[rsa.RSAPrivateKey],
    tmp_path: Path,
) -> None:
    server.serve_keys(public_jwk(keys[0], kid="a"))
    server.up()
    secret = "s" * 32
    path = tmp_path / "issuers.toml"
    path.write_text(
        f'[[issuers]]\niss = "https://a"\nalg = "RS256"\njwks_url = "{server.url}"\n\n'
        f'[[issuers]]\niss = "https://b"\nalg = "HS256"\nkey = "{secret}"\nmint = true\n'
    )
    sidecar = sidecar_factory({"AUTH_MODE": "secure", "SIDECAR_CONFIG_FILE": str(path)})
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 300}
    with grpc.insecure_channel(sidecar.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)

        def validate(text: str) -> auth_pb2.ValidateResponse:
            return auth.Validate(auth_pb2.ValidateRequest(token=text), timeout=5)

        until(lambda: health.Check(health_pb2.HealthCheckRequest()).status == SERVING)
        a = jwt.encode({**claims, "iss": "https://a"}, keys[0], "RS256", headers={"kid": "a"})
        b = jwt.encode({**claims, "iss": "https://b"}, secret, "HS256")
        c = jwt.encode({**claims, "iss": "https://c"}, secret, "HS256")
        assert validate(a).valid
        assert validate(b).valid
        assert validate(c).message == 'Invalid "iss" claim value: "https://c"'
    sidecar.terminate()
    assert any("issuers=https://a,https://b" in line for line in sidecar.log)


def test_cli_validate_fetches_the_keys_once(
    server: JwksServer, keys: list[rsa.RSAPrivateKey]
) -> None:
    server.serve_keys(public_jwk(keys[0], kid="a"))
    command = [sys.executable, "-m", "sidecar", "validate", token(keys[0], "a")]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=clean_env(env(server.url)), capture_output=True, text=True, timeout=30
        )

    down = run()  # the provider is down: no decision, a clear error
    assert down.returncode == 2
    assert down.stdout == ""
    assert "validate: the keys could not be fetched" in down.stderr
    assert "no keys yet" in down.stderr
    server.up()
    up = run()
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["user_id"] == "alice"
    assert server.count() == 1
