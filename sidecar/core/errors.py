"""The sidecar's exceptions: one family each for token refusals, call refusals and config.

Token errors carry Electric's wording word for word, and a stable reason code; both are API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

# Re-exported: refusals are named with the API's one definition of Reason.
from authsidecar.v1.reason import Reason as Reason


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class TokenError(SidecarError):
    """A token was refused. `reason` is the stable code, `message` Electric's wording."""

    reason: Reason = Reason.MALFORMED
    message: str = "Invalid token"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


def _shown(value: Any) -> str:
    """A value as Electric prints it, as Jason would: compact JSON, non-ASCII left as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class MalformedToken(TokenError):
    reason = Reason.MALFORMED
    message = "Invalid token"


class AlgorithmMismatch(TokenError):
    reason = Reason.ALGORITHM_MISMATCH
    message = "Signing algorithm mismatch"


class BadSignature(TokenError):
    reason = Reason.BAD_SIGNATURE
    message = "Invalid token signature"


class ExpiredToken(TokenError):
    reason = Reason.EXPIRED
    message = "Expired token"


class NotYetValid(TokenError):
    reason = Reason.NOT_YET_VALID
    message = "Token is not yet valid"


class MissingClaim(TokenError):
    reason = Reason.MISSING_CLAIM

    def __init__(self, claim: str) -> None:
        super().__init__(f'Missing required "{claim}" claim')


class InvalidClaim(TokenError):
    reason = Reason.INVALID_CLAIM

    def __init__(self, claim: str, value: Any) -> None:
        super().__init__(f'Invalid "{claim}" claim value: {_shown(value)}')


class MissingHeader(TokenError):
    """A header parameter that the policy requires (`typ`) is absent."""

    reason = Reason.MISSING_CLAIM

    def __init__(self, name: str) -> None:
        super().__init__(f'Missing required "{name}" header')


class InvalidHeader(TokenError):
    """A header parameter that is not one the policy accepts (`typ`)."""

    reason = Reason.INVALID_CLAIM

    def __init__(self, name: str, value: Any) -> None:
        super().__init__(f'Invalid "{name}" header value: {_shown(value)}')


class LifetimeTooLong(TokenError):
    """`exp - iat` is longer than the policy's bound (SIDECAR_JWT_MAX_LIFETIME_SECONDS)."""

    reason = Reason.INVALID_CLAIM

    def __init__(self, lifetime: float, bound: int) -> None:
        super().__init__(f"Token lifetime (exp - iat) of {lifetime:g} s exceeds {bound} s")


class InvalidUserId(TokenError):
    reason = Reason.INVALID_USER_ID
    message = "Missing or invalid 'user_id'"


class ShapeMismatch(TokenError):
    """A valid token whose shape claim does not allow the shape that was requested."""

    reason = Reason.SHAPE_MISMATCH
    message = "Shape mismatch"


class AmbiguousPath(ShapeMismatch):
    """A request path that routers read differently (see core/paths.py): refused, as a shape
    mismatch, rather than checked against one reading of it."""

    message = "the request path is ambiguous"


class ClientSecret(ShapeMismatch):
    """A request to the shape path that carries Electric's secret itself, where the proxy sets
    it: refused wherever the proxy cannot remove the client's (forward auth, or a spelling such
    as `%73ecret` that Envoy's removal by name misses)."""

    message = "the request carries Electric's secret, which only the proxy sets"


class Forbidden(TokenError):
    """A valid token that the request's route does not allow (core/rules.py). `scopes`: the
    scopes that would allow it, for RFC 6750's `insufficient_scope`; empty when no scope would."""

    reason = Reason.FORBIDDEN
    message = "Forbidden"

    def __init__(self, message: str, scopes: tuple[str, ...] | list[str] = ()) -> None:
        self.scopes = tuple(scopes)
        super().__init__(message)


class Inactive(TokenError):
    """An opaque token that its introspection endpoint answered `"active": false` for."""

    reason = Reason.INACTIVE
    message = "Token is not active"


class Revoked(TokenError):
    """A valid token that was revoked: by `(iss, jti)`, or by its user's or its issuer's
    "not before" time (core/revocation.py)."""

    reason = Reason.REVOKED
    message = "Token has been revoked"


class UnsendableClaim(TokenError):
    """A claim that SIDECAR_CLAIM_HEADERS sends upstream has a value no header can carry
    whole (an object, a line break, a comma inside an array's element): refused, never cut."""

    reason = Reason.INVALID_CLAIM

    def __init__(self, claim: str) -> None:
        super().__init__(f'The "{claim}" claim cannot be sent upstream as a header')


class KeysUnavailable(SidecarError):
    """No verification keys are loaded yet: no decision is possible, so adapters answer
    UNAVAILABLE (and Envoy fails closed) rather than refusing a token that may be good."""

    def __init__(self, message: str = "no verification keys are loaded yet") -> None:
        super().__init__(message)


class IntrospectionNeeded(KeysUnavailable):
    """An opaque token with no introspection answer kept: `fetch()` gets one (the adapter
    awaits it and decides again). Where nothing awaits it, it is UNAVAILABLE, as it subclasses
    KeysUnavailable: no decision is given without an answer."""

    def __init__(self, fetch: Callable[[], Awaitable[None]]) -> None:
        super().__init__("the token's introspection answer is not here yet")
        self.fetch = fetch


class RevocationsUnavailable(KeysUnavailable):
    """The local copy of the revocations is older than SIDECAR_REVOCATION_MAX_STALENESS_SECONDS
    (or was never loaded) and SIDECAR_REVOCATION_FAIL=closed: no valid decision is given."""


class CallError(SidecarError):
    """A Mint or Revoke request was refused; the adapters map each subclass to a status code."""


class CallDisabled(CallError):
    """The call is not configured in this mode (FAILED_PRECONDITION)."""


class CallUnauthenticated(CallError):
    """The caller sent no credential (UNAUTHENTICATED)."""


class CallPermissionDenied(CallError):
    """The caller's credential is wrong (PERMISSION_DENIED)."""


class CallInvalidArgument(CallError):
    """The request itself is bad: blank user, bad ttl, reserved claims (INVALID_ARGUMENT)."""


class BindError(SidecarError):
    """A listen address (gRPC, HTTP, the side listener) could not be bound."""


class ConfigError(SidecarError):
    """The configuration is unusable. `problems` holds one line per problem, naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
