"""End to end with a real OpenID provider: npm's oidc-provider (tests/oidc/provider.js).

The provider issues JWT access tokens (client credentials + resource indicators); the sidecar
finds its keys through OIDC discovery, accepts its tokens, and follows its key rotation without
a restart; routes read the `scope` claim of its tokens. Providers signing with PS256, EdDSA and
Ed25519 keys are accepted end to end too. Its opaque access tokens are decided through its RFC
7662 introspection endpoint, over Validate and forward auth, and refused once revoked.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from proxies import http_api_address, send
from support import StartSidecar, until

from authsidecar.v1 import auth_pb2, auth_pb2_grpc

OIDC_DIR = Path(__file__).parent / "oidc"


@dataclass
class Provider:
    process: subprocess.Popen[str]
    issuer: str
    client_id: str
    client_secret: str
    resource: str
    opaque_resource: str
    introspector: tuple[str, str]

    def command(self, line: str) -> None:
        """Sends `rotate` or `retire`; returns once the provider has applied it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        assert _read_line(self.process.stdout, 20) == "ok"

    def access_token(self, resource: str | None = None) -> str:
        """An access token for `resource` (the JWT one by default), by client credentials."""
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "resource": resource or self.resource,
                "scope": "api",
            }
        ).encode()
        return str(self._post("/token", body)["access_token"])

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation, as the client that holds the token."""
        self._post("/token/revocation", urllib.parse.urlencode({"token": token}).encode(), False)

    def _post(self, path: str, body: bytes, answer: bool = True) -> Any:
        credentials = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        request = urllib.request.Request(
            self.issuer + path,
            data=body,
            headers={"Authorization": f"Basic {credentials}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response) if answer else response.read()


def _read_line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the OpenID provider did not answer in time"
    return stream.readline().strip()


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with _provider("RS256") as started:
        yield started


@contextmanager
def _provider(alg: str) -> Iterator[Provider]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs node and npm for the OpenID provider tests")
        pytest.skip("node and npm are needed for the OpenID provider tests")
    if not (OIDC_DIR / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=OIDC_DIR, check=True)
    process = subprocess.Popen(
        [node, "provider.js"],
        cwd=OIDC_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "SIGNING_ALG": alg},
    )
    try:
        assert process.stdout is not None
        started = json.loads(_read_line(process.stdout, 30))
        yield Provider(
            process,
            started["issuer"],
            started["client"]["id"],
            started["client"]["secret"],
            started["resource"],
            started["opaque_resource"],
            (started["introspector"]["id"], started["introspector"]["secret"]),
        )
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


Validate = Callable[[str], auth_pb2.ValidateResponse]


@contextmanager
def serving(address: str) -> Iterator[Validate]:
    """Validate on the sidecar at `address`, once its health says SERVING (its keys are in)."""
    with grpc.insecure_channel(address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        up = health_pb2.HealthCheckResponse.SERVING
        until(lambda: health.Check(health_pb2.HealthCheckRequest()).status == up)
        yield lambda token: auth.Validate(auth_pb2.ValidateRequest(token=token), timeout=10)


def test_tokens_of_a_real_provider_and_its_key_rotation(
    provider: Provider, sidecar_factory: StartSidecar
) -> None:
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "RS256",
            "AUTH_JWT_OIDC_ISSUER": provider.issuer,
            "AUTH_JWT_AUD": provider.resource,
            "SIDECAR_JWKS_REFRESH_SECONDS": "2",
            "SIDECAR_JWKS_MIN_REFRESH_SECONDS": "1",
        }
    )
    with serving(sidecar.address) as validate:
        first = provider.access_token()
        header = jwt.get_unverified_header(first)
        assert header["typ"] == "at+jwt"
        response = validate(first)
        assert response.valid, response.message
        assert response.user_id == provider.client_id
        assert response.claims["iss"] == provider.issuer
        assert response.claims["aud"] == provider.resource

        # The provider publishes a new key and signs with it; the old one is still published.
        provider.command("rotate")
        second = provider.access_token()
        assert jwt.get_unverified_header(second)["kid"] != header["kid"]
        until(lambda: validate(second).valid)  # an unknown kid refetches, rate-limited
        assert validate(first).valid

        # The provider retires the old key: its tokens stop verifying at the next refresh.
        provider.command("retire")
        until(lambda: validate(first).reason == auth_pb2.REASON_BAD_SIGNATURE)
        assert validate(second).valid
        assert validate(provider.access_token()).valid
    sidecar.terminate()
    assert sidecar.process.returncode == 0


ROUTES = """
[[routes]]
name = "sync"
path_prefix = "/v1/shape"
scopes_any = ["api"]

