"""The decision on a proxied HTTP request, apart from any wire format.

Envoy's Check and HTTP forward auth describe the same thing, a request that a proxy holds, in
two encodings. Both adapters decode it to (method, target, headers) and ask the `Gate`: it finds
the token, lets CORS preflights through, decides, and checks the shape on the shape path. What
a refusal says (status, `WWW-Authenticate`, JSON body) is written here once as well, so the two
adapters differ only in how they encode the verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_plus

from sidecar.config import EnvoyConfig
from sidecar.core import jws, rules, shape
from sidecar.core.cache import Decider
from sidecar.core.errors import (
    AmbiguousPath,
    ClientSecret,
    Forbidden,
    IntrospectionNeeded,
    Reason,
    UnsendableClaim,
)
from sidecar.core.rules import NO_ROUTES, Routes
from sidecar.core.validator import Decision

MISSING_TOKEN = "Missing bearer token"  # noqa: S105 - a message, not a secret
# Electric's API secret and its old name: set by the sidecar, never by a client.
ELECTRIC_SECRET_PARAMS = ("secret", "api_secret")
_SECRET_NAMES = frozenset(ELECTRIC_SECRET_PARAMS)
# RFC 6750 §3: error_description is printable ASCII without `"` and `\`.
_NOT_DESCRIPTION_TEXT = re.compile(r"[^ !#-\[\]-~]")
# Refusals of a good token that does not cover the request: 403 (RFC 6750 §3.1).
_FORBIDDEN = frozenset((Reason.SHAPE_MISMATCH, Reason.FORBIDDEN))
# What no header value may hold (RFC 9110 §5.5): controls, line breaks included.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate found. `decision` is None for a request let through without a user (a
    preflight, `PREFLIGHT`, or an anonymous route, `ANONYMOUS`) and for a request without a
    token (`MISSING`); `source` is where the token was: a header name, `?name` for a query
    parameter, `@name` for a cookie; `shape_request`: the request is for the shape path;
    `scopes`: for a route's refusal, the scopes that would have allowed it."""

    decision: Decision | None
    source: str = ""
    shape_request: bool = False
    scopes: tuple[str, ...] = ()


PREFLIGHT = Verdict(None, "preflight")
ANONYMOUS = Verdict(None, "anonymous")
MISSING = Verdict(None)
PASSED = (PREFLIGHT, ANONYMOUS)
"""The verdicts that let a request through with no user: the user and claim headers removed."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal as every HTTP wire says it: 401 for no or a bad token, 403 for a good token
    that does not cover the request (RFC 6750 §3.1)."""

    status: int
    www_authenticate: str
    body: str
    message: str
    reason: str


T = TypeVar("T")


async def settle(needed: IntrospectionNeeded, decide: Callable[[], T]) -> T:
    """Decides again once the introspection answer that `decide` lacked is fetched. Raises
    KeysUnavailable when there is still none (the endpoint failed): adapters fail closed."""
    await needed.fetch()
    return decide()


RouteReport = Callable[[str, Forbidden, bool], None]
"""Called with a route's name, its refusal and whether it was enforced (False: dry-run)."""


