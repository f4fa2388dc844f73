"""Retries on UNAVAILABLE through gRPC's service-config retry policy, counted by a real in-process
gRPC server that fails a set number of times before it answers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from support import closed_port

from authsidecar import (
    DEFAULT_RETRY_ATTEMPTS,
    MAX_RETRY_ATTEMPTS,
    AsyncAuthClient,
    AuthClient,
    retry_service_config,
)
from authsidecar.v1 import auth_pb2, auth_pb2_grpc

FAST = 0.01  # the backoff, to keep the tests quick
KEPT_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)  # what Flaky's Revoke answers


class Flaky(auth_pb2_grpc.AuthServiceServicer):
    """Fails the first `failures` calls of each method with `code`, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode) -> None:
        self.failures = failures
        self.code = code
        self.attempts: Counter[str] = Counter()

    def _fail(self, method: str, context: grpc.ServicerContext) -> None:
        self.attempts[method] += 1
        if self.attempts[method] <= self.failures:
            context.abort(self.code, "flaky: try again")

    def Validate(
        self, request: auth_pb2.ValidateRequest, context: grpc.ServicerContext
    ) -> auth_pb2.ValidateResponse:
        self._fail("Validate", context)
        return auth_pb2.ValidateResponse(valid=True, user_id="alice")

    def Mint(
        self, request: auth_pb2.MintRequest, context: grpc.ServicerContext
    ) -> auth_pb2.MintResponse:
        self._fail("Mint", context)
        return auth_pb2.MintResponse(token="minted")

    def Revoke(
        self, request: auth_pb2.RevokeRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RevokeResponse:
        self._fail("Revoke", context)
        response = auth_pb2.RevokeResponse()
        response.kept_until.FromDatetime(KEPT_UNTIL)
        return response


@contextmanager
def flaky(
    failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
) -> Iterator[tuple[str, Flaky]]:
    """A Flaky server on 127.0.0.1; yields (address, servicer)."""
    servicer = Flaky(failures, code)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def test_default_attempts_then_success() -> None:
    with (
        flaky(DEFAULT_RETRY_ATTEMPTS - 1) as (address, servicer),
        AuthClient(address, retry_backoff=FAST) as client,
    ):
        assert client.validate("t").user_id == "alice"
        assert client.mint("alice").token == "minted"
    assert servicer.attempts == {"Validate": DEFAULT_RETRY_ATTEMPTS, "Mint": DEFAULT_RETRY_ATTEMPTS}


def test_revoke_is_retried_too() -> None:
    with (
        flaky(DEFAULT_RETRY_ATTEMPTS - 1) as (address, servicer),
        AuthClient(address, retry_backoff=FAST) as client,
    ):
        assert client.revoke_token("", "jti-1", KEPT_UNTIL) == KEPT_UNTIL
    assert servicer.attempts == {"Revoke": DEFAULT_RETRY_ATTEMPTS}


def test_gives_up_with_unavailable_after_the_last_attempt() -> None:
    with (
        flaky(DEFAULT_RETRY_ATTEMPTS) as (address, servicer),
        AuthClient(address) as client,
        pytest.raises(grpc.RpcError) as raised,
    ):
        client.validate("t")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["Validate"] == DEFAULT_RETRY_ATTEMPTS


def test_up_to_grpcs_limit() -> None:
    with (
        flaky(MAX_RETRY_ATTEMPTS - 1) as (address, servicer),
        AuthClient(address, retry_attempts=MAX_RETRY_ATTEMPTS, retry_backoff=FAST) as client,
    ):
        assert client.validate("t").valid
    assert servicer.attempts["Validate"] == MAX_RETRY_ATTEMPTS


def test_retries_off() -> None:
    with (
        flaky(1) as (address, servicer),
        AuthClient(address, retry_attempts=1) as client,
        pytest.raises(grpc.RpcError) as raised,
    ):
        client.mint("alice")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["Mint"] == 1


def test_other_codes_are_not_retried() -> None:
    with (
        flaky(1, grpc.StatusCode.PERMISSION_DENIED) as (address, servicer),
        AuthClient(address, retry_backoff=FAST) as client,
        pytest.raises(grpc.RpcError) as raised,
    ):
        client.mint("alice")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert servicer.attempts["Mint"] == 1


async def test_async_client_retries_too() -> None:
    with flaky(DEFAULT_RETRY_ATTEMPTS - 1) as (address, servicer):
        async with AsyncAuthClient(address, retry_backoff=FAST) as client:
            assert (await client.validate("t")).user_id == "alice"
            assert (await client.mint("alice")).token == "minted"
    assert servicer.attempts == {"Validate": DEFAULT_RETRY_ATTEMPTS, "Mint": DEFAULT_RETRY_ATTEMPTS}


def test_nothing_listening_is_still_unavailable() -> None:
    with (
        AuthClient(f"127.0.0.1:{closed_port()}", retry_backoff=FAST) as client,
        pytest.raises(grpc.RpcError) as raised,
    ):
        client.validate("x")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("attempts", "backoff"), [(0, 0.1), (6, 0.1), (2.5, 0.1), (True, 0.1), (3, 0), (3, 0.005)]
)
def test_bad_retry_settings_are_a_value_error(attempts: Any, backoff: float) -> None:
    with pytest.raises(ValueError, match="retry_"):
        AuthClient("127.0.0.1:1", retry_attempts=attempts, retry_backoff=backoff)


def test_the_policy_is_the_go_and_typescript_clients_policy() -> None:
    # clients/go/internal_test.go and clients/typescript/test/retry.test.ts expect the same.
    assert retry_service_config(DEFAULT_RETRY_ATTEMPTS, 0.1) == (
        '{"methodConfig":[{"name":[{"service":"authsidecar.v1.AuthService"}],"retryPolicy":{'
        '"backoffMultiplier":2,"initialBackoff":"0.100s","maxAttempts":3,"maxBackoff":"1.000s",'
        '"retryableStatusCodes":["UNAVAILABLE"]}}]}'
    )
    long = json.loads(retry_service_config(5, 2.5))["methodConfig"][0]["retryPolicy"]
    assert (long["initialBackoff"], long["maxBackoff"]) == ("2.500s", "2.500s")
    assert retry_service_config(1, 0) == "{}"
