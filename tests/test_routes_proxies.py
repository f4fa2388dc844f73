"""Routes through real proxies: Envoy asking Check over gRPC (examples/envoy/envoy.yaml), Envoy's
`http_service`, nginx's `auth_request`, Caddy's `forward_auth` and Traefik's `forwardAuth`
(examples/forward-auth/) in front of the upstream echo, with one real sidecar process and one file
of routes.

Scopes, roles, a CEL rule on the method, an anonymous route, dry-run, the cookie and the claim
headers: what reached upstream is what the echo answers; whether anything reached it, its count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from proxies import (
    BINARIES,
    answering,
    binary,
    http_api_address,
    send,
    start_caddy_example,
    start_envoy_example,
    start_nginx_example,
    start_traefik_example,
    stop,
)
from support import (
    Envoy,
    Upstream,
    closed_port,
    example_envoy_config,
    running,
    short_tmp_dir,
    start_envoy,
    unsigned,
    warm_authz,
)

ROUTES = (Path(__file__).parent / "routes.toml").read_text()  # as tests/test_routes.py
ALICE = unsigned(
    {"user_id": "alice", "scope": "admin:write", "org_id": "acme", "realm_access": {"roles": []}}
)
BOB = unsigned({"user_id": "bob", "scp": ["sync"], "realm_access": {"roles": ["analyst"]}})
WRITER = unsigned({"user_id": "carol", "scp": ["sync", "sync:write"]})
KINDS = ("envoy-grpc", "envoy-http", "nginx", "caddy", "traefik")
STARTERS = {
    "nginx": start_nginx_example,
    "caddy": start_caddy_example,
    "traefik": start_traefik_example,
}


@pytest.fixture(scope="module", params=KINDS)
def proxy(
    request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Upstream, Envoy | None]]:
    """A proxy's port in front of the echo, and the Envoy when it is one."""
    kind = request.param
    if kind in BINARIES:
        binary(kind)
    routes = tmp_path_factory.mktemp("routes") / "sidecar.toml"
    routes.write_text(ROUTES)
    env = {
        "AUTH_MODE": "insecure",
        "SIDECAR_CONFIG_FILE": str(routes),
        "SIDECAR_TOKEN_COOKIE": "session",
        "SIDECAR_CLAIM_HEADERS": "org_id=x-org-id",
        "SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0",
        "SIDECAR_RELOAD_SECONDS": "0",
    }
    with ExitStack() as stack, short_tmp_dir() as directory:
        sidecar = stack.enter_context(running(env, measured=False))
        up = f"127.0.0.1:{upstream.port}"
        envoy: Envoy | None = None
        if kind == "envoy-grpc":
            config = example_envoy_config(upstream=up, sidecar=sidecar.address)
            envoy = start_envoy(config, directory, ("--concurrency", "1"))
            stack.callback(envoy.stop)
            warm_authz(envoy)
            port = envoy.port
        else:
            api = http_api_address(sidecar.logged(" http_api="))
            if kind == "envoy-http":
                port, envoy = start_envoy_example(directory, up, api)
                stack.callback(envoy.stop)
                process = envoy.process
            else:
                port = closed_port()
                process = STARTERS[kind](directory, port, up, api)
                stack.callback(stop, process)
            answering(port, process)
        yield port, upstream, envoy


def count(upstream: Upstream) -> int:
    return int(json.loads(send(upstream.port, "/count")[2])["seq"])


def headers_upstream(body: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        found.setdefault(name.lower(), []).append(value)
    return found


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **extra}


@pytest.mark.parametrize(
    ("path", "token", "method", "expected"),
    [
        ("/admin/users", ALICE, "GET", 200),
        ("/admin/users", BOB, "GET", 403),  # scope
        ("/reports/q1", BOB, "GET", 200),
        ("/reports/q1", ALICE, "GET", 403),  # role
        ("/v1/shape?table=items", BOB, "GET", 200),
        ("/v1/shape?table=items", BOB, "DELETE", 403),  # CEL on the method
        ("/v1/shape?table=items", WRITER, "DELETE", 200),
        ("/beta/x", BOB, "GET", 200),  # dry-run
    ],
)
def test_routes_decide_what_reaches_upstream(
    proxy: tuple[int, Upstream, Envoy | None], path: str, token: str, method: str, expected: int
) -> None:
    port, upstream, _ = proxy
    before = count(upstream)
    status, _, _ = send(port, path, bearer(token), method)
    assert status == expected
    reached = count(upstream) - before - 1  # the count request itself
    assert reached == (1 if expected == 200 else 0)


def test_an_anonymous_route_passes_without_a_user(
    proxy: tuple[int, Upstream, Envoy | None],
) -> None:
    port, _, _ = proxy
    status, _, body = send(port, "/health", {"x-user-id": "mallory", "x-org-id": "evil"})
    assert status == 200
    seen = headers_upstream(body)
    assert "x-user-id" not in seen
    assert "x-org-id" not in seen
    assert send(port, "/health", bearer("not-a-token"))[0] == 401
    assert send(port, "/admin")[0] == 401


def test_the_cookie_carries_the_token(proxy: tuple[int, Upstream, Envoy | None]) -> None:
    port, _, _ = proxy
    status, _, body = send(port, "/admin/users", {"cookie": f"theme=dark; session={ALICE}"})
    assert status == 200
    assert headers_upstream(body)["x-user-id"] == ["alice"]
    assert send(port, "/admin/users", {"cookie": f"session={BOB}"})[0] == 403


def test_claim_headers_replace_the_clients(proxy: tuple[int, Upstream, Envoy | None]) -> None:
    port, _, _ = proxy
    status, _, body = send(port, "/admin/users", bearer(ALICE, **{"x-org-id": "evil"}))
    assert status == 200
    assert headers_upstream(body)["x-org-id"] == ["acme"]
    # BOB's token has no org_id: the client's header is removed, not passed on.
    status, _, body = send(port, "/other", bearer(BOB, **{"x-org-id": "evil"}))
    assert status == 200
    assert "x-org-id" not in headers_upstream(body)


def test_a_route_refusal_is_insufficient_scope(
    request: pytest.FixtureRequest, proxy: tuple[int, Upstream, Envoy | None]
) -> None:
    if request.node.callspec.params["proxy"] == "nginx":
        pytest.skip("nginx's auth_request passes WWW-Authenticate on a 401 only")
    port, _, _ = proxy
    status, headers, body = send(port, "/admin/users", bearer(BOB))
    assert status == 403
    assert 'error="insufficient_scope"' in headers["www-authenticate"]
    assert 'scope="admin:write"' in headers["www-authenticate"]
    assert json.loads(body)["reason"] == "REASON_FORBIDDEN"


def test_checks_dynamic_metadata_reaches_envoys_access_log(
    request: pytest.FixtureRequest, proxy: tuple[int, Upstream, Envoy | None]
) -> None:
    if request.node.callspec.params["proxy"] != "envoy-grpc":
        pytest.skip("dynamic metadata is Check's (gRPC)")
    port, _, envoy = proxy
    assert envoy is not None
    assert send(port, "/admin/users?log=claims", bearer(ALICE))[0] == 200
    entry: dict[str, Any] = envoy.wait_for_access_log(
        lambda e: e["path"] == "/admin/users?log=claims"
    )
    assert entry["claims"] == {"org_id": "acme"}
    assert entry["user_id"] == "alice"
