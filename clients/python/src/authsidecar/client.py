"""Synchronous and asyncio clients for auth-sidecar's AuthService.

Both return the same typed results. A refused token is a `Decision` with `valid=False`, never an
exception; refused Mint and Revoke calls and transport failures raise `grpc.RpcError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from authsidecar.v1.reason import Reason
from authsidecar.v1.structs import from_struct, to_struct

DEFAULT_TIMEOUT = 2.0
"""Seconds a call may take before it fails with DEADLINE_EXCEEDED."""
SHAPE_CLAIM = "shape"
"""The claim that `mint(..., shape=...)` writes; SIDECAR_SHAPE_CLAIM=shape reads it."""

DEFAULT_RETRY_ATTEMPTS = 3
"""How many times, in all, a call is tried while it fails with UNAVAILABLE (1: no retries)."""

DEFAULT_RETRY_BACKOFF = 0.1
"""The longest pause before the first retry, in seconds; each later one may be twice as long."""

MAX_RETRY_BACKOFF = 1.0
"""The cap on the doubling pause, in seconds, unless the backoff itself is longer."""

MAX_RETRY_ATTEMPTS = 5
"""gRPC's limit on the attempts of one call."""

MIN_RETRY_BACKOFF = 0.01
"""The shortest backoff, in seconds: grpc-core 1.85 can stall a retry with a 1 ms backoff."""

ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Decision:
    """The sidecar's decision on one token."""

    valid: bool
    user_id: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Minted:
    """A token from Mint and when it expires (None when it has no `exp`)."""

    token: str
    expires_at: datetime | None


