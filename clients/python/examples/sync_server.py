"""A minimal HTTP "sync server" that authenticates every request with auth-sidecar.

    python examples/sync_server.py --listen 127.0.0.1:3000 --sidecar 127.0.0.1:50051

`Authorization: Bearer <token>` is checked with the sidecar's Validate: a refused token gets a
401 with the sidecar's reason and Electric's message; an accepted one gets the user's data.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authsidecar import AuthClient


def make_handler(client: AuthClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                self._reply(401, {"error": "missing_token"})
                return
            decision = client.validate(token.strip())
            if not decision.valid:
                self._reply(
                    401, {"reason": f"REASON_{decision.reason.name}", "message": decision.message}
                )
                return
            self._reply(200, {"user_id": decision.user_id, "path": self.path})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
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