class Gate:
    """Decides on proxied requests with a swappable validator and the proxy settings."""

    def __init__(
        self,
        validator: Decider,
        settings: EnvoyConfig,
        shape_claim: str | None = None,
        routes: Routes = NO_ROUTES,
        report: RouteReport | None = None,
    ) -> None:
        """`shape_claim`: the claim that scopes requests to the shape path (None: off).
        `routes`: what each request needs (see core/rules.py); `report`: what each route's
        refusal, enforced or dry-run, is reported to (metrics, the decision log)."""
        self.validator = validator
        self.settings = settings
        self.routes = routes
        self._report = report
        self._shape_claim = shape_claim
        self._shape_path = shape.path_matcher(settings.shape_path)
        # Paths matter only for a shape check or for adding Electric's secret.
        self._paths = bool(shape_claim or settings.electric_secret)
        self._claim_headers = settings.claim_headers or ()
        self.owned_headers = tuple(
            h
            for h in (
                settings.user_header,
                settings.claims_header,
                *(name for _, name in self._claim_headers),
            )
            if h
        )
        """Headers whose client-sent values never reach upstream: the gate's to set or remove."""
        self._hidden = rules.HIDDEN_HEADERS | {h for h in (settings.token_header,) if h}
        self.missing = Refusal(
            401,
            f'Bearer realm="{settings.realm}"',
            json.dumps({"error": "missing_token", "message": MISSING_TOKEN}),
            MISSING_TOKEN,
            "MISSING_TOKEN",  # no token, so no token Reason: the metadata says so in its place
        )

    def decide(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        removes_secret: bool = False,
        host: str | None = None,
    ) -> Verdict:
        """The verdict on `method target` with `headers` (names lower case), sent to `host`
        (default: the Host header). `removes_secret`: the adapter removes a client's `secret`
        and `api_secret` by those names (Check); without it, a request to the shape path that
        carries one is refused. Raises KeysUnavailable when there is no decision to give yet
        (each adapter fails closed)."""
        if self.settings.allow_preflight and _is_preflight(method, headers):
            return PREFLIGHT
        route = None
        if self.routes:
            host = headers.get("host", "") if host is None else host
            try:
                route = self.routes.select(method, target.partition("?")[0], host)
            except AmbiguousPath as error:
                return Verdict(Decision.refused(error))
            if route.deny:
                denial = route.denial()
                self._reported(route, denial)
                if not route.dry_run:
                    return Verdict(Decision.refused(denial))
                route = None
        token, source = self._find_token(headers, target)
        if token is None:
            return ANONYMOUS if route is not None and route.anonymous else MISSING
        decision = self.validator.decide(token, route is None or route.issuer_audience)
        if not decision.valid:
            if route is not None and route.ignore_invalid_token:
                return ANONYMOUS
            return Verdict(decision, source)
        if route is not None and route.requirements:
            request = rules.Request(method, target, host or "", headers, self._hidden)
            refusal = route.unmet(decision, request)
            if refusal is not None:
                self._reported(route, refusal)
                if not route.dry_run:
                    return Verdict(Decision.refused(refusal), source, scopes=refusal.scopes)
        if not self._paths:
            return Verdict(decision, source)
        path, _, query = target.partition("?")
        try:
            on_shape_path = shape.is_shape_path(path, self._shape_path)
        except AmbiguousPath as error:
            return Verdict(Decision.refused(error), source)
        if on_shape_path and self.settings.electric_secret:
            spellings = _secret_spellings(query)
            if spellings and not (removes_secret and spellings <= _SECRET_NAMES):
                return Verdict(Decision.refused(ClientSecret()), source, on_shape_path)
        if on_shape_path and self._shape_claim:
            decision = shape.authorize(decision, self._shape_claim, lambda: shape.from_query(query))
        return Verdict(decision, source, on_shape_path)

    def _reported(self, route: rules.Route, refusal: Forbidden) -> None:
        if self._report is not None:
            self._report(route.name, refusal, not route.dry_run)

    def refusal(self, decision: Decision, scopes: tuple[str, ...] = ()) -> Refusal:
        """What a refused decision says on the wire; `scopes`: those that would allow it."""
        reason = decision.reason.wire
        description = _NOT_DESCRIPTION_TEXT.sub("'", decision.message)
        realm = self.settings.realm
        if decision.reason in _FORBIDDEN:
            # RFC 6750 §3: scope is space-delimited scope tokens, which never hold `"` or `\`.
            scope = f', scope="{" ".join(scopes)}"' if scopes else ""
            return Refusal(
                403,
                f'Bearer realm="{realm}", error="insufficient_scope", '
                f'error_description="{description}"{scope}',
                json.dumps(
                    {"error": "forbidden", "reason": reason, "message": decision.message},
                    ensure_ascii=False,
                ),
                decision.message,
                reason,
            )
        return Refusal(
            401,
            f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"',
            json.dumps(
                {"error": "invalid_token", "message": decision.message, "reason": reason},
                ensure_ascii=False,
            ),
            decision.message,
            reason,
        )

    def upstream_headers(self, decision: Decision) -> dict[str, str]:
        """The headers an allowed request carries upstream: who the user is, and the claims
        of SIDECAR_CLAIM_HEADERS that the token has. Raises UnsendableClaim for a claim that
        no header can carry whole."""
        headers = {self.settings.user_header: decision.user_id}
        if self.settings.claims_header:
            headers[self.settings.claims_header] = b64url_json(decision.claims)
        for path, name in self._claim_headers:
            value = self.claim(decision, path)
            if value is not rules.ABSENT:
                headers[name] = header_value(value, ".".join(path))
        return headers

    def claim(self, decision: Decision, path: tuple[str, ...]) -> Any:
        """A claim at `path`, under the namespace of the decision's issuer; or rules.ABSENT."""
        namespace = decision.namespace
        root = decision.claims if namespace is None else decision.claims.get(namespace)
        return rules.claim_at(root, path)

    def selected_claims(self, decision: Decision) -> dict[str, Any]:
        """SIDECAR_CLAIM_HEADERS' claims by their dotted path, for Check's dynamic metadata."""
        found = {}
        for path, _ in self._claim_headers:
            value = self.claim(decision, path)
            if value is not rules.ABSENT:
                found[".".join(path)] = value
        return found

    def _find_token(self, headers: Mapping[str, str], target: str) -> tuple[str | None, str]:
        """`Authorization: Bearer` (any case, RFC 6750 §2.1), then the extra header, then the
        cookie, then the query parameter. Returns the token and where it was found."""
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip(), "authorization"
        header = self.settings.token_header
        if header:
            value = headers.get(header, "").strip()
            if value.lower().startswith("bearer "):
                value = value[len("bearer ") :].strip()
            if value:
                return value, header
        cookie = self.settings.token_cookie
        if cookie and "cookie" in headers:
            found = cookie_value(headers["cookie"], cookie)
            if found:
                return found, "@" + cookie
        param = self.settings.token_param
        if param and "?" in target:
            for pair in target.partition("?")[2].split("&"):
                # The raw name, as Envoy matches query_parameters_to_remove: a name that only
                # decodes to `param` (`%74oken`) would stay in the URL, token and all.
                key, _, value = pair.partition("=")
                if key == param and value:
                    return unquote_plus(value), "?" + param
        return None, ""


