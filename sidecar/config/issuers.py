"""Several trusted issuers, from the `[[issuers]]` tables of SIDECAR_CONFIG_FILE's TOML file.

Each `[[issuers]]` table takes the issuer settings of the environment without their `AUTH_JWT_`
or `SIDECAR_JWT_` prefix (`iss`, `alg`, one key source, `aud`, `namespace`, the signing key,
`typ`, `max_lifetime_seconds`; `introspection_url` and its client, without `SIDECAR_`) plus
`mint = true` on the one issuer Mint signs as. Every table
is checked exactly as the environment would be (the rest of the environment applies to all), so
that each rule and message exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sidecar.core.errors import ConfigError

if TYPE_CHECKING:
    from sidecar.config.model import Config

CONFIG_FILE = "SIDECAR_CONFIG_FILE"
# The environment's per-issuer variables; in a table, each is named without its prefix.
ISSUER_VARIABLES = (
    "AUTH_JWT_ALG",
    "AUTH_JWT_KEY",
    "AUTH_JWT_KEY_FILE",
    "AUTH_JWT_JWKS_FILE",
    "AUTH_JWT_JWKS_URL",
    "AUTH_JWT_OIDC_ISSUER",
    "AUTH_JWT_ISS",
    "AUTH_JWT_AUD",
    "AUTH_JWT_NAMESPACE",
    "AUTH_JWT_SIGNING_KEY",
    "AUTH_JWT_SIGNING_KEY_FILE",
    "SIDECAR_JWT_TYP",
    "SIDECAR_JWT_MAX_LIFETIME_SECONDS",
    "SIDECAR_INTROSPECTION_URL",
    "SIDECAR_INTROSPECTION_CLIENT_ID",
    "SIDECAR_INTROSPECTION_CLIENT_SECRET",
    "SIDECAR_INTROSPECTION_CLIENT_SECRET_FILE",
    "SIDECAR_INTROSPECTION_EVERY_TOKEN",
)
_TABLE_KEYS = {
    name.removeprefix("AUTH_JWT_").removeprefix("SIDECAR_JWT_").removeprefix("SIDECAR_").lower(): (
        name
    )
    for name in ISSUER_VARIABLES
}

_TABLE_KEY_OF = {name: key for key, name in _TABLE_KEYS.items()}
# Keys that a table may write as TOML booleans.
_BOOLEAN_KEYS = frozenset(("introspection_every_token",))

LoadOne = Callable[[Mapping[str, str], Mapping[str, str | None]], "Config"]


def load(
    path: str,
    tables: Any,
    env: Mapping[str, str],
    flags: Mapping[str, str | None],
    load_one: LoadOne,
) -> Config:
    """The configuration of every issuer in the file's `issuers` (`tables`); the result is the
    one Mint signs as.

    Raises ConfigError with one line per problem.
    """
    problems = [
        f"{name}: is set together with {CONFIG_FILE}; set it in an [[issuers]] table instead"
        for name in ISSUER_VARIABLES
        if flags.get(name) or env.get(name)
    ]
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        problems.append(f"{CONFIG_FILE}: {path}: issuers must be [[issuers]] tables")
        raise ConfigError(problems)
    base_env = {k: v for k, v in env.items() if k not in ISSUER_VARIABLES and k != CONFIG_FILE}
    base_flags = {k: v for k, v in flags.items() if k not in ISSUER_VARIABLES and k != CONFIG_FILE}
    loaded: list[Config] = []
    mint: Config | None = None
    seen: set[str] = set()
    common: list[str] = []
    for index, table in enumerate(tables):
        where = f"{CONFIG_FILE}: [[issuers]] #{index + 1}"
        values = _table(table, where, problems)
        iss = values.get("AUTH_JWT_ISS")
        if iss is None:
            problems.append(f"{where}: needs iss")
        elif iss in seen:
            problems.append(f"{where}: iss {iss!r} is already the iss of another table")
        else:
            seen.add(iss)
            where = f"{CONFIG_FILE}: issuer {iss!r}"
        try:
            cfg = load_one({**base_env, **values}, base_flags)
        except ConfigError as error:
            for line in error.problems:
                name = line.partition(":")[0]
                if name in ISSUER_VARIABLES:
                    key = _TABLE_KEY_OF[name]
                    problems.append(f"{where}: {key}{line[len(name) :]}")
                elif line not in common:  # a shared setting: said once, not once per table
                    common.append(line)
            continue
        loaded.append(cfg)
        if table.get("mint") is True:
            if mint is not None:
                problems.append(f"{where}: mint = true is already set on issuer {mint.iss!r}")
            mint = cfg
    problems += common
    introspected = [c for c in loaded if c.introspection is not None]
    if len(introspected) > 1:
        problems.append(
            f"{CONFIG_FILE}: issuers {introspected[0].iss!r} and {introspected[1].iss!r} both "
            "have introspection_url; an opaque token names no issuer, so only one may"
        )
    if problems:
        raise ConfigError(problems)
    signer = mint or replace(loaded[0], signer=None)
    files = dict.fromkeys([path, *(f for c in loaded for f in c.files)])
    return replace(signer, issuers=tuple(loaded), files=tuple(files))


def _table(table: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in table.items():
        if key == "mint":
            if not isinstance(value, bool):
                problems.append(f"{where}: mint must be true or false")
            continue
        name = _TABLE_KEYS.get(key)
        if name is None:
            known = ", ".join([*_TABLE_KEYS, "mint"])
            problems.append(f"{where}: unknown key {key!r} (known: {known})")
        elif isinstance(value, bool) and key in _BOOLEAN_KEYS:
            values[name] = str(value).lower()
        elif isinstance(value, int) and not isinstance(value, bool) and key.endswith("_seconds"):
            values[name] = str(value)  # a number of seconds may be written as one
        elif not isinstance(value, str):
            problems.append(f"{where}: {key} must be a string")
        else:
            values[name] = value
    return values
