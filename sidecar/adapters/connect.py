"""AuthService over the Connect protocol's unary calls, on the HTTP API.

`POST /authsidecar.v1.AuthService/<Method>` with `application/json` (proto3 JSON) or
`application/proto`; errors in Connect's JSON form with its HTTP statuses. The calls go to the
very `AuthService` methods that gRPC calls, with a context that carries the HTTP headers as
metadata (Mint's `authorization`) and turns `abort` into a Connect error. GET calls and
compression are not offered: a `Content-Encoding` other than identity is `unimplemented`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from time import perf_counter
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from authsidecar.v1 import auth_pb2
from sidecar.adapters.auth_service import NAME, AuthService
from sidecar.observe.traffic import Traffic
from sidecar.protocols.http import Reply, Request, reply

PREFIX = f"/{NAME}/"
JSON = "application/json"
PROTO = "application/proto"
# Connect's codes and HTTP statuses (the protocol's "Error Codes" table); AuthService never
# aborts with CANCELLED, whose status (499) has no name, and any code not here is `unknown`.
CODES: dict[grpc.StatusCode, tuple[str, HTTPStatus]] = {
    grpc.StatusCode.UNKNOWN: ("unknown", HTTPStatus.INTERNAL_SERVER_ERROR),
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", HTTPStatus.BAD_REQUEST),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", HTTPStatus.GATEWAY_TIMEOUT),
    grpc.StatusCode.NOT_FOUND: ("not_found", HTTPStatus.NOT_FOUND),
    grpc.StatusCode.ALREADY_EXISTS: ("already_exists", HTTPStatus.CONFLICT),
    grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", HTTPStatus.FORBIDDEN),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("resource_exhausted", HTTPStatus.TOO_MANY_REQUESTS),
    grpc.StatusCode.FAILED_PRECONDITION: ("failed_precondition", HTTPStatus.BAD_REQUEST),
    grpc.StatusCode.ABORTED: ("aborted", HTTPStatus.CONFLICT),
    grpc.StatusCode.OUT_OF_RANGE: ("out_of_range", HTTPStatus.BAD_REQUEST),
    grpc.StatusCode.UNIMPLEMENTED: ("unimplemented", HTTPStatus.NOT_FOUND),
    grpc.StatusCode.INTERNAL: ("internal", HTTPStatus.INTERNAL_SERVER_ERROR),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", HTTPStatus.SERVICE_UNAVAILABLE),
    grpc.StatusCode.DATA_LOSS: ("data_loss", HTTPStatus.INTERNAL_SERVER_ERROR),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", HTTPStatus.UNAUTHORIZED),
}

Call = Callable[[Any, Any], Awaitable[Message]]


class ConnectError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = message


class _Context:
    """What AuthService's methods use of a grpc.aio context, over HTTP headers."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        value = self._headers.get("authorization")
        return (("authorization", value),) if value is not None else ()

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise ConnectError(code, details)


class ConnectAuthService:
    """The Connect handler for every path under PREFIX."""

    def __init__(
        self, auth: AuthService, traffic: Traffic | None = None, memo_size: int = 0
    ) -> None:
        """`memo_size`: Validate requests and encoded responses kept for reuse (0: none).
        A repeated Validate body is parsed once, and the response that AuthService reuses for
        a cached decision is encoded once (proto3 JSON costs more than the decision itself)."""
        traffic = traffic or Traffic()
        self._traffic = traffic
        self._memo_size = memo_size
        # (content type, digest of the body) -> the parsed request: a digest, never the token.
        self._parsed: dict[tuple[str, bytes], Message] = {}
        # (id of the response, content type) -> (the response, kept alive; its encoding).
        self._encoded: dict[tuple[int, str], tuple[Message, bytes]] = {}
        self._methods: dict[str, tuple[Call, type[Message], Any, Any]] = {
            name: (call, request_type, *traffic.meter(name))
            for name, call, request_type in (
                ("Validate", auth.Validate, auth_pb2.ValidateRequest),
                ("Mint", auth.Mint, auth_pb2.MintRequest),
                ("Revoke", auth.Revoke, auth_pb2.RevokeRequest),
            )
        }

    async def __call__(self, request: Request) -> Reply:
        path = request.target.partition("?")[0]
        method = self._methods.get(path.removeprefix(PREFIX))
        if method is None:
            return error(grpc.StatusCode.UNIMPLEMENTED, f"no such method: {path}")
        if request.method != "POST":
            return reply(HTTPStatus.METHOD_NOT_ALLOWED, [("allow", "POST")])
        headers = request.headers
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type not in (JSON, PROTO):
            return reply(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, [("accept-post", f"{JSON}, {PROTO}")])
        if headers.get("content-encoding", "identity").lower() != "identity":
            return error(grpc.StatusCode.UNIMPLEMENTED, "compression is not supported")
        if headers.get("connect-protocol-version", "1") != "1":
            return error(grpc.StatusCode.INVALID_ARGUMENT, "connect-protocol-version must be 1")
        call, request_type, entered, done = method
        memo = self._memo_size and request_type is auth_pb2.ValidateRequest
        key = (
            (content_type, hashlib.blake2b(request.body, digest_size=16).digest()) if memo else None
        )
        message = self._parsed.get(key) if key else None
        if message is None:
            try:
                message = _parse(content_type, request.body, request_type)
            except (json_format.ParseError, DecodeError, UnicodeDecodeError, ValueError):
                name = request_type.DESCRIPTOR.full_name
                return error(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {name}")
            if key:
                _remember(self._parsed, key, message, self._memo_size)
        traffic = self._traffic
        traffic.started += 1
        traffic.active += 1
        entered()
        start = perf_counter()
        try:
            response = await call(message, _Context(headers))
        except ConnectError as failure:
            return error(failure.code, failure.message)
        finally:
            traffic.active -= 1
            done(perf_counter() - start)
        return reply(
            HTTPStatus.OK, [("content-type", content_type)], self._encode(response, content_type)
        )

    def _encode(self, response: Message, content_type: str) -> bytes:
        # Only a valid decision's response is reused by AuthService (see cache.Responses).
        reused = isinstance(response, auth_pb2.ValidateResponse) and response.valid
        if not (self._memo_size and reused):
            return _encoded(response, content_type)
        key = (id(response), content_type)
        entry = self._encoded.get(key)
        if entry is not None and entry[0] is response:
            return entry[1]
        body = _encoded(response, content_type)
        _remember(self._encoded, key, (response, body), self._memo_size)
        return body


def _parse(content_type: str, body: bytes, request_type: type[Message]) -> Message:
    if content_type == JSON:
        return json_format.Parse(body or b"{}", request_type())
    return request_type.FromString(body)


def _encoded(response: Message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def _remember(memo: dict[Any, Any], key: Any, value: Any, size: int) -> None:
    """Adds to a memo of at most `size` entries, dropping the oldest."""
    memo[key] = value
    if len(memo) > size:
        del memo[next(iter(memo))]


def error(code: grpc.StatusCode, message: str) -> Reply:
    """A Connect error reply."""
    name, status = CODES.get(code, ("unknown", HTTPStatus.INTERNAL_SERVER_ERROR))
    body = json.dumps({"code": name, "message": message}).encode()
    return reply(status, [("content-type", JSON)], body)
