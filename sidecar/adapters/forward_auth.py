"""HTTP forward auth: nginx's `auth_request`, Caddy's `forward_auth`, Traefik's `ForwardAuth`,
HAProxy, and Envoy's ext_authz `http_service`.

The proxy asks with the client's headers and says which request it holds; the answer is `200`
(with the user header, for the proxy to copy upstream), `401`, `403`, or `503` while no keys are
loaded. Nothing else: nginx turns any other status into a 500. The decision is the Gate's, the
one that Check makes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import urlsplit

from sidecar.adapters.gate import PASSED, Gate, Refusal, Verdict, settle
from sidecar.core.cache import Decider, Responses
from sidecar.core.errors import (
    IntrospectionNeeded,
    InvalidUserId,
    KeysUnavailable,
    UnsendableClaim,
)
from sidecar.core.rules import Routes
from sidecar.core.validator import Decision
from sidecar.protocols.http import HeaderValueError, Reply, Request, reply

# The request a proxy holds, by the headers that name it, in the order they are read:
# Caddy and Traefik, then nginx and ingress-nginx. (method header, URI header)
ORIGINAL_REQUEST_HEADERS = (
    ("x-forwarded-method", "x-forwarded-uri"),
    ("x-original-method", "x-original-uri"),
)
# The host the client asked for: Caddy and Traefik send it, nginx when told to.
FORWARDED_HOST_HEADER = "x-forwarded-host"
# ingress-nginx's full URL of the original request, read for its path and query.
ORIGINAL_URL_HEADER = "x-original-url"
# Envoy's http_service removes the request headers that an OK answer lists here.
ENVOY_REMOVE_HEADER = "x-envoy-auth-headers-to-remove"
# How long a proxy should wait before asking again while the keys are still loading.
RETRY_AFTER_SECONDS = 1
_JSON = ("content-type", "application/json")
# Only an allow, with SIDECAR_FORWARD_AUTH_MAX_AGE_SECONDS, may be kept by a proxy's cache (nginx's
# proxy_cache honours Cache-Control); everything else says so, whatever the proxy is told.
NO_STORE = "no-store"
_UNCACHED = ("cache-control", NO_STORE)
CACHEABLE = "cacheable"


class ForwardAuth:
    """The forward-auth handler for requests at `prefix` and below it."""

    def __init__(
        self,
        gate: Gate,
        prefix: str,
        memo_size: int = 0,
        max_age: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`memo_size`: replies to valid decisions kept for reuse (see cache.Responses).
        `max_age`: seconds for which a proxy may cache an allow (0: none may)."""
        self._gate = gate
        self._prefix = prefix.rstrip("/")
        self._allowed = Responses(self._build, memo_size)
        self._max_age = max_age
        self._clock = clock
        # A preflight carries no user: Envoy's http_service removes the headers that this one
        # names from the request (others overwrite or drop them themselves; see examples/).
        self._owned = gate.owned_headers
        self._preflight = reply(
            HTTPStatus.OK, [(ENVOY_REMOVE_HEADER, ", ".join(self._owned)), _UNCACHED]
        )
        self._missing = _refused(gate.missing)
        self._unavailable = reply(
            HTTPStatus.SERVICE_UNAVAILABLE,
            [("retry-after", str(RETRY_AFTER_SECONDS)), _JSON, _UNCACHED],
            b'{"error":"unavailable","message":"no verification keys are loaded yet"}',
        )

    def __call__(self, request: Request) -> Reply | Awaitable[Reply]:
        method, target = self.original(request)
        headers = request.headers
        host = headers.get(FORWARDED_HOST_HEADER) or headers.get("host", "")
        try:
            verdict = self._gate.decide(method, target, headers, host=host)
        except IntrospectionNeeded as needed:
            return self._introspected(
                needed, lambda: self._gate.decide(method, target, headers, host=host)
            )
        except KeysUnavailable:
            return self._unavailable
        return self._reply(verdict)

    async def _introspected(
        self, needed: IntrospectionNeeded, decide: Callable[[], Verdict]
    ) -> Reply:
        """The reply once the token's introspection answer is in: a task of the HTTP server."""
        try:
            return self._reply(await settle(needed, decide))
        except KeysUnavailable:
            return self._unavailable

    def _reply(self, verdict: Verdict) -> Reply:
        decision = verdict.decision
        if decision is None:
            return self._preflight if verdict in PASSED else self._missing
        if decision.valid:
            return self._allowed.get(decision, self._cacheable(decision))
        return _refused(self._gate.refusal(decision, verdict.scopes))

    def _cacheable(self, decision: Decision) -> str:
        """The variant of an allow: CACHEABLE when the proxy may keep it for max_age seconds,
        which must end before the token does."""
        if not self._max_age:
            return ""
        expires = decision.expires_at
        if expires is not None and expires - self._clock() < self._max_age:
            return ""
        return CACHEABLE

    def original(self, request: Request) -> tuple[str, str]:
        """The method and request-target of the request the proxy holds."""
        headers = request.headers
        for method_header, uri_header in ORIGINAL_REQUEST_HEADERS:
            uri = headers.get(uri_header)
            if uri is not None:
                return headers.get(method_header, request.method), uri
        url = headers.get(ORIGINAL_URL_HEADER)
        if url is not None:
            return headers.get("x-original-method", request.method), _target_of(url)
        # Envoy's http_service (path_prefix): the original path follows the prefix.
        rest = request.target[len(self._prefix) :]
        return request.method, rest if rest.startswith("/") else "/" + rest

    def swap(self, validator: Decider, routes: Routes | None = None) -> None:
        """Hot reload: later requests are decided with this validator and these routes."""
        self._gate.validator = validator
        if routes is not None:
            self._gate.routes = routes

    def _build(self, decision: Decision, variant: str) -> Reply:
        cache = f"max-age={self._max_age}" if variant == CACHEABLE else NO_STORE
        try:
            upstream = self._gate.upstream_headers(decision)
        except UnsendableClaim as error:
            return _refused(self._gate.refusal(Decision.refused(error)))
        headers = [*upstream.items(), ("cache-control", cache)]
        absent = [h for h in self._owned if h not in upstream]
        if absent:
            # Envoy's http_service removes these from the request: no client-sent value stays.
            headers.append((ENVOY_REMOVE_HEADER, ", ".join(absent)))
        try:
            return reply(HTTPStatus.OK, headers)
        except HeaderValueError:
            # A user id with a line break or another control character cannot be one header:
            # refused, rather than cut or re-encoded into someone else's id.
            return _refused(self._gate.refusal(Decision.refused(InvalidUserId())))


def _refused(refusal: Refusal) -> Reply:
    return reply(
        refusal.status,
        [("www-authenticate", refusal.www_authenticate), _JSON, _UNCACHED],
        refusal.body.encode(),
    )


def _target_of(url: str) -> str:
    """A URL's path and query. A URL that does not parse is passed on whole: not starting with
    `/`, it is refused wherever the path matters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
