"""The bearer secret that Mint and Revoke callers send: one check, in constant time."""

from __future__ import annotations

import hmac

from sidecar.core.errors import CallDisabled, CallPermissionDenied, CallUnauthenticated


def check_bearer(authorization: str | None, secret: bytes | None, call: str, variable: str) -> None:
    """Checks a caller's `authorization` value against `secret` (named `variable`) for `call`.

    Raises CallDisabled (no secret configured), CallUnauthenticated or CallPermissionDenied.
    """
    if secret is None:
        raise CallDisabled(
            f"{call} is off in secure mode: set {variable}, and send it as "
            "'authorization: Bearer <secret>'"
        )
    if not authorization:
        raise CallUnauthenticated(f"{call} needs 'authorization: Bearer <{variable}>'")
    scheme, _, credential = authorization.partition(" ")
    given = credential.strip().encode()
    # Compare even on a wrong scheme, so that timing says nothing about which part failed.
    if not hmac.compare_digest(given, secret) or scheme.lower() != "bearer":
        raise CallPermissionDenied(f"the {call.lower()} credential is wrong")
