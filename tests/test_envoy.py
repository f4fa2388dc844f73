"""End-to-end: a real Envoy runs examples/envoy/envoy.yaml in front of an upstream echo, and asks
a real sidecar process about every request over ext_authz.

Three processes per stack, all on ports they picked themselves (port 0): the sidecar, the echo
(tests/upstream_echo.py, shared by the module) and Envoy, started with the example file itself,
only its addresses replaced. Every request is plain HTTP/1.1 from http.client into Envoy. What
reached upstream is what the echo answers; whether a request reached upstream at all is read from
the echo's request counter, asked directly before and after.

Stacks are shared per module and per configuration: "base" has the extra token header, the query
parameter and the claims header switched on; "strict" strips the token, refuses preflights and
renames the user header and the realm. Tests that stop a sidecar start their own.

The sidecars here run without coverage (`measured=False`): the example gives Check 0.25 s, and
tracing a cold sidecar on a busy machine could spend it.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwks_server import jwks_server
from support import (
    SHAPE_PATH_SPELLINGS,
    Envoy,
    Upstream,
    blackhole,
    example_envoy_config,
    key_pair,
    public_jwk,
    running,
    secure_env,
    short_tmp_dir,
    sign,
    start_envoy,
    unsigned,
    warm_authz,
)

MODES = ("insecure", "HS256", "RS256", "ES256")
SECURE_MODES = MODES[1:]
BASE = {
    "SIDECAR_ENVOY_TOKEN_HEADER": "x-electric-token",
    "SIDECAR_ENVOY_TOKEN_PARAM": "token",
    "SIDECAR_ENVOY_CLAIMS_HEADER": "x-auth-claims",
}
STRICT = {
    "SIDECAR_ENVOY_TOKEN_HEADER": "x-electric-token",
    "SIDECAR_ENVOY_STRIP_TOKEN": "true",
    "SIDECAR_ENVOY_ALLOW_PREFLIGHT": "false",
    "SIDECAR_ENVOY_USER_HEADER": "x-electric-user",
    "SIDECAR_ENVOY_REALM": "sync",
}
# Electric's proxy-auth pattern: the shape check and the API secret that only the sidecar sets.
ELECTRIC_SECRET = "s3cret-for-electric-0123456789"
ELECTRIC = {"SIDECAR_SHAPE_CLAIM": "shape", "SIDECAR_ELECTRIC_SECRET": ELECTRIC_SECRET}
# Tests only: access-log lines reach stdout within 20 ms instead of Envoy's default second.
ENVOY_ARGS = ("--concurrency", "1", "--file-flush-interval-msec", "20")
SHAPE = "/v1/shape?table=items&offset=-1"
HEALTH = "/v1/health"  # the example's bypass route
PREFLIGHT = {"origin": "https://app.example", "access-control-request-method": "GET"}
MISSING_BODY = {"error": "missing_token", "message": "Missing bearer token"}


# -- HTTP through Envoy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Seen:
    """What the upstream echo received."""

    method: str
    path: str
    headers: dict[str, list[str]]

    @property
    def query(self) -> list[tuple[str, str]]:
        return sorted(parse_qsl(self.path.partition("?")[2], keep_blank_values=True))


def send(
    port: int, path: str, headers: Sequence[tuple[str, str]] = (), method: str = "GET"
) -> Reply:
    """One request on a fresh connection; `headers` may repeat a name."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return Reply(
            response.status, [(k.lower(), v) for k, v in response.getheaders()], response.read()
        )
    finally:
        connection.close()


def seen(reply: Reply) -> Seen:
    """The echo's account of the request; fails unless the request did reach upstream."""
    assert reply.status == 200, (reply.status, reply.body)
    echo = reply.json()
    headers: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        headers.setdefault(name, []).append(value)
    return Seen(echo["method"], echo["path"], headers)


def bearer(token: str, scheme: str = "Bearer") -> tuple[str, str]:
    return ("authorization", f"{scheme} {token}")


def claims(user: str = "alice", ttl: int = 600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + ttl, **extra}


# -- the processes --------------------------------------------------------------------------------


