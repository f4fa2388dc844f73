"""The HTTP side listener of a real sidecar process: `/metrics` after known traffic, parsed with
prometheus_client's own parser, with exact counts; `/healthz` and `/readyz` through a drain."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from support import Sidecar, _http_get, running, unsigned

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import __version__, config
from sidecar.errors import ConfigError

_HTTP = re.compile(r" http=(\S+)")


def http_address(sidecar: Sidecar) -> str:
    """The side listener's bound address, from the start-up line."""
    found = _HTTP.search(sidecar.logged(" serving "))
    assert found, sidecar.log
    return found.group(1)


@pytest.fixture
def sidecar() -> Iterator[Sidecar]:
    env = {"AUTH_MODE": "insecure", "SIDECAR_HTTP_LISTEN": "127.0.0.1:0"}
    with running(env) as started:
        yield started


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _check(token: str | None) -> external_auth_pb2.CheckRequest:
    message = external_auth_pb2.CheckRequest()
    http = message.attributes.request.http
    http.method, http.path = "GET", "/v1/shape"
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    return message


def test_metrics_count_known_traffic_exactly(sidecar: Sidecar) -> None:
    good, expired = unsigned({"sub": "m"}), unsigned({"sub": "m", "exp": 1})
    with grpc.insecure_channel(sidecar.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        for token in (good, good, good, expired, "not-a-token"):
            auth.Validate(auth_pb2.ValidateRequest(token=token), timeout=10)
        auth.Mint(auth_pb2.MintRequest(user_id="m"), timeout=10)
        check = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=external_auth_pb2.CheckRequest.SerializeToString,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        for maybe in (good, good, "x.y.z", None):
            check(_check(maybe), timeout=10)
    status, text = _http_get(http_address(sidecar), "/metrics")
    assert status == 200
    samples = _samples(text)

    def decisions(rpc: str, valid: str, reason: str) -> float:
        labels = (("reason", reason), ("rpc", rpc), ("valid", valid))
        return samples[("auth_sidecar_decisions_total", labels)]

    assert decisions("Validate", "true", "REASON_UNSPECIFIED") == 3
    assert decisions("Validate", "false", "REASON_EXPIRED") == 1
    assert decisions("Validate", "false", "REASON_MALFORMED") == 1
    assert decisions("Validate", "false", "REASON_BAD_SIGNATURE") == 0
    assert decisions("Check", "true", "REASON_UNSPECIFIED") == 2
    # The request without a token is refused before any decision on a token.
    assert decisions("Check", "false", "REASON_MALFORMED") == 1
    for rpc, calls in (("Validate", 5), ("Mint", 1), ("Check", 4)):
        assert samples[("auth_sidecar_rpc_duration_seconds_count", (("rpc", rpc),))] == calls
        assert (
            samples[("auth_sidecar_rpc_duration_seconds_bucket", (("le", "+Inf"), ("rpc", rpc)))]
            == calls
        )
    assert samples[("auth_sidecar_rpcs_in_flight", ())] == 0
    assert samples[("auth_sidecar_build_info", (("version", __version__),))] == 1


async def test_readyz_mirrors_health_through_the_drain(sidecar: Sidecar) -> None:
    address = http_address(sidecar)
    assert await asyncio.to_thread(_http_get, address, "/readyz") == (200, "SERVING\n")
    assert await asyncio.to_thread(_http_get, address, "/healthz") == (200, "ok\n")
    assert (await asyncio.to_thread(_http_get, address, "/nope"))[0] == 404
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        # An open Watch holds the drain open for the grace period: time to look at /readyz.
        health: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
        watch = health.Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        sidecar.send(signal.SIGTERM)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await asyncio.to_thread(_http_get, address, "/readyz") == (503, "NOT_SERVING\n")
        assert await asyncio.to_thread(_http_get, address, "/healthz") == (200, "ok\n")
        watch.cancel()
    assert await asyncio.to_thread(sidecar.wait) == 0


def test_metrics_need_one_process() -> None:
    env = {"AUTH_MODE": "insecure", "SIDECAR_HTTP_LISTEN": "127.0.0.1:0", "SIDECAR_WORKERS": "2"}
    with pytest.raises(ConfigError) as raised:
        config.load(env)
    assert raised.value.problems == [
        "SIDECAR_HTTP_LISTEN: needs SIDECAR_WORKERS=1 (not 2): metrics are per process"
    ]
    assert config.load({**env, "SIDECAR_LISTEN": "unix:/tmp/one-process.sock"}).http_listen
