"""Binding: every address a name resolves to, or a start-up error. Real sockets held by this
process play the other sidecar; only name resolution is injected, since no name is known to
resolve to several addresses on every machine."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from support import clean_env

from sidecar.core.errors import BindError
from sidecar.runtime import binding

TWO_LOOPBACKS = ["127.0.0.1", "127.0.0.2"]  # the whole of 127/8 is loopback on Linux


def _two(host: str, port: int) -> list[str]:
    assert host == "sidecar.test"
    return TWO_LOOPBACKS


@pytest.fixture
def held() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.2, as another process would hold it."""
    with socket.socket() as other:
        other.bind(("127.0.0.2", 0))
        other.listen()
        yield other


async def test_a_name_binds_every_address_on_one_port() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = binding.bind(server, "sidecar.test:0", resolve=_two)
    host, _, port = address.rpartition(":")
    assert host == "sidecar.test" and int(port) > 0
    await server.start()
    try:
        for ip in TWO_LOOPBACKS:
            async with grpc.aio.insecure_channel(f"{ip}:{port}") as channel:
                stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs omit its methods
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)


async def test_one_taken_address_fails_the_whole_bind(held: socket.socket) -> None:
    port = held.getsockname()[1]
    server = grpc.aio.server()
    with pytest.raises(BindError) as raised:
        binding.bind(server, f"sidecar.test:{port}", resolve=_two)
    assert str(raised.value) == (
        f"SIDECAR_LISTEN: cannot listen on sidecar.test:{port}: 127.0.0.2:{port} is in use"
    )
    await server.stop(None)


async def test_an_unknown_host_is_a_bind_error() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(BindError, match=r"^SIDECAR_LISTEN: .*cannot resolve nowhere"):
        binding.bind(grpc.aio.server(), "nowhere:50051", resolve=nowhere)


def test_a_taken_port_is_exit_2_with_one_line_and_no_grpc_log() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        listen = f"127.0.0.1:{other.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "serve"],
            env=clean_env(
                {"AUTH_MODE": "insecure", "SIDECAR_LISTEN": listen, "SIDECAR_WORKERS": "1"}
            ),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr == f"SIDECAR_LISTEN: cannot listen on {listen}: {listen} is in use\n"