@dataclass
class Stack:
    """A sidecar in `mode` with the Envoy example in front of it, and the shared upstream."""

    mode: str
    envoy: Envoy
    upstream: Upstream

    def token(self, body: Mapping[str, Any]) -> str:
        """A token this sidecar accepts, as far as its signature goes."""
        return unsigned(body) if self.mode == "insecure" else sign(self.mode, body)

    def send(
        self, path: str, headers: Sequence[tuple[str, str]] = (), method: str = "GET"
    ) -> Reply:
        return send(self.envoy.port, path, headers, method)

    def refused(
        self, path: str, headers: Sequence[tuple[str, str]] = (), method: str = "GET"
    ) -> Reply:
        """Sends a request that must not reach upstream, and checks that it did not."""
        before = send_count(self.upstream)
        reply = self.send(path, headers, method)
        after = send_count(self.upstream)
        assert after == before + 1, f"the request reached upstream: {reply.status} {reply.body!r}"
        return reply


def send_count(upstream: Upstream) -> int:
    """The echo's request count, this question included; asked directly, not through Envoy."""
    count: int = send(upstream.port, "/count").json()["seq"]
    return count


def sidecar_env(mode: str, extra: Mapping[str, str]) -> dict[str, str]:
    if mode == "insecure":
        return {"AUTH_MODE": "insecure", **extra}
    return secure_env(mode, **extra)


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    with short_tmp_dir() as directory:
        yield directory


@pytest.fixture(scope="module")
def stacks(upstream: Upstream, workdir: str) -> Iterator[Callable[[str, str], Stack]]:
    """`stacks(kind, mode)`: the shared stack for a configuration, started on first use."""
    started: dict[tuple[str, str], Stack] = {}
    processes: list[subprocess.Popen[str]] = []
    with ExitStack() as cleanup:

        def get(kind: str, mode: str) -> Stack:
            if (kind, mode) not in started:
                extra = {"base": BASE, "strict": STRICT, "electric": ELECTRIC}[kind]
                sidecar = cleanup.enter_context(running(sidecar_env(mode, extra), measured=False))
                config = example_envoy_config(
                    upstream=f"127.0.0.1:{upstream.port}", sidecar=sidecar.address
                )
                envoy = start_envoy(config, workdir, ENVOY_ARGS)
                cleanup.callback(envoy.stop)
                warm_authz(envoy)
                processes.extend((sidecar.process, envoy.process))
                started[kind, mode] = Stack(mode, envoy, upstream)
            return started[kind, mode]

        yield get
        # Every process drains at once; the ExitStack then waits for each and collects its logs.
        for process in processes:
            process.send_signal(signal.SIGTERM)


@pytest.fixture(params=MODES)
def base(request: pytest.FixtureRequest, stacks: Callable[[str, str], Stack]) -> Stack:
    return stacks("base", request.param)


@pytest.fixture(params=SECURE_MODES)
def secure(request: pytest.FixtureRequest, stacks: Callable[[str, str], Stack]) -> Stack:
    return stacks("base", request.param)


@pytest.fixture(params=MODES)
def strict(request: pytest.FixtureRequest, stacks: Callable[[str, str], Stack]) -> Stack:
    return stacks("strict", request.param)


@pytest.fixture
def electric(stacks: Callable[[str, str], Stack]) -> Stack:
    return stacks("electric", "insecure")


def assert_invalid_token(
    reply: Reply, message: str, reason: str, realm: str = "auth-sidecar"
) -> None:
    """RFC 6750 §3's challenge, and the JSON body with Electric's message word for word."""
    assert reply.status == 401
    description = message.replace('"', "'")
    assert reply.values("www-authenticate") == [
        f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"'
    ]
    assert reply.values("content-type") == ["application/json"]
    assert reply.json() == {"error": "invalid_token", "message": message, "reason": reason}


# -- allowed --------------------------------------------------------------------------------------


def test_an_allowed_request_reaches_upstream_as_the_user(base: Stack) -> None:
    token = base.token(claims("alice"))
    got = seen(base.send(SHAPE, [bearer(token)]))
    assert (got.method, got.path) == ("GET", SHAPE)
    assert got.headers["x-user-id"] == ["alice"]
    # Not stripped unless SIDECAR_ENVOY_STRIP_TOKEN says so: the sync server may want it.
    assert got.headers["authorization"] == [f"Bearer {token}"]


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(base: Stack, scheme: str) -> None:
    got = seen(base.send(SHAPE, [bearer(base.token(claims("bob")), scheme)]))
    assert got.headers["x-user-id"] == ["bob"]


