"""What the loader returns: a checked `Config`, its keys parsed, and the values it derives for
the core (`policy`, `mint_policy`). Frozen, so that a reload swaps a whole Config, never a field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sidecar.core.crypto import Signer, Verifier
from sidecar.core.policy import MintPolicy, Mode, Policy
from sidecar.core.rules import NO_ROUTES, DefaultRoute, Routes
from sidecar.keys import jwks
from sidecar.keys.fetch import FetchSettings, Remote
from sidecar.keys.introspect import IntrospectionSettings
from sidecar.keys.tls import TlsFiles
from sidecar.stores.base import StoreSettings


@dataclass(frozen=True)
class EnvoyConfig:
    """How Check and forward auth find the token and tell the upstream who the user is.

    Header names are lower case, as Envoy passes them. Defaults live in SETTINGS.
    `electric_secret`: Electric's API secret, which Check adds upstream (None: off).
    """

    token_header: str | None
    token_param: str | None
    user_header: str
    claims_header: str | None
    strip_token: bool
    realm: str
    allow_preflight: bool
    shape_path: str
    token_cookie: str | None = None
    # SIDECAR_CLAIM_HEADERS: (claim path, header name), in order.
    claim_headers: tuple[tuple[tuple[str, ...], str], ...] | None = None
    electric_secret: str | None = field(default=None, repr=False)


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
    http_api_listen: str | None
    forward_auth_path: str
    forward_auth_max_age: int
    http_max_connections: int
    http_idle_seconds: int
    tls: TlsFiles | None
    shape_claim: str | None
    default_route: DefaultRoute
    dry_run: bool
    typ: frozenset[str] | None
    max_lifetime: int | None
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
    # SIDECAR_CONFIG_FILE's [[routes]], and the default route: what each request needs.
    routes: Routes = NO_ROUTES
    # SIDECAR_INTROSPECTION_URL and its settings: opaque tokens are introspected (RFC 7662).
    introspection: IntrospectionSettings | None = field(default=None, repr=False)
    # SIDECAR_ADMIN_SECRET: what Revoke callers send in secure mode (None: Revoke is off there).
    admin_secret: bytes | None = field(default=None, repr=False)
    # SIDECAR_REVOCATION_STORE and its settings (None: revocation is off).
    revocation: StoreSettings | None = None

    @property
    def policy(self) -> Policy:
        """What the core enforces: insecure mode requires no claim and checks no iss or aud."""
        if self.mode is Mode.INSECURE:
            return Policy(
                mode=self.mode,
                namespace=self.namespace,
                skew=self.clock_skew,
                max_token_bytes=self.max_token_bytes,
                typ=self.typ,
                max_lifetime=self.max_lifetime,
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
            typ=self.typ,
            max_lifetime=self.max_lifetime,
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
            *([f"http_api={self.http_api_listen}"] if self.http_api_listen else []),
            f"namespace={self.namespace or '-'}",
            *([f"revocations={self.revocation.shown}"] if self.revocation else []),
            *([f"routes={len(self.routes.routes)}"] if self.routes.routes else []),
        ]
        if self.mode is Mode.SECURE:
            parts += [
                f"iss={self.iss or '-'}",
                f"aud={self.aud or '-'}",
                f"mint={'on' if self.mint_secret and self.signer else 'off'}",
            ]
        return " ".join(parts)
