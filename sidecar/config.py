"""The config loader: every setting, with its variable, flag, default and parser, in one table.

`load` reads the environment and command-line flags (flags win), parses keys once, and either
returns a `Config` or raises `ConfigError` with one line per problem, each naming its variable.
Adding a setting is adding one `Setting` row (and its README row): the loader is a loop over the
table, plus the rules that join several settings (keys, the mint secret, the mode).
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar import eventloop, issuers, jwks, keys, tls
from sidecar.crypto import Signer, Verifier
from sidecar.errors import ConfigError
from sidecar.jwks_fetch import FetchSettings, Remote, url_problem
from sidecar.minter import Minter
from sidecar.policy import MintPolicy, Mode, Policy
from sidecar.tls import TlsFiles
from sidecar.validator import Validator

MINT_SECRET_MIN_BYTES = 32
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_OWNED_HEADERS = ("authorization", "host", "content-length", "transfer-encoding")
_REALM = re.compile(r"[ !#-\[\]-~]+")  # RFC 9110 quoted-string text, minus `"` and `\`
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_ALG_PROBLEM = (
    "Missing or invalid 'alg' configuration option for secure auth mode "
    f"(expected one of {', '.join(keys.ALGORITHMS)})"
)

# The subcommands a setting can affect: its flag is offered on these only.
SERVE = "serve"
MINT = "mint"
VALIDATE = "validate"
_ALL = frozenset((SERVE, MINT, VALIDATE))


class Invalid(ValueError):
    """A value does not parse. The text follows `NAME: ` in the problem line."""


Parser = Callable[[str], Any]
"""Turns a setting's text (its value, or its default) into the value Config holds."""


# ---------------------------------------------------------------------------------------------
# Parsers


def _text(raw: str) -> str:
    return raw


def _mode(raw: str) -> Mode:
    if raw not in tuple(Mode):
        raise Invalid(f'must be "{Mode.SECURE}" or "{Mode.INSECURE}", not "{raw}"')
    return Mode(raw)


def _algorithms(raw: str) -> tuple[str, ...]:
    """One algorithm, or (with a JWKS source) a comma-separated allow-list."""
    algs = tuple(dict.fromkeys(a.strip() for a in raw.split(",") if a.strip()))
    if not algs or any(a not in keys.ALGORITHMS for a in algs):
        raise Invalid(_ALG_PROBLEM)
    return algs


def _ca_file(raw: str) -> str:
    try:
        ssl.create_default_context(cafile=raw)
    except ssl.SSLError:  # before OSError: it is one
        raise Invalid(f"cannot use {raw}: no PEM certificates in it") from None
    except OSError as error:
        raise Invalid(f"cannot use {raw}: {error.strerror}") from None
    return raw


