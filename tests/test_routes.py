"""Routes through each adapter: Check called directly (as OPA-Envoy tests it), forward auth on
its Request, Validate over real gRPC; the same file of routes for all three.

The rules themselves are unit-tested in core/test_rules.py; real Envoy and nginx in
test_routes_proxies.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import json_format
from google.rpc import code_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from inprocess import serving
from support import insecure_config, secure_config, sign, unsigned

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import config
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.adapters.forward_auth import ForwardAuth
from sidecar.config import Config, cel
from sidecar.core import rules
from sidecar.core.errors import ConfigError
from sidecar.observe.observability import Observability
from sidecar.protocols.http import Reply, Request
from sidecar.runtime import server

ROUTES = (Path(__file__).parent / "routes.toml").read_text()

ALICE = {"user_id": "alice", "scope": "sync admin:write", "realm_access": {"roles": ["analyst"]}}
BOB = {"user_id": "bob", "scp": ["sync"], "realm_access": {"roles": ["viewer"]}}
WRITER = {"user_id": "carol", "scp": ["sync", "sync:write"]}


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "sidecar.toml"
    path.write_text(ROUTES)
    return path


def routed(path: Path, **extra: str) -> Config:
    return insecure_config(SIDECAR_CONFIG_FILE=str(path), **extra)


def check_for(cfg: Config, observe: Observability | None = None) -> EnvoyAuthorization:
    return server.assemble(cfg, observe)[1]


def check_request(
    path: str, headers: dict[str, str], method: str = "GET", host: str = "app"
) -> external_auth_pb2.CheckRequest:
    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method, http.path, http.host = method, path, host
    http.headers.update(headers)
    return message


async def check(
    service: EnvoyAuthorization, path: str, token: str | None = None, **kwargs: Any
) -> external_auth_pb2.CheckResponse:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = check_request(path, headers, **kwargs)
    return await service.Check(request, None)  # type: ignore[arg-type]


def status(response: external_auth_pb2.CheckResponse) -> int:
    if response.status.code == code_pb2.OK:
        return 200
    return int(response.denied_response.status.code)


def denied_header(response: external_auth_pb2.CheckResponse, name: str) -> str:
    (value,) = [o.header.value for o in response.denied_response.headers if o.header.key == name]
    return str(value)


def upstream(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {o.header.key: o.header.value for o in response.ok_response.headers}


def token(claims: dict[str, Any]) -> str:
    return unsigned(claims)


# -- Check --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "claims", "method", "expected"),
    [
        ("/admin/users", ALICE, "GET", 200),  # `scope`, a string
        ("/admin/users", BOB, "GET", 403),
        ("/admin/../admin/users", BOB, "GET", 403),  # normalised before matching
        ("/reports/q1", ALICE, "GET", 200),  # roles: an array that contains
        ("/reports/q1", BOB, "GET", 403),
        ("/v1/shape?table=items", BOB, "GET", 200),  # CEL on the method
        ("/v1/shape?table=items", BOB, "DELETE", 403),
        ("/v1/shape?table=items", WRITER, "DELETE", 200),  # `scp`, an array
        ("/v1/shape?table=items", {"user_id": "dave"}, "DELETE", 403),  # no `scp`: an error
        ("/elsewhere", BOB, "GET", 200),  # no route: authenticated
        ("/beta/feature", BOB, "GET", 200),  # dry-run: would refuse, passes
    ],
)
async def test_check_applies_the_first_matching_route(
    routes_file: Path, path: str, claims: dict[str, Any], method: str, expected: int
) -> None:
    response = await check(check_for(routed(routes_file)), path, token(claims), method=method)
    assert status(response) == expected
    if expected == 403:
        assert response.status.code == code_pb2.PERMISSION_DENIED
        assert json.loads(response.denied_response.body)["reason"] == "REASON_FORBIDDEN"
        assert dict(response.dynamic_metadata) == {"reason": "REASON_FORBIDDEN"}


async def test_a_missing_scope_is_insufficient_scope_naming_it(routes_file: Path) -> None:
    response = await check(check_for(routed(routes_file)), "/admin", token(BOB))
    challenge = denied_header(response, "www-authenticate")
    assert challenge == (
        'Bearer realm="auth-sidecar", error="insufficient_scope", '
        "error_description=\"route 'admin' requires scope 'admin:write'\", scope=\"admin:write\""
    )
    body = json.loads(response.denied_response.body)
    assert body["message"] == 'route "admin" requires scope "admin:write"'


async def test_a_refusal_never_names_a_claim_value(routes_file: Path) -> None:
    claims = {**BOB, "realm_access": {"roles": ["secret-role-name"]}}
    response = await check(check_for(routed(routes_file)), "/reports", token(claims))
    assert status(response) == 403
    assert "secret-role-name" not in str(response)
    assert json.loads(response.denied_response.body)["message"] == (
        'route "reports": the "realm_access.roles" claim does not contain the required value'
    )


async def test_anonymous_routes_pass_without_a_token_and_without_a_user(routes_file: Path) -> None:
    service = check_for(routed(routes_file))
    response = await check(service, "/health", headers={"x-user-id": "spoofed"})
    assert status(response) == 200
    assert "x-user-id" in response.ok_response.headers_to_remove
    assert "x-user-id" not in upstream(response)
    # A token that is there must be valid, unless the route says to ignore it.
    assert status(await check(service, "/health", "not-a-token")) == 401
    assert status(await check(service, "/public/logo.png", "not-a-token")) == 200
    # A valid one on an anonymous route still names its user.
    assert upstream(await check(service, "/health", token(BOB)))["x-user-id"] == "bob"
    # Without a token, a route that needs one is 401, not 403.
    assert status(await check(service, "/admin")) == 401


async def test_default_deny_refuses_what_no_route_matches(routes_file: Path) -> None:
    service = check_for(routed(routes_file, SIDECAR_DEFAULT_ROUTE="deny"))
    response = await check(service, "/elsewhere", token(ALICE))
    assert status(response) == 403
    assert json.loads(response.denied_response.body)["message"] == (
        'route "default" allows no request'
    )
    assert status(await check(service, "/admin", token(ALICE))) == 200
    # Refused before any token is read: a request without one is 403 too.
    assert status(await check(service, "/elsewhere")) == 403


async def test_dry_run_passes_and_is_counted_and_logged(
    routes_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = routed(routes_file, SIDECAR_HTTP_LISTEN="127.0.0.1:0", SIDECAR_WORKERS="1")
    observe = Observability(cfg)
    assert observe.metrics is not None
    service = check_for(cfg, observe)
    with caplog.at_level("INFO", logger="auth-sidecar.decisions"):
        assert status(await check(service, "/beta/x", token(BOB))) == 200
        assert status(await check(service, "/beta/x", token({**BOB, "scope": "beta"}))) == 200
        assert status(await check(service, "/admin", token(BOB))) == 403
    registry = observe.metrics.registry
    assert registry.get_sample_value("auth_sidecar_dry_run_denials_total", {"route": "beta"}) == 1
    assert registry.get_sample_value("auth_sidecar_route_denials_total", {"route": "admin"}) == 1
    (logged,) = [r for r in caplog.records if r.getMessage() == "route denial"]
    assert logged.fields == {  # type: ignore[attr-defined]
        "route": "beta",
        "dry_run": True,
        "reason": "REASON_FORBIDDEN",
        "message": 'route "beta" requires one of the scopes "beta"',
    }


async def test_global_dry_run_lets_default_deny_through(routes_file: Path) -> None:
    cfg = routed(routes_file, SIDECAR_DEFAULT_ROUTE="deny", SIDECAR_DRY_RUN="true")
    service = check_for(cfg)
    assert status(await check(service, "/elsewhere", token(BOB))) == 200
    assert status(await check(service, "/admin", token(BOB))) == 200
    # A dry run still needs a valid token where one is needed.
    assert status(await check(service, "/admin")) == 401


async def test_rules_are_evaluated_on_every_cache_hit(routes_file: Path) -> None:
    service = check_for(routed(routes_file))
    bob = token(BOB)
    for _ in range(3):
        assert status(await check(service, "/elsewhere", bob)) == 200
        assert status(await check(service, "/admin", bob)) == 403


async def test_the_token_comes_from_the_cookie(routes_file: Path) -> None:
    service = check_for(routed(routes_file, SIDECAR_TOKEN_COOKIE="session"))
    cookie = {"cookie": f'theme=dark; session="{token(ALICE)}"; other=1'}
    response = await check(service, "/admin", headers=cookie)
    assert upstream(response)["x-user-id"] == "alice"
    assert status(await check(service, "/admin", headers={"cookie": "session="})) == 401
    # Authorization comes first.
    both = {"cookie": f"session={token(ALICE)}", "authorization": f"Bearer {token(BOB)}"}
    assert status(await check(service, "/admin", headers=both)) == 403


async def test_when_never_sees_the_cookie_or_the_authorization(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(
        '[[routes]]\nname = "h"\npath_prefix = "/"\n'
        'when = \'!("cookie" in request.headers) && !("authorization" in request.headers)'
        ' && request.headers["x-app"] == "web"\''
    )
    service = check_for(routed(path, SIDECAR_TOKEN_COOKIE="session"))
    cookie = {"cookie": f"session={token(BOB)}", "x-app": "web"}
    assert status(await check(service, "/x", headers=cookie)) == 200
    assert status(await check(service, "/x", token(BOB), headers={"x-app": "web"})) == 200
    assert status(await check(service, "/x", token(BOB), headers={"x-app": "cli"})) == 403


CLAIM_HEADERS = "org_id=x-org-id, realm_access.roles=x-roles, tier=x-tier"


async def test_claim_headers_and_dynamic_metadata(routes_file: Path) -> None:
    service = check_for(routed(routes_file, SIDECAR_CLAIM_HEADERS=CLAIM_HEADERS))
    claims = {**ALICE, "org_id": "acme", "realm_access": {"roles": ["analyst", "admin"]}}
    spoof = {"x-org-id": "evil", "x-tier": "gold"}
    response = await check(service, "/reports", token(claims), headers=spoof)
    headers = upstream(response)
    assert headers["x-org-id"] == "acme"
    assert headers["x-roles"] == "analyst,admin"
    # A claim the token lacks: its header is removed, so the client's never reaches upstream.
    assert "x-tier" not in headers
    assert "x-tier" in response.ok_response.headers_to_remove
    metadata = json_format.MessageToDict(response.dynamic_metadata)["claims"]
    assert metadata == {"org_id": "acme", "realm_access.roles": ["analyst", "admin"]}


@pytest.mark.parametrize(
    "value", [{"nested": 1}, ["a,b"], "two\nlines", [{"x": 1}], ["ok", "bad\r"]]
)
async def test_a_claim_no_header_can_carry_refuses_the_request(
    routes_file: Path, value: Any
) -> None:
    service = check_for(routed(routes_file, SIDECAR_CLAIM_HEADERS=CLAIM_HEADERS))
    response = await check(service, "/elsewhere", token({**BOB, "org_id": value}))
    assert status(response) == 401
    body = json.loads(response.denied_response.body)
    assert body["reason"] == "REASON_INVALID_CLAIM"
    assert body["message"] == 'The "org_id" claim cannot be sent upstream as a header'


@pytest.mark.parametrize(("value", "sent"), [(7, "7"), (True, "true"), (["a", 2], "a,2")])
async def test_claim_header_values(routes_file: Path, value: Any, sent: str) -> None:
    service = check_for(routed(routes_file, SIDECAR_CLAIM_HEADERS=CLAIM_HEADERS))
    response = await check(service, "/elsewhere", token({**BOB, "org_id": value}))
    assert upstream(response)["x-org-id"] == sent


async def test_claim_headers_read_under_the_namespace(routes_file: Path) -> None:
    cfg = routed(routes_file, SIDECAR_CLAIM_HEADERS="org_id=x-org-id", AUTH_JWT_NAMESPACE="ns")
    claims = {"ns": {"user_id": "erin", "org_id": "acme"}, "org_id": "top"}
    response = await check(check_for(cfg), "/elsewhere", token(claims))
    assert upstream(response)["x-org-id"] == "acme"


# -- forward auth -------------------------------------------------------------------------------


def forward_for(cfg: Config) -> ForwardAuth:
    auth, _ = server.assemble(cfg)
    return server.http_api(cfg, auth)[1]


def forward_head(
    forward: ForwardAuth, uri: str, headers: dict[str, str], method: str = "GET"
) -> tuple[int, dict[str, str]]:
    proxied = {"x-forwarded-uri": uri, "x-forwarded-method": method, **headers}
    reply = forward(Request("GET", "/auth", proxied))
    assert isinstance(reply, Reply)  # decided at once: no introspection here
    lines = reply.head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if line)
    return reply.status, fields


@pytest.mark.parametrize(
    ("uri", "claims", "method", "expected"),
    [
        ("/admin/x", ALICE, "GET", 200),
        ("/admin/x", BOB, "GET", 403),
        ("/reports", BOB, "GET", 403),
        ("/v1/shape?table=items", BOB, "POST", 403),
        ("/v1/shape?table=items", WRITER, "POST", 200),
        ("/beta", BOB, "GET", 200),
    ],
)
def test_forward_auth_applies_the_same_routes(
    routes_file: Path, uri: str, claims: dict[str, Any], method: str, expected: int
) -> None:
    forward = forward_for(routed(routes_file))
    auth = {"authorization": f"Bearer {token(claims)}"}
    code, fields = forward_head(forward, uri, auth, method)
    assert code == expected
    if expected == 403:
        assert 'error="insufficient_scope"' in fields["www-authenticate"]


def test_forward_auth_anonymous_cookie_and_claim_headers(routes_file: Path) -> None:
    cfg = routed(routes_file, SIDECAR_TOKEN_COOKIE="session", SIDECAR_CLAIM_HEADERS=CLAIM_HEADERS)
    forward = forward_for(cfg)
    code, fields = forward_head(forward, "/health", {})
    assert code == 200
    assert "x-user-id" in fields["x-envoy-auth-headers-to-remove"]
    claims = {**ALICE, "org_id": "acme"}
    code, fields = forward_head(forward, "/admin", {"cookie": f"session={token(claims)}"})
    assert code == 200
    assert (fields["x-user-id"], fields["x-org-id"]) == ("alice", "acme")
    assert fields["x-envoy-auth-headers-to-remove"] == "x-tier"


def test_forward_auth_matches_hosts_by_x_forwarded_host(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text('[[routes]]\nname = "api"\nhosts = ["api.example.com"]\nanonymous = true\n')
    forward = forward_for(routed(path, SIDECAR_DEFAULT_ROUTE="deny"))
    assert forward_head(forward, "/", {"x-forwarded-host": "api.example.com:443"})[0] == 200
    assert forward_head(forward, "/", {"x-forwarded-host": "other.example.com"})[0] == 403


# -- Validate -----------------------------------------------------------------------------------


async def validate(address: str, request: auth_pb2.ValidateRequest) -> auth_pb2.ValidateResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        return await stub.Validate(request, timeout=10)


async def test_validate_with_a_request_applies_the_routes(routes_file: Path) -> None:
    def asking(jwt: str, path: str, method: str = "GET") -> auth_pb2.ValidateRequest:
        http = auth_pb2.HttpRequest(method=method, path=path, host="app")
        return auth_pb2.ValidateRequest(token=jwt, request=http)

    async with serving(routed(routes_file)) as address:
        refused = await validate(address, asking(token(BOB), "/admin"))
        assert (refused.valid, refused.reason) == (False, auth_pb2.REASON_FORBIDDEN)
        assert refused.message == 'route "admin" requires scope "admin:write"'
        allowed = await validate(address, asking(token(ALICE), "/admin"))
        assert (allowed.valid, allowed.user_id) == (True, "alice")
        anonymous = await validate(address, asking("", "/health"))
        assert (anonymous.valid, anonymous.user_id) == (True, "")
        missing = await validate(address, asking("", "/admin"))
        assert (missing.valid, missing.reason) == (False, auth_pb2.REASON_MALFORMED)
        writes = await validate(address, asking(token(BOB), "/v1/shape", "DELETE"))
        assert writes.reason == auth_pb2.REASON_FORBIDDEN
        # Without a request, Validate decides on the token alone, as before routes.
        alone = await validate(address, auth_pb2.ValidateRequest(token=token(BOB)))
        assert (alone.valid, alone.user_id) == (True, "bob")


async def test_validate_reads_no_credentials_from_the_request_headers(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(
        '[[routes]]\nname = "h"\npath_prefix = "/"\n'
        "when = '!(\"authorization\" in request.headers)'\n"
    )
    http = auth_pb2.HttpRequest(
        method="GET", path="/", headers={"Authorization": f"Bearer {token(ALICE)}"}
    )
    async with serving(routed(path)) as address:
        answer = await validate(address, auth_pb2.ValidateRequest(token=token(BOB), request=http))
    assert (answer.valid, answer.user_id) == (True, "bob")


# -- configuration ------------------------------------------------------------------------------


def test_secure_mode_takes_a_routes_only_file(routes_file: Path) -> None:
    cfg = secure_config("HS256", SIDECAR_CONFIG_FILE=str(routes_file))
    assert len(cfg.routes.routes) == 6
    assert "routes=6" in cfg.describe()


async def test_secure_mode_signed_tokens_through_the_routes(routes_file: Path) -> None:
    cfg = secure_config("HS256", SIDECAR_CONFIG_FILE=str(routes_file))
    now = 1_900_000_000
    validator = config.build_validator(cfg, lambda: now)
    service = EnvoyAuthorization(validator, cfg.envoy, gate=server.gate(cfg, validator, None))
    alice = sign("HS256", {**ALICE, "sub": "alice", "iat": now, "exp": now + 60})
    bob = sign("HS256", {**BOB, "sub": "bob", "iat": now, "exp": now + 60})
    assert status(await check(service, "/admin", alice)) == 200
    assert status(await check(service, "/admin", bob)) == 403


AUDIENCES = """
[[routes]]
name = "admin"
path_prefix = "/admin"
audience = "admin-api"

