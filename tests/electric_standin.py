"""A stand-in for Electric's `GET /v1/shape`, just enough for `@electric-sql/client`'s ShapeStream.

Electric itself cannot run here (it needs Postgres with logical replication), so this serves one
fixed shape of `items` as Electric's HTTP protocol does:
- the initial request (`offset=-1`): one row and an `up-to-date` control message, with the
  `electric-handle`, `electric-offset` and `electric-schema` headers the client requires;
- live polls from there (`live=true`, with `handle`, `offset` and `cursor`): a second row, then a
  third, each with `up-to-date` and `electric-cursor`, which live responses require;
- a live poll after the third row (`offset=2_0`): held, as Electric holds a long poll when
  nothing changed, until `stop()`.

With `secret`, it refuses a request whose `secret` (or `api_secret`) is missing or wrong with
401, as Electric does with ELECTRIC_SECRET set.

It records every request it serves (the raw query string and the user header set by the
sidecar), so tests can see what passed Envoy and exactly how the client encoded it.
"""

from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

HANDLE = "standin-1"
SCHEMA = {"id": {"type": "int4", "pk_index": 0}, "title": {"type": "text"}}
KEY = '"public"."items"/"{}"'


@dataclass(frozen=True)
class Seen:
    """One request that reached the stand-in."""

    query: str
    params: dict[str, str]
    user: str | None


def _insert(row_id: int, title: str) -> dict[str, Any]:
    return {
        "key": KEY.format(row_id),
        "value": {"id": str(row_id), "title": title},
        "headers": {"operation": "insert", "relation": ["public", "items"]},
    }


# Electric's answer to a missing or wrong secret.
UNAUTHORIZED = "Unauthorized - Invalid API secret"
UP_TO_DATE = {"headers": {"control": "up-to-date"}}
# What a live poll from each offset gets: the next row, and the offset after it.
LIVE = {"0_0": (2, "second", "1_0"), "1_0": (3, "third", "2_0")}


class ElectricStandIn:
    """Serves on 127.0.0.1, on a port the OS picks (`port`), from a daemon thread."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def stop(self) -> None:
        self._stopping.set()  # releases held long polls
        self._server.shutdown()
        self._server.server_close()

    def admits(self, params: dict[str, str]) -> bool:
        """Whether the request carries the secret, as Electric checks it."""
        given = params.get("secret", params.get("api_secret", ""))
        return hmac.compare_digest(given.encode(), (self.secret or "").encode())

    def _respond(self, params: dict[str, str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
        headers = {"electric-handle": HANDLE}
        if params.get("live") != "true":
            headers |= {"electric-offset": "0_0", "electric-schema": json.dumps(SCHEMA)}
            return headers, [_insert(1, "first"), UP_TO_DATE]
        new = LIVE.get(params.get("offset", ""))
        if new is not None:
            row_id, title, offset = new
            headers |= {"electric-offset": offset, "electric-cursor": str(row_id - 1)}
            return headers, [_insert(row_id, title), UP_TO_DATE]
        self._stopping.wait(30)
        headers |= {"electric-offset": params.get("offset", ""), "electric-cursor": "9"}
        return headers, [UP_TO_DATE]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = dict(parse_qsl(query, keep_blank_values=True))
                with standin._lock:
                    standin.seen.append(Seen(query, params, self.headers.get("x-user-id")))
                if path != "/v1/shape":
                    self._send(404, {}, {"message": "not found"})
                    return
                if standin.secret is not None and not standin.admits(params):
                    self._send(401, {}, {"message": UNAUTHORIZED})
                    return
                headers, body = standin._respond(params)
                self._send(200, headers | {"electric-up-to-date": ""}, body)

            def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `seen` instead."""

        return Handler