@pytest.mark.parametrize("value", ["{token}", "Bearer {token}"])
def test_the_token_may_come_in_the_other_header(base: Stack, value: str) -> None:
    token = base.token(claims("carol"))
    got = seen(base.send(SHAPE, [("x-electric-token", value.format(token=token))]))
    assert got.headers["x-user-id"] == ["carol"]


def test_the_query_parameter_carries_the_token_and_never_reaches_upstream(base: Stack) -> None:
    token = base.token(claims("dave"))
    got = seen(base.send(f"/v1/shape?table=items&token={token}&offset=-1"))
    assert got.headers["x-user-id"] == ["dave"]
    assert token not in got.path
    assert got.path.startswith("/v1/shape?")
    # Envoy rebuilds the query string when it removes a parameter (it sorts them, too).
    assert got.query == [("offset", "-1"), ("table", "items")]


def test_every_copy_of_the_query_parameter_is_removed(base: Stack) -> None:
    token, other = base.token(claims("dave")), base.token(claims("erin"))
    got = seen(base.send(f"/v1/shape?token={token}&table=items&token={other}"))
    assert got.headers["x-user-id"] == ["dave"]  # the first one counts
    assert got.query == [("table", "items")]


def test_the_claims_header_carries_base64url_json(base: Stack) -> None:
    body = claims("erin", role="editor", tenant="t-1")
    got = seen(base.send(SHAPE, [bearer(base.token(body))]))
    (encoded,) = got.headers["x-auth-claims"]
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))) == body


# -- refused --------------------------------------------------------------------------------------


def test_a_missing_token_is_401_with_a_bearer_challenge(base: Stack) -> None:
    reply = base.refused(SHAPE)
    assert reply.status == 401
    # RFC 6750 §3.1: no error code when the request carried no credentials at all.
    assert reply.values("www-authenticate") == ['Bearer realm="auth-sidecar"']
    assert reply.values("content-type") == ["application/json"]
    assert reply.json() == MISSING_BODY


@pytest.mark.parametrize("scheme", ["Basic", "Token"])
def test_another_authorization_scheme_is_a_missing_token(base: Stack, scheme: str) -> None:
    reply = base.refused(SHAPE, [bearer(base.token(claims()), scheme)])
    assert reply.status == 401
    assert reply.json() == MISSING_BODY


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "Zm9v.YmFy.YmF6"])
def test_a_garbage_token_is_401_invalid_token(base: Stack, garbage: str) -> None:
    reply = base.refused(SHAPE, [bearer(garbage)])
    assert_invalid_token(reply, "Invalid token", "REASON_MALFORMED")


def test_an_expired_token_is_401_with_reason_expired(base: Stack) -> None:
    body = claims("alice", ttl=-60)
    body["iat"] -= 600
    reply = base.refused(SHAPE, [bearer(base.token(body))])
    assert_invalid_token(reply, "Expired token", "REASON_EXPIRED")


def test_a_refused_token_in_the_query_parameter_is_401(base: Stack) -> None:
    reply = base.refused(f"/v1/shape?table=items&token={base.token(claims(ttl=-60))}")
    assert reply.status == 401
    assert reply.json()["reason"] == "REASON_EXPIRED"


def test_the_query_parameter_is_matched_by_its_exact_name(base: Stack) -> None:
    """Envoy removes `query_parameters_to_remove` by the raw name. A name that only decodes to
    `token` would stay in the URL, so it must not count as the token: else the token, accepted,
    would reach upstream (and its logs) in the query string."""
    token = base.token(claims("mallory"))
    reply = base.refused(f"/v1/shape?table=items&%74oken={token}")
    assert reply.status == 401
    assert reply.json() == MISSING_BODY


# -- spoofing -------------------------------------------------------------------------------------


def test_a_spoofed_user_header_is_overwritten_on_an_allowed_request(base: Stack) -> None:
    token = base.token(claims("alice"))
    spoofed = [("x-user-id", "mallory"), ("X-User-Id", "root"), ("x-auth-claims", "e30")]
    got = seen(base.send(SHAPE, [*spoofed, bearer(token)]))
    assert got.headers["x-user-id"] == ["alice"]
    (encoded,) = got.headers["x-auth-claims"]
    assert encoded != "e30"


@pytest.mark.parametrize("credentials", [[], [bearer("garbage")], [bearer("{expired}")]])
def test_a_spoofed_user_header_on_a_refused_request_reaches_nothing(
    base: Stack, credentials: list[tuple[str, str]]
) -> None:
    expired = base.token(claims(ttl=-60))
    headers = [(k, v.format(expired=expired)) for k, v in credentials]
    reply = base.refused(SHAPE, [("x-user-id", "mallory"), *headers])
    assert reply.status == 401


