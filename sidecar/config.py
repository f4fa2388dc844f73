"""The config loader: every setting, with its variable, flag and default, in one table.

`load` reads the environment and command-line flags (flags win), parses keys once, and either
returns a `Config` or raises `ConfigError` with one line per problem, each naming its variable.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jose.backends.base import Key

from sidecar import issuers, jwks, keys
from sidecar.errors import ConfigError
from sidecar.jwks_fetch import FetchSettings, Remote, url_problem

SECURE = "secure"
INSECURE = "insecure"


@dataclass(frozen=True)
class Setting:
    """One configuration variable. Its flag is the variable's name without its prefix."""

    env: str
    help: str
    default: str | None = None

    @property
    def flag(self) -> str:
        name = self.env.removeprefix("AUTH_").removeprefix("SIDECAR_")
        return "--" + name.lower().replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("AUTH_MODE", "`secure` or `insecure` (development only: signatures unchecked)", SECURE),
    Setting(
        "AUTH_JWT_ALG",
        "secure: HS256/384/512, RS256/384/512 or ES256/384/512 (required); with a JWKS source, "
        "a comma-separated allow-list such as `RS256,ES256`",
    ),
    Setting(
        "AUTH_JWT_KEY",
        "secure: HS secret (raw, or `base64:...`), or PEM public key for RS/ES (required)",
    ),
    Setting("AUTH_JWT_KEY_FILE", "secure: read AUTH_JWT_KEY from this file instead"),
    Setting("AUTH_JWT_JWKS_FILE", "secure: key source: a JWK Set file (RFC 7517)"),
    Setting("AUTH_JWT_JWKS_URL", "secure: key source: a JWK Set fetched from this https:// URL"),
    Setting(
        "AUTH_JWT_OIDC_ISSUER",
        "secure: key source: this OpenID issuer's `jwks_uri` (from its discovery document); "
        "`iss` must equal it unless AUTH_JWT_ISS is set",
    ),
    Setting("AUTH_JWT_NAMESPACE", "both modes: read the user from claims[namespace]"),
    Setting("AUTH_JWT_ISS", "secure: require `iss` and that it equals this"),
    Setting("AUTH_JWT_AUD", "secure: require `aud` and that it is or contains this"),
    Setting("AUTH_JWT_SIGNING_KEY", "secure, RS/ES: PEM private key that Mint signs with"),
    Setting(
        "AUTH_JWT_SIGNING_KEY_FILE", "secure: read AUTH_JWT_SIGNING_KEY from this file instead"
    ),
    Setting(
        "SIDECAR_CONFIG_FILE",
        "secure: a TOML file with one [[issuers]] table per trusted issuer, instead of the "
        "AUTH_JWT_ variables",
    ),
    Setting("SIDECAR_MINT_SECRET", "secure: bearer secret that Mint callers must send (32+ bytes)"),
    Setting("SIDECAR_MINT_SECRET_FILE", "secure: read SIDECAR_MINT_SECRET from this file instead"),
    Setting("SIDECAR_MINT_MAX_TTL_SECONDS", "longest ttl that Mint grants", "86400"),
    Setting("SIDECAR_LISTEN", "`host:port`, `[v6]:port` or `unix:/path`", "127.0.0.1:50051"),
    Setting(
        "SIDECAR_READY_FILE",
        "once serving, write the bound address (as SIDECAR_LISTEN takes it) to this file",
    ),
    Setting("SIDECAR_CLOCK_SKEW_SECONDS", "allowed clock drift for exp, nbf, iat", "2"),
    Setting("SIDECAR_MAX_TOKEN_BYTES", "longer tokens are refused unparsed as malformed", "8192"),
    Setting("SIDECAR_MAX_CONCURRENT_RPCS", "calls beyond this get RESOURCE_EXHAUSTED", "1000"),
    Setting("SIDECAR_GRACE_SECONDS", "how long SIGTERM waits for in-flight calls", "5"),
    Setting("SIDECAR_LOG_LEVEL", "debug, info, warning or error", "info"),
    Setting("SIDECAR_ENVOY_TOKEN_HEADER", "Envoy: also read the token from this header"),
    Setting("SIDECAR_ENVOY_TOKEN_PARAM", "Envoy: also read the token from this query parameter"),
    Setting("SIDECAR_ENVOY_USER_HEADER", "Envoy: header set to the user id upstream", "x-user-id"),
    Setting("SIDECAR_ENVOY_CLAIMS_HEADER", "Envoy: header set to the claims, base64url JSON"),
    Setting("SIDECAR_ENVOY_STRIP_TOKEN", "Envoy: remove the token's header upstream", "false"),
    Setting("SIDECAR_ENVOY_REALM", "Envoy: realm in WWW-Authenticate", "auth-sidecar"),
    Setting("SIDECAR_ENVOY_ALLOW_PREFLIGHT", "Envoy: CORS preflights pass without a token", "true"),
    Setting(
        "SIDECAR_RELOAD_SECONDS",
        "check the configuration's files for changes this often, and reload (0: only on SIGHUP)",
        "10",
    ),
    Setting("SIDECAR_JWKS_REFRESH_SECONDS", "JWKS URL/OIDC: refetch the keys this often", "300"),
    Setting(
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
        "JWKS URL/OIDC: shortest time between fetches (an unknown kid refetches at most this often;"
        " Cache-Control max-age is kept within these two)",
        "10",
    ),
    Setting("SIDECAR_JWKS_TIMEOUT_SECONDS", "JWKS URL/OIDC: time limit for one fetch", "5"),
    Setting("SIDECAR_JWKS_MAX_BYTES", "JWKS URL/OIDC: larger responses are refused", "262144"),
    Setting("SIDECAR_JWKS_CA_FILE", "JWKS URL/OIDC: trust these PEM CAs instead of the system's"),
    Setting(
        "SIDECAR_JWKS_ALLOW_HTTP",
        "JWKS URL/OIDC: allow http:// to hosts that are not loopback (never in production)",
        "false",
    ),
)
_DEFAULTS = {s.env: s.default for s in SETTINGS}

