"""Server assembly: the one place where config, core, adapters and the gRPC server meet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar import __version__
from sidecar.adapters import auth_service, ext_authz
from sidecar.adapters.auth_service import AuthService
from sidecar.adapters.connect import ConnectAuthService
from sidecar.adapters.ext_authz import EnvoyAuthorization
from sidecar.adapters.forward_auth import ForwardAuth
from sidecar.adapters.gate import Gate
from sidecar.config import Config, build_minter, build_revoker, decider
from sidecar.core import cache, introspection
from sidecar.core.errors import BindError
from sidecar.core.policy import Mode
from sidecar.core.revocation import RevokingDecider
from sidecar.keys import introspect, tls
from sidecar.keys.jwks import JwksVerifier
from sidecar.observe.observability import Observability
from sidecar.observe.traffic import Traffic
from sidecar.protocols.http_server import HttpServer, Limits, Route
from sidecar.runtime import binding, eventloop, limits
from sidecar.runtime.reload import KeyFetchers, Reloader
from sidecar.stores.base import EMBEDDED
from sidecar.stores.replica import Replica

log = logging.getLogger("auth-sidecar")

# The drain's traffic has settled once no call has started, and none is running, for this long.
QUIET_SECONDS = 0.1
# Health's service for the revocations' freshness; how often it and the metrics are updated.
REVOCATIONS = "authsidecar.v1.Revocations"
WATCH_SECONDS = 1.0
# How long start-up waits for the embedded store's first copy before serving without it.
LOCAL_SYNC_SECONDS = 5.0
# The part of the grace period kept for the stop itself, in which taken calls finish (at most
# half of the grace period).
STOP_SECONDS = 1.0


def run(config: Config, load: Callable[[], Config] | None = None, worker: bool = False) -> int:
    """Serves until SIGTERM or SIGINT, then drains and returns 0.

    `load` re-reads the configuration: with it, SIGHUP and changed files reload it. A
    supervisor's `worker` shares its port with the other workers, and also drains when the
    supervisor is gone (see supervisor.py).
    """
    return eventloop.runner(config.event_loop)(serve(config, load, worker))


async def serve(
    config: Config, load: Callable[[], Config] | None = None, worker: bool = False
) -> int:
    # Handlers first: once the start-up line is out, a signal must mean a drain, not a kill.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if worker:
        # The supervisor holds the other end of stdin: end of file means that it died.
        loop.add_reader(0, _stop_at_end_of_input, loop, stopping)
    observe = Observability(config)
    replica = (
        Replica(config.revocation, observe.metrics.store_events() if observe.metrics else None)
        if config.revocation
        else None
    )
    auth, check = assemble(config, observe, replica)
    await observe.open(reuse_port=worker)
    try:
        return await _serve(config, auth, check, observe, stopping, worker, load, replica)
    finally:
        if replica is not None:
            await replica.stop()
        await observe.close()


def assemble(
    config: Config, observe: Observability | None = None, replica: Replica | None = None
) -> tuple[AuthService, EnvoyAuthorization]:
    """Both adapters over one validator (cached as configured), observed when `observe` says,
    refusing the revocations that `replica` holds.

    The one place the services are built: `serve` and the in-process test server share it.
    """
    validate, check, _ = _deciders(config, observe, replica)
    auth = AuthService(
        validate,
        build_minter(config),
        config.cache_size,
        config.shape_claim,
        gate(config, validate, observe),
        build_revoker(config),
        replica,
    )
    return auth, EnvoyAuthorization(
        check,
        config.envoy,
        config.cache_size,
        config.shape_claim,
        gate(config, check, observe),
    )


def gate(config: Config, validator: cache.Decider, observe: Observability | None) -> Gate:
    """A Gate with `config`'s routes, reporting their refusals to `observe`."""
    return Gate(
        validator,
        config.envoy,
        config.shape_claim,
        config.routes,
        observe.route_denied if observe else None,
    )


