"""Server assembly: the one place where config, core, adapters and the gRPC server meet."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar import __version__, envoy, routing, service
from sidecar.config import Config, build_minter
from sidecar.envoy import EnvoyAuthorization
from sidecar.errors import SidecarError
from sidecar.jwks_fetch import Refresher
from sidecar.policy import Mode
from sidecar.reload import KeyFetchers, Reloader
from sidecar.service import AuthService

log = logging.getLogger("auth-sidecar")

# Room for Mint's claims; tokens themselves are capped far lower by SIDECAR_MAX_TOKEN_BYTES.
MAX_MESSAGE_BYTES = 1 << 20
# When shutdown starts, grpc core cancels the calls that have arrived but that the aio server has
# not picked up yet (it picks them up one at a time). So the drain first keeps serving, with health
# NOT_SERVING, until no AuthService call has started for this long; then it stops the server.
QUIET_SECONDS = 0.1


class BindError(SidecarError):
    """The listen address could not be bound."""


def run(config: Config, load: Callable[[], Config] | None = None) -> int:
    """Serves until SIGTERM or SIGINT, then drains and returns 0.

    `load` re-reads the configuration: with it, SIGHUP and changed files reload it.
    """
    return asyncio.run(serve(config, load))


async def serve(config: Config, load: Callable[[], Config] | None = None) -> int:
    # Handlers first: once the start-up line is out, a signal must mean a drain, not a kill.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    validator = routing.decider(config)
    auth = AuthService(validator, build_minter(config))
    check = EnvoyAuthorization(validator, config.envoy)
    for issuer in config.issuers or (config,):
        for warning in issuer.warnings:
            log.warning("AUTH_JWT_JWKS_FILE of iss=%s: %s", issuer.iss, warning)
    fetchers = KeyFetchers()
    fetchers.start(config, KeyFetchers.initial(config))
    refreshers = fetchers.refreshers
    server, address, health_servicer = await start(config, auth, check, not refreshers)
    background: list[asyncio.Task[Any]] = []
    if refreshers:
        background.append(asyncio.create_task(_serving_when_ready(refreshers, health_servicer)))
    if load is not None:

        def apply(new: Config) -> None:
            decider = routing.decider(new)
            auth.swap(decider, build_minter(new))
            check.swap(decider)

        reloader = Reloader(load, config, apply, fetchers)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: background.append(loop.create_task(reloader.reload("SIGHUP")))
        )
        if config.reload_seconds:
            background.append(asyncio.create_task(reloader.poll(config.reload_seconds)))
    log.info("%s serving %s", __version__, replace(config, listen=address).describe())
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
    deadline = loop.time() + config.grace_seconds
    await health_servicer.enter_graceful_shutdown()
    await _quiesce((auth, check), deadline)
    await server.stop(max(deadline - loop.time(), 0))
    log.info("stopped")
    return 0


async def _serving_when_ready(
    refreshers: list[Refresher], health_servicer: health.aio.HealthServicer
) -> None:
    """Health says SERVING only once every issuer's first key set is in: until then, callers
    fail closed (and an issuer whose keys are missing still answers UNAVAILABLE after)."""
    for refresher in refreshers:
        await refresher.ready.wait()
    await _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)


async def _set_health(health_servicer: health.aio.HealthServicer, status: Any) -> None:
    for name in ("", service.NAME, envoy.NAME):
        await health_servicer.set(name, status)


def write_ready_file(path: str, address: str) -> None:
    """Tells launchers the bound address (port 0 included), atomically: the file appears whole.

    Written after health is SERVING, so a launcher that sees the file can call at once.
    """
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(address + "\n")
    partial.replace(target)


async def _quiesce(services: tuple[AuthService, EnvoyAuthorization], deadline: float) -> None:
    """Serves on until no call has started for QUIET_SECONDS, or until `deadline`."""
    loop = asyncio.get_running_loop()
    seen = -1
    while (
        calls := sum(s.calls for s in services)
    ) != seen and loop.time() + QUIET_SECONDS < deadline:
        seen = calls
        await asyncio.sleep(QUIET_SECONDS)


async def start(
    config: Config, auth: AuthService, check: EnvoyAuthorization, serving: bool = True
) -> tuple[grpc.aio.Server, str, health.aio.HealthServicer]:
    """Builds and starts the server; returns it, the bound address and its health servicer.

    `serving=False` starts with health NOT_SERVING (keys still to come).
    """
    server = grpc.aio.server(
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # A second sidecar on the same port must fail to start, not share the traffic.
            ("grpc.so_reuseport", 0),
        ],
    )
    service.add_to_server(auth, server)
    envoy.add_to_server(check, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service.NAME, envoy.NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = _bind(server, config.listen)
    await server.start()
    states = health_pb2.HealthCheckResponse
    await _set_health(health_servicer, states.SERVING if serving else states.NOT_SERVING)
    return server, address, health_servicer


def _bind(server: grpc.aio.Server, listen: str) -> str:
    if listen.startswith("unix:") and _unix_socket_answers(listen):
        raise BindError(f"SIDECAR_LISTEN: cannot listen on {listen}: another process serves there")
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as error:
        raise BindError(f"SIDECAR_LISTEN: cannot listen on {listen}: {error}") from None
    if listen.startswith("unix:"):
        return listen
    return f"{listen.rpartition(':')[0]}:{port}"


def _unix_socket_answers(listen: str) -> bool:
    """gRPC replaces an existing socket file when it binds: refuse to take over a live one.

    A stale file, left by a process that died, refuses the connection and is replaced as before.
    """
    path = listen.removeprefix("unix:")
    if path.startswith("//"):  # unix:///absolute/path
        path = path[2:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True