[[routes]]
name = "beta"
path_prefix = "/beta"
audience = "beta-api"
dry_run = true
"""


@pytest.mark.parametrize("cached", [True, False])
async def test_a_routes_audience_replaces_the_issuers(tmp_path: Path, cached: bool) -> None:
    path = tmp_path / "sidecar.toml"
    path.write_text(AUDIENCES)
    cache = {} if cached else {"SIDECAR_CACHE_SIZE": "0"}
    cfg = secure_config("HS256", AUTH_JWT_AUD="sync-api", SIDECAR_CONFIG_FILE=str(path), **cache)
    service = check_for(cfg)
    now = int(time.time())

    def signed(aud: str) -> str:
        return sign("HS256", {"sub": "alice", "aud": aud, "iat": now, "exp": now + 600})

    admin, sync, beta = signed("admin-api"), signed("sync-api"), signed("beta-api")
    # Each answer twice: a decision kept without the issuer's aud never answers with it.
    for _ in range(2):
        assert status(await check(service, "/admin/users", admin)) == 200
        assert status(await check(service, "/v1/shape", admin)) == 401
        refused = await check(service, "/admin/users", sync)
        assert status(refused) == 403
        assert refused.denied_response.body == json.dumps(
            {
                "error": "forbidden",
                "reason": "REASON_FORBIDDEN",
                "message": 'route "admin" requires audience "admin-api"',
            }
        )
        assert status(await check(service, "/v1/shape", sync)) == 200
        # In dry-run the route's audience only reports: the issuer's still decides.
        assert status(await check(service, "/beta", beta)) == 401
        assert status(await check(service, "/beta", sync)) == 200


def test_insecure_mode_refuses_issuers_but_takes_routes(routes_file: Path) -> None:
    assert len(routed(routes_file).routes.routes) == 6
    with_issuers = routes_file.parent / "issuers.toml"
    with_issuers.write_text('[[issuers]]\niss = "https://a"\nalg = ["HS256"]\n')
    with pytest.raises(ConfigError) as error:
        routed(with_issuers)
    assert "SIDECAR_CONFIG_FILE: is set, but AUTH_MODE=insecure" in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SIDECAR_DEFAULT_ROUTE", "allow", "SIDECAR_DEFAULT_ROUTE:"),
        ("SIDECAR_DRY_RUN", "maybe", "SIDECAR_DRY_RUN:"),
        ("SIDECAR_TOKEN_COOKIE", "a b", "SIDECAR_TOKEN_COOKIE:"),
        ("SIDECAR_CLAIM_HEADERS", "org_id", "SIDECAR_CLAIM_HEADERS:"),
        ("SIDECAR_CLAIM_HEADERS", "org_id=x y", "SIDECAR_CLAIM_HEADERS:"),
        ("SIDECAR_CLAIM_HEADERS", "org_id=authorization", "SIDECAR_CLAIM_HEADERS:"),
    ],
)
def test_bad_route_settings_name_their_variable(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        insecure_config(**{name: value})
    (line,) = str(error.value).splitlines()
    assert line.startswith(problem)


def test_a_bad_condition_is_a_config_error_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_text('[[routes]]\nname = "r"\nwhen = \'reqest.method == "GET"\'\n')
    with pytest.raises(ConfigError) as error:
        routed(path)
    assert str(error.value) == (
        "SIDECAR_CONFIG_FILE: route 'r': when: 1:7: undeclared reference to 'reqest.method'"
    )


# -- properties ---------------------------------------------------------------------------------

PATHS = st.sampled_from(["/health", "/public/a", "/admin", "/reports", "/v1/shape", "/beta", "/z"])
METHODS = st.sampled_from(["GET", "POST", "DELETE"])
CLAIMS = st.fixed_dictionaries(
    {"user_id": st.sampled_from(["u1", "u2"])},
    optional={
        "scope": st.sampled_from(["", "admin:write", "beta sync"]),
        "scp": st.lists(st.sampled_from(["sync", "sync:write", "beta"]), max_size=3),
        "realm_access": st.fixed_dictionaries(
            {"roles": st.lists(st.sampled_from(["analyst", "viewer"]), max_size=2)}
        ),
    },
)
BAD_TOKENS = st.one_of(
    st.sampled_from(
        ["x", "a.b.c", unsigned({"user_id": 5}), unsigned({"user_id": "u", "exp": "soon"})]
    ),
    st.text(alphabet="abcXYZ.-_", min_size=1, max_size=40),
)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EnvoyAuthorization]]:
    path = tmp_path_factory.mktemp("routes") / "sidecar.toml"
    path.write_text(ROUTES)
    enforced = check_for(routed(path))
    without_dry_run = ROUTES.replace("dry_run = true\n", "")
    unruled = tmp_path_factory.mktemp("unruled") / "sidecar.toml"
    unruled.write_text(without_dry_run.replace('scopes_any = ["beta"]\n', ""))
    yield {"enforced": enforced, "no_beta_rule": check_for(routed(unruled))}


@settings(max_examples=60, deadline=None)
@given(path=PATHS, method=METHODS, jwt=BAD_TOKENS)
async def test_no_route_lets_an_invalid_token_through_unless_it_ignores_it(
    services: dict[str, EnvoyAuthorization], path: str, method: str, jwt: str
) -> None:
    response = await check(services["enforced"], path, jwt, method=method)
    expected = 200 if path.startswith("/public") else 401
    assert status(response) == expected
    if expected == 200:
        assert "x-user-id" not in upstream(response)


@settings(max_examples=60, deadline=None)
@given(method=METHODS, claims=CLAIMS)
async def test_dry_run_never_changes_the_answer(
    services: dict[str, EnvoyAuthorization], method: str, claims: dict[str, Any]
) -> None:
    jwt = token(claims)
    shadowed = await check(services["enforced"], "/beta/x", jwt, method=method)
    unruled = await check(services["no_beta_rule"], "/beta/x", jwt, method=method)
    assert shadowed == unruled


def test_a_condition_reads_only_what_the_checker_finds_in_it() -> None:
    assert tuple(cel.TYPES) == rules.CONDITION_VARIABLES
    condition = cel.compile_condition('request.method == "GET" && "sync" in claims.scp')
    assert condition.reads == {"request.method", "claims"}
    assert cel.compile_condition("true").reads == frozenset()
    everything = " && ".join(f"has({n}.x)" for n in ("claims", "request.query", "request.headers"))
    everything += " && user_id == request.method + request.path + request.host"
    assert cel.compile_condition(everything).reads == set(rules.CONDITION_VARIABLES)


def test_request_fields_are_variables_of_their_own() -> None:
    with pytest.raises(cel.CelProblem, match="undeclared reference to 'request'"):
        cel.compile_condition('request["method"] == "GET"')
