"""The AuthService adapter: protobuf in, core call, protobuf out. No decisions are made here."""

from __future__ import annotations

import logging
import math
from typing import Any

import grpc

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from authsidecar.v1.structs import from_struct
from sidecar.adapters import rpc
from sidecar.adapters.gate import PASSED, Gate, settle
from sidecar.core import shape
from sidecar.core.cache import Decider, Responses
from sidecar.core.errors import (
    CallDisabled,
    CallError,
    CallInvalidArgument,
    CallPermissionDenied,
    CallUnauthenticated,
    IntrospectionNeeded,
    KeysUnavailable,
    MalformedToken,
)
from sidecar.core.minter import Minter
from sidecar.core.revocation import Kind, Revocation, Revoker
from sidecar.core.rules import HIDDEN_HEADERS
from sidecar.core.validator import Decision
from sidecar.observe.traffic import Traffic
from sidecar.stores.base import StoreUnavailable
from sidecar.stores.replica import Replica

log = logging.getLogger(__name__)

NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
_CALL_CODES: dict[type[CallError], grpc.StatusCode] = {
    CallDisabled: grpc.StatusCode.FAILED_PRECONDITION,
    CallUnauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    CallPermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    CallInvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
}
# google.protobuf.Timestamp spans 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """Serves `authsidecar.v1.AuthService` over a `Validator` and a `Minter`."""

    def __init__(
        self,
        validator: Decider,
        minter: Minter,
        memo_size: int = 0,
        shape_claim: str | None = None,
        gate: Gate | None = None,
        revoker: Revoker | None = None,
        replica: Replica | None = None,
    ) -> None:
        """`memo_size`: how many responses to valid decisions to keep for reuse (see
        cache.Responses); worth it only behind a cache, which returns the same decision again.
        `shape_claim`: the claim a request's `shape` is matched against (None: off).
        `gate`: decides a ValidateRequest that carries its HTTP request, with the routes, as
        Check and forward auth do; None, or a gate without routes: the token alone decides.
        `revoker`: who may call Revoke (None: nobody); `replica`: where revocations are stored
        (None: revocation is off)."""
        # One reference, so that a reload swaps them at once (see `swap`).
        self._current = (validator, minter, gate)
        self._revoker = revoker
        self._replica = replica
        self._responses = Responses(lambda decision, _: to_response(decision), memo_size)
        self._shape_claim = shape_claim
        # Decided once, so that the hot path makes no logging calls unless debug is on.
        self._debug = log.isEnabledFor(logging.DEBUG)

    def swap(
        self,
        validator: Decider,
        minter: Minter,
        gate: Gate | None = None,
        revoker: Revoker | None = None,
    ) -> None:
        """Hot reload: later calls use these; each call in flight keeps what it started with."""
        self._current = (validator, minter, gate)
        self._revoker = revoker

    async def Revoke(  # noqa: N802 - gRPC method name
        self, request: auth_pb2.RevokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.RevokeResponse:
        revoker, replica = self._revoker, self._replica
        try:
            if revoker is None:
                raise CallDisabled("Revoke is off on this server")
            revoker.authorize(_metadata(context, "authorization"))
            if replica is None:
                raise CallDisabled(
                    "Revoke needs a revocation store: set SIDECAR_STATE_DIR (embedded) or "
                    "SIDECAR_REVOCATION_STORE"
                )
            revocation = _revocation(revoker, request)
            await replica.revoke(revocation)
        except CallError as error:
            log.info("revoke refused: %s", error)
            await context.abort(_CALL_CODES[type(error)], str(error))
        except StoreUnavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        # %r: the caller's text, which must not be able to start a log line of its own.
        log.info(
            "revoked kind=%s iss=%r subject=%r",
            revocation.kind.value,
            revocation.iss,
            revocation.subject,
        )
        response = auth_pb2.RevokeResponse()
        if revocation.kind is Kind.TOKEN:
            response.kept_until.seconds = math.ceil(revocation.at)
        return response

    async def Validate(  # noqa: N802 - gRPC method name
        self, request: auth_pb2.ValidateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.ValidateResponse:
        validator, _, gate = self._current
        try:
            try:
                routed = _decided(validator, gate, request)
            except IntrospectionNeeded as needed:  # rare: the closure is built only here
                routed = await settle(needed, lambda: _decided(validator, gate, request))
        except KeysUnavailable as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        if routed is None:
            return _PASSED
        decision = routed
        if self._shape_claim and request.HasField("shape"):
            s = request.shape
            decision = shape.authorize(
                decision,
                self._shape_claim,
                lambda: shape.from_request(s.table, s.where, s.columns, s.params),
            )
        if self._debug:
            log.debug("validate valid=%s reason=%s", decision.valid, decision.reason.name)
        return self._responses.get(decision)

    async def Mint(  # noqa: N802 - gRPC method name
        self, request: auth_pb2.MintRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.MintResponse:
        minter = self._current[1]  # read once: a reload during this call does not mix configs
        try:
            minter.authorize(_metadata(context, "authorization"))
            claims = _claims(request)
            # Not ToTimedelta(): it overflows on durations far beyond any ceiling.
            ttl = request.ttl.seconds + request.ttl.nanos / 1e9 if request.HasField("ttl") else None
            minted = minter.mint(request.user_id, claims, ttl)
        except CallError as error:
            log.info("mint refused: %s", error)
            await context.abort(_CALL_CODES[type(error)], str(error))
        # %r: a user id is the caller's text, and must not be able to start a log line of its own.
        log.info("minted a token for user_id=%r", request.user_id)
        response = auth_pb2.MintResponse(token=minted.token)
        if minted.expires_at is not None:
            response.expires_at.seconds = minted.expires_at
        return response


_PASSED = auth_pb2.ValidateResponse(valid=True)
"""A request that its route lets through without a user (anonymous, or a CORS preflight)."""


def _decided(
    validator: Decider, gate: Gate | None, request: auth_pb2.ValidateRequest
) -> Decision | None:
    """The decision on `request`: by its route when it names a request and there are routes
    (None: it passes without a user), else by its token alone."""
    if gate is not None and gate.routes and request.HasField("request"):
        return _routed(gate, request.token, request.request)
    return validator.decide(request.token)


def _routed(gate: Gate, token: str, http: auth_pb2.HttpRequest) -> Decision | None:
    """The gate's decision on the request `http` with `token` as its credential (None: it
    passes without a user). The request's own credentials are not read: `token` is the one."""
    headers = {k.lower(): v for k, v in http.headers.items()}
    for name in (*HIDDEN_HEADERS, gate.settings.token_header):
        headers.pop(name or "", None)
    if token:
        headers["authorization"] = "Bearer " + token
    # The sync server receives the request itself: it has no proxy-set secret to protect.
    verdict = gate.decide(
        http.method, http.path or "/", headers, removes_secret=True, host=http.host
    )
    if verdict in PASSED:
        return None
    return verdict.decision or Decision.refused(MalformedToken())


def _revocation(revoker: Revoker, request: auth_pb2.RevokeRequest) -> Revocation:
    """The revocation that `request` asks for. Raises CallInvalidArgument."""
    target = request.WhichOneof("target")
    if target == "token":
        t = request.token
        exp = _seconds(t.expires_at) if t.HasField("expires_at") else None
        return revoker.token(t.iss, t.jti, exp)
    if target == "user":
        u = request.user
        return revoker.user(
            u.iss, u.user_id, _seconds(u.not_before) if u.HasField("not_before") else None
        )
    if target == "issuer":
        i = request.issuer
        return revoker.issuer(i.iss, _seconds(i.not_before) if i.HasField("not_before") else None)
    raise CallInvalidArgument("Revoke needs one of token, user or issuer")


def _seconds(timestamp: Any) -> float:
    return float(timestamp.seconds + timestamp.nanos / 1e9)


def add_to_server(service: AuthService, server: grpc.aio.Server, traffic: Traffic) -> None:
    rpc.register(
        server,
        NAME,
        {
            "Validate": (service.Validate, auth_pb2.ValidateRequest, auth_pb2.ValidateResponse),
            "Mint": (service.Mint, auth_pb2.MintRequest, auth_pb2.MintResponse),
            "Revoke": (service.Revoke, auth_pb2.RevokeRequest, auth_pb2.RevokeResponse),
        },
        traffic,
    )


def to_response(decision: Decision) -> auth_pb2.ValidateResponse:
    """Maps a core `Decision` to the wire message; values are equal, reason by reason."""
    if not decision.valid:
        return auth_pb2.ValidateResponse(
            reason=auth_pb2.Reason.ValueType(decision.reason),
            message=decision.message,
        )
    response = auth_pb2.ValidateResponse(valid=True, user_id=decision.user_id)
    response.claims.update(decision.claims)
    if decision.expires_at is not None:
        exp = min(max(decision.expires_at, _MIN_SECONDS), _MAX_SECONDS)
        whole = math.floor(exp)
        response.expires_at.seconds = whole
        response.expires_at.nanos = int((exp - whole) * 1e9)
    return response


def _claims(request: auth_pb2.MintRequest) -> dict[str, Any] | None:
    if not request.HasField("claims"):
        return None
    try:
        return from_struct(request.claims)
    except ValueError as error:  # NaN or Infinity: JSON has no such numbers
        raise CallInvalidArgument(f"claims are not valid JSON: {error}") from None


def _metadata(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None
