"""Several issuers: each token goes to the Validator of its (unverified) `iss`, by exact match.

A token whose `iss` names no configured issuer is refused as an invalid `iss` before any crypto:
a flood of made-up issuers costs one JSON parse each, never a signature check or a key fetch.
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.core import jws
from sidecar.core.errors import InvalidClaim, MissingClaim, TokenError
from sidecar.core.validator import Decision, Validator


class IssuerRouter:
    """Decides with the Validator that the token's `iss` selects."""

    def __init__(self, validators: Mapping[str, Validator], max_token_bytes: int) -> None:
        self._validators = dict(validators)
        self._max_length = max_token_bytes

    def decide(self, token: str, issuer_audience: bool = True) -> Decision:
        """Never raises for a TokenError; KeysUnavailable passes up, as from a Validator."""
        try:
            parsed = jws.parse(token, self._max_length)
            iss = parsed.claims.get("iss")
            if iss is None:
                raise MissingClaim("iss")
            validator = self._validators.get(iss) if isinstance(iss, str) else None
            if validator is None:
                raise InvalidClaim("iss", iss)
            return validator.check_parsed(parsed, issuer_audience)
        except TokenError as error:
            return Decision.refused(error)