def _whole(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        # Plain ASCII digits only: int() would also take "1_000", " 5 " and other scripts' digits.
        value = int(raw) if raw.isascii() and raw.isdigit() else low - 1
        if not low <= value <= high:
            raise Invalid(f'must be a whole number from {low} to {high}, not "{raw}"')
        return value

    return parse


def _seconds(low: int, high: int) -> Parser:
    whole = _whole(low, high)
    return lambda raw: float(whole(raw))


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in _BOOLS:
        raise Invalid(f'must be true or false, not "{lowered}"')
    return _BOOLS[lowered]


def _header(raw: str) -> str:
    """An HTTP header name (RFC 9110 token), lower-cased; never one Envoy or the token owns."""
    lowered = raw.lower()
    if not _HEADER_NAME.fullmatch(lowered):
        raise Invalid(f'must be an HTTP header name, not "{raw}"')
    if lowered in _OWNED_HEADERS:
        raise Invalid(f'may not be "{lowered}"')
    return lowered


def _realm(raw: str) -> str:
    if not _REALM.fullmatch(raw):
        raise Invalid("must be printable ASCII without quotes or backslashes")
    return raw


def _event_loop(raw: str) -> str:
    choice = _one_of(eventloop.LOOPS)(raw)
    if choice == "uvloop" and not eventloop.has_uvloop():
        raise Invalid("uvloop is not installed")
    return choice


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    """A parser for one of `choices`, in any case."""

    def parse(raw: str) -> str:
        choice = raw.lower()
        if choice not in choices:
            raise Invalid(f'must be one of {", ".join(choices)}, not "{choice}"')
        return choice

    return parse


def _host_port(raw: str, forms: str) -> str:
    host, _, port = raw.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise Invalid(f'must be {forms}, not "{raw}"')
    return raw


def _listen(raw: str) -> str:
    if raw.startswith("unix:"):
        if len(raw) == len("unix:"):
            raise Invalid("unix: needs a path, as in unix:/run/auth-sidecar.sock")
        return raw
    return _host_port(raw, "host:port, [v6]:port or unix:/path")


def _workers(raw: str) -> int:
    """`auto`: the CPUs this process may run on (taskset and cpuset limits included)."""
    if raw == "auto":
        return max(len(os.sched_getaffinity(0)), 1)
    return int(_whole(1, 1024)(raw))


def _http_listen(raw: str) -> str:
    return _host_port(raw, "host:port or [v6]:port")


def _path(raw: str) -> str:
    if not raw.startswith("/") or "?" in raw or "#" in raw:
        raise Invalid(f'must be a path such as /v1/shape, not "{raw}"')
    return raw


def _mint_secret(raw: str) -> bytes:
    secret = raw.encode()
    if len(secret) < MINT_SECRET_MIN_BYTES:
        raise Invalid(f"must be at least {MINT_SECRET_MIN_BYTES} bytes long")
    return secret


# ---------------------------------------------------------------------------------------------
# The table


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
    parse: Parser | None
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


_SERVE = frozenset((SERVE,))
_SERVE_MINT = frozenset((SERVE, MINT))
_SERVE_VALIDATE = frozenset((SERVE, VALIDATE))

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AUTH_MODE",
        "`secure` or `insecure` (development only: signatures unchecked)",
        _mode,
        Mode.SECURE.value,
        "mode",
    ),
    Setting(
        "AUTH_JWT_ALG",
        "secure: HS256/384/512, RS256/384/512 or ES256/384/512 (required); with a JWKS source, "
        "a comma-separated allow-list such as `RS256,ES256`",
        _algorithms,
        secure_only=True,
        missing=_ALG_PROBLEM,
    ),
    Setting(
        "AUTH_JWT_KEY",
        "secure: HS secret (raw, or `base64:...`), or PEM public key for RS/ES (required)",
        _text,
        secure_only=True,
        secret=True,
        missing="Missing 'key' configuration option for secure auth mode",
    ),
    Setting(
        "AUTH_JWT_KEY_FILE",
        "secure: read AUTH_JWT_KEY from this file instead",
        None,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_JWKS_FILE",
        "secure: key source: a JWK Set file (RFC 7517)",
        _text,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_JWKS_URL",
        "secure: key source: a JWK Set fetched from this https:// URL",
        _text,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_OIDC_ISSUER",
        "secure: key source: this OpenID issuer's `jwks_uri` (from its discovery document); "
        "`iss` must equal it unless AUTH_JWT_ISS is set",
        _text,
        secure_only=True,
    ),
    Setting(
        issuers.CONFIG_FILE,
        "secure: a TOML file with one [[issuers]] table per trusted issuer, instead of the "
        "AUTH_JWT_ variables",
        _text,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_NAMESPACE",
        "both modes: read the user from claims[namespace]",
        _text,
        field="namespace",
    ),
    Setting(
        "AUTH_JWT_ISS",
        "secure: require `iss` and that it equals this",
        _text,
        field="iss",
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_AUD",
        "secure: require `aud` and that it is or contains this",
        _text,
        field="aud",
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_SIGNING_KEY",
        "secure, RS/ES: PEM private key that Mint signs with",
        _text,
        secure_only=True,
        secret=True,
        commands=_SERVE_MINT,
    ),
    Setting(
        "AUTH_JWT_SIGNING_KEY_FILE",
        "secure: read AUTH_JWT_SIGNING_KEY from this file instead",
        None,
        secure_only=True,
        commands=_SERVE_MINT,
    ),
    Setting(
        "SIDECAR_MINT_SECRET",
        "secure: bearer secret that Mint callers must send (32+ bytes)",
        _mint_secret,
        field="mint_secret",
        secure_only=True,
        secret=True,
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_MINT_SECRET_FILE",
        "secure: read SIDECAR_MINT_SECRET from this file instead",
        None,
        secure_only=True,
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_MINT_MAX_TTL_SECONDS",
        "longest ttl that Mint grants",
        _whole(1, 366 * 86400),
        "86400",
        "mint_max_ttl",
        commands=_SERVE_MINT,
    ),
    Setting(
        "SIDECAR_LISTEN",
        "`host:port`, `[v6]:port` or `unix:/path`",
        _listen,
        "127.0.0.1:50051",
        "listen",
        commands=_SERVE,
    ),
    Setting(
        tls.CERT_FILE,
        "PEM certificate chain: serve TLS (with SIDECAR_TLS_KEY_FILE); re-read when it changes",
        _text,
        commands=_SERVE,
    ),
    Setting(
        tls.KEY_FILE,
        "PEM private key of SIDECAR_TLS_CERT_FILE (unencrypted)",
        _text,
        commands=_SERVE,
    ),
    Setting(
        tls.CLIENT_CA_FILE,
        "PEM CA certificates: require client certificates they sign (mTLS)",
        _text,
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_READY_FILE",
        "once serving, write the bound address (as SIDECAR_LISTEN takes it) to this file",
        _text,
        field="ready_file",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_CLOCK_SKEW_SECONDS",
        "allowed clock drift for exp, nbf, iat",
        _whole(0, 3600),
        "2",
        "clock_skew",
        commands=frozenset((SERVE, VALIDATE)),
    ),
    Setting(
        "SIDECAR_MAX_TOKEN_BYTES",
        "longer tokens are refused unparsed as malformed",
        _whole(64, 1 << 20),
        "8192",
        "max_token_bytes",
    ),
    Setting(
        "SIDECAR_MAX_CONCURRENT_RPCS",
        "calls beyond this get RESOURCE_EXHAUSTED",
        _whole(1, 1_000_000),
        "1000",
        "max_concurrent_rpcs",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_GRACE_SECONDS",
        "how long SIGTERM waits for in-flight calls",
        _seconds(0, 3600),
        "5",
        "grace_seconds",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_WORKERS",
        "server processes on one TCP port; `auto`: one per usable CPU",
        _workers,
        "auto",
        "workers",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_CACHE_SIZE",
        "valid decisions kept per worker; 0 turns the cache off",
        _whole(0, 10_000_000),
        "10000",
        "cache_size",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_CACHE_MAX_TTL_SECONDS",
        "longest a decision is kept (never past exp)",
        _whole(1, 86400),
        "300",
        "cache_max_ttl",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_EVENT_LOOP",
        "`auto` (uvloop when installed), `asyncio` or `uvloop`",
        _event_loop,
        "auto",
        "event_loop",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_LOG_LEVEL",
        "debug, info, warning or error",
        _one_of(LOG_LEVELS),
        "info",
        "log_level",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_LOG_FORMAT",
        "`text`, or `json`: one JSON object per line",
        _one_of(LOG_FORMATS),
        "text",
        "log_format",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_DECISION_LOG",
        "log one line per Validate and Check decision",
        _bool,
        "false",
        "decision_log",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_HTTP_LISTEN",
        "`host:port` for /metrics, /healthz, /readyz and /.well-known/jwks.json (off when unset)",
        _http_listen,
        field="http_listen",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_RELOAD_SECONDS",
        "check the configuration's files for changes this often, and reload (0: only on SIGHUP)",
        _whole(0, 86400),
        "10",
        "reload_seconds",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_JWKS_REFRESH_SECONDS",
        "JWKS URL/OIDC: refetch the keys this often",
        _whole(1, 86400),
        "300",
        "fetch.refresh",
        commands=_SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
        "JWKS URL/OIDC: shortest time between fetches (an unknown kid refetches at most this often;"
        " Cache-Control max-age is kept within these two)",
        _whole(1, 3600),
        "10",
        "fetch.min_refresh",
        commands=_SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_TIMEOUT_SECONDS",
        "JWKS URL/OIDC: time limit for one fetch",
        _whole(1, 300),
        "5",
        "fetch.timeout",
        commands=_SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_MAX_BYTES",
        "JWKS URL/OIDC: larger responses are refused",
        _whole(1024, 16 << 20),
        "262144",
        "fetch.max_bytes",
        commands=_SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_CA_FILE",
        "JWKS URL/OIDC: trust these PEM CAs instead of the system's",
        _ca_file,
        field="fetch.ca_file",
        commands=_SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_ALLOW_HTTP",
        "JWKS URL/OIDC: allow http:// to hosts that are not loopback (never in production)",
        _bool,
        "false",
        "fetch.allow_http",
    ),
    Setting(
        "SIDECAR_ENVOY_TOKEN_HEADER",
        "Envoy: also read the token from this header",
        _header,
        field="envoy.token_header",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_TOKEN_PARAM",
        "Envoy: also read the token from this query parameter",
        _text,
        field="envoy.token_param",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_USER_HEADER",
        "Envoy: header set to the user id upstream",
        _header,
        "x-user-id",
        "envoy.user_header",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_CLAIMS_HEADER",
        "Envoy: header set to the claims, base64url JSON",
        _header,
        field="envoy.claims_header",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_STRIP_TOKEN",
        "Envoy: remove the token's header upstream",
        _bool,
        "false",
        "envoy.strip_token",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_REALM",
        "Envoy: realm in WWW-Authenticate",
        _realm,
        "auth-sidecar",
        "envoy.realm",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_ENVOY_ALLOW_PREFLIGHT",
        "Envoy: CORS preflights pass without a token",
        _bool,
        "true",
        "envoy.allow_preflight",
        commands=_SERVE,
    ),
    Setting(
        "SIDECAR_SHAPE_CLAIM",
        "the claim naming the one Electric shape a token may sync",
        _text,
        field="shape_claim",
        commands=_SERVE_MINT,
    ),
    Setting(
        "SIDECAR_SHAPE_PATH",
        "Envoy: the path of Electric's shape API",
        _path,
        "/v1/shape",
        "envoy.shape_path",
        commands=_SERVE,
    ),
)