[[routes]]
name = "admin"
path_prefix = "/admin"
scopes_all = ["api", "admin"]
"""


def test_routes_read_the_providers_scope_claim(
    provider: Provider, sidecar_factory: StartSidecar, tmp_path: Path
) -> None:
    routes = tmp_path / "sidecar.toml"
    routes.write_text(ROUTES)
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "RS256",
            "AUTH_JWT_OIDC_ISSUER": provider.issuer,
            "AUTH_JWT_AUD": provider.resource,
            "SIDECAR_CONFIG_FILE": str(routes),
        }
    )
    token = provider.access_token()
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "api"
    with grpc.insecure_channel(sidecar.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        auth = auth_pb2_grpc.AuthServiceStub(channel)

        def on(path: str) -> auth_pb2.ValidateResponse:
            request = auth_pb2.HttpRequest(method="GET", path=path, host="app")
            return auth.Validate(auth_pb2.ValidateRequest(token=token, request=request), timeout=10)

        serving = health_pb2.HealthCheckResponse.SERVING
        until(lambda: health.Check(health_pb2.HealthCheckRequest()).status == serving)
        allowed = on("/v1/shape?table=items")
        assert (allowed.valid, allowed.user_id) == (True, provider.client_id)
        refused = on("/admin/users")
        assert (refused.valid, refused.reason) == (False, auth_pb2.REASON_FORBIDDEN)
        assert refused.message == 'route "admin" requires scope "admin"'


@pytest.mark.parametrize("alg", ["PS256", "EdDSA", "Ed25519"])
def test_a_provider_signing_with_pss_or_eddsa(alg: str, sidecar_factory: StartSidecar) -> None:
    with _provider(alg) as signing:
        sidecar = sidecar_factory(
            {
                "AUTH_MODE": "secure",
                "AUTH_JWT_ALG": alg,
                "AUTH_JWT_OIDC_ISSUER": signing.issuer,
                "AUTH_JWT_AUD": signing.resource,
                "SIDECAR_JWT_TYP": "at+jwt",
            }
        )
        with serving(sidecar.address) as validate:
            token = signing.access_token()
            assert jwt.get_unverified_header(token)["alg"] == alg
            response = validate(token)
            assert response.valid, response.message
            assert response.user_id == signing.client_id
            header, payload, signature = token.split(".")
            refused = validate(f"{header}.{payload}.{signature[:-4]}AAAA")
            assert refused.reason == auth_pb2.REASON_BAD_SIGNATURE
        sidecar.terminate()


@pytest.mark.parametrize("discovered", [False, True], ids=["url", "discovery"])
def test_opaque_tokens_through_the_providers_introspection(
    provider: Provider, sidecar_factory: StartSidecar, discovered: bool
) -> None:
    """With SIDECAR_INTROSPECTION_URL, or with none: discovery's introspection_endpoint."""
    client_id, secret = provider.introspector
    url = (
        {}
        if discovered
        else {"SIDECAR_INTROSPECTION_URL": provider.issuer + "/token/introspection"}
    )
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "RS256",
            "AUTH_JWT_OIDC_ISSUER": provider.issuer,
            "AUTH_JWT_AUD": provider.opaque_resource,
            **url,
            "SIDECAR_INTROSPECTION_CLIENT_ID": client_id,
            "SIDECAR_INTROSPECTION_CLIENT_SECRET": secret,
            "SIDECAR_INTROSPECTION_CACHE_SECONDS": "1",
            "SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0",
        }
    )
    api_port = int(http_api_address(sidecar.logged(" http_api=")).rpartition(":")[2])
    with serving(sidecar.address) as validate:
        token = provider.access_token(provider.opaque_resource)
        assert "." not in token  # opaque, not a JWT
        response = validate(token)
        assert response.valid, response.message
        assert response.user_id == provider.client_id  # client credentials: the client
        assert response.claims["aud"] == provider.opaque_resource
        assert response.claims["scope"] == "api"
        status, headers, _ = send(api_port, "/auth/v1/shape", {"authorization": f"Bearer {token}"})
        assert (status, headers["x-user-id"]) == (200, provider.client_id)

        # Revoked before the sidecar saw it: refused on its first use.
        unseen = provider.access_token(provider.opaque_resource)
        provider.revoke(unseen)
        refused = validate(unseen)
        assert (refused.valid, refused.reason) == (False, auth_pb2.REASON_INACTIVE)
        assert refused.message == "Token is not active"
        status, _, body = send(api_port, "/auth/v1/shape", {"authorization": f"Bearer {unseen}"})
        assert (status, json.loads(body)["reason"]) == (401, "REASON_INACTIVE")
        # Revoked after: refused once its kept answer (SIDECAR_INTROSPECTION_CACHE_SECONDS) ends.
        provider.revoke(token)
        until(lambda: validate(token).reason == auth_pb2.REASON_INACTIVE)
        made_up = validate("not-a-token-the-provider-issued")
        assert made_up.reason == auth_pb2.REASON_INACTIVE
    sidecar.terminate()
    assert sidecar.process.returncode == 0


def test_every_token_with_a_provider_that_cannot_introspect_jwts(
    provider: Provider, sidecar_factory: StartSidecar
) -> None:
    """oidc-provider refuses to introspect its JWT access tokens (RFC 7662's
    `unsupported_token_type`): with SIDECAR_INTROSPECTION_EVERY_TOKEN its JWTs get no decision,
    UNAVAILABLE with that code, rather than a pass without the check."""
    client_id, secret = provider.introspector
    sidecar = sidecar_factory(
        {
            "AUTH_MODE": "secure",
            "AUTH_JWT_ALG": "RS256",
            "AUTH_JWT_OIDC_ISSUER": provider.issuer,
            "AUTH_JWT_AUD": provider.resource,
            "SIDECAR_INTROSPECTION_URL": provider.issuer + "/token/introspection",
            "SIDECAR_INTROSPECTION_CLIENT_ID": client_id,
            "SIDECAR_INTROSPECTION_CLIENT_SECRET": secret,
            "SIDECAR_INTROSPECTION_EVERY_TOKEN": "true",
        }
    )
    with serving(sidecar.address) as validate:
        with pytest.raises(grpc.RpcError) as raised:
            validate(provider.access_token())
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "answered HTTP 400 (unsupported_token_type)" in str(raised.value.details())
    sidecar.terminate()
    assert sidecar.process.returncode == 0
