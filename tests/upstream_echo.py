"""An upstream for the Envoy tests: answers every request with JSON of what reached it.

    python tests/upstream_echo.py PORT      # PORT 0 picks a free port

Once it listens it prints the bound port, alone on a line, on stdout. Every answer is `200` with

    {"seq": 7, "method": "GET", "path": "/v1/shape?table=items", "headers": [["host", "..."], ...]}

where `headers` keeps every request header in order (names lower-cased, duplicates kept) and `seq`
counts the requests this process has seen, this one included. A test that asks the echo directly
before and after a request through Envoy sees from `seq` whether that request reached upstream.
Standard library only; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's connection pool expects
    # The status line and headers go out in one write and the body in another: without NODELAY,
    # Nagle's algorithm and the peer's delayed ACK hold every answer back by some 40 ms.
    disable_nagle_algorithm = True
    server: EchoServer

    def handle_one_request(self) -> None:
        # Every method, known or not, gets the same answer: there is no do_GET, do_POST, ...
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = json.dumps(
            {
                "seq": self.server.count(),
                "method": self.command,
                "path": self.path,
                "headers": [[name.lower(), value] for name, value in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the answers say everything."""


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Echo)
        self._seq = 0
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print(f"usage: {argv[0]} PORT   (0 picks a free port)", file=sys.stderr)
        return 2
    server = EchoServer(int(argv[1]))

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever, which runs in this very thread: hand it off.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(server.server_address[1], flush=True)
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