# Settings that only secure mode uses; Electric refuses them in insecure mode.
SECURE_ONLY = tuple(s.env for s in SETTINGS if s.secure_only)
# The key sources of one issuer; exactly one is set. AUTH_JWT_KEY stands for its _FILE too.
KEY_SOURCES = ("AUTH_JWT_KEY", "AUTH_JWT_JWKS_FILE", "AUTH_JWT_JWKS_URL", "AUTH_JWT_OIDC_ISSUER")


# ---------------------------------------------------------------------------------------------
# What the loader returns


@dataclass(frozen=True)
class EnvoyConfig:
    """How Envoy's ext_authz Check finds the token and tells the upstream who the user is.

    Header names are lower case, as Envoy passes them. Defaults live in SETTINGS.
    """

    token_header: str | None
    token_param: str | None
    user_header: str
    claims_header: str | None
    strip_token: bool
    realm: str
    allow_preflight: bool
    shape_path: str


@dataclass(frozen=True)
class Config:
    """A checked configuration with its keys already parsed. Secrets stay out of `repr`.

    Defaults live in SETTINGS; `load` is the way to build one.
    """

    mode: Mode
    alg: str | None
    namespace: str | None
    iss: str | None
    aud: str | None
    listen: str
    ready_file: str | None
    clock_skew: int
    max_token_bytes: int
    mint_max_ttl: int
    max_concurrent_rpcs: int
    grace_seconds: float
    workers: int
    cache_size: int
    cache_max_ttl: int
    event_loop: str
    log_level: str
    log_format: str
    decision_log: bool
    http_listen: str | None
    tls: TlsFiles | None
    shape_claim: str | None
    envoy: EnvoyConfig
    reload_seconds: int
    fetch: FetchSettings
    verifier: Verifier | None = field(repr=False)
    signer: Signer | None = field(repr=False)
    mint_secret: bytes | None = field(repr=False)
    # A JWKS URL or OIDC source: `verifier` is then a JwksVerifier that a Refresher fills.
    remote: Remote | None = None
    # Keys that a JWKS file holds but that cannot be used; the server logs them.
    warnings: tuple[str, ...] = ()
    # SIDECAR_CONFIG_FILE: every trusted issuer, each a whole Config; tokens go by their `iss`.
    # Empty: this Config is the one issuer. Either way this Config is the one Mint signs as.
    issuers: tuple[Config, ...] = ()
    # The files this configuration was read from; hot reload watches them.
    files: tuple[str, ...] = ()

    @property
    def policy(self) -> Policy:
        """What the core enforces: insecure mode requires no claim and checks no iss or aud."""
        if self.mode is Mode.INSECURE:
            return Policy(
                mode=self.mode,
                namespace=self.namespace,
                skew=self.clock_skew,
                max_token_bytes=self.max_token_bytes,
            )
        extra = tuple(name for name, value in (("iss", self.iss), ("aud", self.aud)) if value)
        return Policy(
            mode=self.mode,
            required=("iat", "exp", *extra),
            iss=self.iss,
            aud=self.aud,
            namespace=self.namespace,
            skew=self.clock_skew,
            max_token_bytes=self.max_token_bytes,
        )

    @property
    def mint_policy(self) -> MintPolicy:
        return MintPolicy(max_ttl=self.mint_max_ttl, secret=self.mint_secret)

    def describe(self) -> str:
        """A log-safe summary: names and choices, never a key or secret."""
        parts = [f"mode={self.mode}"]
        if self.issuers:
            parts.append(f"issuers={','.join(str(c.iss) for c in self.issuers)}")
        elif isinstance(self.verifier, jwks.JwksVerifier):
            parts.append(f"alg={','.join(sorted(self.verifier.algorithms))}")
            parts.append(f"keys={self.remote.url if self.remote else 'jwks-file'}")
        elif self.alg:
            parts.append(f"alg={self.alg}")
        transport = "plaintext" if not self.tls else "mtls" if self.tls.client_ca_file else "tls"
        parts += [
            f"listen={self.listen}",
            f"transport={transport}",
            *([f"http={self.http_listen}"] if self.http_listen else []),
            f"namespace={self.namespace or '-'}",
        ]
        if self.mode is Mode.SECURE:
            parts += [
                f"iss={self.iss or '-'}",
                f"aud={self.aud or '-'}",
                f"mint={'on' if self.mint_secret and self.signer else 'off'}",
            ]
        return " ".join(parts)