def http_api(
    config: Config,
    auth: AuthService,
    observe: Observability | None = None,
    replica: Replica | None = None,
) -> tuple[HttpServer, ForwardAuth]:
    """The HTTP API (SIDECAR_HTTP_API_LISTEN): AuthService over Connect, with `auth` itself,
    and forward auth, on a Gate of its own (metrics count its decisions as ForwardAuth)."""
    forward_decider = _deciders(config, observe, replica)[2]
    forward = ForwardAuth(
        gate(config, forward_decider, observe),
        config.forward_auth_path,
        config.cache_size,
        config.forward_auth_max_age,
    )
    traffic = observe.traffic if observe else Traffic()
    routes = (
        Route(
            "/" + auth_service.NAME,
            ConnectAuthService(auth, traffic, config.cache_size),
            subtree=True,
            max_body=limits.max_message_bytes(config.max_token_bytes),
        ),
        Route(config.forward_auth_path, forward, subtree=True),
    )
    http_limits = Limits(
        # The token rides in a header: room for the largest one, and for the rest.
        max_header_bytes=config.max_token_bytes + 8192,
        idle_seconds=config.http_idle_seconds,
        max_connections=config.http_max_connections,
    )
    return HttpServer(routes, http_limits, "SIDECAR_HTTP_API_LISTEN", traffic), forward


def _deciders(
    config: Config, observe: Observability | None, replica: Replica | None = None
) -> tuple[cache.Decider, cache.Decider, cache.Decider]:
    """What Validate, Check and forward auth decide with: one router or validator, behind one
    fresh cache (so a reload, which builds them anew, starts with an empty cache), and in front
    of it the revocations (checked on every decision, cache hits included)."""
    fetched = [
        c.verifier for c in config.issuers or (config,) if isinstance(c.verifier, JwksVerifier)
    ]
    metrics = observe.metrics if observe else None
    validator = cache.caching(
        decider(config),
        config.cache_size,
        config.cache_max_ttl,
        config.clock_skew,
        epoch=(lambda: sum(v.generation for v in fetched)) if fetched else None,
        counters=metrics.cache_counters() if metrics else None,
    )
    introspected = [c for c in config.issuers or (config,) if c.introspection is not None]
    if introspected:
        validator = introspecting(validator, introspected[0], config.cache_size)
    if replica is not None:
        validator = RevokingDecider(validator, replica.held, replica.settings.posture)
    if observe is None:
        return validator, validator, validator
    return (
        observe.decider(validator, "Validate"),
        observe.decider(validator, "Check"),
        observe.decider(validator, "ForwardAuth"),
    )


def introspecting(validator: cache.Decider, issuer: Config, cache_size: int) -> cache.Decider:
    """`validator` for JWTs, and RFC 7662 introspection at `issuer`'s endpoint for opaque tokens,
    decided by `issuer`'s policy (answers cached)."""
    settings = issuer.introspection
    assert settings is not None  # noqa: S101 - the caller checked
    answers = introspection.AnswerCache(
        introspection.CacheSettings(
            settings.cache_seconds, settings.negative_seconds, max(cache_size, 1024)
        ),
        time.time,
    )
    verifier = issuer.verifier
    discovered = verifier if isinstance(verifier, JwksVerifier) else None
    post = introspect.UrllibPost(
        settings, (lambda: discovered.introspection_endpoint) if discovered else None
    )
    introspector = introspect.Introspector(post, answers, introspect.RateLimit(settings.max_rate))
    return introspect.IntrospectingDecider(
        validator, introspector, answers, issuer.policy, every_token=settings.every_token
    )


