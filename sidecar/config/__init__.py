"""Configuration: the settings table, the loader that checks it, the `Config` it returns, and the
builders that turn a Config into the core's objects.

Modules: `parsers` (text to value), `settings` (the table), `model` (`Config`), `issuers` (the
TOML file of several issuers), `loader` (`load`), `build` (Validator, Minter, router). Code
outside this package names what it needs from here; inside, modules import each other directly.
"""

from sidecar.config.build import build_minter, build_validator, decider, refreshers_for
from sidecar.config.loader import load
from sidecar.config.model import Config, EnvoyConfig
from sidecar.config.settings import MINT, SECURE_ONLY, SERVE, SETTINGS, VALIDATE, Setting

__all__ = [
    "MINT",
    "SECURE_ONLY",
    "SERVE",
    "SETTINGS",
    "VALIDATE",
    "Config",
    "EnvoyConfig",
    "Setting",
    "build_minter",
    "build_validator",
    "decider",
    "load",
    "refreshers_for",
]