def cookie_value(header: str, name: str) -> str | None:
    """The first value of cookie `name` in a Cookie header, as RFC 6265 §5.4 serialises it
    (`a=1; b=2`), its optional double quotes removed; None when it is absent or empty."""
    for pair in header.split(";"):
        key, equals, value = pair.strip().partition("=")
        if equals and key == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value or None
    return None


def header_value(value: Any, claim: str) -> str:
    """A claim's value as one header: a string as it is, a number or boolean as JSON, an array
    of those joined with `,`. Raises UnsendableClaim for an object, a control character, or a
    comma inside an array's element, which the upstream could not split back."""
    if isinstance(value, list):
        parts = [_scalar(item, claim) for item in value]
        if any("," in part for part in parts):
            raise UnsendableClaim(claim)
        return ",".join(parts)
    return _scalar(value, claim)


def _scalar(value: Any, claim: str) -> str:
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise UnsendableClaim(claim)
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise UnsendableClaim(claim)


def _secret_spellings(query: str) -> frozenset[str]:
    """The raw names of the query's parameters that a server decodes to Electric's secret."""
    return frozenset(
        key
        for key in (pair.partition("=")[0] for pair in query.split("&"))
        if unquote_plus(key) in _SECRET_NAMES
    )


def _is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight: browsers never send credentials with one (Fetch standard §4.8)."""
    return (
        method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers
    )


def b64url_json(claims: Mapping[str, Any]) -> str:
    return jws.b64url_encode(json.dumps(claims, separators=(",", ":")).encode("ascii"))
