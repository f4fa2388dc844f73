"""The minting core: who may mint, and what a minted token holds. Pure: no I/O, no gRPC.

Tokens follow Electric's generator: `iat` = `nbf` = now and `exp` = now + ttl (15 minutes by
default), `iss` and `aud` when configured, and `user_id` under the namespace when one is set.
Insecure mode writes the shape of `jwt.sign(claims, '', {algorithm: 'none'})`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.core import jws
from sidecar.core.credentials import check_bearer
from sidecar.core.crypto import Signer
from sidecar.core.errors import (
    CallDisabled,
    CallInvalidArgument,
    MalformedToken,
)
from sidecar.core.policy import MintPolicy, Mode, Policy

DEFAULT_TTL_SECONDS = 15 * 60
_USER_CLAIMS = ("sub", "user_id")
_TIME_CLAIMS = ("iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    expires_at: int | None


class Minter:
    """Issues tokens with one policy and one signer, fixed at construction.

    Insecure mode writes unsigned tokens. In secure mode, `signer=None` means that no signing key
    is configured, and Mint says so.
    """

    def __init__(
        self,
        policy: Policy,
        mint: MintPolicy,
        signer: Signer | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._insecure = policy.mode is Mode.INSECURE
        if self._insecure and signer is not None:
            raise ValueError("an insecure policy mints unsigned tokens: pass no signer")
        self._policy = policy
        self._signer = signer
        self._secret = mint.secret
        # A minted token must pass Validate here: never longer than the lifetime bound, and
        # of a `typ` that the policy accepts (JWT when it does, else the first it names).
        bound = policy.max_lifetime
        self._mint_max = mint.max_ttl
        self._max_ttl = mint.max_ttl if bound is None else min(mint.max_ttl, bound)
        accepted = policy.typ
        self._typ = (
            "JWT"
            if accepted is None or "application/jwt" in accepted
            else min(accepted).removeprefix("application/")
        )
        self._clock = clock

    def authorize(self, authorization: str | None) -> None:
        """Checks a caller's `authorization` value. Insecure mode lets anyone mint.

        Raises CallDisabled, CallUnauthenticated or CallPermissionDenied.
        """
        if self._insecure:
            return
        check_bearer(authorization, self._secret, "Mint", "SIDECAR_MINT_SECRET")

    def mint(
        self, user_id: str, claims: Mapping[str, Any] | None = None, ttl: float | None = None
    ) -> Minted:
        """Builds a token for `user_id`. Raises CallInvalidArgument or CallDisabled."""
        signer = self._signer
        if not self._insecure and signer is None:
            raise CallDisabled(
                "Mint needs AUTH_JWT_SIGNING_KEY, the private key of AUTH_JWT_KEY (any but HS)"
            )
        if not user_id.strip():
            raise CallInvalidArgument("user_id must not be blank")
        seconds = self._ttl_seconds(ttl)
        payload = dict(claims or {})
        now = int(self._clock())
        if self._insecure and self._policy.max_lifetime is not None:
            seconds = min(DEFAULT_TTL_SECONDS, self._max_ttl) if seconds is None else seconds
            stamped: dict[str, Any] = {"iat": now, "exp": now + seconds}  # the bound needs both
        elif self._insecure:
            stamped = {} if seconds is None else {"exp": now + seconds}
        else:
            seconds = min(DEFAULT_TTL_SECONDS, self._max_ttl) if seconds is None else seconds
            stamped = {"iat": now, "nbf": now, "exp": now + seconds}
            policy = self._policy
            stamped.update((k, v) for k, v in (("iss", policy.iss), ("aud", policy.aud)) if v)
        # The time claims are the sidecar's in both modes: a caller's `exp: 1` would mint a token
        # that Validate refuses. Insecure mode never checks iss or aud, so those pass through.
        reserved = _TIME_CLAIMS if self._insecure else (*_TIME_CLAIMS, "iss", "aud")
        for name in reserved:
            if name in payload:
                raise CallInvalidArgument(
                    f'claims may not set "{name}": the sidecar writes it (use ttl)'
                )
        payload.update(stamped)
        self._place_user(payload, user_id)
        header = {"alg": "none" if signer is None else signer.alg, "typ": self._typ}
        if signer is not None and signer.kid is not None:
            header["kid"] = signer.kid
        try:
            token = jws.encode(header, payload, signer)
        except ValueError as error:  # NaN or Infinity in the claims
            raise CallInvalidArgument(f"claims are not valid JSON: {error}") from None
        try:
            # Every minted token must pass Validate on this sidecar; parsing is what could fail.
            jws.parse(token, self._policy.max_token_bytes)
        except MalformedToken:
            raise CallInvalidArgument(
                "the claims make a token that Validate would refuse: longer than "
                f"SIDECAR_MAX_TOKEN_BYTES ({self._policy.max_token_bytes}), nested deeper than "
                f"{jws.MAX_DEPTH} levels, or with a number beyond a double"
            ) from None
        return Minted(token=token, expires_at=stamped.get("exp"))

    def _ttl_seconds(self, ttl: float | None) -> int | None:
        if ttl is None:
            return None
        if not 1 <= ttl <= self._max_ttl:
            raise CallInvalidArgument(
                f"ttl must be from 1 to {self._max_ttl} seconds (SIDECAR_MINT_MAX_TTL_SECONDS"
                + (", SIDECAR_JWT_MAX_LIFETIME_SECONDS)" if self._max_ttl < self._mint_max else ")")
            )
        return int(ttl)

    def _place_user(self, payload: dict[str, Any], user_id: str) -> None:
        """Writes `user_id` where Validate reads the user; the request may not put one there."""
        target = payload
        namespace = self._policy.namespace
        if namespace is not None:
            nested = payload.get(namespace, {})
            if not isinstance(nested, dict):
                raise CallInvalidArgument(f'claims["{namespace}"] must be an object')
            target = payload[namespace] = dict(nested)
        for name in _USER_CLAIMS:
            if name in target:
                raise CallInvalidArgument(f'claims may not set "{name}": use user_id')
        target["user_id"] = user_id
