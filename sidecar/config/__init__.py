"""Configuration: the settings table, the loader that checks it, the `Config` it returns, and the
builders that turn a Config into the core's objects.

Modules: `parsers` (text to value), `setting` (one row), `settings` (the table), `model`
(`Config`), `file` (the TOML file), `issuers` and `routes` (its tables), `cel` (a route's
`when`), `loader` (`load`), `build` (Validator, Minter, router). Code outside this package names
what it needs from here; inside, modules import each other directly.
"""

from sidecar.config.build import (
    build_minter,
    build_revoker,
    build_validator,
    decider,
    refreshers_for,
)
from sidecar.config.loader import load
from sidecar.config.model import Config, EnvoyConfig
from sidecar.config.setting import MINT, REVOKE, SERVE, VALIDATE, Setting
from sidecar.config.settings import SECURE_ONLY, SETTINGS

__all__ = [
    "MINT",
    "REVOKE",
    "SECURE_ONLY",
    "SERVE",
    "SETTINGS",
    "VALIDATE",
    "Config",
    "EnvoyConfig",
    "Setting",
    "build_minter",
    "build_revoker",
    "build_validator",
    "decider",
    "load",
    "refreshers_for",
]
