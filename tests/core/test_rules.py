"""Routes and their requirements, in the core alone: matching, scopes, claims, audience, CEL."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import routes as route_tables
from sidecar.core import rules
from sidecar.core.errors import AmbiguousPath, Forbidden, Reason
from sidecar.core.validator import Decision


def build(text: str, default: str = "authenticated", dry_run: bool = False) -> rules.Routes:
    problems: list[str] = []
    table = route_tables.build(
        tomllib.loads(text).get("routes"), rules.DefaultRoute(default), dry_run, problems
    )
    assert problems == []
    return table


def problems_of(text: str) -> list[str]:
    problems: list[str] = []
    route_tables.build(
        tomllib.loads(text).get("routes"), rules.DefaultRoute.AUTHENTICATED, False, problems
    )
    return problems


def valid(namespace: str | None = None, **claims: Any) -> Decision:
    return Decision(valid=True, user_id="alice", claims=claims, namespace=namespace)


def unmet(route: rules.Route, decision: Decision, method: str = "GET", target: str = "/") -> str:
    refusal = route.unmet(decision, rules.Request(method, target, "api.example.com"))
    return "" if refusal is None else refusal.message


ROUTES = """
[[routes]]
name = "health"
path = "/healthz"
anonymous = true

[[routes]]
name = "writes"
path_prefix = "/v1"
methods = ["post", "DELETE"]
scopes_all = ["sync:write", "sync:read"]

[[routes]]
name = "reads"
path_prefix = "/v1"
scopes_any = ["sync:read", "sync"]

