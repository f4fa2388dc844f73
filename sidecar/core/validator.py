"""The decision core: token in, `Decision` out. Pure: no I/O, no gRPC, no logging.

One code path serves both modes. Insecure mode is secure mode with no key, no required claims and
no issuer or audience, which is exactly how Electric's two modes differ.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.core import claims as rules
from sidecar.core import jws
from sidecar.core.crypto import Verifier
from sidecar.core.errors import (
    AlgorithmMismatch,
    BadSignature,
    KeysUnavailable,
    MalformedToken,
    Reason,
    TokenError,
)
from sidecar.core.policy import Mode, Policy


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one token. Claims and expiry are filled only when the token is valid."""

    valid: bool
    user_id: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    expires_at: float | None = None
    namespace: str | None = None
    """Where the issuer reads its user: the root of claim paths (routes, claim headers)."""

    @classmethod
    def refused(cls, error: TokenError) -> Decision:
        return cls(valid=False, reason=error.reason, message=error.message)

    @classmethod
    def accepted(cls, user_id: str, claims: dict[str, Any], namespace: str | None) -> Decision:
        """A valid decision; it expires with the claims' `exp`, if any."""
        exp = claims.get("exp")
        return cls(
            valid=True,
            user_id=user_id,
            claims=claims,
            expires_at=float(exp) if exp is not None else None,
            namespace=namespace,
        )

    def to_json(self) -> dict[str, Any]:
        """The decision as plain JSON, for the CLI and logs of tools built on it."""
        return {
            "valid": self.valid,
            "user_id": self.user_id,
            "claims": self.claims,
            "reason": self.reason.wire,
            "message": self.message,
            "expires_at": self.expires_at,
        }


class Validator:
    """Decides on tokens with one policy and one verifier, fixed at construction.

    `verifier=None` is insecure mode: no signature is checked. `clock` gives Unix seconds.
    """

    def __init__(
        self, policy: Policy, verifier: Verifier | None, clock: Callable[[], float] = time.time
    ) -> None:
        # Signatures are checked when there is a verifier: without one, fail closed, not open.
        if policy.mode is Mode.SECURE and verifier is None:
            raise ValueError("a secure policy needs a verifier (the verify key)")
        if policy.mode is Mode.INSECURE and verifier is not None:
            raise ValueError("an insecure policy checks no signature: pass no verifier")
        self._policy = policy
        self._verifier = verifier
        self._clock = clock

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        """Never raises for any token: every refusal is a `Decision` with a reason.
        `issuer_audience=False` leaves out the policy's `aud`: a route checks its own instead.

        Raises KeysUnavailable when the verifier has no keys yet: no decision is possible.
        """
        try:
            return self.check(token, issuer_audience)
        except TokenError as error:
            return Decision.refused(error)

    def check(self, token: str, issuer_audience: bool = True) -> Decision:
        """Like `decide`, but raises the `TokenError` of the first rule that fails."""
        return self.check_parsed(jws.parse(token, self._policy.max_token_bytes), issuer_audience)

    def check_parsed(self, parsed: jws.Token, issuer_audience: bool = True) -> Decision:
        """`check` for a token already parsed (by the issuer router)."""
        policy = self._policy
        verifier = self._verifier
        if verifier is not None:
            # The algorithm comes from configuration; the header may only agree with it.
            alg = parsed.header.get("alg")
            if not isinstance(alg, str) or alg not in verifier.algorithms:
                raise AlgorithmMismatch()
            # RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we know none.
            if "crit" in parsed.header:
                raise MalformedToken()
            if not _verifies(verifier, parsed):
                raise BadSignature()
        rules.check_typ(parsed.header, policy.typ)
        claims = parsed.claims
        rules.require(claims, policy.required)
        # Electric compares whole seconds (Joken.current_time/0); so do we, for exact boundaries.
        rules.check_times(claims, int(self._clock()), policy.skew)
        rules.check_lifetime(claims, policy.max_lifetime)
        rules.check_issuer(claims, policy.iss)
        if issuer_audience:
            rules.check_audience(claims, policy.aud)
        return Decision.accepted(
            rules.find_user(claims, policy.namespace), claims, policy.namespace
        )


def _verifies(verifier: Verifier, parsed: jws.Token) -> bool:
    try:
        return verifier.verify(parsed.header, parsed.signing_input, parsed.signature)
    except KeysUnavailable:
        raise
    except Exception:  # noqa: BLE001 - any failure inside the crypto is a bad signature
        return False
