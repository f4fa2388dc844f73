"""Introspection (RFC 7662) over real HTTP: the decider, the fetch and the cache, against an
endpoint in a thread of this process; and through Check and forward auth in process.

The endpoint checks `client_secret_basic`, counts calls and answers from a table; `gate` holds
every call until a test releases it (no sleeps), so that concurrent requests can be seen to share
one call. The clocks of the cache and the rate limit are injected.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from support import HS_SECRET, sign

from authsidecar.v1 import auth_pb2
from sidecar import config
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.core.errors import ConfigError, IntrospectionNeeded, KeysUnavailable, Reason
from sidecar.core.introspection import AnswerCache, CacheSettings
from sidecar.keys.introspect import (
    IntrospectingDecider,
    IntrospectionSettings,
    Introspector,
    RateLimit,
    UrllibPost,
)
from sidecar.runtime import server

CLIENT_ID, SECRET = "sidecar", "introspection-secret-0123456789"
ISS = "https://idp.example"
OPAQUE = "ory_at_a1b2c3.d4e5f6"  # Hydra's shape: two segments, no JSON header
NOW = 1_800_000_000.0


class Endpoint:
    """A real RFC 7662 endpoint on 127.0.0.1."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.status = 200
        self.raw: bytes | None = None
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Semaphore(0)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.endpoint = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        endpoint: Endpoint = self.server.endpoint  # type: ignore[attr-defined]
        length = int(self.headers["Content-Length"])
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        if self.headers["Authorization"] != expected:
            self._send(401, b'{"error":"invalid_client"}')
            return
        token = form["token"][0]
        endpoint.calls.append(token)
        endpoint.waiting.release()
        endpoint.gate.wait(30)
        body = endpoint.raw or json.dumps(endpoint.answers.get(token, {"active": False})).encode()
        self._send(endpoint.status, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    served = Endpoint()
    yield served
    served.close()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


ENV = {
    "AUTH_JWT_ALG": "HS256",
    "AUTH_JWT_KEY": HS_SECRET,
    "AUTH_JWT_ISS": ISS,
    "SIDECAR_INTROSPECTION_CLIENT_ID": CLIENT_ID,
    "SIDECAR_INTROSPECTION_CLIENT_SECRET": SECRET,
}


def build(
    endpoint: Endpoint,
    clock: Callable[[], float],
    rate: float = 100,
    timeout: float = 5,
    secret: str = SECRET,
    size: int = 100,
) -> tuple[IntrospectingDecider, Introspector, AnswerCache]:
    cfg = config.load({**ENV, "SIDECAR_INTROSPECTION_URL": endpoint.url})
    settings = IntrospectionSettings(endpoint.url, CLIENT_ID, secret, timeout=timeout)
    cache = AnswerCache(CacheSettings(ttl=60, negative=5, size=size), clock)
    introspector = Introspector(UrllibPost(settings), cache, RateLimit(rate, clock))
    inner = config.build_validator(cfg, clock)
    return IntrospectingDecider(inner, introspector, cache, cfg.policy, clock), introspector, cache


def active(user: str, **members: Any) -> dict[str, Any]:
    return {"active": True, "sub": user, "iss": ISS, "exp": int(NOW) + 300, **members}


async def decide(decider: IntrospectingDecider, token: str) -> Any:
    """What an adapter does: decide, and on a miss fetch the answer and decide again."""
    try:
        return decider.decide(token)
    except IntrospectionNeeded as needed:
        await needed.fetch()
    return decider.decide(token)


def test_an_opaque_token_is_decided_by_the_endpoint_once(endpoint: Endpoint) -> None:
    endpoint.answers[OPAQUE] = active("alice", scope="sync")
    decider, introspector, cache = build(endpoint, Clock())
    with pytest.raises(IntrospectionNeeded):
        decider.decide(OPAQUE)
    decision = asyncio.run(decide(decider, OPAQUE))
    assert (decision.valid, decision.user_id, decision.claims["scope"]) == (True, "alice", "sync")
    assert "active" not in decision.claims
    for _ in range(99):
        assert decider.decide(OPAQUE).user_id == "alice"
    assert endpoint.calls == [OPAQUE]
    assert introspector.calls == 1
    assert (cache.hits, cache.misses) == (100, 2)  # the decision after the fetch is a hit


def test_an_inactive_token_is_refused_and_kept_briefly(endpoint: Endpoint) -> None:
    clock = Clock()
    decider, introspector, _ = build(endpoint, clock)
    decision = asyncio.run(decide(decider, "revoked-token"))
    assert (decision.valid, decision.reason, decision.message) == (
        False,
        Reason.INACTIVE,
        "Token is not active",
    )
    assert decider.decide("revoked-token").reason is Reason.INACTIVE  # from the negative cache
    clock.now += 5
    with pytest.raises(IntrospectionNeeded):
        decider.decide("revoked-token")
    assert introspector.calls == 1


def test_jwts_and_jwt_shaped_garbage_never_reach_the_endpoint(endpoint: Endpoint) -> None:
    decider, _, _ = build(endpoint, Clock())
    token = sign("HS256", {"sub": "alice", "iss": ISS, "iat": int(NOW), "exp": int(NOW) + 60})
    assert decider.decide(token).user_id == "alice"
    header = token.partition(".")[0]
    for malformed in (f"{header}.!!!.x", f"{header}.e30.%", "", " ", "e30.e30.e30.e30"):
        assert decider.decide(malformed).reason is Reason.MALFORMED
    assert decider.decide(f"{header}.e30").reason is Reason.BAD_SIGNATURE  # unsigned
    assert decider.decide(token[:-2] + "AA").reason is Reason.BAD_SIGNATURE
    assert endpoint.calls == []


def test_concurrent_requests_for_one_token_make_one_call(endpoint: Endpoint) -> None:
    endpoint.answers[OPAQUE] = active("alice")
    endpoint.gate.clear()
    decider, introspector, _ = build(endpoint, Clock())

    async def many() -> list[Any]:
        waiting = [asyncio.ensure_future(decide(decider, OPAQUE)) for _ in range(20)]
        await asyncio.to_thread(endpoint.waiting.acquire)  # the one call has arrived
        endpoint.gate.set()
        return await asyncio.gather(*waiting)

    decisions = asyncio.run(many())
    assert {d.user_id for d in decisions} == {"alice"}
    assert introspector.calls == 1
    assert endpoint.calls == [OPAQUE]


def test_the_rate_limit_fails_closed(endpoint: Endpoint) -> None:
    clock = Clock()
    decider, introspector, _ = build(endpoint, clock, rate=2)
    asyncio.run(decide(decider, "one"))
    asyncio.run(decide(decider, "two"))
    with pytest.raises(KeysUnavailable, match="rate limit"):
        asyncio.run(decide(decider, "three"))
    clock.now += 0.5  # half a second refills one call
    assert asyncio.run(decide(decider, "three")).reason is Reason.INACTIVE
    assert introspector.calls == 3


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (500, None, "answered HTTP 500"),
        (200, b"<html>", "did not answer RFC 7662 JSON"),
        (200, b'{"active": "yes"}', "did not answer RFC 7662 JSON"),
        (200, b'{"active": true, "exp": NaN}', "did not answer RFC 7662 JSON"),
        (200, b'{"active": true, "x": ' + b"[" * 40 + b"]" * 40 + b"}", "did not answer"),
        (204, b"", "answered HTTP 204"),
        (200, b'{"active": true}' + b" " * 70000, "more than allowed"),
    ],
)
def test_a_bad_answer_is_unavailable(
    endpoint: Endpoint, status: int, raw: bytes | None, expected: str
) -> None:
    endpoint.status, endpoint.raw = status, raw
    decider, _, cache = build(endpoint, Clock())
    with pytest.raises(KeysUnavailable, match=expected):
        asyncio.run(decide(decider, OPAQUE))
    assert len(cache) == 0


