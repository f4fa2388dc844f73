"""The interfaces the decision core sees instead of a crypto library.

`sidecar/keys.py` builds them from one configured key, `sidecar/jwks.py` from a JWK Set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Verifier(Protocol):
    """Checks signatures for the header algorithms in `algorithms`; any other is a mismatch."""

    algorithms: frozenset[str]

    def verify(self, header: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
        """True when the signature is good. May raise KeysUnavailable."""
        ...


class Signer(Protocol):
    """Signs Mint's tokens; `kid` goes into their header."""

    alg: str
    kid: str | None

    def sign(self, signing_input: bytes) -> bytes: ...
