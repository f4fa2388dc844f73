"""A JWKS server that tests control: real HTTP on 127.0.0.1, run in a thread of the test process.

Before `up()` the port is bound but not listening, so clients are refused as by a provider that
is down. Each response is whatever the test last set: body, status, headers, a hold (the handler
waits, so clients time out), or a dropped connection.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JwksServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, bytes] = {}
        self.status = 200
        self.headers: dict[str, str] = {}
        self.drop = False
        self.hold = threading.Event()
        self.holding = False
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self._httpd.daemon_threads = True
        self._httpd.server_bind()
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.jwks = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None
        scheme = "https" if ssl_context else "http"
        host = "localhost" if ssl_context else "127.0.0.1"
        self.base = f"{scheme}://{host}:{self._httpd.server_address[1]}"
        self.url = self.base + "/jwks.json"

    def serve_keys(self, *jwks: dict[str, Any]) -> None:
        self.routes["/jwks.json"] = json.dumps({"keys": list(jwks)}).encode()

    def count(self, path: str = "/jwks.json") -> int:
        with self._lock:
            return self.requests.count(path)

    def up(self) -> None:
        self._httpd.server_activate()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.hold.set()
        if self._thread is not None:
            self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: JwksServer = self.server.jwks  # type: ignore[attr-defined]
        with server._lock:
            server.requests.append(self.path)
        if server.holding:
            server.hold.wait(30)
            return
        if server.drop:
            self.close_connection = True
            return
        body = server.routes.get(self.path)
        status = server.status if body is not None else 404
        self.send_response(status)
        for name, value in server.headers.items():
            self.send_header(name, value)
        payload = body or b""
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `requests` instead."""


@contextmanager
def jwks_server(up: bool = True, ssl_context: ssl.SSLContext | None = None) -> Iterator[JwksServer]:
    server = JwksServer(ssl_context)
    if up:
        server.up()
    try:
        yield server
    finally:
        server.close()
