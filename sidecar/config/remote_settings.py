"""The settings table's rows for what the sidecar fetches: remote key sets (JWKS URLs, OIDC
discovery) and RFC 7662 introspection. `settings.SETTINGS` splices them in at their place.
"""

from __future__ import annotations

from sidecar.config import parsers
from sidecar.config.setting import SERVE_ONLY, SERVE_VALIDATE, Setting

REMOTE: tuple[Setting, ...] = (
    Setting(
        "SIDECAR_JWKS_REFRESH_SECONDS",
        "JWKS URL/OIDC: refetch the keys this often",
        parsers.whole(1, 86400),
        "300",
        "fetch.refresh",
        commands=SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_MIN_REFRESH_SECONDS",
        "JWKS URL/OIDC: shortest time between fetches (an unknown kid refetches at most this often;"
        " Cache-Control max-age is kept within these two)",
        parsers.whole(1, 3600),
        "10",
        "fetch.min_refresh",
        commands=SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_TIMEOUT_SECONDS",
        "JWKS URL/OIDC: time limit for one fetch",
        parsers.whole(1, 300),
        "5",
        "fetch.timeout",
        commands=SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_MAX_BYTES",
        "JWKS URL/OIDC: larger responses are refused",
        parsers.whole(1024, 16 << 20),
        "262144",
        "fetch.max_bytes",
        commands=SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_CA_FILE",
        "JWKS URL/OIDC: trust these PEM CAs instead of the system's",
        parsers.ca_file,
        field="fetch.ca_file",
        commands=SERVE_VALIDATE,
    ),
    Setting(
        "SIDECAR_JWKS_ALLOW_HTTP",
        "JWKS URL/OIDC: allow http:// to hosts that are not loopback (never in production)",
        parsers.boolean,
        "false",
        "fetch.allow_http",
    ),
    Setting(
        "SIDECAR_INTROSPECTION_URL",
        "secure: RFC 7662 endpoint that decides opaque (non-JWT) tokens; https, or http as for "
        "JWKS URLs; with AUTH_JWT_OIDC_ISSUER and the client set, unset means discovery's",
        parsers.text,
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_CLIENT_ID",
        "secure: the sidecar's client id at the introspection endpoint (client_secret_basic)",
        parsers.text,
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_CLIENT_SECRET",
        "secure: the client secret for the introspection endpoint",
        parsers.text,
        secure_only=True,
        secret=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_CLIENT_SECRET_FILE",
        "secure: read SIDECAR_INTROSPECTION_CLIENT_SECRET from this file instead",
        None,
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_EVERY_TOKEN",
        "secure: introspect the issuer's JWTs too, after their own checks, so that a token "
        "the provider revoked is refused",
        parsers.boolean,
        "false",
        secure_only=True,
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_CACHE_SECONDS",
        "introspection: keep an active answer this long (never past the token's exp)",
        parsers.whole(1, 3600),
        "60",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_NEGATIVE_CACHE_SECONDS",
        "introspection: keep an inactive answer this long",
        parsers.whole(1, 300),
        "5",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_TIMEOUT_SECONDS",
        "introspection: time limit for one call (then UNAVAILABLE)",
        parsers.whole(1, 60),
        "5",
        commands=SERVE_ONLY,
    ),
    Setting(
        "SIDECAR_INTROSPECTION_MAX_RATE",
        "introspection: calls per second per worker at most (beyond: UNAVAILABLE)",
        parsers.whole(1, 100000),
        "100",
        commands=SERVE_ONLY,
    ),
)
