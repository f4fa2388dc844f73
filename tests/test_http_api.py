"""The HTTP API in process: forward auth, Connect and the HTTP/1.1 server, over real TCP.

Each test starts the real server (`server.http_api`) in the test's own event loop and talks to
it with raw bytes, so that framing, keep-alive and refusals are seen as a proxy sees them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from support import MINT_SECRET, SHAPE_PATH_SPELLINGS, insecure_config, secure_config, unsigned

from authsidecar.v1 import auth_pb2
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.adapters.forward_auth import ForwardAuth
from sidecar.adapters.gate import Gate
from sidecar.config import Config
from sidecar.core.errors import BindError, ConfigError, KeysUnavailable
from sidecar.core.validator import Decision
from sidecar.protocols.http import Reply, Request
from sidecar.protocols.http_server import HttpServer, Limits, Route
from sidecar.runtime import server

SHAPE = {"table": "items"}
AMBIGUOUS_PATHS = ("/v1%2Fshape", "/v1/shape;x", "/v1\\shape", "/v1/%2573hape", "/v1/%zz")


def token(**claims: Any) -> str:
    return unsigned({"user_id": "alice", "shape": SHAPE, **claims})


@asynccontextmanager
async def http_api(cfg: Config, limits: Limits | None = None) -> AsyncIterator[str]:
    auth, _ = server.assemble(cfg)
    http, _ = server.http_api(cfg, auth)
    if limits is not None:
        http.limits = limits
    address = await http.start("127.0.0.1:0")
    try:
        yield address
    finally:
        await http.close(1)


async def exchange(address: str, data: bytes) -> bytes:
    """Sends `data`, then reads until the server closes the connection."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def closed_at_once(address: str) -> bool:
    """Whether a new connection is closed with no reply (a reset counts: it is one too)."""
    try:
        return await exchange(address, get("/auth")) == b""
    except ConnectionResetError:
        return True


def get(target: str, headers: dict[str, str] | None = None, close: bool = True) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "host: sidecar"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(target: str, body: bytes, content_type: str, close: bool = True, **headers: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "host: sidecar", f"content-type: {content_type}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse(answer: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response in `answer`, framed by content-length."""
    found = []
    while answer:
        head, _, rest = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers["content-length"])
        found.append((int(status_line.split()[1]), headers, rest[:length]))
        answer = rest[length:]
    return found