# Settings that only secure mode uses; Electric refuses them in insecure mode.
SECURE_ONLY = (
    "AUTH_JWT_ALG",
    "AUTH_JWT_KEY",
    "AUTH_JWT_KEY_FILE",
    "AUTH_JWT_JWKS_FILE",
    "AUTH_JWT_JWKS_URL",
    "AUTH_JWT_OIDC_ISSUER",
    "SIDECAR_CONFIG_FILE",
    "AUTH_JWT_ISS",
    "AUTH_JWT_AUD",
    "AUTH_JWT_SIGNING_KEY",
    "AUTH_JWT_SIGNING_KEY_FILE",
    "SIDECAR_MINT_SECRET",
    "SIDECAR_MINT_SECRET_FILE",
)
# The key sources of one issuer; exactly one is set. AUTH_JWT_KEY stands for its _FILE too.
KEY_SOURCES = ("AUTH_JWT_KEY", "AUTH_JWT_JWKS_FILE", "AUTH_JWT_JWKS_URL", "AUTH_JWT_OIDC_ISSUER")
MINT_SECRET_MIN_BYTES = 32
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_REALM = re.compile(r"[ !#-\[\]-~]+")  # RFC 9110 quoted-string text, minus `"` and `\`
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class EnvoyConfig:
    """How Envoy's ext_authz Check finds the token and tells the upstream who the user is.

    Header names are lower case, as Envoy passes them.
    """

    token_header: str | None = None
    token_param: str | None = None
    user_header: str = "x-user-id"
    claims_header: str | None = None
    strip_token: bool = False
    realm: str = "auth-sidecar"
    allow_preflight: bool = True