async def _serve(
    config: Config,
    auth: AuthService,
    check: EnvoyAuthorization,
    observe: Observability,
    stopping: asyncio.Event,
    worker: bool,
    load: Callable[[], Config] | None,
    replica: Replica | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    traffic = observe.traffic
    for issuer in config.issuers or (config,):
        for warning in issuer.warnings:
            log.warning(
                "AUTH_JWT_JWKS_FILE of iss=%s: %s",
                issuer.iss,
                warning,
                extra={"repeat_key": (issuer.iss, warning)},
            )
    metrics = observe.metrics
    fetchers = KeyFetchers(metrics.fetched if metrics else None)
    fetchers.start(config, fetchers.initial(config))
    refreshers = fetchers.refreshers
    if replica is not None:
        replica.start()
        if replica.settings.url == EMBEDDED:
            # A local file: its first copy is in within milliseconds, so the server starts with
            # it, and the ready file means ready. A store that fails is waited for below.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replica.ready.wait(), LOCAL_SYNC_SECONDS)
    synced = replica is None or replica.ready.is_set()
    server, address, health_servicer = await start(
        config, auth, check, traffic, worker, serving=not refreshers and synced
    )
    http_server, forward, http_address = None, None, None
    if config.http_api_listen:
        http_server, forward = http_api(config, auth, observe, replica)
        try:
            http_address = await http_server.start(config.http_api_listen, reuse_port=worker)
        except BindError:
            await server.stop(0)
            raise
    background: list[asyncio.Task[Any]] = []
    readiness = [r.ready for r in refreshers] + ([] if synced or not replica else [replica.ready])
    if readiness:
        background.append(
            asyncio.create_task(_serving_when_ready(readiness, health_servicer, observe))
        )
    else:
        observe.ready(True)
    if replica is not None:
        # Set before the ready file is written: a launcher may ask at once.
        stale = replica.stale()
        states = health_pb2.HealthCheckResponse
        await health_servicer.set(REVOCATIONS, states.NOT_SERVING if stale else states.SERVING)
        background.append(asyncio.create_task(watch(replica, health_servicer, observe, stale)))
    if load is not None:

        def apply(new: Config) -> None:
            validate, decide, forward_decider = _deciders(new, observe, replica)
            auth.swap(validate, build_minter(new), gate(new, validate, observe), build_revoker(new))
            check.swap(decide, new.routes)
            if forward is not None:
                forward.swap(forward_decider, new.routes)
            observe.publish(new)

        reloader = Reloader(
            load, config, apply, fetchers, on_reload=metrics.reloaded if metrics else None
        )
        loop.add_signal_handler(
            signal.SIGHUP, lambda: background.append(loop.create_task(reloader.reload("SIGHUP")))
        )
        if config.reload_seconds:
            background.append(asyncio.create_task(reloader.poll(config.reload_seconds)))
    http = observe.side.address if observe.side else None
    log.info(
        "%s serving %s loop=%s",
        __version__,
        replace(config, listen=address, http_listen=http, http_api_listen=http_address).describe(),
        type(loop).__module__.partition(".")[0],  # uvloop, or asyncio
    )
    if config.ready_file:
        try:
            write_ready_file(config.ready_file, address)
        except OSError as error:
            await server.stop(0)
            raise BindError(
                f"SIDECAR_READY_FILE: cannot write {config.ready_file}: {error.strerror}"
            ) from None
    if config.mode is Mode.INSECURE:
        log.warning("AUTH_MODE=insecure: signatures are NOT checked; never use this in production")
    await stopping.wait()
    fetchers.stop()
    for task in background:
        task.cancel()
    log.info("draining for up to %ss", config.grace_seconds)
    observe.ready(False)
    settled = await drain(server, health_servicer, traffic, config.grace_seconds, http_server)
    log.info(
        "stopped after %d calls (%s)",
        traffic.started,
        "traffic had settled" if settled else "calls were still arriving",
    )
    return 0


def _stop_at_end_of_input(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    if not os.read(0, 4096):
        loop.remove_reader(0)
        stopping.set()


async def _serving_when_ready(
    readiness: list[asyncio.Event],
    health_servicer: health.aio.HealthServicer,
    observe: Observability,
) -> None:
    """Health says SERVING only once every issuer's first key set, and the first copy of the
    revocations, is in: until then, callers fail closed (and an issuer whose keys are missing
    still answers UNAVAILABLE after)."""
    for ready in readiness:
        await ready.wait()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    observe.ready(True)


async def watch(
    replica: Replica,
    health_servicer: health.aio.HealthServicer,
    observe: Observability,
    shown: bool | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Says how fresh the revocations are, every WATCH_SECONDS: health's REVOCATIONS service is
    NOT_SERVING while the copy is older than the staleness bound (with SIDECAR_REVOCATION_FAIL
    =open, the sidecar still decides from it), and metrics show the count and the age.
    `shown`: the status already set (True: stale)."""
    states = health_pb2.HealthCheckResponse
    while True:
        stale = replica.stale()
        if stale is not shown:
            await health_servicer.set(REVOCATIONS, states.NOT_SERVING if stale else states.SERVING)
            shown = stale
        if observe.metrics:
            observe.metrics.revocations(len(replica.held), replica.age(), stale)
        await sleep(WATCH_SECONDS)


async def _set_health(health_servicer: health.aio.HealthServicer, status: Any) -> None:
    for name in ("", auth_service.NAME, ext_authz.NAME):
        await health_servicer.set(name, status)


def write_ready_file(path: str, address: str) -> None:
    """Tells launchers the bound address (port 0 included), atomically: the file appears whole.

    Written after health is SERVING, so a launcher that sees the file can call at once.
    """
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(address + "\n")
    partial.replace(target)


async def drain(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    traffic: Traffic,
    grace: float,
    http_server: HttpServer | None = None,
) -> bool:
    """Stops serving within `grace` seconds without cancelling a call that the server has taken.

    gRPC's stop cancels every call that has reached the server but that the aio loop has not
    picked up yet, and every call that arrives before the client reads the GOAWAY. So health
    goes NOT_SERVING first and the server keeps serving every call, until the traffic settles
    (the clients and load balancers that watch health have moved away) or until STOP_SECONDS
    before the deadline; only then does it stop, letting the calls it has taken finish.
    Returns whether the traffic settled.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    await health_servicer.enter_graceful_shutdown()
    settled = await traffic.settle(QUIET_SECONDS, deadline - min(STOP_SECONDS, grace / 2))
    stops = [server.stop(max(deadline - loop.time(), 0))]
    if http_server is not None:
        # HTTP has no GOAWAY: idle connections close now, busy ones after their reply.
        stops.append(http_server.close(max(deadline - loop.time(), 0)))
    await asyncio.gather(*stops)
    return settled


async def start(
    config: Config,
    auth: AuthService,
    check: EnvoyAuthorization,
    traffic: Traffic | None = None,
    reuse_port: bool = False,
    serving: bool = True,
) -> tuple[grpc.aio.Server, str, health.aio.HealthServicer]:
    """Builds and starts the server; returns it, the bound address and its health servicer.

    `traffic` counts the calls (the drain and metrics read it); tests may leave it out.
    `reuse_port`: a supervisor's worker, sharing the port the supervisor checked and holds.
    `serving=False` starts with health NOT_SERVING (keys still to come).
    """
    traffic = traffic or Traffic()
    server = grpc.aio.server(
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            (
                "grpc.max_receive_message_length",
                limits.max_message_bytes(config.max_token_bytes),
            ),
            # A second sidecar on the same port must fail to start, not share the traffic; a
            # supervisor's workers share it, and the supervisor keeps other sidecars off it.
            ("grpc.so_reuseport", int(reuse_port)),
        ],
    )
    auth_service.add_to_server(auth, server, traffic)
    ext_authz.add_to_server(check, server, traffic)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (auth_service.NAME, ext_authz.NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    credentials = tls.Certificates(config.tls).credentials() if config.tls else None
    address = binding.bind(server, config.listen, credentials, reuse_port=reuse_port)
    await server.start()
    states = health_pb2.HealthCheckResponse
    await _set_health(health_servicer, states.SERVING if serving else states.NOT_SERVING)
    return server, address, health_servicer