class AuthClient:
    """A blocking client. `target` is `host:port` or `unix:/path`; use it as a context manager.

    A call that fails with UNAVAILABLE is tried `retry_attempts` times in all (1 to 5; 1 turns
    retries off) by gRPC's own retry policy, the first retry after at most `retry_backoff`
    seconds (at least 0.01); see `retry_service_config`. `options` are extra
    channel options; a `grpc.service_config` among them replaces the retry policy. Bad retry
    settings raise ValueError.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
    ) -> None:
        options = _channel_options(retry_attempts, retry_backoff, options)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._timeout = timeout

    def validate(self, token: str, *, timeout: float | None = None) -> Decision:
        response = self._stub.Validate(
            auth_pb2.ValidateRequest(token=token),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _decision(response)

    def mint(
        self,
        user_id: str,
        claims: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
        mint_secret: str | None = None,
        *,
        shape: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Minted:
        response = self._stub.Mint(
            _mint_request(user_id, claims, ttl, shape),
            metadata=_bearer(mint_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _minted(response)

    def revoke_token(
        self,
        iss: str,
        jti: str,
        expires_at: datetime,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> datetime | None:
        """Revokes one token by its `iss` and `jti` claims; returns until when that is kept.

        From then on the sidecar refuses it as REASON_REVOKED (`Token has been revoked`), and so
        does every replica that shares its revocation store. `iss` is the token's `iss` ("" for
        a token without one), `expires_at` its `exp`, timezone-aware (`Decision.expires_at`, or
        `datetime.fromtimestamp(exp, UTC)`): the revocation is kept until then plus the allowed
        clock skew, after which the token is refused as expired anyway.

        Needs the sidecar's revocation store (SIDECAR_STATE_DIR or SIDECAR_REVOCATION_STORE) and,
        in secure mode, `admin_secret` (its SIDECAR_ADMIN_SECRET). Raises `grpc.RpcError`:
        INVALID_ARGUMENT (a blank `jti`, an `expires_at` past or more than a year ahead),
        FAILED_PRECONDITION (no store, or secure mode without SIDECAR_ADMIN_SECRET),
        UNAUTHENTICATED (no secret sent), PERMISSION_DENIED (a wrong one), UNAVAILABLE (the
        store is down: nothing was revoked). A naive datetime raises ValueError, before any call.
        """
        response = self._stub.Revoke(
            _token_revocation(iss, jti, expires_at),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _kept_until(response)

    def revoke_user(
        self,
        iss: str,
        user_id: str,
        not_before: datetime | None = None,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Revokes every token of `user_id` (as Validate reports it) and issuer `iss` ("" for
        tokens without `iss`) whose `iat` is before `not_before` (None: now); tokens without
        `iat` too. Raises as `revoke_token` does; INVALID_ARGUMENT is a blank `user_id` or a
        `not_before` more than a year ahead."""
        self._stub.Revoke(
            _user_revocation(iss, user_id, not_before),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )

    def revoke_issuer(
        self,
        iss: str,
        not_before: datetime | None = None,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """Revokes every token of issuer `iss` whose `iat` is before `not_before` (None: now),
        tokens without `iat` too, as after a signing key was compromised. Raises as
        `revoke_user` does."""
        self._stub.Revoke(
            _issuer_revocation(iss, not_before),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AuthClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncAuthClient:
    """The asyncio twin of `AuthClient`; use it as an async context manager."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
    ) -> None:
        options = _channel_options(retry_attempts, retry_backoff, options)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._timeout = timeout

    async def validate(self, token: str, *, timeout: float | None = None) -> Decision:
        response = await self._stub.Validate(
            auth_pb2.ValidateRequest(token=token),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _decision(response)

    async def mint(
        self,
        user_id: str,
        claims: Mapping[str, Any] | None = None,
        ttl: float | timedelta | None = None,
        mint_secret: str | None = None,
        *,
        shape: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Minted:
        response = await self._stub.Mint(
            _mint_request(user_id, claims, ttl, shape),
            metadata=_bearer(mint_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _minted(response)

    async def revoke_token(
        self,
        iss: str,
        jti: str,
        expires_at: datetime,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> datetime | None:
        """`AuthClient.revoke_token`, as a coroutine."""
        response = await self._stub.Revoke(
            _token_revocation(iss, jti, expires_at),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _kept_until(response)

    async def revoke_user(
        self,
        iss: str,
        user_id: str,
        not_before: datetime | None = None,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """`AuthClient.revoke_user`, as a coroutine."""
        await self._stub.Revoke(
            _user_revocation(iss, user_id, not_before),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )

    async def revoke_issuer(
        self,
        iss: str,
        not_before: datetime | None = None,
        admin_secret: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        """`AuthClient.revoke_issuer`, as a coroutine."""
        await self._stub.Revoke(
            _issuer_revocation(iss, not_before),
            metadata=_bearer(admin_secret),
            timeout=self._timeout if timeout is None else timeout,
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncAuthClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def retry_service_config(attempts: int, backoff: float) -> str:
    """The gRPC service config (JSON) that retries calls failing with UNAVAILABLE.

    Such a call (nothing listening, a connection lost before the call reached the sidecar, or a
    sidecar without its keys yet) is tried `attempts` times in all. Before retry n gRPC waits a
    random time below min(backoff * 2**(n-1), max(backoff, 1 s)). No other code is retried, and
    the call's deadline covers every attempt. Mint is retried too: the sidecar never processed a
    call that failed with UNAVAILABLE, so a retry mints at most the one token asked for. The Go
    and TypeScript clients send the very same policy.
    """
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise ValueError(f"retry_attempts must be an integer, not {attempts!r}")
    if not 1 <= attempts <= MAX_RETRY_ATTEMPTS:
        raise ValueError(f"retry_attempts must be from 1 to {MAX_RETRY_ATTEMPTS}, not {attempts}")
    if attempts == 1:
        return "{}"
    if not MIN_RETRY_BACKOFF <= backoff < float("inf"):
        raise ValueError(
            f"retry_backoff must be at least {MIN_RETRY_BACKOFF} seconds, not {backoff!r}"
        )
    policy = {
        "maxAttempts": attempts,
        "initialBackoff": _seconds(backoff),
        "maxBackoff": _seconds(max(backoff, MAX_RETRY_BACKOFF)),
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    service = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
    config = {"methodConfig": [{"name": [{"service": service}], "retryPolicy": policy}]}
    return json.dumps(config, separators=(",", ":"), sort_keys=True)


def _seconds(seconds: float) -> str:
    """Seconds as a service config duration with millisecond precision, such as `0.100s`."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}.{ms % 1000:03d}s"


def _channel_options(attempts: int, backoff: float, extra: ChannelOptions) -> list[tuple[str, Any]]:
    """The retry policy's channel options, then the caller's (which win)."""
    return [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", retry_service_config(attempts, backoff)),
        *extra,
    ]


def _decision(response: auth_pb2.ValidateResponse) -> Decision:
    return Decision(
        valid=response.valid,
        user_id=response.user_id,
        claims=from_struct(response.claims),
        reason=Reason(response.reason),
        message=response.message,
        expires_at=_time(response.expires_at) if response.HasField("expires_at") else None,
    )


def _minted(response: auth_pb2.MintResponse) -> Minted:
    expires = _time(response.expires_at) if response.HasField("expires_at") else None
    return Minted(token=response.token, expires_at=expires)


def _mint_request(
    user_id: str,
    claims: Mapping[str, Any] | None,
    ttl: float | timedelta | None,
    shape: Mapping[str, Any] | None = None,
) -> auth_pb2.MintRequest:
    """`shape` is Electric's gatekeeper claim, `{table, namespace?, where?, columns?, params?}`:
    the one shape the token may sync, written as the claim SHAPE_CLAIM."""
    request = auth_pb2.MintRequest(user_id=user_id)
    if shape is not None:
        claims = {**(claims or {}), SHAPE_CLAIM: dict(shape)}
    if claims:
        to_struct(claims, into=request.claims)
    if ttl is not None:
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        request.ttl.CopyFrom(_duration(seconds))
    return request


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _bearer(secret: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata `authorization: Bearer <secret>` (nothing for no secret), which a secure-mode
    sidecar requires of Mint (SIDECAR_MINT_SECRET) and Revoke (SIDECAR_ADMIN_SECRET) callers."""
    return (("authorization", f"Bearer {secret}"),) if secret else ()


def _timestamp(name: str, when: datetime) -> Timestamp:
    """`when` as a Timestamp. A naive datetime raises ValueError: protobuf would take it as UTC,
    and a local `datetime.now()` would then revoke for hours more or less than meant."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {when!r}")
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _token_revocation(iss: str, jti: str, expires_at: datetime) -> auth_pb2.RevokeRequest:
    token = auth_pb2.TokenRevocation(
        iss=iss, jti=jti, expires_at=_timestamp("expires_at", expires_at)
    )
    return auth_pb2.RevokeRequest(token=token)


def _user_revocation(iss: str, user_id: str, not_before: datetime | None) -> auth_pb2.RevokeRequest:
    user = auth_pb2.UserRevocation(iss=iss, user_id=user_id)
    if not_before is not None:
        user.not_before.CopyFrom(_timestamp("not_before", not_before))
    return auth_pb2.RevokeRequest(user=user)


def _issuer_revocation(iss: str, not_before: datetime | None) -> auth_pb2.RevokeRequest:
    issuer = auth_pb2.IssuerRevocation(iss=iss)
    if not_before is not None:
        issuer.not_before.CopyFrom(_timestamp("not_before", not_before))
    return auth_pb2.RevokeRequest(issuer=issuer)


def _kept_until(response: auth_pb2.RevokeResponse) -> datetime | None:
    return _time(response.kept_until) if response.HasField("kept_until") else None


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