def test_an_underscore_variant_of_the_user_header_is_dropped(base: Stack) -> None:
    """CGI-style upstreams read `x_user_id` as `x-user-id`; the example drops such headers."""
    got = seen(base.send(SHAPE, [("x_user_id", "mallory"), bearer(base.token(claims("alice")))]))
    assert got.headers["x-user-id"] == ["alice"]
    assert "x_user_id" not in got.headers


def test_a_user_id_that_is_no_header_value_fails_closed(base: Stack) -> None:
    """Envoy refuses to set a header value with CR/LF: the request fails, and the client's own
    x-user-id does not slip through in its place."""
    token = base.token(claims("eve\r\nx-admin: true"))
    reply = base.refused(SHAPE, [("x-user-id", "mallory"), bearer(token)])
    assert reply.status >= 400


# -- CORS preflight -------------------------------------------------------------------------------


def test_a_preflight_passes_without_a_token_and_without_spoofed_headers(base: Stack) -> None:
    spoofed = [("x-user-id", "mallory"), ("x-auth-claims", "e30")]
    got = seen(base.send(SHAPE, [*PREFLIGHT.items(), *spoofed], method="OPTIONS"))
    assert got.method == "OPTIONS"
    assert got.headers["origin"] == [PREFLIGHT["origin"]]
    assert "x-user-id" not in got.headers
    assert "x-auth-claims" not in got.headers


@pytest.mark.parametrize("missing", ["origin", "access-control-request-method"])
def test_an_options_request_that_is_no_preflight_needs_a_token(base: Stack, missing: str) -> None:
    headers = [(k, v) for k, v in PREFLIGHT.items() if k != missing]
    reply = base.refused(SHAPE, headers, method="OPTIONS")
    assert reply.status == 401


# -- Electric's secret and the shape path ---------------------------------------------------------


def shaped(user: str, table: str) -> dict[str, Any]:
    return {"user_id": user, "shape": {"table": table}}


def no_secret_in(reply: Reply) -> None:
    """What the client gets back from Envoy and the sidecar, the echo's own body aside."""
    assert all(ELECTRIC_SECRET not in value for _, value in reply.headers)


def test_the_upstream_gets_electrics_secret_and_never_the_clients(electric: Stack) -> None:
    token = electric.token(shaped("alice", "items"))
    reply = electric.send(
        "/v1/shape?table=items&secret=guess&api_secret=old&offset=-1&secret=again",
        [bearer(token)],
    )
    no_secret_in(reply)
    got = seen(reply)
    assert got.query == [("offset", "-1"), ("secret", ELECTRIC_SECRET), ("table", "items")]
    assert got.headers["x-user-id"] == ["alice"]


def test_the_secret_goes_to_the_shape_path_only(electric: Stack) -> None:
    token = electric.token(shaped("alice", "items"))
    got = seen(electric.send("/v1/other?secret=guess&api_secret=old&x=1", [bearer(token)]))
    assert got.query == [("x", "1")]  # the client's are removed, and nothing is added


def test_a_preflight_carries_no_secret(electric: Stack) -> None:
    reply = electric.send("/v1/shape?table=items&secret=guess", [*PREFLIGHT.items()], "OPTIONS")
    assert seen(reply).query == [("table", "items")]


def test_a_refused_request_shows_no_secret(electric: Stack) -> None:
    token = electric.token(shaped("alice", "items"))
    for reply in (
        electric.refused("/v1/shape?table=items"),
        electric.refused("/v1/shape?table=other", [bearer(token)]),
    ):
        assert reply.status in (401, 403)
        no_secret_in(reply)
        assert ELECTRIC_SECRET.encode() not in reply.body


@pytest.mark.parametrize("path", SHAPE_PATH_SPELLINGS)
def test_every_spelling_of_the_shape_path_gets_the_shape_check_and_the_secret(
    electric: Stack, path: str
) -> None:
    token = electric.token(shaped("alice", "items"))
    assert electric.refused(f"{path}?table=other", [bearer(token)]).status == 403
    got = seen(electric.send(f"{path}?table=items", [bearer(token)]))
    assert ("secret", ELECTRIC_SECRET) in got.query


# -- the example's routes and logs ----------------------------------------------------------------


