"""The HTTP side listener (SIDECAR_HTTP_LISTEN): `/metrics`, `/healthz`, `/readyz` and
`/.well-known/jwks.json`.

It runs on the HTTP API's own server (sidecar/protocols/http_server.py), on the event loop: one
HTTP implementation, with its limits and its handling of bad input. A scrape renders the text
with prometheus_client in the loop's thread pool, off the loop that serves requests
(prometheus_client is thread-safe). `/healthz` answers 200 while the process runs, draining
included (a liveness probe must not restart a draining sidecar; a loop too stuck to answer it is
one to restart); `/readyz` mirrors gRPC health: 200 while SERVING, 503 before and while
draining. `/.well-known/jwks.json` publishes Mint's public key (see
`keys.algorithms.published_jwks`), so that Envoy's jwt_authn or any other service can verify
minted tokens itself.

With workers, each worker runs one on the shared port: `/readyz` and the JWK Set are that worker's
own (the workers start, reload and drain together), and `/metrics` is every worker's sum (see
sidecar/observe/metrics.py).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sidecar.protocols.http import Reply, Request, reply
from sidecar.protocols.http_server import HttpServer, Limits, Route

JWKS_PATH: Final = "/.well-known/jwks.json"
# How long a verifier may cache the key set: a new signing key reaches it within this time.
JWKS_MAX_AGE_SECONDS: Final = 300
# Probes and scrapers keep few connections; a flood of them must not cost the process much.
MAX_CONNECTIONS: Final = 256
_TEXT = ("content-type", "text/plain; charset=utf-8")


def _text(status: HTTPStatus, body: str) -> Reply:
    return reply(status, [_TEXT], body.encode())


_HEALTHY = _text(HTTPStatus.OK, "ok\n")
_SERVING = _text(HTTPStatus.OK, "SERVING\n")
_NOT_SERVING = _text(HTTPStatus.SERVICE_UNAVAILABLE, "NOT_SERVING\n")


class SideListener:
    """The side listener. `ready` is what `/readyz` reports, `jwks` the JSON body of
    `/.well-known/jwks.json`; the server sets both (a reload replaces `jwks` whole)."""

    def __init__(self, registry: CollectorRegistry, jwks: bytes) -> None:
        self.ready = False
        self.address = ""
        self._registry = registry
        self._jwks = self._jwks_reply(jwks)
        routes = (
            Route("/metrics", self._metrics),
            Route("/healthz", lambda _: _HEALTHY),
            Route("/readyz", lambda _: _SERVING if self.ready else _NOT_SERVING),
            Route(JWKS_PATH, lambda _: self._jwks),
        )
        self._server = HttpServer(
            routes, Limits(max_connections=MAX_CONNECTIONS), "SIDECAR_HTTP_LISTEN"
        )

    @property
    def jwks(self) -> bytes:
        return self._jwks.body

    @jwks.setter
    def jwks(self, body: bytes) -> None:
        self._jwks = self._jwks_reply(body)  # one assignment: a request sees the old or the new

    async def start(self, listen: str, reuse_port: bool = False) -> str:
        """Listens on `listen`; BindError naming SIDECAR_HTTP_LISTEN if it cannot.
        `reuse_port`: a supervisor's worker, sharing the port with the other workers."""
        self.address = await self._server.start(listen, reuse_port)
        return self.address

    async def close(self, timeout: float = 1.0) -> None:
        await self._server.close(timeout)

    async def _metrics(self, request: Request) -> Reply:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, encoder, self._registry)
        return reply(HTTPStatus.OK, [("content-type", content_type)], body)

    @staticmethod
    def _jwks_reply(body: bytes) -> Reply:
        headers = [
            ("content-type", "application/json"),
            ("cache-control", f"max-age={JWKS_MAX_AGE_SECONDS}"),
        ]
        return reply(HTTPStatus.OK, headers, body)
