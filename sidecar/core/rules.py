"""Authorization per route: which route a request is on, and whether a valid token meets it.

Pure: no I/O, no logging. The config builds `Routes` from SIDECAR_CONFIG_FILE's `[[routes]]`;
the gate (Check, forward auth) and Validate (with a request context) ask it the same question:

- `Routes.select` finds the first route whose match fits the request (method, normalised path,
  host), as Envoy's jwt_authn does; none fits: the default route (`authenticated`, or `deny`);
- `Route.unmet` is what a valid token lacks on that route: a scope, a claim value, the audience,
  or its CEL `when`; None when it lacks nothing.

Each requirement says what is missing by the route's name and the requirement, never by a claim's
value (refusals reach clients and logs). Requirements are a registry of small classes, as pyjwt
keeps its algorithms: adding one is adding a class and a row in `CLAIM_TESTS` or the config.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote_plus

from sidecar.core import paths
from sidecar.core.errors import AmbiguousPath, Forbidden
from sidecar.core.validator import Decision

# The headers a `when` condition never sees: the credentials themselves.
HIDDEN_HEADERS = frozenset(("authorization", "cookie", "proxy-authorization"))
_PORT = re.compile(r":\d*$")


class DefaultRoute(enum.StrEnum):
    """What a request that matches no route gets (SIDECAR_DEFAULT_ROUTE)."""

    AUTHENTICATED = "authenticated"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Request:
    """The request a proxy holds, as the rules see it. `headers`: names in lower case."""

    method: str
    target: str
    host: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    hidden: frozenset[str] = HIDDEN_HEADERS
    """Headers a condition never sees: the credentials, and the header the token came in."""

    @property
    def path(self) -> str:
        return self.target.partition("?")[0] or "/"

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


def host_of(value: str) -> str:
    """A Host (or `:authority`) value as routes compare it: lower case, without a port."""
    host = value.strip().lower()
    if host.startswith("["):  # an IPv6 literal keeps its colons
        return host.partition("]")[0] + "]"
    return _PORT.sub("", host)


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a route is for. Unset parts match everything.

    `path`: segments that must equal the request's (an exact path); `prefix`: segments the
    request's must start with, segment by segment (`/admin` covers `/admin/x`, not `/administer`).
    """

    path: tuple[str, ...] | None = None
    prefix: tuple[str, ...] | None = None
    methods: frozenset[str] | None = None
    hosts: frozenset[str] | None = None

    def fits(self, method: str, segments: tuple[str, ...], host: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.hosts is not None and host not in self.hosts:
            return False
        if self.path is not None and segments != self.path:
            return False
        return self.prefix is None or segments[: len(self.prefix)] == self.prefix


@dataclass(frozen=True, slots=True)
class Context:
    """What a requirement reads: the decision, the claims under the namespace, the request."""

    decision: Decision
    root: Any
    request: Request | None


class Requirement(Protocol):
    def unmet(self, context: Context) -> Forbidden | None:
        """The refusal when the token does not meet this requirement on `route`."""


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """The token's scopes: `scope` (RFC 8693/9068, space-delimited) and `scp` (Entra ID, Okta),
    each as a string or an array of strings, read alike and united."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Scopes:
    """`scopes_all`: every one is needed; `scopes_any`: at least one."""

    route: str
    names: tuple[str, ...]
    every: bool

    def unmet(self, context: Context) -> Forbidden | None:
        held = token_scopes(context.decision.claims)
        if self.every:
            missing = [s for s in self.names if s not in held]
            if not missing:
                return None
            return Forbidden(f'route "{self.route}" requires scope "{missing[0]}"', missing)
        if held.intersection(self.names):
            return None
        listed = " ".join(self.names)
        return Forbidden(f'route "{self.route}" requires one of the scopes "{listed}"', self.names)


ABSENT = object()
"""What `claim_at` returns for a path the claims do not have."""


def claim_at(root: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path (`realm_access.roles`), or `ABSENT`."""
    value = root
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return ABSENT
        value = value[part]
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _equals(value: Any, wanted: Any) -> bool:
    return _same(value, wanted)


def _one_of(value: Any, wanted: Any) -> bool:
    return any(_same(value, w) for w in wanted)


def _contains(value: Any, wanted: Any) -> bool:
    return isinstance(value, list) and any(_same(v, wanted) for v in value)


def _contains_any(value: Any, wanted: Any) -> bool:
    return isinstance(value, list) and any(_same(v, w) for v in value for w in wanted)


# A claim test by its TOML name: (test, whether its operand is a list, how a refusal says it).
CLAIM_TESTS: Mapping[str, tuple[Callable[[Any, Any], bool], bool, str]] = {
    "equals": (_equals, False, "does not equal the required value"),
    "one_of": (_one_of, True, "is not one of the allowed values"),
    "contains": (_contains, False, "does not contain the required value"),
    "contains_any": (_contains_any, True, "contains none of the required values"),
}


@dataclass(frozen=True, slots=True)
class ClaimTest:
    """A claim's value at `path` (under the namespace) passes `test` against `operand`."""

    route: str
    path: tuple[str, ...]
    op: str
    operand: Any

    def unmet(self, context: Context) -> Forbidden | None:
        name = ".".join(self.path)
        value = claim_at(context.root, self.path)
        if value is ABSENT:
            return Forbidden(f'route "{self.route}" requires the "{name}" claim')
        test, _, says = CLAIM_TESTS[self.op]
        if test(value, self.operand):
            return None
        return Forbidden(f'route "{self.route}": the "{name}" claim {says}')


@dataclass(frozen=True, slots=True)
class Audience:
    """This route's `aud`: the token's `aud` is it, or a list that holds it."""

    route: str
    aud: str

    def unmet(self, context: Context) -> Forbidden | None:
        value = context.decision.claims.get("aud")
        if value == self.aud or (isinstance(value, list) and self.aud in value):
            return None
        return Forbidden(f'route "{self.route}" requires audience "{self.aud}"')


REQUEST_VARIABLES = (
    "request.method",
    "request.path",
    "request.host",
    "request.query",
    "request.headers",
)
"""What a condition reads of the request, each a variable of its own (config/cel.py gives their
types), so that a condition is given only what it reads."""
CONDITION_VARIABLES = ("claims", "user_id", *REQUEST_VARIABLES)
MEMO_SIZE = 1024


class Condition(Protocol):
    """A compiled CEL expression (see config/cel.py): True, False, or an error (None)."""

    @property
    def reads(self) -> frozenset[str]:
        """Which of CONDITION_VARIABLES the expression reads."""

    def holds(self, variables: Mapping[str, Any]) -> bool | None: ...


class When:
    """The route's CEL condition over `claims`, `user_id` and `request`. An error denies.

    The condition is pure, so its answer for the same inputs is kept (up to MEMO_SIZE): on a
    cached decision (the same claims object) and a request that agrees in what the condition
    reads, it is not evaluated again. Headers differ per request (a request id), so a
    condition that reads them is always evaluated."""

    __slots__ = ("_memo", "_reads", "condition", "route")

    def __init__(self, route: str, condition: Condition) -> None:
        self.route = route
        self.condition = condition
        self._reads = condition.reads
        self._memo: dict[tuple[Any, ...], tuple[Any, bool | None]] | None = (
            None if "request.headers" in self._reads else {}
        )

    def unmet(self, context: Context) -> Forbidden | None:
        holds = self._holds(context.decision, context.request)
        if holds:
            return None
        if holds is None:
            return Forbidden(f'route "{self.route}": its condition could not be evaluated')
        return Forbidden(f'route "{self.route}": its condition is not met')

    def _holds(self, decision: Decision, request: Request | None) -> bool | None:
        memo = self._memo
        if memo is None:
            return self.condition.holds(self._variables(decision, request))
        key = (id(decision.claims), decision.user_id, *self._request_key(request))
        kept = memo.get(key)
        # The entry keeps its claims alive, so their id is not reused while it is held.
        if kept is not None and kept[0] is decision.claims:
            return kept[1]
        holds = self.condition.holds(self._variables(decision, request))
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = (decision.claims, holds)
        return holds

    def _request_key(self, request: Request | None) -> tuple[str, ...]:
        if request is None:
            return ()
        reads = self._reads
        return (
            request.method if "request.method" in reads else "",
            request.path if "request.path" in reads else "",
            request.host if "request.host" in reads else "",
            request.query if "request.query" in reads else "",
        )

    def _variables(self, decision: Decision, request: Request | None) -> dict[str, Any]:
        variables = request_variables(request, self._reads)
        if "claims" in self._reads:
            variables["claims"] = decision.claims
        if "user_id" in self._reads:
            variables["user_id"] = decision.user_id
        return variables


def request_variables(
    request: Request | None, reads: frozenset[str] = frozenset(REQUEST_VARIABLES)
) -> dict[str, Any]:
    """The request variables in `reads`, as a condition sees them; the path normalised, as the
    route matched it. Without a request (Validate without one) each is empty."""
    variables: dict[str, Any] = {}
    if "request.method" in reads:
        variables["request.method"] = request.method if request else ""
    if "request.path" in reads:
        variables["request.path"] = _normalised(request.path) if request else ""
    if "request.host" in reads:
        variables["request.host"] = host_of(request.host) if request else ""
    if "request.query" in reads:
        variables["request.query"] = _query(request.query) if request else {}
    if "request.headers" in reads:
        variables["request.headers"] = (
            {k: v for k, v in request.headers.items() if k not in request.hidden} if request else {}
        )
    return variables


def _normalised(path: str) -> str:
    try:
        return "/" + "/".join(paths.segments(path))
    except AmbiguousPath:  # pragma: no cover - a route was selected, so the path is unambiguous
        return path


def _query(query: str) -> dict[str, str]:
    """Query parameters by name, decoded; the first of repeated names."""
    parsed: dict[str, str] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            parsed.setdefault(unquote_plus(name), unquote_plus(value))
    return parsed


@dataclass(frozen=True, slots=True)
class Route:
    """One `[[routes]]` table: its match, and what a token needs on it.

    `anonymous`: a request without a token passes, with no user; a token that is present must
    still be valid, unless `ignore_invalid_token`, when it counts as absent. `deny`: nothing
    passes (the default route under SIDECAR_DEFAULT_ROUTE=deny). `dry_run`: an unmet requirement
    is reported and the request passes as if the route had none.

    `issuer_audience`: whether the issuer's `aud` (AUTH_JWT_AUD, an issuer's `aud`) applies. A
    route with its own `audience` checks that instead, unless in dry-run: then the issuer's
    still decides, as it would without the rule.
    """

    name: str
    match: Match = Match()
    requirements: tuple[Requirement, ...] = ()
    anonymous: bool = False
    ignore_invalid_token: bool = False
    deny: bool = False
    dry_run: bool = False
    issuer_audience: bool = field(init=False)

    def __post_init__(self) -> None:
        own = any(isinstance(r, Audience) for r in self.requirements)
        object.__setattr__(self, "issuer_audience", self.dry_run or not own)

    def unmet(self, decision: Decision, request: Request | None) -> Forbidden | None:
        """The first requirement that the valid `decision` does not meet, or None. Claim
        paths start under the namespace of the decision's issuer."""
        if self.deny:
            return self.denial()
        if not self.requirements:
            return None
        namespace = decision.namespace
        root = decision.claims if namespace is None else decision.claims.get(namespace)
        context = Context(decision, root, request)
        for requirement in self.requirements:
            refusal = requirement.unmet(context)
            if refusal is not None:
                return refusal
        return None

    def denial(self) -> Forbidden:
        return Forbidden(f'route "{self.name}" allows no request')


AUTHENTICATED = Route("default")
"""Any valid token: today's behaviour, and the default route unless told otherwise."""


class Routes:
    """The routes in order, and the default for a request that matches none."""

    def __init__(self, routes: Sequence[Route], default: Route = AUTHENTICATED) -> None:
        self.routes = tuple(routes)
        self.default = default
        # Reading the host costs nothing when no route names one.
        self._by_host = any(r.match.hosts is not None for r in self.routes)

    def __bool__(self) -> bool:
        """Whether requests need routing at all: some route, or a default that is not today's."""
        return bool(self.routes) or self.default is not AUTHENTICATED

    def select(self, method: str, path: str, host: str = "") -> Route:
        """The first route for `method path` on `host`; raises AmbiguousPath (a Forbidden)
        for a path that routers read differently."""
        segments = paths.segments(path or "/")
        host = host_of(host) if self._by_host else ""
        for route in self.routes:
            if route.match.fits(method, segments, host):
                return route
        return self.default


def default_route(choice: DefaultRoute, dry_run: bool = False) -> Route:
    if choice is DefaultRoute.DENY:
        return Route("default", deny=True, dry_run=dry_run)
    return AUTHENTICATED


NO_ROUTES = Routes(())
