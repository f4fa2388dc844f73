"""Synchronous and asyncio clients for auth-sidecar's AuthService.

Both return the same typed results. A refused token is a `Decision` with `valid=False`, never an
exception; refused Mint calls and transport failures raise `grpc.RpcError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from authsidecar.v1 import auth_pb2, auth_pb2_grpc
from authsidecar.v1.structs import from_struct, to_struct

DEFAULT_TIMEOUT = 2.0
"""Seconds a call may take before it fails with DEADLINE_EXCEEDED."""

ChannelOptions = Sequence[tuple[str, Any]]


class Reason(enum.IntEnum):
    """Why a token was refused; the names drop the proto's `REASON_` prefix."""

    UNSPECIFIED = 0
    MALFORMED = 1
    ALGORITHM_MISMATCH = 2
    BAD_SIGNATURE = 3
    EXPIRED = 4
    NOT_YET_VALID = 5
    MISSING_CLAIM = 6
    INVALID_CLAIM = 7
    INVALID_USER_ID = 8

    @classmethod
    def _missing_(cls, value: object) -> Reason | None:
        """A reason added to the proto after this client was built is kept, not an error."""
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member


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
    """A blocking client. `target` is `host:port` or `unix:/path`; use it as a context manager."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
    ) -> None:
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
        timeout: float | None = None,
    ) -> Minted:
        response = self._stub.Mint(
            _mint_request(user_id, claims, ttl),
            metadata=_mint_metadata(mint_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _minted(response)

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
    ) -> None:
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
        timeout: float | None = None,
    ) -> Minted:
        response = await self._stub.Mint(
            _mint_request(user_id, claims, ttl),
            metadata=_mint_metadata(mint_secret),
            timeout=self._timeout if timeout is None else timeout,
        )
        return _minted(response)

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
    user_id: str, claims: Mapping[str, Any] | None, ttl: float | timedelta | None
) -> auth_pb2.MintRequest:
    request = auth_pb2.MintRequest(user_id=user_id)
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


def _mint_metadata(mint_secret: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_secret}"),) if mint_secret else ()


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)
