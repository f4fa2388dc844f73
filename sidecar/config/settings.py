"""The settings table: every setting, with its variable, flag, default, parser and help, once.

The loader, the CLI's flags, `--help`, the README's table (checked by tests/test_docs.py) and the
Helm chart's values all come from these rows. Adding a setting is adding one row (and its README
row); the rules that join several settings live in the loader.
"""

from __future__ import annotations

from sidecar.config import issuers, parsers
from sidecar.config.remote_settings import REMOTE
from sidecar.config.setting import (
    SERVE,
    SERVE_MINT,
    SERVE_ONLY,
    VALIDATE,
    Setting,
)
from sidecar.config.state_settings import STATE
from sidecar.core.policy import Mode
from sidecar.core.rules import DefaultRoute
from sidecar.keys import tls

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AUTH_MODE",
        "`secure` or `insecure` (development only: signatures unchecked)",
        parsers.mode,
        Mode.SECURE.value,
        "mode",
    ),
    Setting(
        "AUTH_JWT_ALG",
        "secure: HS256/384/512, RS256/384/512 or ES256/384/512 (required), or beyond Electric "
        "PS256/384/512, EdDSA, Ed25519 or Ed448; with a JWKS source, a comma-separated "
        "allow-list such as `RS256,ES256`",
        parsers.alg_list,
        secure_only=True,
        missing=parsers.ALG_PROBLEM,
    ),
    Setting(
        "AUTH_JWT_KEY",
        "secure: HS secret (raw, or `base64:...`), or PEM public key for RS/ES (required)",
        parsers.text,
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
        parsers.text,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_JWKS_URL",
        "secure: key source: a JWK Set fetched from this https:// URL",
        parsers.text,
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_OIDC_ISSUER",
        "secure: key source: this OpenID issuer's `jwks_uri` (from its discovery document); "
        "`iss` must equal it unless AUTH_JWT_ISS is set",
        parsers.text,
        secure_only=True,
    ),
    Setting(
        issuers.CONFIG_FILE,
        "a TOML file: secure mode's [[issuers]] tables, one per trusted issuer, instead of the "
        "AUTH_JWT_ variables; and [[routes]] tables, what a token needs on each route",
        parsers.text,
    ),
    Setting(
        "AUTH_JWT_NAMESPACE",
        "both modes: read the user from claims[namespace]",
        parsers.text,
        field="namespace",
    ),
    Setting(
        "AUTH_JWT_ISS",
        "secure: require `iss` and that it equals this",
        parsers.text,
        field="iss",
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_AUD",
        "secure: require `aud` and that it is or contains this",
        parsers.text,
        field="aud",
        secure_only=True,
    ),
    Setting(
        "AUTH_JWT_SIGNING_KEY",
        "secure, RS/ES: PEM private key that Mint signs with",
        parsers.text,
        secure_only=True,
        secret=True,
        commands=SERVE_MINT,
    ),
    Setting(
        "AUTH_JWT_SIGNING_KEY_FILE",
        "secure: read AUTH_JWT_SIGNING_KEY from this file instead",
        None,
        secure_only=True,
        commands=SERVE_MINT,
    ),
    Setting(
        "SIDECAR_MINT_SECRET",
        "secure: bearer secret that Mint callers must send (32+ bytes)",
        parsers.mint_secret,
        field="mint_secret",
        secure_only=True,
        secret=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_MINT_SECRET_FILE",
        "secure: read SIDECAR_MINT_SECRET from this file instead",
        None,
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_MINT_MAX_TTL_SECONDS",
        "longest ttl that Mint grants",
        parsers.whole(1, 366 * 86400),
        "86400",
        "mint_max_ttl",
        commands=SERVE_MINT,
    ),
    Setting(
        "SIDECAR_LISTEN",
        "`host:port`, `[v6]:port` or `unix:/path`",
        parsers.listen,
        "127.0.0.1:50051",
        "listen",
        commands=SERVE_ONLY,
    ),
    Setting(
        tls.CERT_FILE,
        "PEM certificate chain: serve TLS (with SIDECAR_TLS_KEY_FILE); re-read when it changes",
        parsers.text,
        commands=SERVE_ONLY,
    ),
    Setting(
        tls.KEY_FILE,
        "PEM private key of SIDECAR_TLS_CERT_FILE (unencrypted)",
        parsers.text,
        commands=SERVE_ONLY,
    ),
    Setting(
        tls.CLIENT_CA_FILE,
        "PEM CA certificates: require client certificates they sign (mTLS)",
        parsers.text,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_READY_FILE",
        "once serving, write the bound address (as SIDECAR_LISTEN takes it) to this file",
        parsers.text,
        field="ready_file",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_CLOCK_SKEW_SECONDS",
        "allowed clock drift for exp, nbf, iat",
        parsers.whole(0, 3600),
        "2",
        "clock_skew",
        commands=frozenset((SERVE, VALIDATE)),
    ),
    Setting(
        "SIDECAR_JWT_TYP",
        "both modes: accept only tokens whose `typ` header is one of these (comma-separated, "
        "such as `at+jwt`; RFC 7515: case-insensitive, `application/` optional); a token "
        "without `typ` is refused. Unset: any",
        parsers.typ_list,
        field="typ",
    ),
    Setting(
        "SIDECAR_JWT_MAX_LIFETIME_SECONDS",
        "both modes: refuse a token whose `exp - iat` is longer; it must then carry both. "
        "Unset: no bound",
        parsers.whole(1, 10 * 365 * 86400),
        field="max_lifetime",
    ),
    Setting(
        "SIDECAR_MAX_TOKEN_BYTES",
        "longer tokens are refused unparsed as malformed",
        parsers.whole(64, 1 << 20),
        "8192",
        "max_token_bytes",
    ),
    Setting(
        "SIDECAR_MAX_CONCURRENT_RPCS",
        "calls beyond this get RESOURCE_EXHAUSTED",
        parsers.whole(1, 1_000_000),
        "1000",
        "max_concurrent_rpcs",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_GRACE_SECONDS",
        "how long SIGTERM waits for in-flight calls",
        parsers.seconds(0, 3600),
        "5",
        "grace_seconds",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_WORKERS",
        "server processes on one TCP port; `auto`: one per usable CPU",
        parsers.workers,
        "auto",
        "workers",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_CACHE_SIZE",
        "valid decisions kept per worker; 0 turns the cache off",
        parsers.whole(0, 10_000_000),
        "10000",
        "cache_size",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_CACHE_MAX_TTL_SECONDS",
        "longest a decision is kept (never past exp)",
        parsers.whole(1, 86400),
        "300",
        "cache_max_ttl",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_EVENT_LOOP",
        "`auto` (uvloop when installed), `asyncio` or `uvloop`",
        parsers.event_loop,
        "auto",
        "event_loop",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_LOG_LEVEL",
        "debug, info, warning or error",
        parsers.one_of(parsers.LOG_LEVELS),
        "info",
        "log_level",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_LOG_FORMAT",
        "`text`, or `json`: one JSON object per line",
        parsers.one_of(parsers.LOG_FORMATS),
        "text",
        "log_format",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_DECISION_LOG",
        "log one line per Validate and Check decision",
        parsers.boolean,
        "false",
        "decision_log",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_HTTP_LISTEN",
        "`host:port` for /metrics, /healthz, /readyz and /.well-known/jwks.json (off when unset)",
        parsers.http_listen,
        field="http_listen",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_HTTP_API_LISTEN",
        "`host:port` or `unix:/path` for HTTP forward auth and AuthService over Connect"
        " (off when unset)",
        parsers.listen,
        field="http_api_listen",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_FORWARD_AUTH_PATH",
        "HTTP API: forward auth answers at this path and below it",
        parsers.path,
        "/auth",
        "forward_auth_path",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS",
        "HTTP API: let the proxy cache a forward-auth allow this long (`Cache-Control: max-age`,"
        " never past the token's expiry; refusals are `no-store`); a revoked or reloaded"
        " decision may then hold this long at the proxy. 0: no caching",
        parsers.whole(0, 300),
        "0",
        "forward_auth_max_age",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_HTTP_MAX_CONNECTIONS",
        "HTTP API: open connections per worker; more are closed at once",
        parsers.whole(1, 1 << 20),
        "10000",
        "http_max_connections",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_HTTP_IDLE_SECONDS",
        "HTTP API: close a keep-alive connection idle this long (keep it above the proxy's own"
        " upstream idle timeout)",
        parsers.whole(1, 86400),
        "120",
        "http_idle_seconds",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_RELOAD_SECONDS",
        "check the configuration's files for changes this often, and reload (0: only on SIGHUP)",
        parsers.whole(0, 86400),
        "10",
        "reload_seconds",
        commands=SERVE_ONLY,
    ),
    *REMOTE,
    *STATE,
    Setting(
        "SIDECAR_ENVOY_TOKEN_HEADER",
        "Envoy: also read the token from this header",
        parsers.header,
        field="envoy.token_header",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_TOKEN_PARAM",
        "Envoy: also read the token from this query parameter",
        parsers.text,
        field="envoy.token_param",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_USER_HEADER",
        "Envoy: header set to the user id upstream",
        parsers.header,
        "x-user-id",
        "envoy.user_header",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_CLAIMS_HEADER",
        "Envoy: header set to the claims, base64url JSON",
        parsers.header,
        field="envoy.claims_header",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_STRIP_TOKEN",
        "Envoy: remove the token's header upstream",
        parsers.boolean,
        "false",
        "envoy.strip_token",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_REALM",
        "Envoy: realm in WWW-Authenticate",
        parsers.realm,
        "auth-sidecar",
        "envoy.realm",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ENVOY_ALLOW_PREFLIGHT",
        "Envoy: CORS preflights pass without a token",
        parsers.boolean,
        "true",
        "envoy.allow_preflight",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ELECTRIC_SECRET",
        "Electric's ELECTRIC_SECRET: Check sets it as `secret` on allowed requests to the shape"
        " path, and removes any client-sent `secret` or `api_secret`; forward auth refuses a"
        " client-sent one on the shape path",
        parsers.electric_secret,
        field="envoy.electric_secret",
        secret=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_ELECTRIC_SECRET_FILE",
        "read SIDECAR_ELECTRIC_SECRET from this file instead",
        None,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_SHAPE_CLAIM",
        "the claim naming the one Electric shape a token may sync",
        parsers.text,
        field="shape_claim",
        commands=SERVE_MINT,
    ),
    Setting(
        "SIDECAR_DEFAULT_ROUTE",
        "a request that matches no [[routes]] table needs `authenticated`: a valid token; or "
        "is refused (`deny`, 403)",
        parsers.default_route,
        DefaultRoute.AUTHENTICATED.value,
        "default_route",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_DRY_RUN",
        "every route, the default's `deny` included, only logs and counts what it would refuse",
        parsers.boolean,
        "false",
        "dry_run",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_TOKEN_COOKIE",
        "Envoy and forward auth: read the token from this cookie when Authorization has none",
        parsers.cookie,
        field="envoy.token_cookie",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_CLAIM_HEADERS",
        "Envoy and forward auth: claims sent upstream as headers, `org_id=x-org-id, "
        "realm_access.roles=x-roles` (arrays joined with `,`); also Check's dynamic metadata",
        parsers.claim_headers,
        field="envoy.claim_headers",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_SHAPE_PATH",
        "Envoy and forward auth: the path of Electric's shape API",
        parsers.path,
        "/v1/shape",
        "envoy.shape_path",
        commands=SERVE_ONLY,
    ),
)

# Settings that only secure mode uses; Electric refuses them in insecure mode.
SECURE_ONLY = tuple(s.env for s in SETTINGS if s.secure_only)
# The key sources of one issuer; exactly one is set. AUTH_JWT_KEY stands for its _FILE too.
KEY_SOURCES = ("AUTH_JWT_KEY", "AUTH_JWT_JWKS_FILE", "AUTH_JWT_JWKS_URL", "AUTH_JWT_OIDC_ISSUER")
