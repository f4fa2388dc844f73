"""Shape-scoped tokens through the adapters: the settings, Validate over real gRPC, and Check
called directly (OPA-Envoy style, with an injected clock). The core's rules are in test_shape.py;
a real Envoy and Electric's own client are in test_electric.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2
from support import insecure_config, running, secure_config, sign, unsigned

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import config
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.config import Config
from sidecar.core.errors import ConfigError

NOW = 1_900_000_000
SHAPE = {"table": "items", "where": "owner = $1", "columns": ["id", "title"], "params": ["alice"]}
QUERY = (
    "columns=%22id%22%2C%22title%22&log=full&offset=-1&params%5B1%5D=alice&table=items"
    "&where=owner+%3D+%241"
)
MISMATCH = auth_pb2.REASON_SHAPE_MISMATCH


def token(**claims: Any) -> str:
    return unsigned({"sub": "alice", **claims})


# -- settings -----------------------------------------------------------------------------------


def test_the_shape_claim_is_off_by_default_and_the_path_is_electrics() -> None:
    cfg = insecure_config()
    assert cfg.shape_claim is None
    assert cfg.envoy.shape_path == "/v1/shape"


def test_the_shape_settings_from_variables_and_flags() -> None:
    cfg = config.load(
        {"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"},
        {"SIDECAR_SHAPE_PATH": "/electric/v1/shape"},
    )
    assert (cfg.shape_claim, cfg.envoy.shape_path) == ("shape", "/electric/v1/shape")


@pytest.mark.parametrize("path", ["v1/shape", "/v1/shape?x=1", "/v1#x"])
def test_a_bad_shape_path_names_its_variable(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load({"AUTH_MODE": "insecure", "SIDECAR_SHAPE_PATH": path})
    assert caught.value.problems == [
        f'SIDECAR_SHAPE_PATH: must be a path such as /v1/shape, not "{path}"'
    ]


# -- Validate, over real gRPC -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stubs() -> Iterator[dict[str, auth_pb2_grpc.AuthServiceStub]]:
    """Two live sidecars: one with the shape claim configured, one without."""
    with (
        running({"AUTH_MODE": "insecure", "SIDECAR_SHAPE_CLAIM": "shape"}) as shaped,
        running({"AUTH_MODE": "insecure"}) as plain,
        grpc.insecure_channel(shaped.address) as shaped_channel,
        grpc.insecure_channel(plain.address) as plain_channel,
    ):
        yield {
            "shaped": auth_pb2_grpc.AuthServiceStub(shaped_channel),
            "plain": auth_pb2_grpc.AuthServiceStub(plain_channel),
        }


def request(tok: str, **shape: Any) -> auth_pb2.ValidateRequest:
    fields = {"table": "items", "where": "owner = $1", "columns": ["title", "id"]}
    return auth_pb2.ValidateRequest(
        token=tok, shape=auth_pb2.ShapeRequest(**{**fields, "params": ["alice"], **shape})
    )


def test_validate_accepts_the_shape_the_claim_names(stubs: dict[str, Any]) -> None:
    response = stubs["shaped"].Validate(request(token(shape=SHAPE)))
    assert (response.valid, response.user_id, response.reason) == (True, "alice", 0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"table": "secrets"}, "table"),
        ({"where": "true"}, "where"),
        ({"where": ""}, "where"),
        ({"columns": ["id", "title", "secret"]}, "columns"),
        ({"columns": []}, "columns"),
        ({"params": ["bob"]}, "params"),
        ({"params": []}, "params"),
    ],
)
def test_validate_refuses_any_other_shape(
    stubs: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    response = stubs["shaped"].Validate(request(token(shape=SHAPE), **change))
    assert not response.valid and response.reason == MISMATCH
    assert (
        response.message == f'Shape mismatch: the request\'s "{field}" is not the "shape" claim\'s'
    )
    assert response.user_id == "" and not response.HasField("claims")


def test_validate_refuses_a_token_without_the_claim(stubs: dict[str, Any]) -> None:
    response = stubs["shaped"].Validate(request(token()))
    assert (response.reason, response.message) == (MISMATCH, 'Token has no "shape" claim')


def test_validate_refuses_a_shape_without_a_table(stubs: dict[str, Any]) -> None:
    response = stubs["shaped"].Validate(request(token(shape=SHAPE), table=""))
    assert (response.reason, response.message) == (
        MISMATCH,
        'Invalid shape request: "table" is missing',
    )


def test_validate_keeps_the_tokens_own_reason_first(stubs: dict[str, Any]) -> None:
    response = stubs["shaped"].Validate(request(token(shape=SHAPE, exp=1)))
    assert response.reason == auth_pb2.REASON_EXPIRED


def test_validate_without_a_shape_decides_on_the_token_alone(stubs: dict[str, Any]) -> None:
    assert stubs["shaped"].Validate(auth_pb2.ValidateRequest(token=token())).valid


def test_validate_ignores_the_shape_when_no_claim_is_configured(stubs: dict[str, Any]) -> None:
    assert stubs["plain"].Validate(request(token(), table="secrets")).valid


# -- Check, called directly ---------------------------------------------------------------------


def clock() -> float:
    return NOW


def check_for(cfg: Config) -> EnvoyAuthorization:
    return EnvoyAuthorization(
        config.build_validator(cfg, clock), cfg.envoy, shape_claim=cfg.shape_claim
    )


async def check(
    cfg: Config, tok: str | None, path: str = "/v1/shape?" + QUERY
) -> external_auth_pb2.CheckResponse:
    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method, http.path = "GET", path
    if tok is not None:
        http.headers["authorization"] = f"Bearer {tok}"
    return await check_for(cfg).Check(message, None)  # type: ignore[arg-type]


SHAPED = insecure_config(SIDECAR_SHAPE_CLAIM="shape")


def assert_forbidden(response: external_auth_pb2.CheckResponse, message: str) -> None:
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.status.message == message
    denied = response.denied_response
    assert denied.status.code == 403
    headers = {o.header.key: o.header.value for o in denied.headers}
    assert headers["content-type"] == "application/json"
    assert headers["www-authenticate"].startswith(
        'Bearer realm="auth-sidecar", error="insufficient_scope", error_description="'
    )
    assert json.loads(denied.body) == {
        "error": "forbidden",
        "reason": "REASON_SHAPE_MISMATCH",
        "message": message,
    }
    assert dict(response.dynamic_metadata) == {"reason": "REASON_SHAPE_MISMATCH"}


async def test_check_lets_the_claimed_shape_through() -> None:
    response = await check(SHAPED, token(shape=SHAPE))
    assert response.status.code == code_pb2.OK
    assert dict(response.dynamic_metadata)["user_id"] == "alice"


async def test_check_lets_live_polls_of_the_claimed_shape_through() -> None:
    live = "&handle=1-2&offset=0_0&live=true&cursor=123&live_sse=false&cache-buster=x"
    response = await check(SHAPED, token(shape=SHAPE), "/v1/shape?" + QUERY + live)
    assert response.status.code == code_pb2.OK


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (QUERY.replace("table=items", "table=secrets"), "table"),
        (QUERY.replace("%3D+%241", "%3D+%241+or+true"), "where"),
        (QUERY.replace("&where=owner+%3D+%241", ""), "where"),
        (QUERY.replace("%2C%22title%22", ""), "columns"),
        (QUERY.replace("columns=%22id%22%2C%22title%22&", ""), "columns"),
        (QUERY.replace("alice", "bob"), "params"),
    ],
)
async def test_check_forbids_any_other_shape(query: str, field: str) -> None:
    response = await check(SHAPED, token(shape=SHAPE), "/v1/shape?" + query)
    assert_forbidden(
        response, f'Shape mismatch: the request\'s "{field}" is not the "shape" claim\'s'
    )


async def test_check_forbids_a_repeated_table() -> None:
    response = await check(SHAPED, token(shape=SHAPE), "/v1/shape?" + QUERY + "&table=secrets")
    assert_forbidden(response, 'Invalid shape request: "table" is repeated')


@pytest.mark.parametrize("path", ["/v1/shape/", "//v1/shape", "/v1/%73hape"])
async def test_check_sees_every_spelling_of_the_shape_path(path: str) -> None:
    response = await check(SHAPED, token(), path + "?table=items")
    assert_forbidden(response, 'Token has no "shape" claim')


async def test_check_still_answers_401_for_missing_and_bad_tokens() -> None:
    missing = await check(SHAPED, None)
    assert missing.denied_response.status.code == 401
    expired = await check(SHAPED, token(shape=SHAPE, exp=NOW - 60))
    assert expired.status.code == code_pb2.UNAUTHENTICATED
    assert expired.denied_response.status.code == 401
    assert json.loads(expired.denied_response.body)["reason"] == "REASON_EXPIRED"


async def test_check_authenticates_other_paths_as_before() -> None:
    response = await check(SHAPED, token(), "/v1/health?table=secrets")
    assert response.status.code == code_pb2.OK


async def test_check_ignores_shapes_when_no_claim_is_configured() -> None:
    response = await check(insecure_config(), token(), "/v1/shape?table=secrets")
    assert response.status.code == code_pb2.OK


async def test_check_uses_the_configured_shape_path() -> None:
    cfg = insecure_config(SIDECAR_SHAPE_CLAIM="shape", SIDECAR_SHAPE_PATH="/electric/v1/shape")
    assert (await check(cfg, token(), "/v1/shape?table=x")).status.code == code_pb2.OK
    forbidden = await check(cfg, token(), "/electric/v1/shape?table=x")
    assert_forbidden(forbidden, 'Token has no "shape" claim')


async def test_check_in_secure_mode_with_a_namespaced_claim() -> None:
    cfg = secure_config("HS256", SIDECAR_SHAPE_CLAIM="https://app.example/shape")
    claims = {"iat": NOW, "exp": NOW + 600, "sub": "alice"}
    tok = sign(
        "HS256", {**claims, "https://app.example/shape": {"table": "items", "namespace": "app"}}
    )
    assert (await check(cfg, tok, "/v1/shape?table=app.items")).status.code == code_pb2.OK
    forbidden = await check(cfg, tok, "/v1/shape?table=items")
    assert forbidden.denied_response.status.code == 403
