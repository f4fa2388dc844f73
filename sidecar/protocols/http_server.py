"""A lean HTTP/1.1 server on the event loop: an asyncio `Protocol` over httptools' parser.

Forward auth is one small request and one small reply, sent by a proxy over a few keep-alive
connections, thousands of times a second. A web framework's routing, middleware and ASGI
translation would cost more than the decision, so this module does only what the job needs,
as uvicorn's own `httptools` protocol does: parse, route by path, frame, and keep the
connection safe:

- keep-alive and pipelining (replies go out in request order), HTTP/1.0 and `Expect:
  100-continue`;
- a limit on the request line and headers (`431`) and on bodies (`413`, and `400` where no body
  is expected), and `400` for anything that does not parse; each then closes the connection;
- a request must arrive whole within `request_seconds` of its first byte (`408`: slow clients),
  and an idle keep-alive connection closes after `idle_seconds`;
- at most `max_connections` open connections: more are closed at once;
- backpressure: a client that does not read its replies stops being read.

A handler returns a `Reply`, which is written at once, or an awaitable, which runs as a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast

import httptools

from sidecar.core.errors import BindError
from sidecar.protocols.http import Handler, Reply, Request, reply

log = logging.getLogger("auth-sidecar")

# Replies queued behind a slow one before the connection stops being read.
MAX_PIPELINED = 32
# How long a connection that is closing waits for the client to close its side.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class Route:
    """`handler` serves `path`, and every path below it when `subtree`; `max_body` bytes of
    body at most (0: a body is refused)."""

    path: str
    handler: Handler
    subtree: bool = False
    max_body: int = 0

    def matches(self, path: str) -> bool:
        if path == self.path:
            return True
        return self.subtree and path.startswith(self.path.rstrip("/") + "/")


@dataclass(frozen=True)
class Limits:
    """What one connection may cost. Defaults suit a proxy's few busy connections."""

    max_header_bytes: int = 16384
    request_seconds: float = 10.0
    idle_seconds: float = 120.0
    max_connections: int = 10000


class _Refuse(Exception):
    """Raised inside a parser callback: answer `status` and close."""

    def __init__(self, status: HTTPStatus) -> None:
        self.status = status


def _error_reply(status: HTTPStatus) -> Reply:
    body = f'{{"error":"{status.phrase.lower()}"}}'.encode()
    return reply(status, [("content-type", "application/json")], body)


