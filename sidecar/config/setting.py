"""One row of the settings table: a variable, its flag, parser, default and help."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.config import parsers

# The subcommands a setting can affect: its flag is offered on these only.
SERVE = "serve"
MINT = "mint"
VALIDATE = "validate"
REVOKE = "revoke"
_ALL = frozenset((SERVE, MINT, VALIDATE))


@dataclass(frozen=True)
class Setting:
    """One configuration variable. Its flag is the variable's name without its prefix.

    `parse` turns its text into a value; `None` marks a `<NAME>_FILE` row, read by its secret's
    row. `field` is where the value lands in `Config` (`envoy.x` in `EnvoyConfig`); `None` means
    a cross-field rule uses it. A `secret` is read from its variable or from `<NAME>_FILE`.
    `missing` is the problem when a secure-mode setting is left unset. `commands` are the
    subcommands it affects, which offer its flag.
    """

    env: str
    help: str
    parse: parsers.Parser | None
    default: str | None = None
    field: str | None = None
    secure_only: bool = False
    secret: bool = False
    missing: str | None = None
    commands: frozenset[str] = _ALL

    @property
    def flag(self) -> str:
        name = self.env.removeprefix("AUTH_").removeprefix("SIDECAR_")
        return "--" + name.lower().replace("_", "-")


# The sets of subcommands that rows name.
SERVE_ONLY = frozenset((SERVE,))
SERVE_MINT = frozenset((SERVE, MINT))
SERVE_VALIDATE = frozenset((SERVE, VALIDATE))
SERVE_REVOKE = frozenset((SERVE, REVOKE))