async def one(address: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    (response,) = parse(await exchange(address, data))
    return response


SHAPE_CONFIG = {"SIDECAR_SHAPE_CLAIM": "shape"}


@pytest.mark.parametrize(
    "headers, target",
    [
        ({"x-forwarded-method": "GET", "x-forwarded-uri": "{path}?table={table}"}, "/auth"),
        ({"x-original-method": "GET", "x-original-uri": "{path}?table={table}"}, "/auth"),
        ({"x-original-url": "https://app.example{path}?table={table}"}, "/auth"),
        ({}, "/auth{path}?table={table}"),
    ],
    ids=["caddy-traefik", "nginx", "ingress-nginx", "envoy-path-prefix"],
)
@pytest.mark.parametrize("path", SHAPE_PATH_SPELLINGS)
async def test_each_proxy_style_gets_the_shape_check_on_every_path_variant(
    headers: dict[str, str], target: str, path: str
) -> None:
    async with http_api(insecure_config(**SHAPE_CONFIG)) as address:
        for table, status in (("items", 200), ("other", 403)):
            sent = {k: v.format(path=path, table=table) for k, v in headers.items()}
            sent["authorization"] = f"Bearer {token()}"
            code, answer, body = await one(
                address, get(target.format(path=path, table=table), sent)
            )
            assert code == status, (path, table, body)
            if status == 200:
                assert answer["x-user-id"] == "alice"
            else:
                assert "x-user-id" not in answer
                assert json.loads(body)["reason"] == "REASON_SHAPE_MISMATCH"
                assert 'error="insufficient_scope"' in answer["www-authenticate"]


@pytest.mark.parametrize("path", AMBIGUOUS_PATHS)
async def test_a_path_that_routers_read_differently_is_refused(path: str) -> None:
    async with http_api(insecure_config(**SHAPE_CONFIG)) as address:
        headers = {"authorization": f"Bearer {token()}", "x-forwarded-uri": path + "?table=items"}
        code, _, body = await one(address, get("/auth", headers))
    assert code == 403
    assert json.loads(body)["message"] == "the request path is ambiguous"


async def test_refusals_say_why_as_check_does() -> None:
    async with http_api(insecure_config()) as address:
        missing = await one(address, get("/auth"))
        bad = await one(address, get("/auth", {"authorization": "Bearer not-a-token"}))
        preflight = await one(
            address,
            get(
                "/auth",
                {"origin": "https://app.example", "access-control-request-method": "GET"},
            ).replace(b"GET", b"OPTIONS", 1),
        )
    assert missing[0] == 401
    assert missing[1]["www-authenticate"] == 'Bearer realm="auth-sidecar"'
    assert json.loads(missing[2]) == {"error": "missing_token", "message": "Missing bearer token"}
    assert bad[0] == 401
    assert json.loads(bad[2]) == {
        "error": "invalid_token",
        "message": "Invalid token",
        "reason": "REASON_MALFORMED",
    }
    assert preflight[0] == 200
    assert "x-user-id" not in preflight[1]


async def test_a_user_id_that_cannot_be_one_header_is_refused() -> None:
    async with http_api(insecure_config()) as address:
        spoofing = token(user_id="alice\r\nx-admin: 1")
        headers = {"authorization": f"Bearer {spoofing}"}
        code, answer, body = await one(address, get("/auth", headers))
    assert code == 401
    assert "x-admin" not in answer
    assert json.loads(body)["reason"] == "REASON_INVALID_USER_ID"


async def test_no_keys_yet_is_503_with_retry_after() -> None:
    class NoKeys:
        def decide(self, token: str, issuer_audience: bool = True) -> Decision:
            raise KeysUnavailable

    cfg = insecure_config()
    forward = ForwardAuth(Gate(NoKeys(), cfg.envoy), "/auth")
    http = HttpServer([Route("/auth", forward, subtree=True)], Limits(), "TEST")
    address = await http.start("127.0.0.1:0")
    try:
        code, answer, _ = await one(address, get("/auth", {"authorization": f"Bearer {token()}"}))
    finally:
        await http.close(1)
    assert code == 503
    assert answer["retry-after"] == "1"


async def test_check_adds_electric_secret_on_the_shape_path_only() -> None:
    secret = "s3cret-" + "x" * 16
    cfg = insecure_config(SIDECAR_ELECTRIC_SECRET=secret)
    check = EnvoyAuthorization(server.assemble(cfg)[1].gate.validator, cfg.envoy)

    async def ok(path: str) -> Any:
        request = server_check_request(path, {"authorization": f"Bearer {token()}"})
        response = await check.Check(request, None)  # type: ignore[arg-type]
        return response.ok_response

    shape = await ok("/v1/./shape?table=items&secret=mine&api_secret=old")
    assert [(p.key, p.value) for p in shape.query_parameters_to_set] == [("secret", secret)]
    # Envoy removes after it sets: removing `secret` too would drop the one just set.
    assert list(shape.query_parameters_to_remove) == ["api_secret"]
    other = await ok("/v1/health?secret=mine")
    assert list(other.query_parameters_to_set) == []
    assert set(other.query_parameters_to_remove) == {"secret", "api_secret"}
    assert secret not in repr(cfg)


async def test_check_refuses_a_secret_spelt_so_that_envoy_cannot_remove_it() -> None:
    cfg = insecure_config(SIDECAR_ELECTRIC_SECRET="s3cret-" + "x" * 16)
    check = EnvoyAuthorization(server.assemble(cfg)[1].gate.validator, cfg.envoy)
    auth = {"authorization": f"Bearer {token()}"}
    for query in ("%73ecret=mine", "api%5Fsecret=old", "secre%74=mine&secret=x"):
        request = server_check_request(f"/v1/shape?table=items&{query}", auth)
        response = await check.Check(request, None)  # type: ignore[arg-type]
        assert response.denied_response.status.code == 403, query
        assert "only the proxy sets" in response.denied_response.body


async def test_forward_auth_refuses_a_client_secret_on_the_shape_path() -> None:
    """A proxy cannot remove query parameters on the auth answer's word, so a client-sent secret
    is refused (in any spelling) rather than passed on beside the one the proxy adds."""
    cfg = insecure_config(SIDECAR_ELECTRIC_SECRET="s3cret-" + "x" * 16)
    auth = {"authorization": f"Bearer {token()}"}
    async with http_api(cfg) as address:
        for query in ("secret=mine", "api_secret=old", "%73ecret=mine", "SECRET=no&x=1"):
            uri = {"x-forwarded-uri": f"/v1/shape?table=items&{query}"}
            code = (await one(address, get("/auth", {**auth, **uri})))[0]
            expected = 200 if query.startswith("SECRET") else 403  # names are case-sensitive
            assert code == expected, query
        uri = {"x-forwarded-uri": "/v1/health?secret=mine"}
        assert (await one(address, get("/auth", {**auth, **uri})))[0] == 200
        uri = {"x-forwarded-uri": "/v1//shape?table=items"}
        assert (await one(address, get("/auth", {**auth, **uri})))[0] == 200


def test_only_allows_may_be_cached_and_never_past_the_tokens_expiry() -> None:
    cfg = insecure_config()
    now = 1_800_000_000.0
    gate = Gate(server.assemble(cfg)[1].gate.validator, cfg.envoy)
    forward = ForwardAuth(gate, "/auth", 16, max_age=5, clock=lambda: now)

    def cache_control(headers: dict[str, str]) -> str:
        answer = forward(Request("GET", "/auth/v1/x", headers))
        assert isinstance(answer, Reply)  # decided at once: no introspection here
        head = answer.head.decode()
        (value,) = [line[15:] for line in head.split("\r\n") if line.startswith("cache-control: ")]
        return value

    lasting = {"authorization": f"Bearer {token(exp=int(now) + 60)}"}
    assert cache_control(lasting) == "max-age=5"
    assert cache_control(lasting) == "max-age=5"  # the memoised reply, once more
    # Expiring within max_age: a cached allow would outlive the token.
    assert cache_control({"authorization": f"Bearer {token(exp=int(now) + 3)}"}) == "no-store"
    assert cache_control({}) == "no-store"
    assert cache_control({"authorization": "Bearer nope"}) == "no-store"
    preflight = {"origin": "https://app", "access-control-request-method": "GET"}
    assert cache_control(preflight) == "no-store"
    uncached = ForwardAuth(gate, "/auth", 16)
    answer = uncached(Request("GET", "/auth/v1/x", lasting))
    assert isinstance(answer, Reply)
    head = answer.head
    assert b"cache-control: no-store\r\n" in head


def server_check_request(path: str, headers: dict[str, str]) -> Any:
    from envoy.service.auth.v3 import external_auth_pb2

    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method = "GET"
    http.path = path
    http.headers.update(headers)
    return message


def test_a_bad_electric_secret_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as raised:
        insecure_config(SIDECAR_ELECTRIC_SECRET="short&")
    (problem,) = raised.value.problems
    assert problem.startswith("SIDECAR_ELECTRIC_SECRET: must be at least 16 characters")


async def test_connect_validate_answers_as_grpc_does() -> None:
    cfg = insecure_config()
    async with http_api(cfg) as address:
        path = "/authsidecar.v1.AuthService/Validate"
        good = await one(
            address, post(path, json.dumps({"token": token()}).encode(), "application/json")
        )
        bad = await one(address, post(path, b'{"token":"x"}', "application/json"))
        binary = auth_pb2.ValidateRequest(token=token()).SerializeToString()
        proto = await one(address, post(path, binary, "application/proto"))
    assert good[0] == 200
    assert json.loads(good[2])["userId"] == "alice"
    assert json.loads(bad[2]) == {"reason": "REASON_MALFORMED", "message": "Invalid token"}
    assert auth_pb2.ValidateResponse.FromString(proto[2]).user_id == "alice"


async def test_connect_reuses_parsed_requests_and_encodings_without_mixing_them() -> None:
    """With a memo smaller than the tokens in play, every answer is still its own token's, in
    each encoding, and the same body answered twice gives the same bytes."""
    cfg = insecure_config(SIDECAR_CACHE_SIZE="2")
    path = "/authsidecar.v1.AuthService/Validate"
    users = ["ann", "ben", "cy"]
    async with http_api(cfg) as address:
        for _ in range(3):
            for user in users:
                body = json.dumps({"token": token(user_id=user)}).encode()
                first = await one(address, post(path, body, "application/json"))
                again = await one(address, post(path, body, "application/json"))
                assert json.loads(first[2])["userId"] == user
                assert again[2] == first[2]
                binary = auth_pb2.ValidateRequest(token=token(user_id=user)).SerializeToString()
                proto = await one(address, post(path, binary, "application/proto"))
                assert auth_pb2.ValidateResponse.FromString(proto[2]).user_id == user
            bad = await one(address, post(path, b'{"token":"x"}', "application/json"))
            assert json.loads(bad[2])["reason"] == "REASON_MALFORMED"


async def test_connect_mint_takes_its_secret_from_the_authorization_header() -> None:
    cfg = secure_config("HS256", SIDECAR_MINT_SECRET=MINT_SECRET)
    async with http_api(cfg) as address:
        path = "/authsidecar.v1.AuthService/Mint"
        body = json.dumps({"userId": "bob", "ttl": "60s"}).encode()
        minted = await one(
            address, post(path, body, "application/json", authorization=f"Bearer {MINT_SECRET}")
        )
        anonymous = await one(address, post(path, body, "application/json"))
        wrong = await one(address, post(path, body, "application/json", authorization="Bearer x"))
        validated = await one(
            address,
            post(
                "/authsidecar.v1.AuthService/Validate",
                json.dumps({"token": json.loads(minted[2])["token"]}).encode(),
                "application/json",
            ),
        )
    assert minted[0] == 200
    assert json.loads(validated[2])["userId"] == "bob"
    assert (anonymous[0], json.loads(anonymous[2])["code"]) == (401, "unauthenticated")
    assert (wrong[0], json.loads(wrong[2])["code"]) == (403, "permission_denied")


@pytest.mark.parametrize(
    "data, status, code",
    [
        (
            post("/authsidecar.v1.AuthService/Validate", b"{", "application/json"),
            400,
            "invalid_argument",
        ),
        (
            post("/authsidecar.v1.AuthService/Validate", b"\xff\xff", "application/proto"),
            400,
            "invalid_argument",
        ),
        (post("/authsidecar.v1.AuthService/Nope", b"{}", "application/json"), 404, "unimplemented"),
        (post("/authsidecar.v1.AuthService/Validate", b"{}", "text/plain"), 415, None),
        (get("/authsidecar.v1.AuthService/Validate"), 405, None),
        (
            post(
                "/authsidecar.v1.AuthService/Validate",
                b"{}",
                "application/json",
                content_encoding="gzip",
            ),
            404,
            "unimplemented",
        ),
    ],
    ids=["bad-json", "bad-proto", "unknown-method", "content-type", "get", "gzip"],
)
async def test_connect_errors_are_connect_errors(
    data: bytes, status: int, code: str | None
) -> None:
    async with http_api(insecure_config()) as address:
        got, _, body = await one(address, data)
    assert got == status
    if code:
        assert json.loads(body)["code"] == code


async def test_keep_alive_and_pipelining_answer_in_request_order() -> None:
    async with http_api(insecure_config()) as address:
        auth = {"authorization": f"Bearer {token()}"}
        validate = post(
            "/authsidecar.v1.AuthService/Validate",
            json.dumps({"token": token()}).encode(),
            "application/json",
            close=False,
        )
        answer = await exchange(
            address,
            get("/auth", auth, close=False)
            + validate
            + get("/nowhere", close=False)
            + get("/auth"),
        )
    statuses = [status for status, _, _ in parse(answer)]
    assert statuses == [200, 200, 404, 401]


async def test_http_1_0_closes_after_its_reply() -> None:
    async with http_api(insecure_config()) as address:
        code, answer, _ = await one(address, b"GET /auth HTTP/1.0\r\n\r\n")
    assert code == 401
    assert answer["connection"] == "close"


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /auth HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n", 400),
        (get("/auth", {"x-big": "a" * 20000}), 431),
        (b"GET /auth HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc", 400),
        (
            b"POST /authsidecar.v1.AuthService/Validate HTTP/1.1\r\n"
            b"content-type: application/json\r\ncontent-length: 200000\r\n\r\n" + b"x" * 300000,
            413,
        ),
    ],
    ids=["garbage", "bad-header", "huge-header", "unexpected-body", "huge-body"],
)
async def test_bad_input_is_a_clear_status_and_a_closed_connection(
    data: bytes, status: int
) -> None:
    async with http_api(insecure_config()) as address:
        answer = await exchange(address, data + get("/auth"))
        (response,) = parse(answer)  # nothing after the refusal is read
        assert response[0] == status
        assert response[1]["connection"] == "close"
        assert (await one(address, get("/auth")))[0] == 401  # and it keeps serving