[[routes]]
name = "admin"
path_prefix = "/admin"
hosts = ["API.example.com:443"]
[[routes.claims]]
path = "realm_access.roles"
contains = "admin"
"""


def test_the_first_route_that_matches_decides() -> None:
    table = build(ROUTES)
    assert table.select("GET", "/healthz").name == "health"
    assert table.select("POST", "/v1/shape").name == "writes"
    assert table.select("GET", "/v1/shape").name == "reads"
    assert table.select("GET", "/admin/users", "api.example.com:8443").name == "admin"
    # Another host, a prefix that is not a whole segment, no match: the default.
    assert table.select("GET", "/admin", "other.example.com") is table.default
    assert table.select("GET", "/v1x") is table.default
    assert table.default is rules.AUTHENTICATED


@pytest.mark.parametrize("path", ["/v1/./shape", "//v1/shape", "/v1/x/../shape", "/%76%31/shape"])
def test_paths_match_after_normalisation(path: str) -> None:
    assert build(ROUTES).select("GET", path).name == "reads"


def test_an_ambiguous_path_is_refused_not_matched() -> None:
    with pytest.raises(AmbiguousPath):
        build(ROUTES).select("GET", "/v1%2Fshape")


@pytest.mark.parametrize(
    ("claims", "refusal"),
    [
        ({"scope": "openid sync:read"}, ""),
        ({"scp": ["sync"]}, ""),
        ({"scp": "sync other"}, ""),
        ({"scope": "openid", "scp": ["profile"]}, 'route "reads" requires one of the scopes'),
        ({}, 'route "reads" requires one of the scopes "sync:read sync"'),
        ({"scope": ["sync:read"]}, ""),
        ({"scope": 7}, 'route "reads" requires one of the scopes'),
    ],
)
def test_scopes_any_reads_scope_and_scp_alike(claims: dict[str, Any], refusal: str) -> None:
    route = build(ROUTES).select("GET", "/v1/shape")
    assert unmet(route, valid(**claims)).startswith(refusal)


def test_scopes_all_names_the_first_missing_scope_for_www_authenticate() -> None:
    route = build(ROUTES).select("POST", "/v1/shape")
    refusal = route.unmet(valid(scope="sync:write"), None)
    assert refusal is not None
    assert refusal.reason is Reason.FORBIDDEN
    assert refusal.message == 'route "writes" requires scope "sync:read"'
    assert refusal.scopes == ("sync:read",)
    assert route.unmet(valid(scope="sync:read", scp=["sync:write"]), None) is None


@pytest.mark.parametrize(
    ("test", "value", "allowed"),
    [
        ('equals = "pro"', "pro", True),
        ('equals = "pro"', "free", False),
        ("equals = 1", 1.0, True),
        ("equals = 1", True, False),
        ("equals = true", True, True),
        ('one_of = ["a", "b"]', "b", True),
        ('one_of = ["a", "b"]', ["a"], False),
        ('contains = "admin"', ["user", "admin"], True),
        ('contains = "admin"', "admin", False),
        ('contains = "admin"', ["administrator"], False),
        ('contains_any = ["x", "admin"]', ["admin"], True),
        ('contains_any = ["x", "y"]', ["admin"], False),
    ],
)
def test_claim_tests(test: str, value: Any, allowed: bool) -> None:
    route = build(f'[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a.b"\n{test}\n').routes[0]
    refusal = unmet(route, valid(a={"b": value}))
    assert (refusal == "") is allowed
    # A refusal names the route and the claim, never the claim's value.
    assert 'route "r"' in refusal or allowed
    assert "administrator" not in refusal and "free" not in refusal


def test_a_missing_claim_is_named() -> None:
    route = build('[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a.b"\nequals = 1\n').routes[0]
    assert unmet(route, valid(a=[1])) == 'route "r" requires the "a.b" claim'


def test_claim_paths_start_under_the_issuers_namespace() -> None:
    route = build(
        '[[routes]]\nname = "r"\n[[routes.claims]]\npath = "roles"\ncontains = "admin"\n'
    ).routes[0]
    ns = "https://example.com/claims"
    assert unmet(route, valid(ns, **{ns: {"roles": ["admin"]}})) == ""
    assert unmet(route, valid(ns, roles=["admin"])) != ""


def test_a_routes_audience() -> None:
    route = build('[[routes]]\nname = "r"\naudience = "admin-api"\n').routes[0]
    assert unmet(route, valid(aud=["sync", "admin-api"])) == ""
    assert unmet(route, valid(aud="sync")) == 'route "r" requires audience "admin-api"'


def test_cel_reads_claims_user_and_request() -> None:
    route = build(
        "[[routes]]\n"
        'name = "r"\n'
        'when = \'request.method == "GET" && "sync" in claims.scp && user_id == "alice"'
        ' && request.query.table == "items" && request.path == "/v1/shape"'
        ' && request.headers["x-team"] == "a" && !("authorization" in request.headers)\'\n'
    ).routes[0]
    headers = {"x-team": "a", "authorization": "Bearer x", "cookie": "t=x"}
    request = rules.Request("GET", "/v1//shape?table=items", "h", headers)
    assert route.unmet(valid(scp=["sync"]), request) is None
    refused = route.unmet(valid(scp=["other"]), request)
    assert refused is not None and refused.message == 'route "r": its condition is not met'


def test_a_cel_error_denies() -> None:
    route = build('[[routes]]\nname = "r"\nwhen = \'claims.tier == "pro"\'\n').routes[0]
    refused = route.unmet(valid(), rules.Request("GET", "/"))
    assert refused is not None
    assert refused.message == 'route "r": its condition could not be evaluated'
    assert route.unmet(valid(tier="pro"), rules.Request("GET", "/")) is None


class Counting:
    """A condition that counts its evaluations: `request.method == "GET"`, or what `reads`."""

    def __init__(self, reads: frozenset[str]) -> None:
        self.reads = reads
        self.evaluations = 0

    def holds(self, variables: Any) -> bool | None:
        self.evaluations += 1
        return bool(variables.get("request.method") == "GET")


def test_a_conditions_answer_is_kept_only_for_the_same_claims_and_what_it_reads() -> None:
    condition = Counting(frozenset({"claims", "request.method"}))
    when = rules.When("r", condition)
    decision = valid(scp=["sync"])

    def context(decision: Decision, method: str, target: str) -> rules.Context:
        return rules.Context(decision, decision.claims, rules.Request(method, target))

    assert when.unmet(context(decision, "GET", "/a?x=1")) is None
    assert when.unmet(context(decision, "GET", "/b?x=2")) is None  # path, query: not read
    assert condition.evaluations == 1
    assert when.unmet(context(decision, "POST", "/a")) is not None  # the method is read
    assert when.unmet(context(valid(scp=["sync"]), "GET", "/a")) is None  # other claims
    assert condition.evaluations == 3


def test_a_condition_that_reads_headers_is_evaluated_each_time() -> None:
    condition = Counting(frozenset({"request.method", "request.headers"}))
    when = rules.When("r", condition)
    decision = valid()
    for _ in range(3):
        assert (
            when.unmet(rules.Context(decision, decision.claims, rules.Request("GET", "/"))) is None
        )
    assert condition.evaluations == 3


def test_the_kept_answers_are_bounded() -> None:
    condition = Counting(frozenset({"request.query"}))
    when = rules.When("r", condition)
    decision = valid()
    for i in range(rules.MEMO_SIZE + 1):
        when.unmet(rules.Context(decision, decision.claims, rules.Request("GET", f"/?i={i}")))
    when.unmet(rules.Context(decision, decision.claims, rules.Request("GET", "/?i=0")))
    assert condition.evaluations == rules.MEMO_SIZE + 2  # the first was dropped when it filled


def test_a_condition_is_given_only_what_it_reads() -> None:
    headers = {"x-team": "a", "authorization": "Bearer x"}
    request = rules.Request("GET", "/v1//shape?table=items&x=%41", "App:3000", headers)
    assert rules.request_variables(request) == {
        "request.method": "GET",
        "request.path": "/v1/shape",
        "request.host": "app",
        "request.query": {"table": "items", "x": "A"},
        "request.headers": {"x-team": "a"},
    }
    assert rules.request_variables(request, frozenset({"request.method"})) == {
        "request.method": "GET"
    }
    assert rules.request_variables(None)["request.query"] == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[routes]]\npath = "/x"', "[[routes]] #1: needs name"),
        (
            '[[routes]]\nname = "r"\nwhen = \'reqest.method == "GET"\'',
            "route 'r': when: 1:7: undeclared reference to 'reqest.method'",
        ),
        ("[[routes]]\nname = \"r\"\nwhen = 'claims.x +'", "route 'r': when: 1:"),
        ("[[routes]]\nname = \"r\"\nwhen = '1 + 2'", "when: is of type int, not a condition"),
        (
            '[[routes]]\nname = "r"\nanonymous = true\nscopes_any = ["a"]',
            "cannot have requirements",
        ),
        ('[[routes]]\nname = "r"\nignore_invalid_token = true', "needs anonymous = true"),
        ('[[routes]]\nname = "r"\npath = "/a"\npath_prefix = "/b"', "both path and path_prefix"),
        ('[[routes]]\nname = "r"\npath = "/a%2Fb"', "is ambiguous"),
        ('[[routes]]\nname = "r"\nmethods = ["GE T"]', "is not an HTTP method"),
        ('[[routes]]\nname = "r"\nscopes_all = ["a b"]', "a scope has no spaces"),
        ('[[routes]]\nname = "r"\nscopes_all = ["a\\"b"]', "a scope has no spaces"),
        ('[[routes]]\nname = "r"\nport = 1', "unknown key 'port'"),
        ('[[routes]]\nname = "r"\n[[routes]]\nname = "r"', "route 'r': name 'r' is already"),
        ('[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a"', "needs exactly one of"),
        ('[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a"\none_of = "x"', "non-empty list"),
        ('[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a."\nequals = 1', "needs path"),
        ('[[routes]]\nname = "r"\n[[routes.claims]]\npath = "a"\nequals = {x = 1}', "takes"),
    ],
)
def test_problems_name_the_route(text: str, problem: str) -> None:
    lines = problems_of(text)
    assert any(problem in line for line in lines), lines
    assert all(line.startswith("SIDECAR_CONFIG_FILE: ") and "\n" not in line for line in lines)


def test_default_deny_and_dry_run() -> None:
    table = build('[[routes]]\nname = "r"\npath = "/a"', default="deny", dry_run=True)
    assert table.select("GET", "/b").deny
    assert table.default.dry_run
    assert all(r.dry_run for r in table.routes)
    assert isinstance(table.default.denial(), Forbidden)


# Properties -------------------------------------------------------------------------------------

SCOPE = st.text(alphabet="abcdefgh:.", min_size=1, max_size=6)


@given(held=st.lists(SCOPE, max_size=5), wanted=st.lists(SCOPE, min_size=1, max_size=3))
def test_scope_and_scp_are_read_alike(held: list[str], wanted: list[str]) -> None:
    for every in (True, False):
        requirement = rules.Scopes("r", tuple(wanted), every)
        as_string = requirement.unmet(rules.Context(valid(scope=" ".join(held)), None, None))
        as_array = requirement.unmet(rules.Context(valid(scp=held), None, None))
        assert (as_string is None) == (as_array is None)
        expected = set(wanted) <= set(held) if every else bool(set(wanted) & set(held))
        assert (as_string is None) == expected


SEGMENT = st.sampled_from(["a", "b", "v1", "shape"])


@given(
    prefixes=st.lists(st.lists(SEGMENT, max_size=3), min_size=1, max_size=5),
    path=st.lists(SEGMENT, max_size=4),
)
def test_first_match_wins(prefixes: list[list[str]], path: list[str]) -> None:
    table = rules.Routes(
        [
            rules.Route(f"r{i}", rules.Match(prefix=tuple(prefix)))
            for i, prefix in enumerate(prefixes)
        ]
    )
    chosen = table.select("GET", "/" + "/".join(path))
    fitting = [i for i, p in enumerate(prefixes) if tuple(path[: len(p)]) == tuple(p)]
    assert chosen.name == (f"r{fitting[0]}" if fitting else "default")
