"""Server assembly: the one place where config, core, adapters and the gRPC server meet."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from sidecar import __version__
from sidecar.config import INSECURE, Config
from sidecar.errors import SidecarError
from sidecar.minter import Minter
from sidecar.service import AuthService
from sidecar.validator import Validator

log = logging.getLogger("auth-sidecar")

AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
# Room for Mint's claims; tokens themselves are capped far lower by SIDECAR_MAX_TOKEN_BYTES.
MAX_MESSAGE_BYTES = 1 << 20


class BindError(SidecarError):
    """The listen address could not be bound."""


def run(config: Config) -> int:
    """Serves until SIGTERM or SIGINT, then drains and returns 0."""
    return asyncio.run(serve(config))


async def serve(config: Config) -> int:
    server, address, health_servicer = await start(config)
    log.info(
        "auth-sidecar %s serving %s",
        __version__,
        config.describe().replace(f"listen={config.listen}", f"listen={address}"),
    )
    if config.mode == INSECURE:
        log.warning("AUTH_MODE=insecure: signatures are NOT checked; never use this in production")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("draining for up to %ss", config.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.grace_seconds)
    log.info("stopped")
    return 0


async def start(config: Config) -> tuple[grpc.aio.Server, str, health.aio.HealthServicer]:
    """Builds and starts the server; returns it, the bound address and its health servicer."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # A second sidecar on the same port must fail to start, not share the traffic.
            ("grpc.so_reuseport", 0),
        ],
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthService(Validator(config), Minter(config)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (AUTH_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = _bind(server, config.listen)
    await server.start()
    for service in ("", AUTH_SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, address, health_servicer


def _bind(server: grpc.aio.Server, listen: str) -> str:
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as error:
        raise BindError(f"SIDECAR_LISTEN: cannot listen on {listen}: {error}") from None
    if listen.startswith("unix:"):
        return listen
    return f"{listen.rpartition(':')[0]}:{port}"