def build_validator(config: Config, clock: Callable[[], float] = time.time) -> Validator:
    """The core's Validator for `config`; `clock` gives Unix seconds (tests stop it)."""
    return Validator(config.policy, config.verifier, clock)


def build_minter(config: Config, clock: Callable[[], float] = time.time) -> Minter:
    """The core's Minter for `config`; insecure mode has no signer, and signs nothing."""
    return Minter(config.policy, config.mint_policy, config.signer, clock)


# ---------------------------------------------------------------------------------------------
# The loader


def load(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Config:
    """Builds a `Config` from variables and flags (keyed by variable name); or ConfigError."""
    flags = flags or {}
    path = flags.get(issuers.CONFIG_FILE) or env.get(issuers.CONFIG_FILE)
    mode = flags.get("AUTH_MODE") or env.get("AUTH_MODE")
    if path and mode != Mode.INSECURE:  # insecure mode refuses it with the other secure settings
        return issuers.load(path, env, flags, load)
    return _Loader(env, flags).load()


class _Loader:
    def __init__(self, env: Mapping[str, str], flags: Mapping[str, str | None]) -> None:
        self._env = env
        self._flags = flags
        self.problems: list[str] = []
        # Settings that already have a problem line: no second line about them.
        self._failed: set[str] = set()
        self._files: list[str] = []

    def load(self) -> Config:
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if not setting.secure_only:
                values[setting.env] = self._value(setting)
        mode = values["AUTH_MODE"]
        source = self._key_source() if mode is Mode.SECURE else None
        if source not in (None, "AUTH_JWT_KEY"):
            self._failed.add("AUTH_JWT_KEY")  # not missing: another key source is set
        for setting in SETTINGS:
            if not setting.secure_only:
                continue
            if mode is Mode.SECURE:
                if setting.env == "AUTH_JWT_KEY" and source not in (None, "AUTH_JWT_KEY"):
                    values[setting.env] = None  # another key source is the one in use
                    continue
                values[setting.env] = self._value(setting)
            elif mode is Mode.INSECURE and self._get(setting.env) is not None:
                # Electric's safety net: a key set in insecure mode is almost always a mistake.
                self._problem(
                    setting.env,
                    "is set, but AUTH_MODE=insecure does not use it. "
                    "Did you forget to set AUTH_MODE=secure?",
                )
        tls_files = self._tls(values)
        fields: dict[str, Any] = {"verifier": None, "signer": None, "alg": None, "tls": tls_files}
        groups: dict[str, dict[str, Any]] = {"": fields, "envoy": {}, "fetch": {}}
        for setting in SETTINGS:
            if setting.field is not None:
                group, _, name = setting.field.rpartition(".")
                groups[group][name] = values.get(setting.env)
        if mode is Mode.SECURE and source in (None, "AUTH_JWT_KEY"):
            algs = values["AUTH_JWT_ALG"]
            if algs is not None and len(algs) > 1:
                self._problem("AUTH_JWT_ALG", _ALG_PROBLEM + "; a list needs a JWKS key source")
                algs = None
            values = {**values, "AUTH_JWT_ALG": algs[0] if algs else None}
            fields["alg"] = values["AUTH_JWT_ALG"]
            fields["verifier"], fields["signer"] = self._keys(values)
        elif mode is Mode.SECURE and source is not None and source != "conflict":
            fields.update(self._jwks_keys(source, values))
        fetch = groups["fetch"]
        if None not in (fetch["refresh"], fetch["min_refresh"]) and (
            fetch["min_refresh"] > fetch["refresh"]
        ):
            self._problem(
                "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
                f"must not exceed SIDECAR_JWKS_REFRESH_SECONDS ({fetch['refresh']})",
            )
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            envoy=EnvoyConfig(**groups["envoy"]),
            fetch=FetchSettings(**fetch),
            files=tuple(self._files),
            **fields,
        )

    def _key_source(self) -> str | None:
        """The one key source that is set; "conflict" (and a problem naming both) when two are."""
        given = [
            name
            for name in KEY_SOURCES
            if self._get(name) is not None
            or (name == "AUTH_JWT_KEY" and self._get("AUTH_JWT_KEY_FILE") is not None)
        ]
        if len(given) > 1:
            first, second = (
                "AUTH_JWT_KEY_FILE"
                if n == "AUTH_JWT_KEY" and self._get("AUTH_JWT_KEY") is None
                else n
                for n in given[:2]
            )
            self._problem(second, f"is set together with {first}; set exactly one key source")
            self._failed.add("AUTH_JWT_KEY")
            return "conflict"
        return given[0] if given else None

    def _jwks_keys(self, source: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Secure mode with a JWK Set: from a file now, or from a URL once the server runs."""
        algs: tuple[str, ...] = values["AUTH_JWT_ALG"] or ()
        remote_source = source != "AUTH_JWT_JWKS_FILE"
        if remote_source and any(a in keys.HS_ALGS for a in algs):
            self._problem(
                "AUTH_JWT_ALG",
                "lists an HS algorithm, but a key set from a URL never holds secrets",
            )
            algs = ()
        verifier = jwks.JwksVerifier(frozenset(algs))
        remote = None
        warnings: list[str] = []
        location = self._get(source) or ""
        if not remote_source:
            self._files.append(location)
            try:
                document = Path(location).read_bytes()
            except OSError as error:
                self._problem(source, f"cannot read {location}: {error.strerror}")
            else:
                try:
                    key_set, warnings = jwks.parse(document, verifier.algorithms, allow_oct=True)
                    verifier.update(key_set)
                except jwks.JwksProblem as problem:
                    if algs:
                        self._problem(source, f"{location} {problem}")
        else:
            refused = url_problem(location, bool(values["SIDECAR_JWKS_ALLOW_HTTP"]))
            if refused is not None:
                self._problem(source, refused)
            remote = Remote(location, discovery=source == "AUTH_JWT_OIDC_ISSUER")
        iss = values["AUTH_JWT_ISS"]
        if iss is None and source == "AUTH_JWT_OIDC_ISSUER":
            iss = location
        alg, signer = self._jwks_signer(algs, values["AUTH_JWT_SIGNING_KEY"], verifier.keys)
        return {
            "alg": alg or (algs[0] if algs else None),
            "iss": iss,
            "verifier": verifier,
            "remote": remote,
            "signer": signer,
            "warnings": tuple(warnings),
        }

    def _jwks_signer(
        self, algs: tuple[str, ...], material: str | None, key_set: jwks.KeySet | None
    ) -> tuple[str | None, Signer | None]:
        """Mint's alg and signer from AUTH_JWT_SIGNING_KEY: the first allowed alg it fits; its
        kid is the JWK's own when the key is in the JWKS file, else its thumbprint."""
        candidates = [a for a in algs if a not in keys.HS_ALGS]
        if material is None or not candidates:
            return None, None
        first: keys.KeyProblem | None = None
        for alg in candidates:
            try:
                signer = keys.signer(alg, material, None)
            except keys.KeyProblem as problem:
                first = first or problem
                continue
            thumbprint = signer.kid or ""
            if key_set is not None and thumbprint not in key_set.thumbprints:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY",
                    "is not the private half of a key in AUTH_JWT_JWKS_FILE; "
                    "Mint's tokens would not verify",
                )
                return None, None
            if key_set is not None:
                signer.kid = key_set.kid_by_thumbprint.get(thumbprint, thumbprint)
            return alg, signer
        self._problem("AUTH_JWT_SIGNING_KEY", str(first))
        return None, None

    def _value(self, setting: Setting) -> Any:
        """The setting's parsed value, its default's when unset, or None (with a problem)."""
        if setting.parse is None:
            return None
        raw = self._secret(setting.env) if setting.secret else self._get(setting.env)
        raw = raw if raw is not None else setting.default
        if raw is None:
            if setting.missing and setting.env not in self._failed:
                self._problem(setting.env, setting.missing)
            return None
        try:
            return setting.parse(raw)
        except Invalid as problem:
            self._problem(setting.env, str(problem))
            return None

    def _keys(self, values: Mapping[str, Any]) -> tuple[Verifier | None, Signer | None]:
        """The cross-field rules of secure mode: the key fits the algorithm, and the signing
        key (RS/ES) is the private half of it."""
        alg, material, signing = (
            values["AUTH_JWT_ALG"],
            values["AUTH_JWT_KEY"],
            values["AUTH_JWT_SIGNING_KEY"],
        )
        if alg is None:
            return None, None
        verifier = signer = None
        if material is not None:
            try:
                verifier = keys.verifier(alg, material)
            except keys.KeyProblem as problem:
                self._problem("AUTH_JWT_KEY", str(problem))
        if alg in keys.HS_ALGS:
            if signing is not None:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY", f"is not used with {alg}: Mint signs with AUTH_JWT_KEY"
                )
            return verifier, keys.hs_signer(verifier) if verifier else None
        if signing is not None and verifier is not None:
            try:
                signer = keys.signer(alg, signing, verifier)
            except keys.KeyProblem as problem:
                self._problem("AUTH_JWT_SIGNING_KEY", str(problem))
        return verifier, signer

    def _tls(self, values: Mapping[str, Any]) -> TlsFiles | None:
        """The listener's TLS files: a certificate and its key together, the client CA only
        with them, and all of them loadable."""
        cert, key = values[tls.CERT_FILE], values[tls.KEY_FILE]
        client_ca = values[tls.CLIENT_CA_FILE]
        if cert is None and key is None:
            if client_ca is not None:
                self._problem(tls.CLIENT_CA_FILE, f"needs {tls.CERT_FILE} and {tls.KEY_FILE}")
            return None
        if cert is None or key is None:
            missing, given = (
                (tls.CERT_FILE, tls.KEY_FILE)
                if cert is None
                else (
                    tls.KEY_FILE,
                    tls.CERT_FILE,
                )
            )
            self._problem(missing, f"is required with {given}")
            return None
        files = TlsFiles(cert, key, client_ca)
        self.problems += tls.check(files)
        return files

    def _get(self, name: str) -> str | None:
        """A flag beats the environment. Empty counts as unset, as Compose passes unset values."""
        value = self._flags.get(name)
        if value is None:
            value = self._env.get(name)
        return value or None

    def _secret(self, name: str) -> str | None:
        """A secret comes from its variable or from `<name>_FILE`, never both.

        A file's trailing newline is dropped, since `echo` and editors add one.
        """
        value, path = self._get(name), self._get(name + "_FILE")
        if value is not None and path is not None:
            self._problem(name, f"is set together with {name}_FILE; set only one")
            return None
        if path is None:
            if value is not None and not _is_utf8(value):
                # os.environ keeps undecodable bytes as surrogates, which cannot be encoded.
                self._problem(name, "is not UTF-8 text")
                return None
            return value
        self._files.append(path)
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            self._problem(name + "_FILE", f"cannot read {path}: {reason}")
            self._failed.add(name)
            return None

    def _problem(self, name: str, text: str) -> None:
        self._failed.add(name)
        self.problems.append(f"{name}: {text}")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
