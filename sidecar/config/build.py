"""Config to core: the Validator, the Minter and, with several issuers, the router that the
adapters decide with; and the Refreshers that keep URL key sets fresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar.config.model import Config
from sidecar.core.cache import Decider
from sidecar.core.minter import Minter
from sidecar.core.policy import Mode
from sidecar.core.revocation import Revoker
from sidecar.core.routing import IssuerRouter
from sidecar.core.validator import Validator
from sidecar.keys.fetch import Refresher
from sidecar.keys.jwks import JwksVerifier


def build_validator(config: Config, clock: Callable[[], float] = time.time) -> Validator:
    """The core's Validator for `config`; `clock` gives Unix seconds (tests stop it)."""
    return Validator(config.policy, config.verifier, clock)


def build_minter(config: Config, clock: Callable[[], float] = time.time) -> Minter:
    """The core's Minter for `config`; insecure mode has no signer, and signs nothing."""
    return Minter(config.policy, config.mint_policy, config.signer, clock)


def build_revoker(config: Config, clock: Callable[[], float] = time.time) -> Revoker:
    """Who may revoke with `config`, and the skew that a token's revocation outlives exp by."""
    return Revoker(config.mode is Mode.INSECURE, config.admin_secret, config.clock_skew, clock)


def decider(config: Config) -> Decider:
    """One Validator for the single-issuer case, else a router over one per issuer."""
    if not config.issuers:
        return build_validator(config)
    validators = {str(c.iss): build_validator(c) for c in config.issuers}
    return IssuerRouter(validators, config.max_token_bytes)


def refreshers_for(config: Config) -> list[Refresher]:
    """One Refresher per issuer whose keys come from a URL."""
    return [
        Refresher(c.remote, c.verifier, c.fetch)
        for c in config.issuers or (config,)
        if c.remote is not None and isinstance(c.verifier, JwksVerifier)
    ]
