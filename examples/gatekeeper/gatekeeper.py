"""Electric's gatekeeper pattern: an app endpoint that mints a token for one shape.

    python examples/gatekeeper/gatekeeper.py --listen 127.0.0.1:4000 --sidecar 127.0.0.1:50051

`POST /gatekeeper/items` answers `{"token": ..., "params": {...}}` for the signed-in user: a
short-lived token whose `shape` claim is the user's own rows of `items`, and the same shape as
`ShapeStream` params. The client syncs with both through Envoy, where the sidecar (with
SIDECAR_SHAPE_CLAIM=shape) lets that shape through and answers any other with 403.

Who the user is is the app's business: here the `x-demo-user` header stands in for the app's own
session check. In secure mode the sidecar's mint secret is read from SIDECAR_MINT_SECRET.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authsidecar import AuthClient

COLUMNS = ["id", "title"]  # the columns this app lets a user sync
TTL_SECONDS = 300  # short-lived: a client asks the gatekeeper again when its token expires


def make_handler(auth: AuthClient, mint_secret: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            user = self.headers.get("x-demo-user", "").strip()
            if not user:
                self._reply(401, {"error": "sign in first"})
                return
            if self.path != "/gatekeeper/items":
                self._reply(404, {"error": "no such shape"})
                return
            # The whole gatekeeper: decide the shape, mint a token for it, hand both out.
            shape = {"table": "items", "where": "owner = $1", "columns": COLUMNS, "params": [user]}
            token = auth.mint(user, shape=shape, ttl=TTL_SECONDS, mint_secret=mint_secret).token
            self._reply(200, {"token": token, "params": shape})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the default logs every request line to stderr."""

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:4000")
    parser.add_argument("--sidecar", default="127.0.0.1:50051")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    with AuthClient(args.sidecar) as auth:
        handler = make_handler(auth, os.environ.get("SIDECAR_MINT_SECRET"))
        server = ThreadingHTTPServer((host, int(port)), handler)
        print(f"gatekeeper on http://{host}:{server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
