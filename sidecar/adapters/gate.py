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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from sidecar.config import EnvoyConfig
from sidecar.core import jws, shape
from sidecar.core.cache import Decider
from sidecar.core.errors import AmbiguousPath, ClientSecret, Reason
from sidecar.core.validator import Decision

MISSING_TOKEN = "Missing bearer token"  # noqa: S105 - a message, not a secret
# Electric's API secret and its old name: set by the sidecar, never by a client.
ELECTRIC_SECRET_PARAMS = ("secret", "api_secret")
_SECRET_NAMES = frozenset(ELECTRIC_SECRET_PARAMS)
# RFC 6750 §3: error_description is printable ASCII without `"` and `\`.
_NOT_DESCRIPTION_TEXT = re.compile(r"[^ !#-\[\]-~]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate found. `decision` is None for a preflight (`PREFLIGHT`, let through) and
    for a request without a token (`MISSING`); `source` is where the token was: a header name,
    or `?name` for a query parameter; `shape_request`: the request is for the shape path."""

    decision: Decision | None
    source: str = ""
    shape_request: bool = False


PREFLIGHT = Verdict(None, "preflight")
MISSING = Verdict(None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal as every HTTP wire says it: 401 for no or a bad token, 403 for a good token
    that does not cover the request (RFC 6750 §3.1)."""

    status: int
    www_authenticate: str
    body: str
    message: str
    reason: str


class Gate:
    """Decides on proxied requests with a swappable validator and the proxy settings."""

    def __init__(
        self, validator: Decider, settings: EnvoyConfig, shape_claim: str | None = None
    ) -> None:
        """`shape_claim`: the claim that scopes requests to the shape path (None: off)."""
        self.validator = validator
        self.settings = settings
        self._shape_claim = shape_claim
        self._shape_path = shape.path_matcher(settings.shape_path)
        # Paths matter only for a shape check or for adding Electric's secret.
        self._paths = bool(shape_claim or settings.electric_secret)
        self.missing = Refusal(
            401,
            f'Bearer realm="{settings.realm}"',
            json.dumps({"error": "missing_token", "message": MISSING_TOKEN}),
            MISSING_TOKEN,
            "MISSING_TOKEN",  # no token, so no token Reason: the metadata says so in its place
        )

    def decide(
        self, method: str, target: str, headers: Mapping[str, str], removes_secret: bool = False
    ) -> Verdict:
        """The verdict on `method target` with `headers` (names lower case). `removes_secret`:
        the adapter removes a client's `secret` and `api_secret` by those names (Check); without
        it, a request to the shape path that carries one is refused. Raises KeysUnavailable when
        there is no decision to give yet (each adapter fails closed)."""
        if self.settings.allow_preflight and _is_preflight(method, headers):
            return PREFLIGHT
        token, source = self._find_token(headers, target)
        if token is None:
            return MISSING
        decision = self.validator.decide(token)
        if not (self._paths and decision.valid):
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

    def refusal(self, decision: Decision) -> Refusal:
        """What a refused decision says on the wire."""
        reason = decision.reason.wire
        description = _NOT_DESCRIPTION_TEXT.sub("'", decision.message)
        realm = self.settings.realm
        if decision.reason is Reason.SHAPE_MISMATCH:
            return Refusal(
                403,
                f'Bearer realm="{realm}", error="insufficient_scope", '
                f'error_description="{description}"',
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
        """The headers an allowed request carries upstream: who the user is."""
        headers = {self.settings.user_header: decision.user_id}
        if self.settings.claims_header:
            headers[self.settings.claims_header] = b64url_json(decision.claims)
        return headers

    def _find_token(self, headers: Mapping[str, str], target: str) -> tuple[str | None, str]:
        """`Authorization: Bearer` (any case, RFC 6750 §2.1), then the extra header, then the
        query parameter. Returns the token and where it was found."""
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
        param = self.settings.token_param
        if param and "?" in target:
            for pair in target.partition("?")[2].split("&"):
                # The raw name, as Envoy matches query_parameters_to_remove: a name that only
                # decodes to `param` (`%74oken`) would stay in the URL, token and all.
                key, _, value = pair.partition("=")
                if key == param and value:
                    return unquote_plus(value), "?" + param
        return None, ""


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