@dataclass(frozen=True)
class Config:
    """A checked configuration with its keys already parsed. Secrets stay out of `repr`."""

    mode: str = INSECURE
    alg: str | None = None
    namespace: str | None = None
    iss: str | None = None
    aud: str | None = None
    listen: str = "127.0.0.1:50051"
    ready_file: str | None = None
    clock_skew: int = 2
    max_token_bytes: int = 8192
    mint_max_ttl: int = 86400
    max_concurrent_rpcs: int = 1000
    grace_seconds: float = 5.0
    reload_seconds: int = 10
    log_level: str = "info"
    envoy: EnvoyConfig = field(default_factory=EnvoyConfig)
    verify_key: Key | None = field(default=None, repr=False)
    signing_key: Key | None = field(default=None, repr=False)
    # The `kid` of Mint's tokens: the JWK's own, or the RFC 7638 thumbprint of the signing key.
    signing_kid: str | None = None
    mint_secret: bytes | None = field(default=None, repr=False)
    # A JWKS source: the verifier (loaded for a file, filled by a Refresher for `remote`).
    verifier: jwks.JwksVerifier | None = field(default=None, repr=False)
    remote: Remote | None = None
    fetch: FetchSettings = field(default_factory=lambda: FetchSettings(300, 10, 5, 262144))
    # Keys that a JWKS file holds but that cannot be used; the server logs them.
    warnings: tuple[str, ...] = ()
    # SIDECAR_CONFIG_FILE: every trusted issuer, each a whole Config; tokens go by their `iss`.
    # Empty: this Config is the one issuer. Either way this Config is the one Mint signs as.
    issuers: tuple[Config, ...] = ()
    # The files this configuration was read from; hot reload watches them.
    files: tuple[str, ...] = ()

    @property
    def required_claims(self) -> tuple[str, ...]:
        if self.mode == INSECURE:
            return ()
        extra = tuple(name for name, value in (("iss", self.iss), ("aud", self.aud)) if value)
        return ("iat", "exp", *extra)

    def describe(self) -> str:
        """A log-safe summary: names and choices, never a key or secret."""
        parts = [f"mode={self.mode}"]
        if self.issuers:
            parts.append(f"issuers={','.join(str(c.iss) for c in self.issuers)}")
        elif self.verifier is not None:
            parts.append(f"alg={','.join(sorted(self.verifier.algorithms))}")
            parts.append(f"keys={self.remote.url if self.remote else 'jwks-file'}")
        elif self.alg:
            parts.append(f"alg={self.alg}")
        parts += [f"listen={self.listen}", f"namespace={self.namespace or '-'}"]
        if self.mode == SECURE:
            parts += [
                f"iss={self.iss or '-'}",
                f"aud={self.aud or '-'}",
                f"mint={'on' if self.mint_secret and self.signing_key else 'off'}",
            ]
        return " ".join(parts)


