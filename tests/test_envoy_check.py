"""How Check maps requests and decisions to CheckResponses: the adapter alone, no Envoy.

The end-to-end proof with a real Envoy is in test_envoy.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from support import insecure_config, secure_config, sign, unsigned

from sidecar import config
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.config import Config
from sidecar.core.errors import ConfigError

# A fixed instant, injected into every Validator here: no decision may depend on how long the
# suite ran between collecting these parameters and running them.
NOW = 1_900_000_000


def clock() -> float:
    return NOW


OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def check_for(cfg: Config) -> EnvoyAuthorization:
    return EnvoyAuthorization(config.build_validator(cfg, clock), cfg.envoy)


def request(
    headers: dict[str, str] | None = None,
    path: str = "/v1/shape?table=items",
    method: str = "GET",
    raw_headers: bool = False,
) -> external_auth_pb2.CheckRequest:
    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method = method
    http.path = path
    for key, value in (headers or {}).items():
        if raw_headers:  # what Envoy sends with encode_raw_headers: true
            http.header_map.headers.add(key=key, raw_value=value.encode())
        else:
            http.headers[key] = value
    return message


async def check(cfg: Config, **kwargs: Any) -> external_auth_pb2.CheckResponse:
    return await check_for(cfg).Check(request(**kwargs), None)  # type: ignore[arg-type]


def set_headers(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    options = response.ok_response.headers
    assert all(option.append_action == OVERWRITE for option in options)
    return {option.header.key: option.header.value for option in options}


def denied_headers(response: external_auth_pb2.CheckResponse) -> dict[str, str]:
    return {o.header.key: o.header.value for o in response.denied_response.headers}


def body(response: external_auth_pb2.CheckResponse) -> dict[str, Any]:
    assert denied_headers(response)["content-type"] == "application/json"
    result: dict[str, Any] = json.loads(response.denied_response.body)
    return result


def metadata(response: external_auth_pb2.CheckResponse) -> dict[str, Any]:
    return dict(response.dynamic_metadata)


def assert_allowed(response: external_auth_pb2.CheckResponse, user: str) -> None:
    assert response.status.code == code_pb2.OK
    assert response.WhichOneof("http_response") == "ok_response"
    assert set_headers(response)["x-user-id"] == user
    assert metadata(response) == {"user_id": user, "reason": "REASON_UNSPECIFIED"}


def assert_denied(response: external_auth_pb2.CheckResponse) -> None:
    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.WhichOneof("http_response") == "denied_response"
    assert response.denied_response.status.code == 401


HS = {"iat": NOW, "exp": NOW + 600, "sub": "alice"}


# -- where the token comes from -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_authorization_bearer_in_any_case(scheme: str) -> None:
    cfg = secure_config("HS256")
    response = await check(cfg, headers={"authorization": f"{scheme} {sign('HS256', HS)}"})
    assert_allowed(response, "alice")
    assert list(response.ok_response.headers_to_remove) == []


@pytest.mark.parametrize("value", ["", "Bearer", "Bearer   ", "Basic YWxpY2U6cHc=", "Token abc"])
async def test_no_bearer_token_is_missing(value: str) -> None:
    response = await check(insecure_config(), headers={"authorization": value})
    assert_denied(response)
    assert denied_headers(response)["www-authenticate"] == 'Bearer realm="auth-sidecar"'
    assert body(response) == {"error": "missing_token", "message": "Missing bearer token"}
    assert response.status.message == "Missing bearer token"
    assert metadata(response) == {"reason": "MISSING_TOKEN"}


async def test_realm_is_configurable() -> None:
    response = await check(insecure_config(SIDECAR_ENVOY_REALM="sync"))
    assert denied_headers(response)["www-authenticate"] == 'Bearer realm="sync"'


@pytest.mark.parametrize("value", ["{token}", "Bearer {token}", "bearer {token}"])
async def test_the_other_header(value: str) -> None:
    cfg = insecure_config(SIDECAR_ENVOY_TOKEN_HEADER="X-Auth-Token")
    token = unsigned({"sub": "bob"})
    response = await check(cfg, headers={"x-auth-token": value.format(token=token)})
    assert_allowed(response, "bob")


async def test_authorization_comes_before_the_other_header_and_the_param() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_TOKEN_HEADER="x-auth-token", SIDECAR_ENVOY_TOKEN_PARAM="t")
    first, second, third = (unsigned({"sub": name}) for name in ("a", "b", "c"))
    response = await check(
        cfg,
        headers={"authorization": f"Bearer {first}", "x-auth-token": second},
        path=f"/x?t={third}",
    )
    assert_allowed(response, "a")
    response = await check(cfg, headers={"x-auth-token": second}, path=f"/x?t={third}")
    assert_allowed(response, "b")


async def test_query_parameter_is_used_and_removed() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_TOKEN_PARAM="access_token")
    token = unsigned({"sub": "carol"})
    response = await check(cfg, path=f"/v1/shape?table=items&access_token={token}&offset=-1")
    assert_allowed(response, "carol")
    assert list(response.ok_response.query_parameters_to_remove) == ["access_token"]


async def test_query_parameter_is_off_by_default() -> None:
    response = await check(insecure_config(), path=f"/x?access_token={unsigned({'sub': 'a'})}")
    assert_denied(response)
    assert body(response)["error"] == "missing_token"


async def test_a_refused_query_token_is_a_401_too() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_TOKEN_PARAM="token")
    response = await check(cfg, path="/x?token=garbage")
    assert_denied(response)
    assert body(response)["reason"] == "REASON_MALFORMED"


async def test_raw_header_map_is_read_too() -> None:
    response = await check(
        insecure_config(),
        headers={"Authorization": f"Bearer {unsigned({'sub': 'dave'})}"},
        raw_headers=True,
    )
    assert_allowed(response, "dave")


# -- allowed requests ---------------------------------------------------------------------------


async def test_claims_header_carries_base64url_json() -> None:
    cfg = secure_config("HS256", SIDECAR_ENVOY_CLAIMS_HEADER="X-Claims")
    response = await check(cfg, headers={"authorization": f"Bearer {sign('HS256', HS)}"})
    encoded = set_headers(response)["x-claims"]
    assert "=" not in encoded
    assert json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))) == HS


@pytest.mark.parametrize(
    ("env", "headers", "path", "removed_headers", "removed_params"),
    [
        ({}, {"authorization": "Bearer {t}"}, "/x", [], []),
        ({"SIDECAR_ENVOY_STRIP_TOKEN": "true"}, {"authorization": "Bearer {t}"}, "/x",
         ["authorization"], []),
        ({"SIDECAR_ENVOY_STRIP_TOKEN": "true", "SIDECAR_ENVOY_TOKEN_HEADER": "x-t"},
         {"x-t": "{t}"}, "/x", ["x-t"], []),
        ({"SIDECAR_ENVOY_TOKEN_PARAM": "t"}, {}, "/x?t={t}", [], ["t"]),
        ({"SIDECAR_ENVOY_TOKEN_PARAM": "t", "SIDECAR_ENVOY_STRIP_TOKEN": "true"}, {}, "/x?t={t}",
         [], ["t"]),
    ],
    ids=["kept", "authorization stripped", "other header stripped", "param", "param stripped"],
)  # fmt: skip
async def test_what_is_removed_before_upstream(
    env: dict[str, str],
    headers: dict[str, str],
    path: str,
    removed_headers: list[str],
    removed_params: list[str],
) -> None:
    token = unsigned({"sub": "erin"})
    response = await check(
        insecure_config(**env),
        headers={key: value.format(t=token) for key, value in headers.items()},
        path=path.format(t=token),
    )
    assert_allowed(response, "erin")
    assert list(response.ok_response.headers_to_remove) == removed_headers
    assert list(response.ok_response.query_parameters_to_remove) == removed_params


async def test_user_header_is_configurable() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_USER_HEADER="X-Electric-User")
    response = await check(cfg, headers={"authorization": f"Bearer {unsigned({'sub': 'f'})}"})
    assert set_headers(response) == {"x-electric-user": "f"}


# -- refused requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason", "message"),
    [
        ({"iat": NOW, "exp": NOW - 60, "sub": "a"}, "REASON_EXPIRED", "Expired token"),
        ({"iat": NOW, "nbf": NOW + 60, "exp": NOW + 600, "sub": "a"}, "REASON_NOT_YET_VALID",
         "Token is not yet valid"),
        ({"iat": NOW, "exp": NOW + 600}, "REASON_INVALID_USER_ID", "Missing or invalid 'user_id'"),
        ({"exp": NOW + 600, "sub": "a"}, "REASON_MISSING_CLAIM", 'Missing required "iat" claim'),
    ],
    ids=["expired", "not yet valid", "no user", "no iat"],
)  # fmt: skip
async def test_refusals_carry_electric_messages(
    claims: dict[str, Any], reason: str, message: str
) -> None:
    cfg = secure_config("HS256")
    response = await check(cfg, headers={"authorization": f"Bearer {sign('HS256', claims)}"})
    assert_denied(response)
    assert body(response) == {"error": "invalid_token", "message": message, "reason": reason}
    assert response.status.message == message
    assert metadata(response) == {"reason": reason}
    described = message.replace('"', "'")
    assert denied_headers(response)["www-authenticate"] == (
        f'Bearer realm="auth-sidecar", error="invalid_token", error_description="{described}"'
    )


async def test_error_description_keeps_to_rfc_6750_characters() -> None:
    cfg = secure_config("HS256", AUTH_JWT_ISS="good")
    claims = {**HS, "iss": 'évil\\"'}
    response = await check(cfg, headers={"authorization": f"Bearer {sign('HS256', claims)}"})
    header = denied_headers(response)["www-authenticate"]
    description = header.split('error_description="', 1)[1][:-1]
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)
    assert body(response)["message"] == 'Invalid "iss" claim value: "évil\\\\\\""'


async def test_a_garbage_token_is_invalid_token() -> None:
    response = await check(secure_config("RS256"), headers={"authorization": "Bearer garbage"})
    assert_denied(response)
    assert body(response)["reason"] == "REASON_MALFORMED"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x.y.z",
        unsigned({"sub": "a"}),
        sign("HS256", HS),
        sign("HS256", {**HS, "exp": NOW - 10}),
        sign("HS256", {**HS, "sub": ""}),
    ],
)
@pytest.mark.parametrize("make", [insecure_config, lambda: secure_config("HS256")])
async def test_check_decides_exactly_as_validate(token: str, make: Any) -> None:
    cfg = make()
    decision = config.build_validator(cfg, clock).decide(token)
    response = await check(cfg, headers={"authorization": f"Bearer {token}"} if token else {})
    if decision.valid:
        assert_allowed(response, decision.user_id)
    elif token:
        assert body(response)["reason"] == decision.reason.wire
        assert body(response)["message"] == decision.message
    else:
        assert body(response)["error"] == "missing_token"


# -- CORS preflight -----------------------------------------------------------------------------

PREFLIGHT = {
    "origin": "https://app.example",
    "access-control-request-method": "GET",
    "x-user-id": "mallory",
}


async def test_preflight_passes_without_a_token_and_drops_spoofed_headers() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_CLAIMS_HEADER="x-claims")
    response = await check(cfg, headers=PREFLIGHT, method="OPTIONS")
    assert response.status.code == code_pb2.OK
    assert list(response.ok_response.headers) == []
    assert list(response.ok_response.headers_to_remove) == ["x-user-id", "x-claims"]


async def test_preflight_can_be_turned_off() -> None:
    cfg = insecure_config(SIDECAR_ENVOY_ALLOW_PREFLIGHT="false")
    assert_denied(await check(cfg, headers=PREFLIGHT, method="OPTIONS"))


@pytest.mark.parametrize(
    ("method", "drop"),
    [("GET", None), ("OPTIONS", "origin"), ("OPTIONS", "access-control-request-method")],
)
async def test_only_real_preflights_skip_the_token(method: str, drop: str | None) -> None:
    headers = {k: v for k, v in PREFLIGHT.items() if k != drop}
    assert_denied(await check(insecure_config(), headers=headers, method=method))


# -- configuration ------------------------------------------------------------------------------


def test_envoy_defaults() -> None:
    envoy = insecure_config().envoy
    assert (envoy.token_header, envoy.token_param, envoy.claims_header) == (None, None, None)
    assert (envoy.user_header, envoy.strip_token, envoy.allow_preflight) == (
        "x-user-id",
        False,
        True,
    )
    assert envoy.realm == "auth-sidecar"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SIDECAR_ENVOY_USER_HEADER", "x user", 'must be an HTTP header name, not "x user"'),
        ("SIDECAR_ENVOY_USER_HEADER", "Authorization", 'may not be "authorization"'),
        ("SIDECAR_ENVOY_CLAIMS_HEADER", "x:claims", 'must be an HTTP header name, not "x:claims"'),
        ("SIDECAR_ENVOY_TOKEN_HEADER", "host", 'may not be "host"'),
        ("SIDECAR_ENVOY_STRIP_TOKEN", "maybe", 'must be true or false, not "maybe"'),
        ("SIDECAR_ENVOY_ALLOW_PREFLIGHT", "2", 'must be true or false, not "2"'),
        ("SIDECAR_ENVOY_REALM", 'a"b', "must be printable ASCII without quotes or backslashes"),
    ],
)
def test_envoy_config_problems_name_the_variable(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.load({"AUTH_MODE": "insecure", name: value})
    assert raised.value.problems == [f"{name}: {problem}"]


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("yes", True), ("0", False)])
def test_envoy_booleans(raw: str, expected: bool) -> None:
    assert insecure_config(SIDECAR_ENVOY_STRIP_TOKEN=raw).envoy.strip_token is expected