@pytest.mark.parametrize("path", [HEALTH, "/v1//health", "/v1/./health"])
def test_the_health_path_bypasses_auth(base: Stack, path: str) -> None:
    got = seen(base.send(path, [("x-user-id", "mallory")]))
    assert got.path == HEALTH
    # No user header is trusted there: the route drops what the client sent.
    assert "x-user-id" not in got.headers


@pytest.mark.parametrize("path", ["/v1/health/x", "/v1/healthz", "/v1/health/../shape"])
def test_only_the_exact_health_path_bypasses_auth(base: Stack, path: str) -> None:
    reply = base.refused(path)
    assert reply.status == 401


def test_the_access_log_shows_the_sidecars_dynamic_metadata(base: Stack) -> None:
    base.send("/v1/shape?log=allowed", [bearer(base.token(claims("alice")))])
    base.send("/v1/shape?log=expired", [bearer(base.token(claims("alice", ttl=-60)))])
    allowed = base.envoy.wait_for_access_log(lambda e: e["path"] == "/v1/shape?log=allowed")
    expired = base.envoy.wait_for_access_log(lambda e: e["path"] == "/v1/shape?log=expired")
    assert (allowed["status"], allowed["user_id"]) == (200, "alice")
    assert allowed["auth_reason"] == "REASON_UNSPECIFIED"
    assert (expired["status"], expired["auth_reason"], expired["flags"]) == (
        401,
        "REASON_EXPIRED",
        "UAEX",
    )
    assert expired["user_id"] is None


# -- secure and insecure differ -------------------------------------------------------------------


def test_an_unsigned_token_is_refused_in_secure_mode(secure: Stack) -> None:
    reply = secure.refused(SHAPE, [bearer(unsigned(claims()))])
    assert_invalid_token(reply, "Signing algorithm mismatch", "REASON_ALGORITHM_MISMATCH")


def test_a_token_signed_with_another_key_is_refused(secure: Stack) -> None:
    if secure.mode.startswith("HS"):
        other: Any = "x" * 64
    else:
        other = key_pair(secure.mode, 1).private_pem
    token = jwt.encode(claims(), other, algorithm=secure.mode)
    reply = secure.refused(SHAPE, [bearer(token)])
    assert_invalid_token(reply, "Invalid token signature", "REASON_BAD_SIGNATURE")


def test_quotes_in_a_message_become_apostrophes_in_the_challenge(secure: Stack) -> None:
    body = claims()
    del body["exp"]
    reply = secure.refused(SHAPE, [bearer(secure.token(body))])
    assert_invalid_token(reply, 'Missing required "exp" claim', "REASON_MISSING_CLAIM")
    assert (
        "error_description=\"Missing required 'exp' claim\"" in reply.values("www-authenticate")[0]
    )


def test_insecure_mode_accepts_any_signature(stacks: Callable[[str, str], Stack]) -> None:
    stack = stacks("base", "insecure")
    token = jwt.encode(claims("frank"), "not-the-key-" * 4, algorithm="HS256")
    assert seen(stack.send(SHAPE, [bearer(token)])).headers["x-user-id"] == ["frank"]


# -- the other settings ---------------------------------------------------------------------------


def test_strip_token_removes_authorization_upstream(strict: Stack) -> None:
    got = seen(strict.send(SHAPE, [bearer(strict.token(claims("alice")))]))
    assert got.headers["x-electric-user"] == ["alice"]
    assert "authorization" not in got.headers


def test_strip_token_removes_the_other_header_upstream(strict: Stack) -> None:
    got = seen(strict.send(SHAPE, [("x-electric-token", strict.token(claims("bob")))]))
    assert got.headers["x-electric-user"] == ["bob"]
    assert "x-electric-token" not in got.headers


def test_the_renamed_user_header_cannot_be_spoofed(strict: Stack) -> None:
    headers = [("x-electric-user", "mallory"), bearer(strict.token(claims("alice")))]
    got = seen(strict.send(SHAPE, headers))
    assert got.headers["x-electric-user"] == ["alice"]
    assert "x-auth-claims" not in got.headers  # no claims header unless configured


def test_a_preflight_is_refused_when_preflights_are_turned_off(strict: Stack) -> None:
    reply = strict.refused(SHAPE, [*PREFLIGHT.items()], method="OPTIONS")
    assert reply.status == 401
    assert reply.values("www-authenticate") == ['Bearer realm="sync"']
    assert reply.json() == MISSING_BODY