def load(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Config:
    """Builds a `Config` from variables and flags (keyed by variable name); or ConfigError."""
    flags = flags or {}
    path = flags.get(issuers.CONFIG_FILE) or env.get(issuers.CONFIG_FILE)
    mode = flags.get("AUTH_MODE") or env.get("AUTH_MODE")
    if path and mode != INSECURE:  # insecure mode refuses it with the other secure settings
        return issuers.load(path, env, flags, load)
    return _Loader(env, flags).load()


class _Loader:
    def __init__(self, env: Mapping[str, str], flags: Mapping[str, str | None]) -> None:
        self._env = env
        self._flags = flags
        self.problems: list[str] = []
        # Secrets that were given but could not be used; `_secret` has already said why.
        self._unusable: set[str] = set()
        self._files: list[str] = []

    def load(self) -> Config:
        mode = self._get("AUTH_MODE") or SECURE
        if mode not in (SECURE, INSECURE):
            self._problem("AUTH_MODE", f'must be "secure" or "insecure", not "{mode}"')
        common = dict(
            namespace=self._get("AUTH_JWT_NAMESPACE"),
            listen=self._listen(),
            ready_file=self._get("SIDECAR_READY_FILE"),
            clock_skew=self._int("SIDECAR_CLOCK_SKEW_SECONDS", 0, 3600),
            max_token_bytes=self._int("SIDECAR_MAX_TOKEN_BYTES", 64, 1 << 20),
            mint_max_ttl=self._int("SIDECAR_MINT_MAX_TTL_SECONDS", 1, 366 * 86400),
            max_concurrent_rpcs=self._int("SIDECAR_MAX_CONCURRENT_RPCS", 1, 1_000_000),
            grace_seconds=float(self._int("SIDECAR_GRACE_SECONDS", 0, 3600)),
            reload_seconds=self._int("SIDECAR_RELOAD_SECONDS", 0, 86400),
            log_level=self._log_level(),
            envoy=self._envoy(),
            fetch=self._fetch_settings(),
        )
        secure = self._secure() if mode == SECURE else {}
        if mode == INSECURE:
            self._refuse_secure_only()
        if self.problems:
            raise ConfigError(self.problems)
        return Config(mode=mode, **secure, **common, files=tuple(self._files))  # type: ignore[arg-type]

    def _refuse_secure_only(self) -> None:
        """Electric's safety net: a key set in insecure mode is almost always a mistake."""
        for name in SECURE_ONLY:
            if self._get(name) is not None:
                self._problem(
                    name,
                    "is set, but AUTH_MODE=insecure does not use it. "
                    "Did you forget to set AUTH_MODE=secure?",
                )

    def _secure(self) -> dict[str, object]:
        source = self._key_source()
        if source not in (None, "AUTH_JWT_KEY"):
            return self._jwks_secure(source)
        alg = self._get("AUTH_JWT_ALG")
        if alg not in keys.ALGORITHMS:
            self._problem(
                "AUTH_JWT_ALG",
                "Missing or invalid 'alg' configuration option for secure auth mode "
                f"(expected one of {', '.join(keys.ALGORITHMS)})",
            )
            alg = None
        verify_key = signing_key = None
        material = self._secret("AUTH_JWT_KEY")
        if material is None:
            if "AUTH_JWT_KEY" not in self._unusable:
                self._problem(
                    "AUTH_JWT_KEY", "Missing 'key' configuration option for secure auth mode"
                )
        elif alg is not None:
            try:
                verify_key = keys.verify_key(alg, material)
            except keys.KeyProblem as problem:
                self._problem("AUTH_JWT_KEY", str(problem))
        signing = self._secret("AUTH_JWT_SIGNING_KEY")
        if alg in keys.HS_ALGS:
            signing_key = verify_key
            if signing is not None:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY", f"is not used with {alg}: Mint signs with AUTH_JWT_KEY"
                )
        elif signing is not None and alg is not None and verify_key is not None:
            try:
                signing_key = keys.signing_key(alg, signing, verify_key)
            except keys.KeyProblem as problem:
                self._problem("AUTH_JWT_SIGNING_KEY", str(problem))
        return dict(
            alg=alg,
            iss=self._get("AUTH_JWT_ISS"),
            aud=self._get("AUTH_JWT_AUD"),
            verify_key=verify_key,
            signing_key=signing_key,
            signing_kid=jwks.key_thumbprint(signing_key) if signing_key else None,
            mint_secret=self._mint_secret(),
        )

    def _mint_secret(self) -> bytes | None:
        mint_secret = self._secret("SIDECAR_MINT_SECRET")
        if mint_secret is not None and len(mint_secret.encode()) < MINT_SECRET_MIN_BYTES:
            self._problem(
                "SIDECAR_MINT_SECRET", f"must be at least {MINT_SECRET_MIN_BYTES} bytes long"
            )
        return mint_secret.encode() if mint_secret else None

    def _key_source(self) -> str | None:
        """The one key source that is set; a problem naming both when two are."""
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
            return "conflict"
        return given[0] if given else None

    def _jwks_secure(self, source: str) -> dict[str, object]:
        """Secure mode with a JWK Set: from a file now, or from a URL once the server runs."""
        if source == "conflict":
            return {}
        algs = self._alg_list(remote=source != "AUTH_JWT_JWKS_FILE")
        verifier = jwks.JwksVerifier(frozenset(algs))
        remote = None
        warnings: list[str] = []
        location = self._get(source) or ""
        if source == "AUTH_JWT_JWKS_FILE":
            try:
                self._files.append(location)
                document = Path(location).read_bytes()
            except OSError as error:
                self._problem(source, f"cannot read {location}: {error.strerror}")
            else:
                try:
                    keys_, warnings = jwks.parse(document, verifier.algorithms, allow_oct=True)
                    verifier.update(keys_)
                except jwks.JwksProblem as problem:
                    self._problem(source, f"{location} {problem}")
        else:
            refused = url_problem(location, self._bool("SIDECAR_JWKS_ALLOW_HTTP"))
            if refused is not None:
                self._problem(source, refused)
            remote = Remote(location, discovery=source == "AUTH_JWT_OIDC_ISSUER")
        iss = self._get("AUTH_JWT_ISS")
        if iss is None and source == "AUTH_JWT_OIDC_ISSUER":
            iss = location
        alg, signing_key, kid = self._jwks_signer(algs, verifier.keys)
        return dict(
            alg=alg or (algs[0] if algs else None),
            iss=iss,
            aud=self._get("AUTH_JWT_AUD"),
            verifier=verifier,
            remote=remote,
            signing_key=signing_key,
            signing_kid=kid,
            mint_secret=self._mint_secret(),
            warnings=tuple(warnings),
        )

    def _alg_list(self, remote: bool) -> list[str]:
        raw = self._get("AUTH_JWT_ALG") or ""
        algs = [a.strip() for a in raw.split(",") if a.strip()]
        usable = keys.RS_ALGS + keys.ES_ALGS if remote else keys.ALGORITHMS
        wrong = [a for a in algs if a not in usable]
        if not algs or wrong:
            self._problem(
                "AUTH_JWT_ALG",
                "Missing or invalid 'alg' configuration option for secure auth mode "
                f"(expected a comma-separated list of {', '.join(usable)}"
                + ("; a key set from a URL never holds HS secrets)" if remote else ")"),
            )
            return []
        return list(dict.fromkeys(algs))

    def _jwks_signer(
        self, algs: list[str], key_set: jwks.KeySet | None
    ) -> tuple[str | None, Key | None, str | None]:
        """Mint's alg, key and kid from AUTH_JWT_SIGNING_KEY: the first allowed alg it fits."""
        material = self._secret("AUTH_JWT_SIGNING_KEY")
        candidates = [a for a in algs if a not in keys.HS_ALGS]
        if material is None or not candidates:
            return None, None, None
        first: keys.KeyProblem | None = None
        for alg in candidates:
            try:
                signer = keys.signing_key(alg, material, None)
            except keys.KeyProblem as problem:
                first = first or problem
                continue
            thumbprint = jwks.key_thumbprint(signer)
            if key_set is not None and thumbprint not in key_set.thumbprints:
                self._problem(
                    "AUTH_JWT_SIGNING_KEY",
                    "is not the private half of a key in AUTH_JWT_JWKS_FILE; "
                    "Mint's tokens would not verify",
                )
                return None, None, None
            kid = key_set.kid_by_thumbprint.get(thumbprint) if key_set else None
            return alg, signer, kid or thumbprint
        self._problem("AUTH_JWT_SIGNING_KEY", str(first))
        return None, None, None

    def _fetch_settings(self) -> FetchSettings:
        refresh = self._int("SIDECAR_JWKS_REFRESH_SECONDS", 1, 86400)
        least = self._int("SIDECAR_JWKS_MIN_REFRESH_SECONDS", 1, 3600)
        if least > refresh:
            self._problem(
                "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
                f"must not exceed SIDECAR_JWKS_REFRESH_SECONDS ({refresh})",
            )
        ca_file = self._get("SIDECAR_JWKS_CA_FILE")
        if ca_file is not None:
            try:
                ssl.create_default_context(cafile=ca_file)
            except ssl.SSLError:  # before OSError: it is one
                self._problem(
                    "SIDECAR_JWKS_CA_FILE", f"cannot use {ca_file}: no PEM certificates in it"
                )
            except OSError as error:
                self._problem("SIDECAR_JWKS_CA_FILE", f"cannot use {ca_file}: {error.strerror}")
        return FetchSettings(
            refresh=refresh,
            min_refresh=least,
            timeout=self._int("SIDECAR_JWKS_TIMEOUT_SECONDS", 1, 300),
            max_bytes=self._int("SIDECAR_JWKS_MAX_BYTES", 1024, 16 << 20),
            ca_file=ca_file,
            allow_http=self._bool("SIDECAR_JWKS_ALLOW_HTTP"),
        )

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
            self._unusable.add(name)
            return None
        if path is None:
            if value is not None and not _is_utf8(value):
                # os.environ keeps undecodable bytes as surrogates, which cannot be encoded.
                self._problem(name, "is not UTF-8 text")
                self._unusable.add(name)
                return None
            return value
        self._files.append(path)
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            self._problem(name + "_FILE", f"cannot read {path}: {reason}")
            self._unusable.add(name)
            return None

    def _int(self, name: str, low: int, high: int) -> int:
        raw = self._get(name) or _DEFAULTS[name] or ""
        # Plain ASCII digits only: int() would also take "1_000", " 5 " and other scripts' digits.
        value = int(raw) if raw.isascii() and raw.isdigit() else low - 1
        if not low <= value <= high:
            self._problem(name, f'must be a whole number from {low} to {high}, not "{raw}"')
            return low
        return value

    def _envoy(self) -> EnvoyConfig:
        return EnvoyConfig(
            token_header=self._header("SIDECAR_ENVOY_TOKEN_HEADER"),
            token_param=self._get("SIDECAR_ENVOY_TOKEN_PARAM"),
            user_header=self._header("SIDECAR_ENVOY_USER_HEADER") or "x-user-id",
            claims_header=self._header("SIDECAR_ENVOY_CLAIMS_HEADER"),
            strip_token=self._bool("SIDECAR_ENVOY_STRIP_TOKEN"),
            realm=self._realm(),
            allow_preflight=self._bool("SIDECAR_ENVOY_ALLOW_PREFLIGHT"),
        )

    def _header(self, name: str) -> str | None:
        """An HTTP header name (RFC 9110 token), lower-cased; never one Envoy or the token owns."""
        value = self._get(name)
        if value is None:
            return None
        lowered = value.lower()
        if not _HEADER_NAME.fullmatch(lowered):
            self._problem(name, f'must be an HTTP header name, not "{value}"')
        elif lowered in ("authorization", "host", "content-length", "transfer-encoding"):
            self._problem(name, f'may not be "{lowered}"')
        return lowered

    def _bool(self, name: str) -> bool:
        raw = (self._get(name) or _DEFAULTS[name] or "").lower()
        if raw not in _BOOLS:
            self._problem(name, f'must be true or false, not "{raw}"')
            return False
        return _BOOLS[raw]

    def _realm(self) -> str:
        realm = self._get("SIDECAR_ENVOY_REALM") or "auth-sidecar"
        if not _REALM.fullmatch(realm):
            self._problem(
                "SIDECAR_ENVOY_REALM", "must be printable ASCII without quotes or backslashes"
            )
        return realm

    def _log_level(self) -> str:
        level = (self._get("SIDECAR_LOG_LEVEL") or "info").lower()
        if level not in LOG_LEVELS:
            self._problem(
                "SIDECAR_LOG_LEVEL", f'must be one of {", ".join(LOG_LEVELS)}, not "{level}"'
            )
            return "info"
        return level

    def _listen(self) -> str:
        listen = self._get("SIDECAR_LISTEN") or "127.0.0.1:50051"
        if listen.startswith("unix:"):
            if len(listen) == len("unix:"):
                self._problem(
                    "SIDECAR_LISTEN", "unix: needs a path, as in unix:/run/auth-sidecar.sock"
                )
            return listen
        host, _, port = listen.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            self._problem(
                "SIDECAR_LISTEN", f'must be host:port, [v6]:port or unix:/path, not "{listen}"'
            )
        return listen

    def _problem(self, name: str, text: str) -> None:
        self.problems.append(f"{name}: {text}")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
