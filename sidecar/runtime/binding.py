"""Binding the listen address: every address a name resolves to, or none.

gRPC, given `localhost:P`, binds whichever of 127.0.0.1 and ::1 it can and only warns about the
other, so a second sidecar can start beside a first one and take part of its traffic. Here the
name is resolved once, each address is bound explicitly, and any failure is a start-up error
with one line naming SIDECAR_LISTEN.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

import grpc

from sidecar.core.errors import BindError

log = logging.getLogger(__name__)

Resolve = Callable[[str, int], list[str]]
"""host, port -> the IP addresses to bind."""


def resolve(host: str, port: int) -> list[str]:
    """Every distinct TCP address `host` resolves to, in the resolver's order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return list(dict.fromkeys(str(address[4][0]) for address in found))


def bind(
    server: grpc.aio.Server,
    listen: str,
    credentials: grpc.ServerCredentials | None = None,
    resolve: Resolve = resolve,
    reuse_port: bool = False,
) -> str:
    """Adds `listen` to `server` (TLS when `credentials` are given); returns the bound address,
    as SIDECAR_LISTEN takes it, with port 0 replaced by the port the system chose.

    `reuse_port`: a supervisor's worker, whose supervisor has checked every address and holds
    it; the probe would find it taken, so only gRPC's own bind is checked.
    """
    if listen.startswith("unix:"):
        if _unix_socket_answers(listen):
            raise _error(listen, "another process serves there")
        _add(server, listen, listen, credentials)
        return listen
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    try:
        addresses = resolve(host.removeprefix("[").removesuffix("]"), port)
    except OSError as error:
        raise _error(listen, f"cannot resolve {host}: {error.strerror or error}") from None
    for address in addresses:
        # Port 0: the first address picks the port; the others must take the same one.
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if port and not reuse_port:
            _check_free(listen, address, port, target)
        port = _add(server, listen, target, credentials)
    if credentials is None and not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        log.warning(
            "SIDECAR_LISTEN=%s serves plaintext beyond loopback: tokens cross the network in "
            "the clear; set SIDECAR_TLS_CERT_FILE and SIDECAR_TLS_KEY_FILE",
            listen,
        )
    return f"{host}:{port}"


def _add(
    server: grpc.aio.Server, listen: str, target: str, credentials: grpc.ServerCredentials | None
) -> int:
    try:
        if credentials is None:
            port = server.add_insecure_port(target)
        else:
            port = server.add_secure_port(target, credentials)
    except RuntimeError:
        raise _error(listen, f"cannot bind {target}") from None
    if port == 0 and not target.startswith("unix:"):
        raise _error(listen, f"cannot bind {target}")
    return port


def _check_free(listen: str, address: str, port: int, target: str) -> None:
    """Binds a probe socket the way gRPC will (SO_REUSEADDR, no SO_REUSEPORT), so that a taken
    address gets a clear line here rather than gRPC's core log."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise _error(listen, f"{target} is in use") from None
            raise _error(listen, f"cannot bind {target}: {error.strerror}") from None


def _error(listen: str, why: str) -> BindError:
    return BindError(f"SIDECAR_LISTEN: cannot listen on {listen}: {why}")


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
