"""The interfaces the core signs and verifies through, so that it never meets a crypto library.

`sidecar.keys` builds python-jose-backed implementations from configured key material; tests and
future key sources (JWKS, rotation) can supply their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Verifier(Protocol):
    """Checks signatures for a fixed set of algorithms, chosen by configuration."""

    algorithms: frozenset[str]
    """Header `alg` values it accepts; a token with any other is an AlgorithmMismatch."""

    def verify(self, header: Mapping[str, Any], signing_input: bytes, signature: bytes) -> bool:
        """True when the signature is good. May raise KeysUnavailable."""
        ...


class Signer(Protocol):
    """Signs Mint's tokens with one key."""

    alg: str
    kid: str | None

    def sign(self, signing_input: bytes) -> bytes:
        """The raw signature over `header.payload`."""
        ...
