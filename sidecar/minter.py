"""The minting core: who may mint, and what a minted token holds. Pure: no I/O, no gRPC.

Tokens follow Electric's generator: `iat` = `nbf` = now and `exp` = now + ttl (15 minutes by
default), `iss` and `aud` when configured, and `user_id` under the namespace when one is set.
Insecure mode writes the shape of `jwt.sign(claims, '', {algorithm: 'none'})`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar import jws
from sidecar.config import INSECURE, Config
from sidecar.errors import (
    MalformedToken,
    MintDisabled,
    MintInvalidArgument,
    MintPermissionDenied,
    MintUnauthenticated,
)

DEFAULT_TTL_SECONDS = 15 * 60
_USER_CLAIMS = ("sub", "user_id")
_TIME_CLAIMS = ("iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    expires_at: int | None


class Minter:
    """Issues tokens with one configuration, fixed at construction."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._insecure = config.mode == INSECURE
        self._alg = config.alg
        self._key = config.signing_key
        self._kid = config.signing_kid
        self._secret = config.mint_secret
        self._namespace = config.namespace
        self._iss = config.iss
        self._aud = config.aud
        self._max_ttl = config.mint_max_ttl
        self._max_length = config.max_token_bytes
        self._clock = clock

    def authorize(self, authorization: str | None) -> None:
        """Checks a caller's `authorization` value. Insecure mode lets anyone mint.

        Raises MintDisabled, MintUnauthenticated or MintPermissionDenied.
        """
        if self._insecure:
            return
        if self._secret is None:
            raise MintDisabled(
                "Mint is off in secure mode: set SIDECAR_MINT_SECRET, and send it as "
                "'authorization: Bearer <secret>'"
            )
        if not authorization:
            raise MintUnauthenticated("Mint needs 'authorization: Bearer <SIDECAR_MINT_SECRET>'")
        scheme, _, credential = authorization.partition(" ")
        given = credential.strip().encode()
        # Compare even on a wrong scheme, so that timing says nothing about which part failed.
        if not hmac.compare_digest(given, self._secret) or scheme.lower() != "bearer":
            raise MintPermissionDenied("the mint credential is wrong")

    def mint(
        self, user_id: str, claims: Mapping[str, Any] | None = None, ttl: float | None = None
    ) -> Minted:
        """Builds a token for `user_id`. Raises MintInvalidArgument or MintDisabled."""
        if not self._insecure and self._key is None:
            raise MintDisabled(
                f"Mint with {self._alg} needs AUTH_JWT_SIGNING_KEY, the private key of AUTH_JWT_KEY"
            )
        if not user_id.strip():
            raise MintInvalidArgument("user_id must not be blank")
        seconds = self._ttl_seconds(ttl)
        payload = dict(claims or {})
        now = int(self._clock())
        if self._insecure:
            stamped: dict[str, Any] = {} if seconds is None else {"exp": now + seconds}
        else:
            seconds = DEFAULT_TTL_SECONDS if seconds is None else seconds
            stamped = {"iat": now, "nbf": now, "exp": now + seconds}
            stamped.update((k, v) for k, v in (("iss", self._iss), ("aud", self._aud)) if v)
        # The time claims are the sidecar's in both modes: a caller's `exp: 1` would mint a token
        # that Validate refuses. Insecure mode never checks iss or aud, so those pass through.
        reserved = _TIME_CLAIMS if self._insecure else (*_TIME_CLAIMS, "iss", "aud")
        for name in reserved:
            if name in payload:
                raise MintInvalidArgument(
                    f'claims may not set "{name}": the sidecar writes it (use ttl)'
                )
        payload.update(stamped)
        self._place_user(payload, user_id)
        header = {"alg": "none" if self._insecure else self._alg, "typ": "JWT"}
        if self._kid is not None and not self._insecure:
            header["kid"] = self._kid
        try:
            token = jws.encode(header, payload, None if self._insecure else self._key)
        except ValueError as error:  # NaN or Infinity in the claims
            raise MintInvalidArgument(f"claims are not valid JSON: {error}") from None
        try:
            # Every minted token must pass Validate on this sidecar; parsing is what could fail.
            jws.parse(token, self._max_length)
        except MalformedToken:
            raise MintInvalidArgument(
                "the claims make a token that Validate would refuse: longer than "
                f"SIDECAR_MAX_TOKEN_BYTES ({self._max_length}), nested deeper than "
                f"{jws.MAX_DEPTH} levels, or with a number beyond a double"
            ) from None
        return Minted(token=token, expires_at=stamped.get("exp"))

    def _ttl_seconds(self, ttl: float | None) -> int | None:
        if ttl is None:
            return None
        if not 1 <= ttl <= self._max_ttl:
            raise MintInvalidArgument(
                f"ttl must be from 1 to {self._max_ttl} seconds (SIDECAR_MINT_MAX_TTL_SECONDS)"
            )
        return int(ttl)

    def _place_user(self, payload: dict[str, Any], user_id: str) -> None:
        """Writes `user_id` where Validate reads the user; the request may not put one there."""
        target = payload
        if self._namespace is not None:
            nested = payload.get(self._namespace, {})
            if not isinstance(nested, dict):
                raise MintInvalidArgument(f'claims["{self._namespace}"] must be an object')
            target = payload[self._namespace] = dict(nested)
        for name in _USER_CLAIMS:
            if name in target:
                raise MintInvalidArgument(f'claims may not set "{name}": use user_id')
        target["user_id"] = user_id