async def test_an_idle_connection_is_closed_without_a_reply() -> None:
    async with http_api(insecure_config(), Limits(idle_seconds=0.2)) as address:
        assert await exchange(address, b"") == b""


async def test_a_request_that_never_ends_gets_408() -> None:
    async with http_api(insecure_config(), Limits(request_seconds=0.2)) as address:
        answer = await exchange(address, b"GET /auth HTTP/1.1\r\nhost: x\r\n")
    assert parse(answer)[0][0] == 408


async def test_connections_beyond_the_limit_are_closed_and_the_others_served() -> None:
    async with http_api(insecure_config(), Limits(max_connections=1)) as address:
        host, _, port = address.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(get("/auth", close=False))
        await writer.drain()
        first = await reader.readuntil(b"}")
        assert first.startswith(b"HTTP/1.1 401 ")
        assert await closed_at_once(address)  # the second
        writer.write(get("/auth"))  # the first is still served
        assert [status for status, _, _ in parse(await reader.read())] == [401]
        writer.close()


async def test_a_taken_port_is_a_bind_error_naming_the_setting() -> None:
    cfg = insecure_config()
    async with http_api(cfg) as address:
        auth, _ = server.assemble(cfg)
        http, _ = server.http_api(cfg, auth)
        with pytest.raises(BindError, match=r"^SIDECAR_HTTP_API_LISTEN: cannot listen on"):
            await http.start(address)


def test_forward_auth_reads_the_original_request_in_the_documented_order() -> None:
    from sidecar.protocols.http import Request

    forward = ForwardAuth(Gate(_Never(), insecure_config().envoy), "/auth")
    both = {
        "x-forwarded-method": "POST",
        "x-forwarded-uri": "/a",
        "x-original-method": "PUT",
        "x-original-uri": "/b",
    }
    assert forward.original(Request("GET", "/auth", both)) == ("POST", "/a")
    del both["x-forwarded-uri"]
    assert forward.original(Request("GET", "/auth", both)) == ("PUT", "/b")
    assert forward.original(Request("GET", "/auth?x=1", {})) == ("GET", "/?x=1")


class _Never:
    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        raise AssertionError("not asked")