_ERRORS = {
    status: _error_reply(status)
    for status in (
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.REQUEST_TIMEOUT,
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        HTTPStatus.SERVICE_UNAVAILABLE,
    )
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"


class Counted(Protocol):
    """Where requests are counted (observe.traffic.Traffic): the drain waits for them to stop."""

    started: int


class _Count:
    started = 0


class HttpServer:
    """Serves `routes` on one listening address; `traffic.started` counts its requests.

    `variable` names the setting in bind errors.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        limits: Limits,
        variable: str,
        traffic: Counted | None = None,
    ) -> None:
        self.routes = tuple(routes)
        self.limits = limits
        self.variable = variable
        self.traffic: Counted = traffic or _Count()
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._closing = False

    async def start(self, listen: str, reuse_port: bool = False) -> str:
        """Listens on `host:port` or `unix:/path`; returns the address with the bound port.
        `reuse_port`: a supervisor's worker, sharing the port that the supervisor holds."""
        loop = asyncio.get_running_loop()
        try:
            if listen.startswith("unix:"):
                path = listen.removeprefix("unix:")
                _remove_stale_socket(path, listen, self.variable)
                self._servers.append(await loop.create_unix_server(self._connection, path))
                return listen
            host, _, port = listen.rpartition(":")
            server = await loop.create_server(
                self._connection,
                host.removeprefix("[").removesuffix("]"),
                int(port),
                reuse_port=reuse_port or None,
                backlog=1024,
            )
        except OSError as error:
            why = "address in use" if error.errno == errno.EADDRINUSE else error.strerror
            raise BindError(f"{self.variable}: cannot listen on {listen}: {why}") from None
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        return f"{host}:{bound}"

    async def close(self, timeout: float) -> None:
        """Stops listening, closes idle connections, lets the others finish their current
        request (then close), and after `timeout` seconds closes whatever is left."""
        self._closing = True
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.close_when_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            waiters = [c.lost for c in self.connections]
            await asyncio.wait(waiters, timeout=max(deadline - loop.time(), 0))
        for connection in list(self.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()

    def route(self, path: str) -> Route | None:
        for route in self.routes:
            if route.matches(path):
                return route
        return None

    def _connection(self) -> _Connection:
        return _Connection(self)


class _Connection(asyncio.Protocol):
    """One client connection: its parser, the request being read, the replies owed."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()
        # The request being read.
        self._url = b""
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._route: Route | None = None
        # Replies owed, in request order: a Reply, or a task that makes one; with keep-alive.
        self._owed: deque[tuple[Reply | asyncio.Task[Reply], bool, bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._reading = True
        self._writing = True
        self._closing = False
        self._in_message = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        if len(self._server.connections) >= self._limits.max_connections:
            transport.abort()
            self.lost.set_result(None)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server.connections.add(self)
        self._arm(self._limits.idle_seconds, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._cancel_timer()
        for item, _, _ in self._owed:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._owed.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except _Refuse as refused:
            self._fail(refused.status)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            self._fail(cause.status if isinstance(cause, _Refuse) else HTTPStatus.BAD_REQUEST)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._fail(HTTPStatus.BAD_REQUEST)

    def pause_writing(self) -> None:
        self._writing = False
        self._pause()

    def resume_writing(self) -> None:
        self._writing = True
        self._resume()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0
        self._arm(self._limits.request_seconds, self._too_slow)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        path = self._url.partition(b"?")[0].decode("latin-1")
        route = self._server.route(path)
        self._route = route
        headers = self._headers
        has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
        if route is not None and has_body:
            if not route.max_body:
                raise _Refuse(HTTPStatus.BAD_REQUEST)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > route.max_body:
                raise _Refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            if headers.get("expect", "").lower() == "100-continue" and self._transport:
                self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        route = self._route
        if route is not None and self._body_bytes > route.max_body:
            raise _Refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._cancel_timer()
        server = self._server
        server.traffic.started += 1
        keep_alive = self._parser.should_keep_alive() and not server._closing
        method = self._parser.get_method().decode("latin-1")
        route = self._route
        result: Reply | Awaitable[Reply]
        if route is None:
            result = _ERRORS[HTTPStatus.NOT_FOUND]
        else:
            request = Request(
                method, self._url.decode("latin-1"), self._headers, b"".join(self._body)
            )
            try:
                result = route.handler(request)
            except Exception:
                log.exception("HTTP handler failed on %s %s", method, route.path)
                result = _ERRORS[HTTPStatus.INTERNAL_SERVER_ERROR]
        head_only = method == "HEAD"
        if isinstance(result, Reply):
            if not self._owed:
                self._write(result, keep_alive, head_only)
                return
            item: Reply | asyncio.Task[Reply] = result
        else:
            task = asyncio.ensure_future(result)
            task.add_done_callback(self._finished)
            item = task
        self._owed.append((item, keep_alive, head_only))
        if len(self._owed) >= MAX_PIPELINED:
            self._pause()

    # replies

    def _finished(self, _: asyncio.Task[Reply]) -> None:
        while self._owed:
            item, keep_alive, head_only = self._owed[0]
            if isinstance(item, asyncio.Task):
                if not item.done():
                    return
                if item.cancelled():
                    return
                error = item.exception()
                if error is not None:
                    log.error("HTTP handler failed: %r", error)
                    item_reply = _ERRORS[HTTPStatus.INTERNAL_SERVER_ERROR]
                else:
                    item_reply = item.result()
            else:
                item_reply = item
            self._owed.popleft()
            self._write(item_reply, keep_alive, head_only)
        self._resume()

    def _write(self, answer: Reply, keep_alive: bool, head_only: bool = False) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = answer.body
        framing = b"content-length: %d\r\n\r\n" % len(body)
        if head_only:
            body = b""
        if keep_alive and not self._closing:
            transport.write(answer.head + framing + body)
            if not self._owed and not self._in_message:
                self._arm(self._limits.idle_seconds, self._idle)
            return
        transport.write(answer.head + _CLOSE + framing + body)
        self._closing = True
        # A lingering close: send FIN, discard what still arrives, close when the client does
        # (or after LINGER_SECONDS). Closing with unread bytes would send a reset, which can
        # destroy the reply before the client reads it.
        if transport.can_write_eof():
            transport.write_eof()
            self._arm(LINGER_SECONDS, self.abort)
        else:
            transport.close()

    def _fail(self, status: HTTPStatus) -> None:
        """Answers a request that cannot be served, then closes: after bad input, the bytes
        that follow cannot be trusted to start a request."""
        for item, _, _ in self._owed:
            if isinstance(item, asyncio.Task):
                item.cancel()
        self._owed.clear()
        self._write(_ERRORS[status], keep_alive=False)

    # limits and timers

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header_bytes:
            raise _Refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def _arm(self, seconds: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        if not self._owed and not self._in_message:
            self.abort()

    def _too_slow(self) -> None:
        self._timer = None
        if self._in_message:
            self._fail(HTTPStatus.REQUEST_TIMEOUT)

    def _pause(self) -> None:
        if self._reading and self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume(self) -> None:
        if (
            not self._reading
            and self._writing
            and len(self._owed) < MAX_PIPELINED
            and self._transport is not None
            and not self._closing
        ):
            self._reading = True
            self._transport.resume_reading()

    # shutdown

    def close_when_idle(self) -> None:
        """The drain: an idle connection closes now, a busy one after its current reply."""
        if not self._owed and not self._in_message:
            self.abort()
        else:
            self._closing_after_reply()

    def _closing_after_reply(self) -> None:
        owed = [(item, False, head_only) for item, _, head_only in self._owed]
        self._owed = deque(owed)

    def abort(self) -> None:
        if self._transport is not None:
            self._closing = True
            self._transport.close()


def _remove_stale_socket(path: str, listen: str, variable: str) -> None:
    """A socket file left by a process that died is replaced; a live one is refused."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise BindError(f"{variable}: cannot listen on {listen}: {path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
    raise BindError(f"{variable}: cannot listen on {listen}: another process serves there")
