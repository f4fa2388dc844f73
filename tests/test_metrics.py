"""The HTTP side listener of a real sidecar process: `/metrics` after known traffic, parsed with
prometheus_client's own parser, with exact counts; `/healthz` and `/readyz` through a drain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jwks_server import jwks_server
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    STOPPED,
    Sidecar,
    StartSidecar,
    _http_get,
    public_jwk,
    running,
    serving_pids,
    unsigned,
    until,
)

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import __version__, config
from sidecar.keys.fetch import FetchSettings, Refresher, Remote
from sidecar.keys.jwks import JwksVerifier
from sidecar.observe.metrics import Metrics
from sidecar.runtime.reload import KeyFetchers, Reloader

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
    # One cache for both RPCs: the good token is verified once, then served from memory; every
    # other token is a miss (refusals are not cached), and the token-less Check never looks.
    assert samples[("auth_sidecar_cache_lookups_total", (("result", "hit"),))] == 4
    assert samples[("auth_sidecar_cache_lookups_total", (("result", "miss"),))] == 4


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


def test_reloads_are_counted(sidecar: Sidecar) -> None:
    sidecar.send(signal.SIGHUP)
    sidecar.logged("reloaded (SIGHUP)")
    samples = _samples(_http_get(http_address(sidecar), "/metrics")[1])
    assert samples[("auth_sidecar_reloads_total", (("result", "ok"),))] == 1
    assert ("auth_sidecar_reloads_total", (("result", "error"),)) not in samples


async def test_fetches_and_key_set_age_are_recorded() -> None:
    """Real fetches from a real HTTP server; the clock is injected, so the age is exact."""
    now = [1_900_000_000.0]
    metrics = Metrics(clock=lambda: now[0])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with jwks_server(up=False) as server:
        server.serve_keys(public_jwk(key, kid="a"))
        settings = FetchSettings(refresh=300, min_refresh=10, timeout=5, max_bytes=64 * 1024)
        refresher = Refresher(
            Remote(server.url),
            JwksVerifier(frozenset({"RS256"})),
            settings,
            on_fetch=metrics.fetched,
        )
        assert not await refresher.refresh()
        assert not await refresher.refresh()
        server.up()
        assert await refresher.refresh()
    now[0] += 42.5
    samples = _samples(generate_latest(metrics.registry).decode())
    source = (("source", server.url),)
    assert samples[("auth_sidecar_jwks_fetches_total", (("result", "error"), *source))] == 2
    assert samples[("auth_sidecar_jwks_fetches_total", (("result", "ok"), *source))] == 1
    assert samples[("auth_sidecar_jwks_updated_timestamp_seconds", source)] == 1_900_000_000
    assert samples[("auth_sidecar_jwks_age_seconds", source)] == 42.5


async def test_failed_reloads_are_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    key = tmp_path / "key"
    key.write_text("k" * 32)
    env = {"AUTH_MODE": "secure", "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY_FILE": str(key)}
    running = config.load(env)
    reloader = Reloader(
        lambda: config.load(env), running, lambda _: None, KeyFetchers(), on_reload=metrics.reloaded
    )
    key.write_text("short")
    assert not await reloader.reload("SIGHUP")
    samples = _samples(generate_latest(metrics.registry).decode())
    assert samples[("auth_sidecar_reloads_total", (("result", "error"),))] == 1
    assert ("auth_sidecar_reloads_total", (("result", "ok"),)) not in samples


def test_workers_count_as_one(sidecar_factory: StartSidecar) -> None:
    """Two workers, one `/metrics`: whichever worker answers, it shows the sum of both, and a
    worker that dies keeps its counts (prometheus_client's multiprocess mode)."""
    sidecar = sidecar_factory(
        {"AUTH_MODE": "insecure", "SIDECAR_WORKERS": "2", "SIDECAR_HTTP_LISTEN": "127.0.0.1:0"}
    )
    address = http_address(sidecar)
    good, expired = unsigned({"sub": "w"}), unsigned({"sub": "w", "exp": 1})
    for token in [good] * 30 + [expired] * 10:
        # A connection per call, so that the kernel spreads the calls over both workers.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(sidecar.address, options=options) as channel:
            auth_pb2_grpc.AuthServiceStub(channel).Validate(
                auth_pb2.ValidateRequest(token=token), timeout=10
            )

    def counts() -> tuple[float, ...]:
        status, text = _http_get(address, "/metrics")
        assert status == 200
        samples = _samples(text)
        return (
            samples[("auth_sidecar_decisions_total", _decision("Validate", "true", "UNSPECIFIED"))],
            samples[("auth_sidecar_decisions_total", _decision("Validate", "false", "EXPIRED"))],
            samples[("auth_sidecar_rpc_duration_seconds_count", (("rpc", "Validate"),))],
            samples[("auth_sidecar_rpcs_in_flight", ())],
            samples[("auth_sidecar_build_info", (("version", __version__),))],
        )

    # Scrapes, too, go to either worker: every answer is the same sum.
    for _ in range(10):
        assert counts() == (30, 10, 40, 0, 1)
        assert _http_get(address, "/readyz") == (200, "SERVING\n")
    victim = serving_pids(sidecar.log)[0]
    os.kill(victim, signal.SIGKILL)
    until(lambda: serving_pids(sidecar.log).get(0) != victim)
    for _ in range(4):
        assert counts() == (30, 10, 40, 0, 1)
    assert sidecar.terminate() == 0
    # Both workers took calls (the sums above add up two processes), the victim's not logged.
    stopped = [int(m[2]) for line in sidecar.log if (m := STOPPED.search(line))]
    assert len(stopped) == 2 and sum(stopped) < 40, sidecar.log


def _decision(rpc: str, valid: str, reason: str) -> tuple[tuple[str, str], ...]:
    return (("reason", f"REASON_{reason}"), ("rpc", rpc), ("valid", valid))
