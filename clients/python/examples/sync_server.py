"""A minimal HTTP "sync server" that authenticates every request with auth-sidecar.

    python examples/sync_server.py --listen 127.0.0.1:3000 --sidecar 127.0.0.1:50051

`Authorization: Bearer <token>` is checked with the sidecar's Validate. The answers are the same
as the Go and TypeScript examples', and as the sidecar's Envoy Check:

- no bearer token: 401, `WWW-Authenticate: Bearer realm="auth-sidecar"`,
  `{"error": "missing_token", "message": "Missing bearer token"}`;
- a refused token: 401, `WWW-Authenticate: Bearer realm="auth-sidecar", error="invalid_token"`,
  `{"error": "invalid_token", "message": "Expired token", "reason": "REASON_EXPIRED"}`;
- an accepted token: 200, `{"user_id": "alice", "path": "/v1/shape"}`;
- no decision (sidecar down or too slow): 503,
  `{"error": "auth_unavailable", "message": "Auth sidecar unavailable"}`.
"""

from __future__ import annotations

import argparse
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from authsidecar import AuthClient

REALM = "auth-sidecar"
"""Names this server in WWW-Authenticate (the sidecar's default SIDECAR_ENVOY_REALM)."""
log = logging.getLogger("sync_server")


def make_handler(client: AuthClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                self._reply(
                    401,
                    {"error": "missing_token", "message": "Missing bearer token"},
                    f'Bearer realm="{REALM}"',
                )
                return
            try:
                decision = client.validate(token.strip())
            except grpc.RpcError as error:
                log.warning("auth sidecar: %s", error.code())
                self._reply(
                    503, {"error": "auth_unavailable", "message": "Auth sidecar unavailable"}
                )
                return
            if not decision.valid:
                self._reply(
                    401,
                    {
                        "error": "invalid_token",
                        "message": decision.message,
                        "reason": str(decision.reason),
                    },
                    f'Bearer realm="{REALM}", error="invalid_token"',
                )
                return
            self._reply(200, {"user_id": decision.user_id, "path": self.path})

        def _reply(self, status: int, body: dict[str, Any], challenge: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if challenge is not None:
                self.send_header("WWW-Authenticate", challenge)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: request lines would carry tokens in query strings of other apps."""

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:3000")
    parser.add_argument("--sidecar", default="127.0.0.1:50051")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    with AuthClient(args.sidecar) as client:
        server = ThreadingHTTPServer((host, int(port)), make_handler(client))
        print(f"sync server on http://{host}:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
