"""No verification keys loaded yet: no decision, and every adapter answers UNAVAILABLE.

A Verifier that raises KeysUnavailable stands in for a key source that has not loaded (a JWKS
fetch, say). The services run in process, on a real gRPC server over a real socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from support import insecure_config, sign

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import config
from sidecar.adapters import ext_authz
from sidecar.adapters.auth_service import AuthService
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.core.errors import KeysUnavailable
from sidecar.core.policy import Mode, Policy
from sidecar.core.validator import Validator
from sidecar.runtime import server

NOW = 1_700_000_000
POLICY = Policy(mode=Mode.SECURE, required=("iat", "exp"), skew=2, max_token_bytes=8192)


class NotLoaded:
    """A Verifier whose keys have not arrived."""

    algorithms = frozenset(("HS256",))

    def verify(self, header: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
        raise KeysUnavailable()


def validator() -> Validator:
    return Validator(POLICY, NotLoaded(), lambda: NOW)


def token(alg: str = "HS256") -> str:
    return sign(alg, {"sub": "alice", "iat": NOW, "exp": NOW + 60})


def test_the_validator_decides_nothing() -> None:
    with pytest.raises(KeysUnavailable, match="no verification keys"):
        validator().decide(token())


def test_refusals_that_need_no_key_are_still_decided() -> None:
    """The algorithm comes from configuration: a token for another one is refused as before."""
    decision = validator().decide(token("HS384"))
    assert (decision.valid, decision.reason.wire) == (False, "REASON_ALGORITHM_MISMATCH")
    assert validator().decide("not-a-token").reason.wire == "REASON_MALFORMED"


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    settings = insecure_config(SIDECAR_LISTEN="127.0.0.1:0")
    check = validator()
    auth = AuthService(check, config.build_minter(settings))
    grpc_server, address, _ = await server.start(
        settings, auth, EnvoyAuthorization(check, settings.envoy)
    )
    try:
        async with grpc.aio.insecure_channel(address) as open_channel:
            yield open_channel
    finally:
        await grpc_server.stop(0)


async def test_validate_answers_unavailable(channel: grpc.aio.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Validate(auth_pb2.ValidateRequest(token=token()), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert raised.value.details() == "no verification keys are loaded yet"


async def test_check_answers_unavailable_so_envoy_fails_closed(channel: grpc.aio.Channel) -> None:
    check = channel.unary_unary(
        f"/{ext_authz.NAME}/Check",
        request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
        response_deserializer=external_auth_pb2.CheckResponse.FromString,
    )
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.headers["authorization"] = f"Bearer {token()}"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await check(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