def test_the_query_parameter_is_off_unless_configured(strict: Stack) -> None:
    token = strict.token(claims("alice"))
    reply = strict.refused(f"/v1/shape?token={quote(token)}")
    assert reply.status == 401
    assert reply.json() == MISSING_BODY


# -- fail closed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["insecure", "HS256"])
def test_envoy_fails_closed_when_the_sidecar_stops(
    mode: str, upstream: Upstream, workdir: str
) -> None:
    with running(sidecar_env(mode, {}), measured=False) as sidecar:
        config = example_envoy_config(
            upstream=f"127.0.0.1:{upstream.port}", sidecar=sidecar.address
        )
        envoy = start_envoy(config, workdir, ENVOY_ARGS)
        try:
            warm_authz(envoy)
            stack = Stack(mode, envoy, upstream)
            token = stack.token(claims("alice"))
            assert seen(stack.send(SHAPE, [bearer(token)])).headers["x-user-id"] == ["alice"]
            assert sidecar.terminate() == 0

            for headers in ([bearer(token)], [bearer(token), ("x-user-id", "alice")], []):
                reply = stack.refused(SHAPE, headers)
                assert reply.status == 403  # status_on_error's default
                assert reply.body == b""
            # The bypass route never asks the sidecar, so it still works.
            assert seen(stack.send(HEALTH)).path == HEALTH
            status, stats = envoy.admin_get("/stats?filter=http.sync.ext_authz")
            assert status == 200, stats
            counters = dict(line.split(": ") for line in stats.splitlines())
            assert int(counters["http.sync.ext_authz.error"]) >= 3
            assert counters["http.sync.ext_authz.failure_mode_allowed"] == "0"
        finally:
            envoy.stop()


def test_envoy_fails_closed_when_the_sidecar_does_not_answer_in_time(
    upstream: Upstream, workdir: str
) -> None:
    """A sidecar that accepts the connection and never answers: the example's 0.25 s timeout."""
    with blackhole() as address:
        config = example_envoy_config(upstream=f"127.0.0.1:{upstream.port}", sidecar=address)
        envoy = start_envoy(config, workdir, ENVOY_ARGS)
        try:
            before = send_count(upstream)
            started = time.monotonic()
            reply = send(envoy.port, SHAPE, [bearer(unsigned(claims()))])
            elapsed = time.monotonic() - started
            assert send_count(upstream) == before + 1, "the request reached upstream"
            assert reply.status == 403
            assert 0.25 <= elapsed < 5, elapsed
        finally:
            envoy.stop()


# -- keys from a JWKS URL -------------------------------------------------------------------------


def test_a_jwks_backed_sidecar_behind_envoy(upstream: Upstream, workdir: str) -> None:
    """Keys fetched over HTTP: Envoy's Check allows the provider's token and refuses a forgery."""
    key, forger = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    with jwks_server() as keys, ExitStack() as cleanup:
        keys.serve_keys(public_jwk(key, kid="k1"))
        env = {"AUTH_MODE": "secure", "AUTH_JWT_ALG": "ES256", "AUTH_JWT_JWKS_URL": keys.url}
        sidecar = cleanup.enter_context(running(env))
        config = example_envoy_config(
            upstream=f"127.0.0.1:{upstream.port}", sidecar=sidecar.address
        )
        envoy = start_envoy(config, workdir, ENVOY_ARGS)
        cleanup.callback(envoy.stop)
        deadline = time.monotonic() + 20
        while keys.count() == 0:  # a bounded poll: the sidecar fetches once it serves
            assert time.monotonic() < deadline, "the sidecar never fetched its keys"
            time.sleep(0.02)
        token = jwt.encode(claims("alice"), key, algorithm="ES256", headers={"kid": "k1"})
        reply = send(envoy.port, SHAPE, [bearer(token)])
        while reply.status != 200 and time.monotonic() < deadline:  # until the set is in
            time.sleep(0.02)
            reply = send(envoy.port, SHAPE, [bearer(token)])
        assert seen(reply).headers["x-user-id"] == ["alice"]
        forged = jwt.encode(claims("alice"), forger, algorithm="ES256", headers={"kid": "k1"})
        assert_invalid_token(
            send(envoy.port, SHAPE, [bearer(forged)]),
            "Invalid token signature",
            "REASON_BAD_SIGNATURE",
        )
