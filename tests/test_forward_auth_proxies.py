"""End-to-end forward auth: real Envoy (`http_service`), nginx (`auth_request`), Caddy
(`forward_auth`) and Traefik (`ForwardAuth`) run the files in examples/forward-auth/ with only
their ports replaced, in front of the upstream echo, and ask a real sidecar process's HTTP API
about every request.

What reached upstream is what the echo answers; whether anything reached it is read from the
echo's request counter, asked directly before and after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from proxies import (
    BINARIES,
    ELECTRIC_SECRET,
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
    SHAPE_PATH_SPELLINGS,
    Upstream,
    closed_port,
    running,
    short_tmp_dir,
    unsigned,
)

# The proxies that add Electric's secret themselves; Envoy's is Check (tests/test_envoy.py).
ADDS_SECRET = ("nginx", "caddy")
# Spellings that a proxy refuses itself, with a 400, before it asks the sidecar: nginx will not
# go above the root.
REFUSED_BY_PROXY = {"nginx": {"/../v1/shape"}}
GOOD = unsigned({"user_id": "alice", "shape": {"table": "items"}})


def seq(upstream: Upstream) -> int:
    return int(json.loads(send(upstream.port, "/count")[2])["seq"])


STARTERS = {
    "nginx": start_nginx_example,
    "caddy": start_caddy_example,
    "traefik": start_traefik_example,
}


@pytest.fixture(scope="module", params=["envoy", "nginx", "caddy", "traefik"])
def proxy(request: pytest.FixtureRequest, upstream: Upstream) -> Iterator[tuple[int, Upstream]]:
    """The port of a proxy of each kind, in front of the upstream echo."""
    kind = request.param
    if kind in BINARIES:
        binary(kind)
    env = {"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"}
    env["SIDECAR_HTTP_API_LISTEN"] = "127.0.0.1:0"
    env["SIDECAR_ELECTRIC_SECRET"] = ELECTRIC_SECRET
    with ExitStack() as stack, short_tmp_dir() as directory:
        sidecar = stack.enter_context(running(env, measured=False))
        api = http_api_address(sidecar.logged(" http_api="))
        up = f"127.0.0.1:{upstream.port}"
        if kind == "envoy":
            port, envoy = start_envoy_example(directory, up, api)
            stack.callback(envoy.stop)
            process = envoy.process
        else:
            port = closed_port()
            process = STARTERS[kind](directory, port, up, api)
            stack.callback(stop, process)
        answering(port, process)
        yield port, upstream


def upstream_view(body: bytes) -> dict[str, Any]:
    echoed: dict[str, Any] = json.loads(body)
    echoed["header_map"] = {}
    for name, value in echoed["headers"]:
        echoed["header_map"].setdefault(name, []).append(value)
    return echoed


def test_allowed_requests_reach_upstream_as_the_user_whatever_the_client_claims(
    proxy: tuple[int, Upstream],
) -> None:
    port, _ = proxy
    status, _, body = send(
        port,
        "/v1/shape?table=items",
        {"authorization": f"Bearer {GOOD}", "x-user-id": "mallory"},
    )
    assert status == 200
    assert upstream_view(body)["header_map"]["x-user-id"] == ["alice"]


def test_refused_requests_never_reach_upstream(proxy: tuple[int, Upstream]) -> None:
    port, upstream = proxy
    before = seq(upstream)
    missing = send(port, "/v1/shape?table=items", {"x-user-id": "mallory"})
    bad = send(port, "/v1/shape?table=items", {"authorization": "Bearer nope"})
    assert missing[0] == 401
    assert missing[1]["www-authenticate"] == 'Bearer realm="auth-sidecar"'
    assert bad[0] == 401
    assert 'error="invalid_token"' in bad[1]["www-authenticate"]
    assert seq(upstream) == before + 1  # only the count request itself


@pytest.mark.parametrize("path", SHAPE_PATH_SPELLINGS)
def test_every_spelling_of_the_shape_path_gets_the_shape_check(
    request: pytest.FixtureRequest, proxy: tuple[int, Upstream], path: str
) -> None:
    port, upstream = proxy
    auth = {"authorization": f"Bearer {GOOD}"}
    served = path not in REFUSED_BY_PROXY.get(_kind(request), ())
    before = seq(upstream)
    assert send(port, f"{path}?table=other", auth)[0] == (403 if served else 400)
    assert seq(upstream) == before + 1
    assert send(port, f"{path}?table=items", auth)[0] == (200 if served else 400)


def _kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.node.callspec.params["proxy"]
    return kind


def test_a_client_cannot_name_another_request_in_forwarding_headers(
    proxy: tuple[int, Upstream],
) -> None:
    port, _ = proxy
    spoof = {
        "authorization": f"Bearer {GOOD}",
        "x-forwarded-uri": "/v1/shape?table=items",
        "x-forwarded-method": "GET",
        "x-original-uri": "/v1/shape?table=items",
    }
    assert send(port, "/v1/shape?table=other", spoof)[0] == 403


def test_a_preflight_passes_without_a_user(proxy: tuple[int, Upstream]) -> None:
    port, _ = proxy
    status, _, body = send(
        port,
        "/v1/shape?table=items",
        {
            "origin": "https://app.example",
            "access-control-request-method": "GET",
            "x-user-id": "mallory",
        },
        method="OPTIONS",
    )
    assert status == 200
    assert "x-user-id" not in upstream_view(body)["header_map"]


def test_the_proxy_adds_electric_secret_on_every_spelling_of_the_shape_path(
    request: pytest.FixtureRequest, proxy: tuple[int, Upstream]
) -> None:
    port, _ = proxy
    auth = {"authorization": f"Bearer {GOOD}"}
    adds = _kind(request) in ADDS_SECRET
    for path in set(SHAPE_PATH_SPELLINGS) - REFUSED_BY_PROXY.get(_kind(request), set()):
        status, headers, body = send(port, f"{path}?table=items", auth)
        assert status == 200, path
        query = parse_qs(urlsplit(upstream_view(body)["path"]).query)
        assert query.get("secret") == ([ELECTRIC_SECRET] if adds else None), path
        assert ELECTRIC_SECRET not in json.dumps(headers)
    status, _, body = send(port, "/v1/health?x=1", auth)
    assert status == 200
    assert ELECTRIC_SECRET not in body.decode()


@pytest.mark.parametrize("name", ["secret", "api_secret", "%73ecret"])
def test_a_client_sent_secret_on_the_shape_path_is_refused(
    proxy: tuple[int, Upstream], name: str
) -> None:
    """The proxies cannot remove it, so the sidecar refuses it: never two secrets upstream."""
    port, upstream = proxy
    before = seq(upstream)
    auth = {"authorization": f"Bearer {GOOD}"}
    assert send(port, f"/v1/shape?table=items&{name}=mine", auth)[0] == 403
    assert seq(upstream) == before + 1


def test_nginx_keeps_allows_for_their_max_age_and_never_refusals(upstream: Upstream) -> None:
    """With SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS, the example's proxy_cache answers a repeated
    allowed request itself: it still passes once the sidecar is gone. A refusal, and any other
    request, still needs the sidecar (nginx fails closed: 500)."""
    binary("nginx")
    env = {"AUTH_MODE": "insecure", "SIDECAR_HTTP_API_LISTEN": "127.0.0.1:0"}
    env["SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS"] = "300"
    auth = {"authorization": f"Bearer {unsigned({'user_id': 'alice'})}"}
    with ExitStack() as stack, short_tmp_dir() as directory:
        sidecar = stack.enter_context(running(env, measured=False))
        api = http_api_address(sidecar.logged(" http_api="))
        port = closed_port()
        process = start_nginx_example(directory, port, f"127.0.0.1:{upstream.port}", api)
        stack.callback(stop, process)
        answering(port, process)
        assert send(port, "/v1/items", auth)[0] == 200
        assert send(port, "/v1/items")[0] == 401
        sidecar.terminate()
        status, _, body = send(port, "/v1/items", auth)
        assert status == 200
        assert upstream_view(body)["header_map"]["x-user-id"] == ["alice"]
        assert send(port, "/v1/items")[0] == 500
        assert send(port, "/v1/other", auth)[0] == 500
