"""The decision core: token in, `Decision` out. Pure: no I/O, no gRPC, no logging.

One code path serves both modes. Insecure mode is secure mode with no key, no required claims and
no issuer or audience, which is exactly how Electric's two modes differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jose.backends.base import Key

from sidecar import claims as rules
from sidecar import jws
from sidecar.config import INSECURE, Config
from sidecar.errors import AlgorithmMismatch, BadSignature, MalformedToken, Reason, TokenError


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one token. Claims and expiry are filled only when the token is valid."""

    valid: bool
    user_id: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    expires_at: float | None = None

    @classmethod
    def refused(cls, error: TokenError) -> Decision:
        return cls(valid=False, reason=error.reason, message=error.message)

    def to_json(self) -> dict[str, Any]:
        """The decision as plain JSON, for the CLI and logs of tools built on it."""
        return {
            "valid": self.valid,
            "user_id": self.user_id,
            "claims": self.claims,
            "reason": f"REASON_{self.reason.name}",
            "message": self.message,
            "expires_at": self.expires_at,
        }


class Validator:
    """Decides on tokens with one configuration, fixed at construction."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        if config.mode != INSECURE and config.verify_key is None and config.verifier is None:
            # Signatures are checked when there is a key: without one, fail closed, not open.
            raise ValueError(f"a {config.mode} config needs a verify key; build it with load()")
        self._alg = config.alg
        self._key = config.verify_key
        self._verifier = config.verifier
        self._required = config.required_claims
        self._iss = config.iss
        self._aud = config.aud
        self._namespace = config.namespace
        self._skew = config.clock_skew
        self._max_length = config.max_token_bytes
        self._clock = clock

    def decide(self, token: str) -> Decision:
        """Never raises for any token: every refusal is a `Decision` with a reason.

        KeysUnavailable (a JWKS source before its first fetch) is no decision and passes up.
        """
        try:
            return self.check(token)
        except TokenError as error:
            return Decision.refused(error)

    def check(self, token: str) -> Decision:
        """Like `decide`, but raises the `TokenError` of the first rule that fails."""
        return self.check_parsed(jws.parse(token, self._max_length))

    def check_parsed(self, parsed: jws.Token) -> Decision:
        """`check` for a token already parsed (by the issuer router)."""
        if self._verifier is not None:
            # The allow-list comes from configuration; the header may only pick from it.
            if parsed.header.get("alg") not in self._verifier.algorithms:
                raise AlgorithmMismatch()
            if "crit" in parsed.header:
                raise MalformedToken()
            if not self._verifier.verify(parsed.header, parsed.signing_input, parsed.signature):
                raise BadSignature()
        elif self._key is not None:
            # The algorithm comes from configuration; the header may only agree with it.
            if parsed.header.get("alg") != self._alg:
                raise AlgorithmMismatch()
            # RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we know none.
            if "crit" in parsed.header:
                raise MalformedToken()
            if not _verifies(self._key, parsed):
                raise BadSignature()
        claims = parsed.claims
        rules.require(claims, self._required)
        # Electric compares whole seconds (Joken.current_time/0); so do we, for exact boundaries.
        rules.check_times(claims, int(self._clock()), self._skew)
        rules.check_issuer(claims, self._iss)
        rules.check_audience(claims, self._aud)
        user = rules.find_user(claims, self._namespace)
        exp = claims.get("exp")
        return Decision(
            valid=True,
            user_id=user,
            claims=claims,
            expires_at=float(exp) if exp is not None else None,
        )


def _verifies(key: Key, parsed: jws.Token) -> bool:
    try:
        return bool(key.verify(parsed.signing_input, parsed.signature))
    except Exception:  # noqa: BLE001 - any failure inside the crypto is a bad signature
        return False
