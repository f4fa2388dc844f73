"""The HTTP side listener (SIDECAR_HTTP_LISTEN): `/metrics`, `/healthz`, `/readyz` and
`/.well-known/jwks.json`.

It runs prometheus_client's own WSGI app on a thread of its own, with the standard library's
WSGI server: a scrape renders the text off the event loop that serves gRPC, prometheus_client
is thread-safe, and nothing beyond prometheus_client is needed. `/healthz` answers 200 while the
process runs, draining included (a liveness probe must not restart a draining sidecar);
`/readyz` mirrors gRPC health: 200 while SERVING, 503 before and while draining.
`/.well-known/jwks.json` publishes Mint's public key (see `keys.algorithms.published_jwks`), so
that Envoy's jwt_authn or any other service can verify minted tokens itself.

With workers, each worker runs one on the shared port: `/readyz` and the JWK Set are that worker's
own (the workers start, reload and drain together), and `/metrics` is every worker's sum (see
sidecar/observe/metrics.py).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from sidecar.core.errors import BindError

StartResponse = Callable[..., Any]

JWKS_PATH: Final = "/.well-known/jwks.json"
# How long a verifier may cache the key set: a new signing key reaches it within this time.
JWKS_MAX_AGE_SECONDS: Final = 300


class SideListener:
    """The running side listener. `ready` is what `/readyz` reports, `jwks` the JSON body of
    `/.well-known/jwks.json`; the server sets both (a reload replaces `jwks` whole)."""

    def __init__(
        self, listen: str, registry: CollectorRegistry, jwks: bytes, reuse_port: bool = False
    ) -> None:
        """`reuse_port`: a supervisor's worker, sharing the port (which the supervisor holds
        against other processes) with the other workers."""
        self.ready = False
        self.jwks = jwks
        self._metrics = make_wsgi_app(registry)
        host, _, port = listen.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        server_class = _SERVERS[":" in host, reuse_port]
        try:
            self._server = make_server(
                host, int(port), self._app, server_class=server_class, handler_class=_Quiet
            )
        except OSError as error:
            raise BindError(
                f"SIDECAR_HTTP_LISTEN: cannot listen on {listen}: {error.strerror}"
            ) from None
        bound_port = self._server.server_address[1]
        self.address = f"{listen.rpartition(':')[0]}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-side-listener", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self.ready:
                return _text(start_response, "200 OK", "SERVING\n")
            return _text(start_response, "503 Service Unavailable", "NOT_SERVING\n")
        if path == JWKS_PATH:
            body = self.jwks  # read once: a reload may swap it meanwhile
            start_response(
                "200 OK",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", f"max-age={JWKS_MAX_AGE_SECONDS}"),
                ],
            )
            return [body]
        return _text(start_response, "404 Not Found", "not found\n")


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class _IPv4Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


class _SharedIPv4Server(_IPv4Server):
    allow_reuse_port = True


class _SharedIPv6Server(_IPv6Server):
    allow_reuse_port = True


# (IPv6, shared with the other workers) -> the server class.
_SERVERS: dict[tuple[bool, bool], type[_IPv4Server]] = {
    (False, False): _IPv4Server,
    (True, False): _IPv6Server,
    (False, True): _SharedIPv4Server,
    (True, True): _SharedIPv6Server,
}


class _Quiet(WSGIRequestHandler):
    """No line on stderr per request: probes and scrapes come every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