def test_wrong_credentials_and_a_dead_endpoint_are_unavailable(endpoint: Endpoint) -> None:
    decider, _, _ = build(endpoint, Clock(), secret="wrong-secret")
    with pytest.raises(KeysUnavailable, match=r"answered HTTP 401 \(invalid_client\)"):
        asyncio.run(decide(decider, OPAQUE))
    url = endpoint.url
    endpoint.close()
    dead = IntrospectionSettings(url, CLIENT_ID, SECRET)
    cache = AnswerCache(CacheSettings(ttl=60, negative=5, size=10), Clock())
    introspector = Introspector(UrllibPost(dead), cache, RateLimit(10, Clock()))
    with pytest.raises(KeysUnavailable, match="cannot reach introspection"):
        asyncio.run(introspector.fetch(OPAQUE))


def test_a_slow_endpoint_times_out(endpoint: Endpoint) -> None:
    endpoint.gate.clear()
    decider, _, _ = build(endpoint, Clock(), timeout=1)
    with pytest.raises(KeysUnavailable, match="cannot reach introspection"):
        asyncio.run(decide(decider, OPAQUE))


def test_no_token_or_secret_is_logged(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint.status = 500
    decider, _, _ = build(endpoint, Clock())
    with pytest.raises(KeysUnavailable) as raised:
        asyncio.run(decide(decider, OPAQUE))
    text = caplog.text + str(raised.value)
    assert OPAQUE not in text
    assert SECRET not in text


def test_config_needs_all_three_and_a_safe_url() -> None:
    with pytest.raises(ConfigError) as raised:
        config.load(
            {**ENV, "SIDECAR_INTROSPECTION_CLIENT_SECRET": ""}
            | {"SIDECAR_INTROSPECTION_URL": "http://idp.example/introspect"}
        )
    assert raised.value.problems == [
        "SIDECAR_INTROSPECTION_URL: is http:// to idp.example, which is not a loopback host; "
        "use https:// (or set SIDECAR_JWKS_ALLOW_HTTP=true)",
        "SIDECAR_INTROSPECTION_CLIENT_SECRET: is needed with SIDECAR_INTROSPECTION_URL",
    ]
    with pytest.raises(ConfigError) as raised:
        config.load({**ENV})
    assert raised.value.problems == [
        "SIDECAR_INTROSPECTION_CLIENT_ID: is set, but SIDECAR_INTROSPECTION_URL is not",
        "SIDECAR_INTROSPECTION_CLIENT_SECRET: is set, but SIDECAR_INTROSPECTION_URL is not",
    ]
    assert "secret" not in repr(config.load({**ENV, "SIDECAR_INTROSPECTION_URL": "https://x/i"}))


def test_check_introspects_and_fails_closed(endpoint: Endpoint) -> None:
    """Envoy's Check, called directly: an opaque token's user goes upstream, a revoked one is
    denied 401, and with the endpoint failing Check is an RPC error (Envoy fails closed)."""
    endpoint.answers[OPAQUE] = active("alice")
    decider, _, _ = build(endpoint, Clock())
    cfg = config.load({**ENV, "SIDECAR_INTROSPECTION_URL": endpoint.url})
    check = EnvoyAuthorization(decider, cfg.envoy)

    def asked(token: str) -> external_auth_pb2.CheckRequest:
        message = external_auth_pb2.CheckRequest()
        message.attributes.request.http.method = "GET"
        message.attributes.request.http.path = "/v1/shape?table=items"
        message.attributes.request.http.headers["authorization"] = f"Bearer {token}"
        return message

    allowed = asyncio.run(check.Check(asked(OPAQUE), None))  # type: ignore[arg-type]
    headers = {o.header.key: o.header.value for o in allowed.ok_response.headers}
    assert headers["x-user-id"] == "alice"
    denied = asyncio.run(check.Check(asked("revoked-token"), None))  # type: ignore[arg-type]
    assert denied.denied_response.status.code == 401
    assert json.loads(denied.denied_response.body)["reason"] == "REASON_INACTIVE"
    endpoint.status = 500

    class Aborted(Exception):
        pass

    class Context:
        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise Aborted(code, details)

    with pytest.raises(Aborted) as raised:
        asyncio.run(check.Check(asked("another-token"), Context()))  # type: ignore[arg-type]
    assert raised.value.args[0] is grpc.StatusCode.UNAVAILABLE


def issuers_file(tmp_path: Path, *tables: str) -> str:
    path = tmp_path / "issuers.toml"
    path.write_text("".join(f"[[issuers]]\n{t}\n" for t in tables))
    return str(path)


def table(iss: str, extra: str = "") -> str:
    return f'iss = "{iss}"\nalg = "HS256"\nkey = "{HS_SECRET}"\n{extra}'


INTROSPECTED = (
    f'introspection_url = "{{url}}"\nintrospection_client_id = "{CLIENT_ID}"\n'
    f'introspection_client_secret = "{SECRET}"\n'
)
NO_ISSUER_ENV = {k: v for k, v in ENV.items() if not k.startswith(("AUTH_", "SIDECAR_INTRO"))}


def test_one_issuer_introspects_with_its_own_rules(endpoint: Endpoint, tmp_path: Path) -> None:
    """Opaque tokens go to the one issuer with `introspection_url`; its `iss` is required."""
    other = "https://other.example"
    path = issuers_file(tmp_path, table(other), table(ISS, INTROSPECTED.format(url=endpoint.url)))
    cfg = config.load({**NO_ISSUER_ENV, "SIDECAR_CONFIG_FILE": path})
    auth, _ = server.assemble(cfg)
    endpoint.answers[OPAQUE] = active("alice")
    endpoint.answers["from-other"] = active("mallory", iss=other)

    def validate(token: str) -> Any:
        request = auth_pb2.ValidateRequest(token=token)
        return asyncio.run(auth.Validate(request, None))  # type: ignore[arg-type]

    assert (validate(OPAQUE).valid, validate(OPAQUE).user_id) == (True, "alice")
    refused = validate("from-other")
    assert (refused.reason, refused.message) == (
        auth_pb2.REASON_INVALID_CLAIM,
        f'Invalid "iss" claim value: "{other}"',
    )


def test_introspection_is_for_one_issuer(tmp_path: Path) -> None:
    introspected = INTROSPECTED.format(url="https://idp.example/introspect")
    path = issuers_file(
        tmp_path, table(ISS, introspected), table("https://other.example", introspected)
    )
    with pytest.raises(ConfigError) as raised:
        config.load({**NO_ISSUER_ENV, "SIDECAR_CONFIG_FILE": path})
    assert raised.value.problems == [
        f"SIDECAR_CONFIG_FILE: issuers '{ISS}' and 'https://other.example' both have "
        "introspection_url; an opaque token names no issuer, so only one may"
    ]
    single = issuers_file(tmp_path, table(ISS))
    with pytest.raises(ConfigError) as raised:
        config.load(
            {
                **NO_ISSUER_ENV,
                "SIDECAR_CONFIG_FILE": single,
                "SIDECAR_INTROSPECTION_URL": "https://x",
            }
        )
    assert raised.value.problems == [
        "SIDECAR_INTROSPECTION_URL: is set together with SIDECAR_CONFIG_FILE; "
        "set it in an [[issuers]] table instead"
    ]


def test_every_token_introspects_valid_jwts_of_the_issuer(endpoint: Endpoint) -> None:
    clock = Clock()
    decider, introspector, cache = build(endpoint, clock)
    cfg = config.load({**ENV, "SIDECAR_INTROSPECTION_URL": endpoint.url})
    inner = config.build_validator(cfg, clock)
    every = IntrospectingDecider(inner, introspector, cache, cfg.policy, clock, every_token=True)
    claims = {"sub": "alice", "iss": ISS, "iat": int(NOW), "exp": int(NOW) + 60}
    live, revoked = sign("HS256", claims), sign("HS256", {**claims, "jti": "2"})
    endpoint.answers[live] = active("alice")
    assert asyncio.run(decide(every, live)).user_id == "alice"
    refused = asyncio.run(decide(every, revoked))
    assert (refused.valid, refused.reason) == (False, Reason.INACTIVE)
    # A JWT that fails its own checks costs no call; the plain decider never asks for JWTs.
    assert every.decide(live[:-2] + "AA").reason is Reason.BAD_SIGNATURE
    assert decider.decide(revoked).valid
    assert endpoint.calls == [live, revoked]


def test_every_token_is_a_toml_boolean_per_issuer(tmp_path: Path) -> None:
    extra = INTROSPECTED.format(url="https://idp.example/i") + "introspection_every_token = true\n"
    cfg = config.load(
        {**NO_ISSUER_ENV, "SIDECAR_CONFIG_FILE": issuers_file(tmp_path, table(ISS, extra))}
    )
    (issuer,) = cfg.issuers
    assert issuer.introspection is not None and issuer.introspection.every_token
    with pytest.raises(ConfigError) as raised:
        config.load(
            {
                **NO_ISSUER_ENV,
                "AUTH_JWT_ALG": "HS256",
                "AUTH_JWT_KEY": HS_SECRET,
                "SIDECAR_INTROSPECTION_EVERY_TOKEN": "true",
            }
        )
    assert raised.value.problems == [
        "SIDECAR_INTROSPECTION_EVERY_TOKEN: is true, but SIDECAR_INTROSPECTION_URL is not set"
    ]


def test_with_oidc_discovery_the_client_alone_introspects() -> None:
    env = {
        **{k: v for k, v in ENV.items() if k != "AUTH_JWT_KEY"},
        "AUTH_JWT_ALG": "RS256",
        "AUTH_JWT_OIDC_ISSUER": "https://idp.example",
    }
    settings = config.load(env).introspection
    assert settings is not None and settings.url is None
    # Until discovery names an endpoint, there is no call to make: UNAVAILABLE.
    cache = AnswerCache(CacheSettings(ttl=60, negative=5, size=10), Clock())
    introspector = Introspector(UrllibPost(settings, lambda: None), cache, RateLimit(10, Clock()))
    with pytest.raises(KeysUnavailable, match="no introspection endpoint yet"):
        asyncio.run(introspector.fetch(OPAQUE))
